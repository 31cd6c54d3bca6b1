"""The pricing table and the rules that pick a run's rates."""

from __future__ import annotations

from typing import Any

import pytest

from agent_sessions.errors import ValidationError
from agent_sessions.pricing import (
    DEFAULT_PRICING_TABLE,
    active_pricing_table,
    check_pricing_table,
    cost_usd,
    resolve_rates,
)


def test_default_table_is_asms() -> None:
    claude, codex = DEFAULT_PRICING_TABLE["claude"], DEFAULT_PRICING_TABLE["codex"]
    assert set(DEFAULT_PRICING_TABLE) == {"claude", "codex", "amp"}
    assert claude["default"] == {"input": 3e-6, "output": 15e-6}
    assert claude["models"]["claude-opus-4-6"] == {
        "input": 15e-6,
        "output": 75e-6,
        "cache_read": 1.5e-6,
        "cache_creation": 18.75e-6,
    }
    assert claude["models"]["claude-sonnet-4-5"]["cache_read"] == 0.3e-6
    assert claude["models"]["claude-haiku-4-5"] == {
        "input": 0.8e-6,
        "output": 4e-6,
        "cache_read": 0.08e-6,
        "cache_creation": 1e-6,
    }
    assert codex["default"] == {"input": 3e-6, "output": 15e-6}
    assert codex["models"] == {
        "o3": {"input": 10e-6, "output": 40e-6},
        "o3-mini": {"input": 1.1e-6, "output": 4.4e-6},
        "gpt-4o": {"input": 2.5e-6, "output": 10e-6},
        "gpt-4o-mini": {"input": 0.15e-6, "output": 0.6e-6},
    }
    assert DEFAULT_PRICING_TABLE["amp"] == {"default": {"input": 3e-6, "output": 15e-6}}


def test_default_table_passes_the_settings_check() -> None:
    assert check_pricing_table(DEFAULT_PRICING_TABLE) == DEFAULT_PRICING_TABLE


def test_exact_model_rates_win_over_prefixes() -> None:
    assert resolve_rates(DEFAULT_PRICING_TABLE, "codex", "o3-mini")["input"] == 1.1e-6


def test_longest_prefix_wins() -> None:
    rates = resolve_rates(DEFAULT_PRICING_TABLE, "codex", "o3-mini-high")
    assert rates is not None
    assert rates["input"] == 1.1e-6


def test_provider_default_applies_without_a_matching_model() -> None:
    for model in ("gpt-5", None):
        rates = resolve_rates(DEFAULT_PRICING_TABLE, "codex", model)
        assert rates is not None
        assert (rates["input"], rates["output"]) == (3e-6, 15e-6)


def test_cache_rates_default_to_the_input_rate() -> None:
    rates = resolve_rates(DEFAULT_PRICING_TABLE, "codex", "gpt-4o")
    assert rates == {
        "input": 2.5e-6,
        "output": 10e-6,
        "cache_read": 2.5e-6,
        "cache_creation": 2.5e-6,
    }


@pytest.mark.parametrize(("provider", "model"), [("gemini", "x"), (None, None), ("claude", None)])
def test_no_rates_without_a_priced_provider_or_default(provider: Any, model: Any) -> None:
    table = {"claude": {"models": {"claude-x": {"input": 1, "output": 1}}}}
    assert resolve_rates(table, provider, model) is None


def test_cost_adds_every_priced_token_kind() -> None:
    rates = {"input": 1.0, "output": 10.0, "cache_read": 100.0, "cache_creation": 1000.0}
    tokens = {
        "input_tokens": 1,
        "output_tokens": 2,
        "cache_read_tokens": 3,
        "cache_creation_tokens": 4,
    }
    assert cost_usd(rates, tokens) == 4321.0
    assert cost_usd(rates, {"output_tokens": 1}) == 10.0


def test_a_malformed_table_is_refused() -> None:
    with pytest.raises(ValidationError) as exc:
        check_pricing_table({"claude": {"default": {"input": 1}}})
    assert exc.value.field == "pricing_table"


def test_the_setting_replaces_the_default_table(settings: Any) -> None:
    assert active_pricing_table() is DEFAULT_PRICING_TABLE
    table = {"amp": {"default": {"input": 1, "output": 2}}}
    settings.AGENT_SESSIONS = {"PRICING_TABLE": table}
    assert active_pricing_table() == table
