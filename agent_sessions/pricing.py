"""Token prices and the cost rules of :meth:`DjangoQueryAPI.get_cost_summary`.

Rates are USD per token. A pricing table maps a provider to its ``default``
rates and per-model rates::

    {"claude": {"default": {"input": 3e-6, "output": 15e-6},
                "models": {"claude-opus-4-6": {"input": 15e-6, "output": 75e-6,
                                               "cache_read": 1.5e-6,
                                               "cache_creation": 18.75e-6}}}}

A run's rates are those of its exact model, else of the longest model key its
model starts with, else the provider's ``default``; cache rates default to the
input rate. ``settings.AGENT_SESSIONS["PRICING_TABLE"]`` replaces
:data:`DEFAULT_PRICING_TABLE` as a whole.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from agent_sessions.conf import app_settings
from agent_sessions.errors import ValidationError
from agent_sessions.validation import copy_json

__all__ = [
    "DEFAULT_PRICING_TABLE",
    "TOKEN_KEYS",
    "active_pricing_table",
    "check_pricing_table",
    "cost_usd",
    "pricing_table_problem",
    "resolve_rates",
    "run_cost_usd",
]

#: AgentSessionManager's pricing table (USD per token).
DEFAULT_PRICING_TABLE: dict[str, Any] = {
    "claude": {
        "default": {"input": 3e-6, "output": 15e-6},
        "models": {
            "claude-opus-4-6": {
                "input": 15e-6,
                "output": 75e-6,
                "cache_read": 1.5e-6,
                "cache_creation": 18.75e-6,
            },
            "claude-sonnet-4-5": {
                "input": 3e-6,
                "output": 15e-6,
                "cache_read": 0.3e-6,
                "cache_creation": 3.75e-6,
            },
            "claude-haiku-4-5": {
                "input": 0.8e-6,
                "output": 4e-6,
                "cache_read": 0.08e-6,
                "cache_creation": 1e-6,
            },
        },
    },
    "codex": {
        "default": {"input": 3e-6, "output": 15e-6},
        "models": {
            "o3": {"input": 10e-6, "output": 40e-6},
            "o3-mini": {"input": 1.1e-6, "output": 4.4e-6},
            "gpt-4o": {"input": 2.5e-6, "output": 10e-6},
            "gpt-4o-mini": {"input": 0.15e-6, "output": 0.6e-6},
        },
    },
    "amp": {"default": {"input": 3e-6, "output": 15e-6}},
}

#: The ``token_usage`` keys that are priced, by rate name.
TOKEN_KEYS: dict[str, str] = {
    "input": "input_tokens",
    "output": "output_tokens",
    "cache_read": "cache_read_tokens",
    "cache_creation": "cache_creation_tokens",
}


#: The rates a pricing entry may name (USD per token).
RATE_KEYS = frozenset({"input", "output", "cache_read", "cache_creation"})


def pricing_table_problem(table: Any) -> str | None:
    """Say what is wrong with a pricing table, for an error message.

    The one validator behind :func:`check_pricing_table` and the system
    check ``agent_sessions.E006``.

    Args:
        table: The candidate table.

    Returns:
        What is wrong (completing "<name> ..."), or None when it is well-formed.
    """
    if not isinstance(table, dict):
        return "must be a dict of provider -> {'default': rates, 'models': {model: rates}}"
    for provider, entry in table.items():
        if not isinstance(entry, dict) or set(entry) - {"default", "models"}:
            return f"provider {provider!r} must be a dict with 'default' and/or 'models'"
        rate_sets = [("default", entry["default"])] if "default" in entry else []
        models = entry.get("models", {})
        if not isinstance(models, dict):
            return f"{provider!r}['models'] must be a dict"
        rate_sets += [(f"models[{m!r}]", rates) for m, rates in models.items()]
        for where, rates in rate_sets:
            if not isinstance(rates, dict) or not {"input", "output"} <= set(rates):
                return f"{provider!r} {where} needs 'input' and 'output' rates"
            if set(rates) - RATE_KEYS:
                return (
                    f"{provider!r} {where} has unknown rate keys {sorted(set(rates) - RATE_KEYS)}"
                )
            for name, rate in rates.items():
                if not _finite_rate(rate):
                    return f"{provider!r} {where}[{name!r}] must be a non-negative finite number"
    return None


def _finite_rate(rate: object) -> bool:
    """A non-negative number that a float holds (an int like 10**400 overflows one)."""
    if not isinstance(rate, int | float) or isinstance(rate, bool):
        return False
    try:
        return math.isfinite(float(rate)) and rate >= 0
    except OverflowError:
        return False


def check_pricing_table(table: object, field: str = "pricing_table") -> dict[str, Any]:
    """Check a pricing table's shape (the same rules as system check ``agent_sessions.E006``).

    Args:
        table: The candidate table.
        field: The argument name used in the error.

    Returns:
        A deep copy of the table.

    Raises:
        ValidationError: ``validation_error`` saying what is wrong.
    """
    problem = pricing_table_problem(table)
    if problem is not None:
        raise ValidationError("validation_error", f"{field} {problem}", field=field)
    return dict(copy_json(table))


def active_pricing_table() -> dict[str, Any]:
    """The configured ``PRICING_TABLE`` setting, or :data:`DEFAULT_PRICING_TABLE`."""
    configured = app_settings.PRICING_TABLE
    return DEFAULT_PRICING_TABLE if configured is None else configured


def resolve_rates(
    table: Mapping[str, Any], provider: str | None, model: str | None
) -> dict[str, float] | None:
    """The rates for a provider and model, or None when the table has none.

    Args:
        table: A pricing table.
        provider: The run's provider (None matches nothing).
        model: ``provider_metadata["model"]``, or None.

    Returns:
        ``{"input", "output", "cache_read", "cache_creation"}`` rates, the
        cache rates defaulting to the input rate; None when the provider is
        not priced (or has neither a matching model nor a default).
    """
    entry = table.get(provider) if provider is not None else None
    if not isinstance(entry, Mapping):
        return None
    models = entry.get("models") or {}
    rates = None
    if model is not None:
        rates = models.get(model)
        if rates is None:
            prefixes = [key for key in models if model.startswith(key)]
            if prefixes:
                rates = models[max(prefixes, key=len)]
    if rates is None:
        rates = entry.get("default")
    if rates is None:
        return None
    return {
        "input": rates["input"],
        "output": rates["output"],
        "cache_read": rates.get("cache_read", rates["input"]),
        "cache_creation": rates.get("cache_creation", rates["input"]),
    }


def cost_usd(rates: Mapping[str, float], tokens: Mapping[str, int | float]) -> float:
    """The cost of ``tokens`` (``{"input_tokens": n, …}``; missing keys count 0) at ``rates``."""
    return float(sum(rates[name] * tokens.get(key, 0) for name, key in TOKEN_KEYS.items()))


def _token_count(value: Any) -> float:
    # As in SQL (agent_sessions.jsonsql): only JSON numbers count; a non-finite one is missing.
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0
    return value if math.isfinite(value) else 0


def run_cost_usd(
    *,
    stored_cost: float | None,
    provider: str | None,
    model: str | None,
    token_usage: Mapping[str, Any] | None,
    table: Mapping[str, Any] | None = None,
) -> float | None:
    """One run's cost, counted as ``DjangoQueryAPI.get_cost_summary`` counts it.

    Args:
        stored_cost: The run's ``cost_usd`` (a stored 0.0 is a cost).
        provider: The run's provider.
        model: ``provider_metadata["model"]``, or None.
        token_usage: The run's ``token_usage``.
        table: A pricing table; None means :func:`active_pricing_table`.

    Returns:
        The stored cost, else the cost of its tokens at the table's rates,
        else None (an unmapped run).
    """
    if stored_cost is not None:
        return float(stored_cost)
    rates = resolve_rates(active_pricing_table() if table is None else table, provider, model)
    if rates is None:
        return None
    usage = token_usage or {}
    return cost_usd(rates, {key: _token_count(usage.get(key)) for key in TOKEN_KEYS.values()})
