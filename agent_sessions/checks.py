"""System checks for ``settings.AGENT_SESSIONS`` (ids ``agent_sessions.E0xx``/``W0xx``).

A typo in the retention settings should fail ``manage.py check`` at deploy
time, not the cron job at 3 a.m.

* E001 ``AGENT_SESSIONS`` is not a dict.
* E002 unknown key in ``AGENT_SESSIONS``.
* E003 ``RETENTION`` is rejected by :meth:`RetentionPolicy.validate`.
* E004 a query limit is not a positive integer.
* E005 a default query limit is above ``QUERY_MAX_LIMIT``.
* E006 ``PRICING_TABLE`` does not have the documented shape.
* E020 ``API_PERMISSION`` is not the dotted path of a callable.
* E021 a stream duration (``STREAM_HEARTBEAT_SECONDS``, ``STREAM_MAX_SECONDS``)
  is not a positive number of seconds.
* E022 ``API_LONG_POLL_MAX_MS`` or ``STREAM_RETRY_MS`` is not a positive integer.
* E015 ``INTEGRATIONS_RECORD_RUNS`` is not a boolean.
* E030 ``WAIT_POLL_INTERVAL_SECONDS`` is not a number of seconds in (0, 60].
* E031 ``DIRECT_DATABASE`` is not an alias, a dict of aliases, or None, or
  names an alias that is not in ``DATABASES``.
* E040 ``TEXT_SEARCH_CONFIG`` is not a text search configuration name.
* E050 ``REDACTION`` is not a valid redaction configuration.
* E051 ``SHAPE_WARNINGS`` is not True or False.
* W001 a database backend other than PostgreSQL or SQLite.
* W032 (``--database``) a PostgreSQL alias reached through a pooler or proxy
  allows server-side cursors (``DISABLE_SERVER_SIDE_CURSORS`` is not True).
* W033 (``--database``) a PostgreSQL alias reached through a pooler or proxy
  has no ``DIRECT_DATABASE``: waiting readers fall back to polling.
* W040 a SQLite database, but Python's SQLite lacks FTS5: no full-text search.
* W041 (``--database``) the PostgreSQL search index was built with another
  ``TEXT_SEARCH_CONFIG`` than the one configured now.
"""

from __future__ import annotations

from collections.abc import Sequence
from math import inf
from typing import Any

from django.apps import AppConfig
from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register
from django.core.exceptions import ImproperlyConfigured
from django.db import connections
from django.utils.module_loading import import_string

from agent_sessions.conf import DEFAULTS, SETTING_NAME, wait_poll_interval_problem
from agent_sessions.errors import AgentSessionsError
from agent_sessions.pricing import pricing_table_problem

LIMIT_KEYS = ("QUERY_DEFAULT_LIMIT", "QUERY_EVENT_DEFAULT_LIMIT", "QUERY_MAX_LIMIT")


@register(Tags.compatibility)
def check_settings(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """Validate ``settings.AGENT_SESSIONS`` as a whole."""
    value = getattr(settings, SETTING_NAME, None)
    if value is None:
        return []
    if not isinstance(value, dict):
        return [
            Error(
                f"{SETTING_NAME} must be a dict, not {type(value).__name__}.",
                hint="See docs/guide.md, 'Settings'.",
                id="agent_sessions.E001",
            )
        ]
    errors: list[CheckMessage] = []
    for key in sorted(set(value) - set(DEFAULTS)):
        errors.append(
            Error(
                f"Unknown key {key!r} in {SETTING_NAME}.",
                hint=f"Known keys: {', '.join(sorted(DEFAULTS))}.",
                id="agent_sessions.E002",
            )
        )
    errors.extend(_check_retention(value.get("RETENTION", {})))
    errors.extend(_check_limits(value))
    errors.extend(_check_pricing_table(value.get("PRICING_TABLE")))
    errors.extend(_check_api(value))
    errors.extend(_check_integrations(value))
    errors.extend(_check_database_layer(value))
    errors.extend(_check_text_search_config(value.get("TEXT_SEARCH_CONFIG", "simple")))
    errors.extend(_check_pipeline(value))
    return errors


def _check_database_layer(value: dict[str, Any]) -> list[CheckMessage]:
    errors: list[CheckMessage] = []
    if "WAIT_POLL_INTERVAL_SECONDS" in value:
        interval = value["WAIT_POLL_INTERVAL_SECONDS"]
        problem = wait_poll_interval_problem(interval)
        if problem is not None:
            errors.append(
                Error(
                    f"{SETTING_NAME}['WAIT_POLL_INTERVAL_SECONDS'] {problem}, got {interval!r}.",
                    hint="How often waiting readers re-check the database for events of "
                    "writers that send no NOTIFY; 0.5 by default.",
                    id="agent_sessions.E030",
                )
            )
    direct = value.get("DIRECT_DATABASE")
    if direct is None:
        return errors
    if isinstance(direct, str):
        named = {direct}
    elif isinstance(direct, dict) and all(
        isinstance(k, str) and (v is None or isinstance(v, str)) for k, v in direct.items()
    ):
        named = set(direct) | {v for v in direct.values() if v is not None}
    else:
        return [
            *errors,
            Error(
                f"{SETTING_NAME}['DIRECT_DATABASE'] must be a database alias, a dict from "
                f"alias to alias (or None), or None; got {direct!r}.",
                hint="See docs/deploying.md, 'The direct connection'.",
                id="agent_sessions.E031",
            ),
        ]
    for alias in sorted(named - set(settings.DATABASES)):
        errors.append(
            Error(
                f"{SETTING_NAME}['DIRECT_DATABASE'] names {alias!r}, which is not in DATABASES.",
                hint="Add an alias that reaches PostgreSQL without a transaction pooler.",
                id="agent_sessions.E031",
            )
        )
    return errors


def _check_integrations(value: dict[str, Any]) -> list[CheckMessage]:
    record_runs = value.get("INTEGRATIONS_RECORD_RUNS", True)
    if isinstance(record_runs, bool):
        return []
    return [
        Error(
            f"{SETTING_NAME}['INTEGRATIONS_RECORD_RUNS'] must be True or False, "
            f"got {record_runs!r}.",
            hint="False stops the framework adapters from recording runs and token usage.",
            id="agent_sessions.E015",
        )
    ]


def _check_text_search_config(config: Any) -> list[CheckMessage]:
    from agent_sessions.search import check_config_name

    try:
        check_config_name(config)
    except ValueError as exc:
        return [
            Error(
                f"{SETTING_NAME}['TEXT_SEARCH_CONFIG']: {exc}.",
                hint="See docs/search.md, 'Language'.",
                id="agent_sessions.E040",
            )
        ]
    return []


@register(Tags.compatibility)
def check_full_text_search(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """Warn when a SQLite database cannot run ``search_text`` (no FTS5 in the SQLite library)."""
    from agent_sessions.search import fts5_available

    sqlite_aliases = [
        alias
        for alias, options in settings.DATABASES.items()
        if "sqlite" in str(options.get("ENGINE", ""))
    ]
    if not sqlite_aliases or fts5_available():
        return []
    return [
        Warning(
            f"Python's SQLite library has no FTS5 extension, so full-text search "
            f"(search_text, the admin's event search, GET search) is unavailable on "
            f"{', '.join(repr(a) for a in sqlite_aliases)} and raises SearchUnavailableError.",
            hint="Use a Python build whose SQLite has FTS5 (the python.org and most Linux "
            "builds do), then run 'manage.py asm_search_index'.",
            id="agent_sessions.W040",
        )
    ]


def _check_retention(retention: Any) -> list[CheckMessage]:
    from agent_sessions.retention import RetentionPolicy

    if not isinstance(retention, dict):
        return [
            Error(
                f"{SETTING_NAME}['RETENTION'] must be a dict of RetentionPolicy fields.",
                id="agent_sessions.E003",
            )
        ]
    try:
        RetentionPolicy.from_dict(retention).validate()
    except AgentSessionsError as exc:
        return [
            Error(
                f"{SETTING_NAME}['RETENTION'] is invalid: {exc.message}",
                hint="Ages and counts are positive integers or None; see CONTRACT §7.",
                id="agent_sessions.E003",
            )
        ]
    return []


def _check_limits(value: dict[str, Any]) -> list[CheckMessage]:
    errors: list[CheckMessage] = []
    limits: dict[str, int] = {}
    for key in LIMIT_KEYS:
        limit = value.get(key, DEFAULTS[key])
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            errors.append(
                Error(
                    f"{SETTING_NAME}[{key!r}] must be a positive integer, got {limit!r}.",
                    id="agent_sessions.E004",
                )
            )
        else:
            limits[key] = limit
    cap = limits.get("QUERY_MAX_LIMIT")
    if cap is not None:
        for key in ("QUERY_DEFAULT_LIMIT", "QUERY_EVENT_DEFAULT_LIMIT"):
            if key in limits and limits[key] > cap:
                errors.append(
                    Error(
                        f"{SETTING_NAME}[{key!r}] ({limits[key]}) is above "
                        f"QUERY_MAX_LIMIT ({cap}).",
                        hint="Lower the default or raise QUERY_MAX_LIMIT.",
                        id="agent_sessions.E005",
                    )
                )
    return errors


def _check_pricing_table(table: Any) -> list[CheckMessage]:
    if table is None:
        return []
    problem = pricing_table_problem(table)
    if problem is None:
        return []
    return [
        Error(
            f"{SETTING_NAME}['PRICING_TABLE'] {problem}.",
            hint="Rates are USD per token; see docs/guide.md, 'Cost summaries'.",
            id="agent_sessions.E006",
        )
    ]


def _check_api(value: dict[str, Any]) -> list[CheckMessage]:
    errors: list[CheckMessage] = []
    path = value.get("API_PERMISSION", DEFAULTS["API_PERMISSION"])
    problem = None
    if not isinstance(path, str) or not path:
        problem = f"must be a dotted path to a callable, got {path!r}"
    else:
        try:
            if not callable(import_string(path)):
                problem = f"{path!r} is not callable"
        except ImportError as exc:
            problem = f"{path!r} cannot be imported: {exc}"
    if problem:
        errors.append(
            Error(
                f"{SETTING_NAME}['API_PERMISSION'] {problem}.",
                hint="Name a callable (request, session_id or None) -> bool; see docs/api.md.",
                id="agent_sessions.E020",
            )
        )
    for key in ("STREAM_HEARTBEAT_SECONDS", "STREAM_MAX_SECONDS"):
        seconds = value.get(key, DEFAULTS[key])
        if key == "STREAM_MAX_SECONDS" and seconds is None:
            continue
        if (
            isinstance(seconds, bool)
            or not isinstance(seconds, int | float)
            or not 0 < seconds < inf
        ):
            errors.append(
                Error(
                    f"{SETTING_NAME}[{key!r}] must be a positive number of seconds, "
                    f"got {seconds!r}.",
                    id="agent_sessions.E021",
                )
            )
    for key in ("API_LONG_POLL_MAX_MS", "STREAM_RETRY_MS"):
        number = value.get(key, DEFAULTS[key])
        if isinstance(number, bool) or not isinstance(number, int) or number < 1:
            errors.append(
                Error(
                    f"{SETTING_NAME}[{key!r}] must be a positive integer, got {number!r}.",
                    id="agent_sessions.E022",
                )
            )
    return errors


def _check_pipeline(value: dict[str, Any]) -> list[CheckMessage]:
    from agent_sessions.redaction import redaction_problem

    errors: list[CheckMessage] = []
    problem = redaction_problem(value.get("REDACTION", DEFAULTS["REDACTION"]))
    if problem is not None:
        errors.append(
            Error(
                f"{SETTING_NAME}['REDACTION'] {problem}.",
                hint="See docs/privacy.md for the keys and the pattern forms.",
                id="agent_sessions.E050",
            )
        )
    shape_warnings = value.get("SHAPE_WARNINGS", DEFAULTS["SHAPE_WARNINGS"])
    if not isinstance(shape_warnings, bool):
        errors.append(
            Error(
                f"{SETTING_NAME}['SHAPE_WARNINGS'] must be True or False, got {shape_warnings!r}.",
                id="agent_sessions.E051",
            )
        )
    return errors


@register(Tags.database)
def check_database_vendor(
    app_configs: Sequence[AppConfig] | None = None,
    databases: Sequence[str] | None = None,
    **kwargs: Any,
) -> list[CheckMessage]:
    """Warn about database backends the asm_* schema is not built for."""
    warnings: list[CheckMessage] = []
    for alias in databases or []:
        vendor = connections[alias].vendor
        if vendor not in {"postgresql", "sqlite"}:
            warnings.append(
                Warning(
                    f"Database {alias!r} uses {vendor}; agent_sessions supports PostgreSQL "
                    "and SQLite.",
                    id="agent_sessions.W001",
                )
            )
    warnings.extend(_check_search_index_config(databases or []))
    return warnings


def _check_search_index_config(databases: Sequence[str]) -> list[CheckMessage]:
    from django.db import DatabaseError

    from agent_sessions.conf import app_settings
    from agent_sessions.search import indexed_config

    warnings: list[CheckMessage] = []
    for alias in databases:
        connection = connections[alias]
        if connection.vendor != "postgresql":
            continue
        try:
            built_with = indexed_config(connection)
            wanted = app_settings.TEXT_SEARCH_CONFIG
            if built_with is None:
                continue
            cursor_config = _resolved_config(connection, wanted)
        except (DatabaseError, ImproperlyConfigured):
            continue  # not migrated yet, or E040 already reports the setting
        if cursor_config != built_with:
            warnings.append(
                Warning(
                    f"The full-text search index of database {alias!r} was built with the "
                    f"text search configuration {built_with!r}, but TEXT_SEARCH_CONFIG is "
                    f"{wanted!r}; searches keep using {built_with!r}.",
                    hint=f"Run 'manage.py asm_search_index --database {alias}' to rebuild "
                    "the index with the configured one.",
                    id="agent_sessions.W041",
                )
            )
    return warnings


def _resolved_config(connection: Any, name: str) -> str:
    # 'simple' and 'pg_catalog.simple' are the same configuration: compare as PostgreSQL prints it.
    with connection.cursor() as cursor:
        cursor.execute("SELECT %s::regconfig::text", [name])
        row = cursor.fetchone()
    return str(row[0]) if row else name


@register(Tags.database)
def check_pooler(
    app_configs: Sequence[AppConfig] | None = None,
    databases: Sequence[str] | None = None,
    **kwargs: Any,
) -> list[CheckMessage]:
    """Warn about PostgreSQL aliases behind a pooler that are configured as if direct."""
    from agent_sessions.conf import app_settings
    from agent_sessions.db import proxy_in_between

    warnings: list[CheckMessage] = []
    for alias in databases or []:
        connection = connections[alias]
        if connection.vendor != "postgresql":
            continue
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT inet_server_port()")
                proxy = proxy_in_between(connection.settings_dict, cursor.fetchone()[0])
        except Exception:  # unreachable: Django's own checks report it
            continue
        if proxy is None:
            continue
        if not connection.settings_dict.get("DISABLE_SERVER_SIDE_CURSORS"):
            warnings.append(
                Warning(
                    f"Database {alias!r} seems to be reached through a pooler or proxy "
                    f"({proxy}) and allows server-side cursors.",
                    hint="Behind PgBouncer in transaction mode a server-side cursor "
                    "(QuerySet.iterator()) outlives its server connection: set "
                    f"DATABASES[{alias!r}]['DISABLE_SERVER_SIDE_CURSORS'] = True. "
                    "See docs/deploying.md.",
                    id="agent_sessions.W032",
                )
            )
        if not app_settings.direct_database_is_explicit(alias):
            warnings.append(
                Warning(
                    f"Database {alias!r} seems to be reached through a pooler or proxy "
                    f"({proxy}); long-polls and streams on it are woken by polling only.",
                    hint="Point AGENT_SESSIONS['DIRECT_DATABASE'] at an alias that reaches "
                    "PostgreSQL directly (LISTEN/NOTIFY), or map this alias to None to "
                    "silence this. See docs/deploying.md.",
                    id="agent_sessions.W033",
                )
            )
    return warnings
