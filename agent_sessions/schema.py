"""ASM's reference schema: the DDL that the Elixir library's Ecto migration runs.

The five ``asm_*`` tables are shared with AgentSessionManager (Elixir), so their
shape is fixed by ASM v0.8's Ecto migration. The exact DDL ships with the
package (``agent_sessions/sql/asm_reference_postgres.sql``) so that tests and
operators can compare a live PostgreSQL database against it, or create the
tables the way an Elixir service would.
"""

from __future__ import annotations

from pathlib import Path

REFERENCE_DDL_PATH = Path(__file__).resolve().parent / "sql" / "asm_reference_postgres.sql"


def reference_ddl() -> str:
    """Return the DDL that ASM v0.8's Ecto migration runs on PostgreSQL.

    Returns:
        The SQL text (``CREATE TABLE`` and ``CREATE INDEX`` statements).
    """
    return REFERENCE_DDL_PATH.read_text(encoding="utf-8")
