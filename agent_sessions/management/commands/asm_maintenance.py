"""``manage.py asm_maintenance``: apply the retention policy, from cron.

Thin by design (like Django's ``clearsessions``): parse the flags into a
:class:`~agent_sessions.retention.RetentionPolicy`, take the maintenance lock,
call :meth:`DjangoMaintenance.execute` (or ``health_check``), print the result.
See docs/maintenance.md for every flag and scheduling examples.

Exit status: 0 success (also when another run holds the lock), 1 when the
report has errors (among them a lock lost mid-run: the run stops at once) or
the health check finds issues, 2 for bad flags or an invalid policy.
"""

from __future__ import annotations

import json
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import DEFAULT_DB_ALIAS, connections

from agent_sessions.errors import AgentSessionsError, ValidationError
from agent_sessions.locks import hold_maintenance_lock
from agent_sessions.maintenance import DjangoMaintenance
from agent_sessions.results import MaintenanceReport
from agent_sessions.retention import RetentionPolicy

#: Flags that take a positive integer or ``none`` (no limit), and their policy fields.
LIMIT_FLAGS = {
    "--max-session-age-days": "max_session_age_days",
    "--max-completed-session-age-days": "max_completed_session_age_days",
    "--hard-delete-after-days": "hard_delete_after_days",
    "--max-events-per-session": "max_events_per_session",
    "--max-total-events": "max_total_events",
}
BAD_FLAGS = 2
FAILED = 1


class Command(BaseCommand):
    help = (
        "Apply the agent_sessions retention policy (settings.AGENT_SESSIONS['RETENTION'], "
        "overridden by flags): soft-delete expired sessions, hard-delete old soft-deleted "
        "ones, prune events, clean orphans. Safe to run from cron: overlapping runs skip."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        for flag, field in LIMIT_FLAGS.items():
            parser.add_argument(
                flag,
                dest=field,
                metavar="N|none",
                help=f"Override RETENTION['{field}'] (a positive integer, or 'none' for no limit).",
            )
        parser.add_argument(
            "--exempt-status",
            dest="exempt_statuses",
            action="append",
            metavar="STATUS",
            help="Session status never soft-deleted by age; repeatable; replaces the setting.",
        )
        parser.add_argument(
            "--exempt-tag",
            dest="exempt_tags",
            action="append",
            metavar="TAG",
            help="Sessions with this tag are never soft-deleted; repeatable; replaces the setting.",
        )
        parser.add_argument(
            "--prune-event-types-first",
            metavar="TYPE,TYPE",
            help="Comma-separated event types pruned before any other ('' for none).",
        )
        parser.add_argument("--batch-size", metavar="N", help="Rows per transaction.")
        parser.add_argument(
            "--archive-dir",
            metavar="DIR",
            help="Archive pruned events and hard-deleted sessions as JSON Lines into DIR first.",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="Report what would be done; change nothing."
        )
        parser.add_argument(
            "--database",
            default=DEFAULT_DB_ALIAS,
            help="Database alias to maintain (default: 'default').",
        )
        parser.add_argument(
            "--format",
            choices=["text", "json"],
            default="text",
            help="Output a short text summary (default) or one JSON object.",
        )
        parser.add_argument(
            "--health-check",
            action="store_true",
            help="Only run the consistency check; exit 1 when it finds issues.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["database"] not in connections.settings:
            raise CommandError(
                f"--database: no database alias {options['database']!r} in settings.DATABASES",
                returncode=BAD_FLAGS,
            )
        policy = _policy_from(options)
        verbosity = int(options["verbosity"])
        as_json = options["format"] == "json"
        maintenance = DjangoMaintenance(
            options["database"], progress=self._progress if verbosity >= 2 and not as_json else None
        )
        try:
            if options["health_check"]:
                self._health_check(maintenance, as_json, verbosity)
                return
            with hold_maintenance_lock(options["database"]) as lock:
                if lock is None:
                    self._skip(options, as_json, verbosity)
                    return
                report = maintenance.execute(policy, dry_run=options["dry_run"], lock=lock)
        except AgentSessionsError as exc:
            raise CommandError(str(exc), returncode=FAILED) from exc
        self._print_report(report, options["dry_run"], as_json, verbosity)
        if report.errors:
            raise CommandError(
                f"maintenance finished with {len(report.errors)} error(s)", returncode=FAILED
            )

    def _health_check(self, maintenance: DjangoMaintenance, as_json: bool, verbosity: int) -> None:
        issues = maintenance.health_check()
        if as_json:
            self.stdout.write(json.dumps({"healthy": not issues, "issues": issues}))
        elif issues:
            for issue in issues:
                self.stderr.write(issue)
        elif verbosity >= 1:
            self.stdout.write("Healthy: no consistency issues found.")
        if issues:
            raise CommandError(f"health check found {len(issues)} issue(s)", returncode=FAILED)

    def _skip(self, options: dict[str, Any], as_json: bool, verbosity: int) -> None:
        message = (
            f"Another asm_maintenance run holds the maintenance lock on database "
            f"{options['database']!r}; nothing done."
        )
        if as_json:
            self.stdout.write(
                json.dumps({"locked": True, "message": message, "dry_run": options["dry_run"]})
            )
        elif verbosity >= 1:
            self.stdout.write(message)

    def _print_report(
        self, report: MaintenanceReport, dry_run: bool, as_json: bool, verbosity: int
    ) -> None:
        if as_json:
            self.stdout.write(json.dumps({**report.to_dict(), "dry_run": dry_run}))
            return
        for error in report.errors:
            self.stderr.write(f"Error: {error}")
        if verbosity >= 1:
            self.stdout.write(_summary(report, dry_run))

    def _progress(self, step: str, rows: int, total: int) -> None:
        self.stdout.write(f"  {step}: batch of {rows}, {total} so far")


def _summary(report: MaintenanceReport, dry_run: bool) -> str:
    def counts(*verbs: str) -> str:
        soft, hard, prune, clean = verbs
        return (
            f"{soft} {report.sessions_soft_deleted} session(s), "
            f"{hard} {report.sessions_hard_deleted} session(s), "
            f"{prune} {report.events_pruned} event(s), "
            f"{clean} {report.artifacts_cleaned} orphaned artifact(s) and "
            f"{report.orphaned_sequences_cleaned} orphaned sequence counter(s) "
            f"({report.duration_ms} ms)."
        )

    if dry_run:
        return "Dry run, nothing changed: would " + counts(
            "soft-delete", "hard-delete", "prune", "clean"
        )
    return "Done: " + counts("soft-deleted", "hard-deleted", "pruned", "cleaned")


def _limit(flag: str, value: str) -> int | None:
    if value.strip().lower() == "none":
        return None
    try:
        return int(value)
    except ValueError:
        raise CommandError(
            f"{flag} must be a positive integer or 'none', got {value!r}", returncode=BAD_FLAGS
        ) from None


def _policy_from(options: dict[str, Any]) -> RetentionPolicy:
    """The configured policy with the given flags applied; bad values exit 2."""
    overrides: dict[str, Any] = {}
    for flag, field in LIMIT_FLAGS.items():
        if options.get(field) is not None:
            overrides[field] = _limit(flag, str(options[field]))
    for field in ("exempt_statuses", "exempt_tags"):
        if options.get(field) is not None:
            overrides[field] = list(options[field])
    if options.get("prune_event_types_first") is not None:
        types = str(options["prune_event_types_first"]).split(",")
        overrides["prune_event_types_first"] = [t.strip() for t in types if t.strip()]
    if options.get("batch_size") is not None:
        overrides["batch_size"] = _limit("--batch-size", str(options["batch_size"]))
    if options.get("archive_dir") is not None:
        overrides["archive_before_prune"] = True
        overrides["archive_store"] = str(options["archive_dir"])
    try:
        return RetentionPolicy.from_settings(**overrides)
    except ValidationError as exc:
        raise CommandError(str(exc), returncode=BAD_FLAGS) from exc
