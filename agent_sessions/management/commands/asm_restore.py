"""``manage.py asm_restore ARCHIVE...``: bring archived rows back.

Thin: parse, call :meth:`DjangoMaintenance.restore
<agent_sessions.maintenance.DjangoMaintenance.restore>`, print its report.
Exit status: 0 restored (or nothing to restore), 1 when a file is damaged, a
live row differs from its archived record (nothing is written then) or the
database fails, 2 for bad flags.
"""

from __future__ import annotations

import json
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import DEFAULT_DB_ALIAS, connections

from agent_sessions.errors import AgentSessionsError
from agent_sessions.maintenance import DjangoMaintenance


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise ValueError(value)
    return number


class Command(BaseCommand):
    help = (
        "Restore sessions, counters, runs, events and artifacts from asm_maintenance archive "
        "files (JSON Lines). Verifies the files first; never overwrites a live row that differs."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("archives", nargs="+", metavar="ARCHIVE", help="Archive files.")
        parser.add_argument(
            "--dry-run", action="store_true", help="Verify and count; write nothing."
        )
        parser.add_argument("--database", default=DEFAULT_DB_ALIAS, help="Database alias.")
        parser.add_argument(
            "--batch-size", type=_positive, default=1000, help="Records per transaction."
        )
        parser.add_argument("--format", choices=["text", "json"], default="text")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["database"] not in connections.settings:
            raise CommandError(
                f"--database: no database alias {options['database']!r}", returncode=2
            )
        maintenance = DjangoMaintenance(options["database"])
        as_json = options["format"] == "json"
        try:
            report = maintenance.restore(
                options["archives"], dry_run=options["dry_run"], batch_size=options["batch_size"]
            )
        except AgentSessionsError as exc:
            if as_json:
                self.stdout.write(
                    json.dumps(
                        {"error": exc.code, "message": exc.message, **exc.details}, default=str
                    )
                )
            raise CommandError(str(exc), returncode=1) from exc
        if as_json:
            self.stdout.write(json.dumps(report.to_dict()))
        elif int(options["verbosity"]) >= 1:
            self.stdout.write(report.summary())
            for path in report.unverified_files:
                self.stdout.write(f"  {path}: no manifest (an older archive), read unverified")
            if report.skipped_lines:
                self.stdout.write(f"  {report.skipped_lines} torn line(s) skipped")
