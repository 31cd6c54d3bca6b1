"""``manage.py asm_search_index``: rebuild (or drop) the full-text search index of ``asm_events``.

Thin by design: one call to :func:`agent_sessions.search.install_search_index`
in one transaction. Needed after changing ``TEXT_SEARCH_CONFIG`` on
PostgreSQL (system check ``agent_sessions.W041``), or on SQLite once FTS5 is
available (``agent_sessions.W040``). The migration builds the index the first
time; writes to ``asm_events`` wait while the rebuild runs.

``--drop`` removes the index and its triggers
(:func:`agent_sessions.search.remove_search_index`), for deployments that
append heavily and never search: appends stop paying for it (on SQLite it
costs most of a single append, see docs/search.md) and ``search_text``
raises ``SearchUnavailableError`` until the command runs again without
``--drop``, which indexes every event, those appended meanwhile included.
"""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import DEFAULT_DB_ALIAS, connections

from agent_sessions.conf import app_settings
from agent_sessions.db import write_block
from agent_sessions.errors import AgentSessionsError
from agent_sessions.search import check_config_name, install_search_index, remove_search_index


class Command(BaseCommand):
    help = (
        "Rebuild the agent_sessions full-text search index (and its triggers) from every "
        "row of asm_events, with the configured TEXT_SEARCH_CONFIG; or drop it (--drop)."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--database", default=DEFAULT_DB_ALIAS, help="Database alias (default: 'default')."
        )
        parser.add_argument(
            "--drop",
            action="store_true",
            help="Drop the index and its triggers instead: appends no longer index events and "
            "search_text raises SearchUnavailableError until the index is rebuilt.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        alias = options["database"]
        if alias not in connections.settings:
            raise CommandError(f"Unknown database alias {alias!r}.")
        if options["drop"]:
            self._drop(alias, options["verbosity"])
            return
        try:
            config = check_config_name(app_settings.TEXT_SEARCH_CONFIG)
            with write_block(alias, "asm_search_index") as connection:
                built = install_search_index(connection, config)
        except (ValueError, AgentSessionsError) as exc:
            raise CommandError(f"The search index was not rebuilt: {exc}") from exc
        if not built:
            raise CommandError(
                "This database cannot hold the search index (SQLite without FTS5, "
                "or a backend other than PostgreSQL and SQLite)."
            )
        if options["verbosity"]:
            self.stdout.write(f"Rebuilt the full-text search index on {alias!r}.")

    def _drop(self, alias: str, verbosity: int) -> None:
        try:
            with write_block(alias, "asm_search_index") as connection:
                remove_search_index(connection)
        except AgentSessionsError as exc:
            raise CommandError(f"The search index was not dropped: {exc}") from exc
        if verbosity:
            self.stdout.write(
                f"Dropped the full-text search index on {alias!r}: appends no longer index "
                "events, and search_text raises SearchUnavailableError. Run "
                "'manage.py asm_search_index' to build it again."
            )
