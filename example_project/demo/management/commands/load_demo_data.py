"""``manage.py load_demo_data``: realistic agent sessions for the demo, through the public store.

Creates about twenty sessions of three agents (one per provider: claude,
codex, amp) spread over the last four months, each with runs and 10 to 60
events (messages, streamed chunks, tool calls, token usage, errors), a few
artifacts, a couple of soft-deleted sessions and some pinned ones, so that
the admin, the query API and ``asm_maintenance --dry-run`` all have
something to show. Everything is written with ``DjangoSessionStore`` and
``DjangoArtifactRegistry``.

Ids are stable, so running it again rewrites the same rows instead of adding
new ones. Every demo session carries ``metadata["asm_demo"] = True``.

It never touches data it did not create: on a database that holds sessions
or events of its own (anything but demo sessions and ``ses_live_demo``, the
live page's session), it refuses with a clear message unless
``--allow-other-data`` is given; ``--reset`` deletes the demo's own sessions
(with their runs, events, counters and artifacts) and nothing else.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DEFAULT_DB_ALIAS
from django.db.models import Q

from agent_sessions import models
from agent_sessions.core import Event, EventType, Run, RunStatus, Session, SessionStatus
from agent_sessions.store import DjangoArtifactRegistry, DjangoSessionStore, delete_sessions_cascade
from agent_sessions.validation import utcnow

AGENTS = {
    "support-bot": ("claude", ["claude-sonnet-4-5", "claude-haiku-4-5", "claude-opus-4-6"]),
    "code-reviewer": ("codex", ["o3", "gpt-4o", "o3-mini"]),
    "research-assistant": ("amp", ["amp-default"]),
}
PROMPTS = [
    "Why was my invoice charged twice this month?",
    "Review the retry logic in payments/worker.py",
    "Summarise the latest papers on retrieval-augmented generation",
    "Reset the password for the staging admin account",
    "Find the flaky test in the CI run of last night",
    "Compare three vector databases for 10M embeddings",
    "Draft a reply to the customer about the delayed shipment",
    "Explain the N+1 queries in the order admin",
]
TOOLS = ["search_docs", "read_file", "run_tests", "query_crm", "web_search", "apply_patch"]
ERRORS = ["rate_limited", "tool_timeout", "context_length_exceeded"]
#: The metadata key that marks a session as the demo's.
DEMO_MARK = "asm_demo"
#: The session of the live page (``demo_agent``), the demo's too.
LIVE_SESSION_ID = "ses_live_demo"


@dataclass
class Totals:
    """What the command created, for the summary line."""

    sessions: int = 0
    runs: int = 0
    events: int = 0
    artifacts: int = 0
    soft_deleted: int = 0
    pinned: int = 0
    agents: set[str] = field(default_factory=set)


class Command(BaseCommand):
    help = "Load realistic demo sessions, runs, events and artifacts (idempotent; --reset wipes)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--sessions", type=int, default=20, help="how many sessions")
        parser.add_argument("--seed", type=int, default=7, help="random seed (ids derive from it)")
        parser.add_argument(
            "--reset",
            action="store_true",
            help="delete the demo's own sessions (and what they own) before loading",
        )
        parser.add_argument(
            "--allow-other-data",
            action="store_true",
            help="load even though the database holds sessions the demo did not create "
            "(they are never touched)",
        )
        parser.add_argument("--database", default=DEFAULT_DB_ALIAS, help="database alias")

    def handle(
        self,
        *args: Any,
        sessions: int,
        seed: int,
        reset: bool,
        allow_other_data: bool,
        database: str,
        **options: Any,
    ) -> None:
        others = self._other_sessions(database)
        if others and not allow_other_data:
            raise CommandError(
                f"This database holds {others} session(s) that the demo did not create; "
                "refusing to load demo data into it (nothing was changed). Use an empty "
                "database, or --allow-other-data to add the demo sessions next to them "
                "(--reset then deletes only the demo's own sessions).",
                returncode=1,
            )
        if reset:
            deleted = self._reset(database)
            if options["verbosity"] >= 1:
                self.stdout.write(f"Deleted the {deleted} demo session(s) of an earlier load.")
        rng = random.Random(seed)
        store = DjangoSessionStore(using=database)
        registry = DjangoArtifactRegistry(using=database)
        totals = Totals()
        now = utcnow()
        for number in range(sessions):
            self._load_session(store, registry, rng, number, now, totals)
        self.stdout.write(
            f"Loaded {totals.sessions} sessions of {len(totals.agents)} agents: "
            f"{totals.runs} runs, {totals.events} events, {totals.artifacts} artifacts; "
            f"{totals.soft_deleted} soft-deleted, {totals.pinned} pinned."
        )

    @staticmethod
    def _demo_ids(database: str) -> list[str]:
        marked = models.Session.objects.using(database).filter(**{f"metadata__{DEMO_MARK}": True})
        return [*marked.values_list("id", flat=True), LIVE_SESSION_ID]

    def _other_sessions(self, database: str) -> int:
        """Sessions (with a row, or only events) that are not the demo's."""
        demo = self._demo_ids(database)
        rows = models.Session.objects.using(database).exclude(id__in=demo)
        rowless = (
            models.Event.objects.using(database)
            .exclude(Q(session_id__in=demo) | Q(session_id__in=rows.values("id")))
            .values("session_id")
            .distinct()
        )
        return rows.count() + rowless.count()

    def _reset(self, database: str) -> int:
        """Delete the demo's own sessions with everything they own; nothing else."""
        demo = self._demo_ids(database)
        delete_sessions_cascade(demo, using=database)
        return len(demo) - 1

    def _load_session(
        self,
        store: DjangoSessionStore,
        registry: DjangoArtifactRegistry,
        rng: random.Random,
        number: int,
        now: datetime,
        totals: Totals,
    ) -> None:
        agent_id = list(AGENTS)[number % len(AGENTS)]
        provider, models_of_provider = AGENTS[agent_id]
        # Spread over ~4 months so that retention has old completed sessions to act on.
        created = now - timedelta(days=rng.uniform(0, 120), minutes=rng.randint(0, 600))
        status = rng.choices(list(SessionStatus), weights=[1, 3, 1, 6, 2, 1], k=1)[0]
        tags = [rng.choice(["billing", "ci", "research", "staging", "customer"])]
        if number % 6 == 1:
            tags.append("pinned")
            totals.pinned += 1
        deleted_at = None
        if number in (4, 9):
            deleted_at = created + timedelta(days=rng.uniform(1, 10))
            totals.soft_deleted += 1
        session = Session(
            id=_stable_id("ses_", number, "session"),
            agent_id=agent_id,
            status=status,
            metadata={
                "user": f"user-{rng.randint(100, 999)}",
                "channel": rng.choice(["web", "api"]),
                DEMO_MARK: True,
            },
            context={"system_prompt": f"You are {agent_id}.", "locale": "en"},
            tags=tags,
            created_at=created,
            updated_at=created,
            deleted_at=deleted_at,
        )
        clock = _Clock(created, rng)
        events: list[Event] = [
            Event.new(
                EventType.SESSION_CREATED,
                session.id,
                id=_stable_id("evt_", number, 0),
                timestamp=clock.tick(),
                data={"agent_id": agent_id},
            ),
        ]
        run_count = rng.randint(1, 3)
        target_events = rng.randint(10, 60)
        for run_number in range(run_count):
            last_run = run_number == run_count - 1
            run = self._run(session, provider, rng.choice(models_of_provider), run_number, clock)
            events_per_run = max(4, (target_events - 1) // run_count)
            # An active session's last run is still going.
            finish = not (last_run and status == SessionStatus.ACTIVE)
            run, run_events = self._run_events(
                session, run, rng, clock, events_per_run, number, len(events), finish=finish
            )
            events.extend(run_events)
            store.save_run(run)
            totals.runs += 1
            if rng.random() < 0.3:
                self._artifact(registry, session, run, rng, totals)
        session.updated_at = clock.now
        # The session row and its log are written together, as an agent would at the end.
        store.save_session(session)
        stored = store.append_events(events)
        totals.sessions += 1
        totals.events += len(stored)
        totals.agents.add(agent_id)

    def _run(
        self, session: Session, provider: str, model: str, run_number: int, clock: _Clock
    ) -> Run:
        return Run(
            id=_stable_id("run_", session.id, run_number),
            session_id=session.id,
            status=RunStatus.RUNNING,
            input={"prompt": PROMPTS[int(session.id[4:12], 16) % len(PROMPTS)]},
            started_at=clock.tick(),
            provider=provider,
            provider_metadata={"model": model},
        )

    def _run_events(
        self,
        session: Session,
        run: Run,
        rng: random.Random,
        clock: _Clock,
        count: int,
        session_number: int,
        offset: int,
        *,
        finish: bool,
    ) -> tuple[Run, list[Event]]:
        events: list[Event] = []

        def add(type_: EventType, **data: Any) -> None:
            events.append(
                Event.new(
                    type_,
                    session.id,
                    id=_stable_id("evt_", session_number, offset + len(events)),
                    run_id=run.id,
                    timestamp=clock.tick(),
                    data=data,
                    provider=run.provider,
                    correlation_id=run.id,
                )
            )

        add(EventType.RUN_STARTED, model=run.provider_metadata["model"])
        add(EventType.MESSAGE_SENT, role="user", content=run.input["prompt"])
        failed = False
        while len(events) < count - 2:
            choice = rng.random()
            if choice < 0.35:
                tool = rng.choice(TOOLS)
                add(EventType.TOOL_CALL_STARTED, tool=tool, arguments={"query": "…"})
                if rng.random() < 0.12:
                    add(EventType.TOOL_CALL_FAILED, tool=tool, error="exit status 1")
                else:
                    add(
                        EventType.TOOL_CALL_COMPLETED, tool=tool, result_bytes=rng.randint(80, 9000)
                    )
            elif choice < 0.65:
                for chunk in range(rng.randint(1, 4)):
                    add(EventType.MESSAGE_STREAMED, index=chunk, delta="partial answer… ")
            elif choice < 0.85:
                usage = {
                    "input_tokens": rng.randint(200, 4000),
                    "output_tokens": rng.randint(50, 900),
                }
                usage["total_tokens"] = usage["input_tokens"] + usage["output_tokens"]
                run = run.with_token_usage(usage).with_turn()
                add(EventType.TOKEN_USAGE_UPDATED, **usage)
                add(EventType.TURN_COMPLETED, turn=run.turn_count)
            elif rng.random() < 0.5:
                error = rng.choice(ERRORS)
                add(EventType.ERROR_OCCURRED, code=error, message=error.replace("_", " "))
                if rng.random() < 0.7:
                    add(EventType.ERROR_RECOVERED, code=error, after_retries=rng.randint(1, 3))
                else:
                    failed = True
                    break
            else:
                add(EventType.MESSAGE_RECEIVED, role="assistant", content="Here is what I found.")
        if not finish and not failed:
            return run, events
        if failed:
            run = run.with_error({"code": "unrecovered_error"})
            add(EventType.RUN_FAILED, reason="unrecovered_error")
        else:
            run = run.with_output({"answer": "Done.", "citations": rng.randint(0, 4)})
            add(EventType.MESSAGE_RECEIVED, role="assistant", content="Done.")
            add(EventType.RUN_COMPLETED, turns=run.turn_count)
        run.ended_at = clock.now
        if rng.random() < 0.5:
            # Some runs carry a billed cost; the others are priced from token usage.
            run.cost_usd = round(rng.uniform(0.001, 0.4), 4)
        return run, events

    def _artifact(
        self,
        registry: DjangoArtifactRegistry,
        session: Session,
        run: Run,
        rng: random.Random,
        totals: Totals,
    ) -> None:
        name = rng.choice(["report.md", "patch.diff", "screenshot.png", "results.csv"])
        key = f"demo/{session.id}/{run.id}/{name}"
        # Draw every random value first, so a second load follows the same sequence.
        content = f"{key} {rng.random()}".encode()
        byte_size = rng.randint(500, 2_000_000)
        if registry.get_by_key(key) is not None:
            return
        registry.register(
            key=key,
            byte_size=byte_size,
            checksum_sha256=hashlib.sha256(content).hexdigest(),
            storage_backend="local",
            storage_ref=f"/var/lib/agent-artifacts/{key}",
            session_id=session.id,
            run_id=run.id,
            content_type={
                "report.md": "text/markdown",
                "patch.diff": "text/x-diff",
                "screenshot.png": "image/png",
                "results.csv": "text/csv",
            }[name],
            metadata={"generated_by": session.agent_id},
            id=_stable_id("art_", key, "artifact")[:20],
        )
        totals.artifacts += 1


class _Clock:
    """Moves forward a few seconds per event, so timestamps look like a real conversation."""

    def __init__(self, start: datetime, rng: random.Random) -> None:
        self.now = start
        self._rng = rng

    def tick(self) -> datetime:
        self.now += timedelta(seconds=self._rng.uniform(0.2, 20))
        return self.now


def _stable_id(prefix: str, *parts: object) -> str:
    """An id of ASM's shape (prefix + 32 hex) that is the same on every run."""
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).hexdigest()
    return prefix + digest[:32]
