"""Read the PostgreSQL catalog of the asm_* tables, to compare schemas as text."""

from __future__ import annotations

from django.db import connection

from agent_sessions.schema import reference_ddl as _reference_ddl

ASM_TABLES = ("asm_sessions", "asm_runs", "asm_events", "asm_session_sequences", "asm_artifacts")


def reference_ddl() -> str:
    """The DDL that ASM's Ecto migration runs (shipped in ``agent_sessions/sql``)."""
    return _reference_ddl()


def catalog(schema: str) -> list[str]:
    """One line per column, index and constraint of the asm_* tables in ``schema``.

    Lines are sorted per kind and schema-neutral, so two catalogs compare with
    a plain list diff.
    """
    lines: list[str] = []
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT c.relname, a.attnum, a.attname, format_type(a.atttypid, a.atttypmod),
                   a.attnotnull, pg_get_expr(d.adbin, d.adrelid)
            FROM pg_attribute a
            JOIN pg_class c ON c.oid = a.attrelid
            JOIN pg_namespace n ON n.oid = c.relnamespace
            LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
            WHERE n.nspname = %s AND c.relname = ANY(%s) AND c.relkind = 'r'
              AND a.attnum > 0 AND NOT a.attisdropped
            ORDER BY c.relname, a.attnum
            """,
            [schema, list(ASM_TABLES)],
        )
        for table, position, name, type_, notnull, default in cursor.fetchall():
            null = "NOT NULL" if notnull else "NULL"
            lines.append(f"column {table}.{name} #{position} {type_} {null} default={default}")
        cursor.execute(
            """
            SELECT ic.relname, pg_get_indexdef(i.indexrelid)
            FROM pg_index i
            JOIN pg_class ic ON ic.oid = i.indexrelid
            JOIN pg_class tc ON tc.oid = i.indrelid
            JOIN pg_namespace n ON n.oid = tc.relnamespace
            WHERE n.nspname = %s AND tc.relname = ANY(%s)
            ORDER BY ic.relname
            """,
            [schema, list(ASM_TABLES)],
        )
        for _name, definition in cursor.fetchall():
            lines.append("index " + definition.replace(f" {schema}.", " "))
        cursor.execute(
            """
            SELECT tc.relname, con.conname, con.contype, pg_get_constraintdef(con.oid)
            FROM pg_constraint con
            JOIN pg_class tc ON tc.oid = con.conrelid
            JOIN pg_namespace n ON n.oid = tc.relnamespace
            WHERE n.nspname = %s AND tc.relname = ANY(%s)
            ORDER BY tc.relname, con.conname
            """,
            [schema, list(ASM_TABLES)],
        )
        for table, name, kind, definition in cursor.fetchall():
            lines.append(f"constraint {table}.{name} {kind} {definition}")
    return lines


def build_reference_schema(schema: str = "asm_reference") -> None:
    """Create ``schema`` and run the reference DDL inside it."""
    with connection.cursor() as cursor:
        cursor.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        cursor.execute(f'CREATE SCHEMA "{schema}"')
        cursor.execute(f'SET LOCAL search_path TO "{schema}"')
        cursor.execute(reference_ddl())
        cursor.execute("SET LOCAL search_path TO DEFAULT")


def assert_same_catalog(actual: list[str], expected: list[str]) -> None:
    """Fail with a readable unified diff when the two catalogs differ."""
    if actual == expected:
        return
    import difflib

    diff = "\n".join(
        difflib.unified_diff(expected, actual, "reference DDL", "django migrate", lineterm="")
    )
    raise AssertionError(f"asm_* schema differs from the reference:\n{diff}")
