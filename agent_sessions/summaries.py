"""Statistics and summaries: one ``GROUP BY`` query each, folded into typed results.

The database sums; Python only folds the few group rows into the shapes of
:mod:`agent_sessions.results` (:class:`~agent_sessions.results.SessionStats`,
:class:`~agent_sessions.results.UsageSummary`,
:class:`~agent_sessions.results.CostSummary`), always with :func:`fold`.
Token counts are read from ``token_usage`` in SQL (:func:`json_number`); a
missing or non-numeric value counts as 0. Costs are linear in the token
counts, so the rates are applied once per ``(provider, model)`` group.

:class:`~agent_sessions.query.DjangoQueryAPI` validates the arguments and
filters the querysets; the functions here take the filtered querysets.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple, TypedDict, TypeVar, cast

from django.db.models import Count, Max, Min, Q, QuerySet, Sum
from django.db.models.fields.json import KeyTextTransform

from agent_sessions import models
from agent_sessions.jsonsql import as_int, json_number
from agent_sessions.pricing import TOKEN_KEYS, cost_usd, resolve_rates
from agent_sessions.results import (
    CostSummary,
    ModelCost,
    ProviderCost,
    ProviderUsage,
    SessionStats,
    TokenTotals,
    UsageSummary,
)

__all__ = ["UNKNOWN", "cost_summary", "fold", "session_stats", "total", "usage_summary"]

#: Shown as the provider or model of runs that have none.
UNKNOWN = "unknown"

_G = TypeVar("_G")
_F = TypeVar("_F", bound=Mapping[str, object])


def fold(
    groups: Iterable[_G], key: Callable[[_G], str], figures: Callable[[_G], _F]
) -> dict[str, _F]:
    """Sum the figures of ``groups`` per key.

    Args:
        groups: Rows of a ``GROUP BY`` (or anything else to fold).
        key: The bucket a group adds to.
        figures: The group's numbers, a dict of them (every group the same keys).

    Returns:
        ``{key: figures summed}`` in the order the keys first appear.
    """
    folded: dict[str, _F] = {}
    for group in groups:
        add = figures(group)
        name = key(group)
        sums = cast("dict[str, Any] | None", folded.get(name))
        if sums is None:
            folded[name] = cast("_F", dict(add))
            continue
        for field, value in add.items():
            sums[field] += value
    return folded


def total(groups: Iterable[_G], figures: Callable[[_G], _F], zero: _F) -> _F:
    """The figures of all ``groups`` summed (:func:`fold` into one bucket); ``zero`` if none."""
    return fold(groups, _everything, figures).get("", zero)


def session_stats(runs: QuerySet[models.Run], events: QuerySet[models.Event]) -> SessionStats:
    """Counts and totals of one session's ``runs`` and ``events`` (two queries)."""
    times = events.aggregate(count=Count("id"), first=Min("timestamp"), last=Max("timestamp"))
    groups = _groups(runs, "status", "provider")
    status_counts = fold(groups, lambda group: group["status"], _run_count)
    return {
        "event_count": int(times["count"]),
        "run_count": sum(bucket["run_count"] for bucket in status_counts.values()),
        "token_totals": total(groups, _tokens, _tokens({})),
        "providers_used": sorted({g["provider"] for g in groups if g["provider"] is not None}),
        "first_event_at": times["first"],
        "last_event_at": times["last"],
        "status_counts": {status: bucket["run_count"] for status, bucket in status_counts.items()},
    }


def usage_summary(runs: QuerySet[models.Run]) -> UsageSummary:
    """Token totals of ``runs``, overall and per provider (``GROUP BY provider``)."""
    by_provider = fold(_groups(runs, "provider"), _provider, _provider_usage)
    overall = total(by_provider.values(), _same, _provider_usage({}))
    return {
        "total_input_tokens": overall["input_tokens"],
        "total_output_tokens": overall["output_tokens"],
        "total_tokens": overall["total_tokens"],
        "run_count": overall["run_count"],
        "by_provider": by_provider,
    }


def cost_summary(runs: QuerySet[models.Run], table: Mapping[str, Any]) -> CostSummary:
    """Costs in USD of ``runs`` under the pricing ``table`` (``GROUP BY provider, model``).

    A run's stored ``cost_usd`` counts as it is (a stored 0.0 is a cost);
    the token counts of runs without one are priced by their group's rates.
    """
    unpriced = Q(cost_usd__isnull=True)
    groups = list(
        runs.order_by()
        .values("provider", model=KeyTextTransform("model", "provider_metadata"))
        .annotate(
            run_count=Count("id"),
            stored_runs=Count("cost_usd"),
            stored_cost=Sum("cost_usd"),
            input_tokens=Sum(json_number("token_usage", "input_tokens")),
            output_tokens=Sum(json_number("token_usage", "output_tokens")),
            **{
                f"unpriced_{key}": Sum(json_number("token_usage", key), filter=unpriced)
                for key in TOKEN_KEYS.values()
            },
        )
    )
    priced = [_priced(group, table) for group in groups]
    overall = total(priced, _cost_totals, _CostTotals(cost_usd=0.0, run_count=0, unmapped_runs=0))
    return {
        "total_cost_usd": overall["cost_usd"],
        "run_count": overall["run_count"],
        "by_provider": fold(priced, lambda group: group.provider, _provider_cost),
        "by_model": fold(priced, lambda group: group.model, _model_cost),
        "unmapped_runs": overall["unmapped_runs"],
    }


# --------------------------------------------------------------------------- the groups


def _groups(runs: QuerySet[models.Run], *fields: str) -> list[dict[str, Any]]:
    """``runs`` grouped by ``fields``: each group's run count and token sums."""
    token_sums = {
        key: Sum(json_number("token_usage", key))
        for key in ("input_tokens", "output_tokens", "total_tokens")
    }
    return list(runs.order_by().values(*fields).annotate(run_count=Count("id"), **token_sums))


class _CostTotals(TypedDict):
    cost_usd: float
    run_count: int
    unmapped_runs: int


class _PricedGroup(NamedTuple):
    """One ``(provider, model)`` group of runs with its cost worked out."""

    provider: str
    model: str
    cost_usd: float
    run_count: int
    input_tokens: int
    output_tokens: int
    unmapped_runs: int


def _priced(group: Mapping[str, Any], table: Mapping[str, Any]) -> _PricedGroup:
    provider = group["provider"]
    model = None if group["model"] is None else str(group["model"])
    cost = float(group["stored_cost"] or 0.0)
    unpriced_runs = int(group["run_count"]) - int(group["stored_runs"])
    unmapped = 0
    if unpriced_runs:
        rates = resolve_rates(table, provider, model)
        if rates is None:
            unmapped = unpriced_runs
        else:
            cost += cost_usd(
                rates, {key: as_int(group[f"unpriced_{key}"]) for key in TOKEN_KEYS.values()}
            )
    return _PricedGroup(
        provider=provider if provider is not None else UNKNOWN,
        model=model if model is not None else UNKNOWN,
        cost_usd=cost,
        run_count=int(group["run_count"]),
        input_tokens=as_int(group["input_tokens"]),
        output_tokens=as_int(group["output_tokens"]),
        unmapped_runs=unmapped,
    )


# --------------------------------------------------------------------------- keys and figures


def _everything(group: object) -> str:
    return ""


def _same(figures: _F) -> _F:
    return figures


def _provider(group: Mapping[str, Any]) -> str:
    return group["provider"] if group["provider"] is not None else UNKNOWN


def _run_count(group: Mapping[str, Any]) -> dict[str, int]:
    return {"run_count": int(group["run_count"])}


def _tokens(group: Mapping[str, Any]) -> TokenTotals:
    return {
        "input_tokens": as_int(group.get("input_tokens")),
        "output_tokens": as_int(group.get("output_tokens")),
        "total_tokens": as_int(group.get("total_tokens")),
    }


def _provider_usage(group: Mapping[str, Any]) -> ProviderUsage:
    return {**_tokens(group), "run_count": as_int(group.get("run_count"))}


def _cost_totals(group: _PricedGroup) -> _CostTotals:
    return {
        "cost_usd": group.cost_usd,
        "run_count": group.run_count,
        "unmapped_runs": group.unmapped_runs,
    }


def _provider_cost(group: _PricedGroup) -> ProviderCost:
    return {"cost_usd": group.cost_usd, "run_count": group.run_count}


def _model_cost(group: _PricedGroup) -> ModelCost:
    return {
        "cost_usd": group.cost_usd,
        "input_tokens": group.input_tokens,
        "output_tokens": group.output_tokens,
    }
