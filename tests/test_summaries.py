"""The one folding helper behind the statistics and summaries."""

from __future__ import annotations

from agent_sessions.summaries import fold, total


def test_fold_sums_each_figure_per_key_in_first_seen_order() -> None:
    groups = [("b", 1, 2.5), ("a", 2, 0.5), ("b", 3, 1.0)]

    folded = fold(groups, lambda g: g[0], lambda g: {"runs": g[1], "cost": g[2]})

    assert folded == {"b": {"runs": 4, "cost": 3.5}, "a": {"runs": 2, "cost": 0.5}}
    assert list(folded) == ["b", "a"]


def test_fold_leaves_the_figures_it_is_given_unchanged() -> None:
    buckets = [{"runs": 1}, {"runs": 2}]

    assert total(buckets, lambda bucket: bucket, {"runs": 0}) == {"runs": 3}
    assert buckets == [{"runs": 1}, {"runs": 2}]


def test_total_of_nothing_is_the_zero_given() -> None:
    assert total([], lambda bucket: bucket, {"runs": 0}) == {"runs": 0}
