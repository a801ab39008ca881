"""Acquisition maths: the ranking rule, the allocation and the stratified pick."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sentinel_core.acquisition import (
    Plan,
    allocate,
    labels_affordable,
    plan,
    rank_slices,
    stratified_pick,
)
from sentinel_core.errors import InvalidInputError
from sentinel_core.slices import SliceEstimate


def est(name: str, n: int, acc: float, half: float = 0.05) -> SliceEstimate:
    return SliceEstimate(
        name, n, acc, max(0.0, acc - half), min(1.0, acc + half), "bootstrap", False
    )


def test_the_weakest_slice_comes_first_when_traffic_and_width_are_equal() -> None:
    ranked = rank_slices([est("a", 100, 0.8), est("b", 100, 0.3), est("c", 100, 0.5)])
    assert [r.slice for r in ranked] == ["b", "c", "a"]
    assert [r.rank for r in ranked] == [1, 2, 3]


def test_a_wider_interval_moves_a_slice_up_at_equal_accuracy_and_traffic() -> None:
    ranked = rank_slices([est("narrow", 100, 0.5, 0.02), est("wide", 100, 0.5, 0.2)])
    assert ranked[0].slice == "wide"


def test_more_traffic_moves_a_slice_up_at_equal_accuracy() -> None:
    ranked = rank_slices([est("small", 10, 0.5), est("big", 1000, 0.5)])
    assert ranked[0].slice == "big"


def test_traffic_counts_with_a_square_root_so_a_much_weaker_small_slice_still_wins() -> None:
    # 4x the traffic is worth 2x; 0.9 accuracy vs 0.2 is worth more than that.
    ranked = rank_slices([est("big-good", 400, 0.9), est("small-bad", 100, 0.2)])
    assert ranked[0].slice == "small-bad"


def test_the_score_follows_the_documented_rule() -> None:
    (only,) = rank_slices([est("x", 50, 0.6, 0.1)], traffic_power=0.5, width_weight=0.5)
    assert only.score == pytest.approx(1.0**0.5 * (1 - 0.6 + 0.5 * 0.2))


def test_ranking_nothing_is_an_error() -> None:
    with pytest.raises(InvalidInputError, match="at least one slice"):
        rank_slices([])


def test_a_usd_budget_buys_floor_budget_over_cost_labels() -> None:
    assert labels_affordable(10.0, unit="usd", cost_per_label=0.3) == 33
    assert labels_affordable(7.9, unit="labels", cost_per_label=0.0) == 7


def test_a_usd_budget_with_a_free_labeler_is_refused_with_the_reason() -> None:
    with pytest.raises(InvalidInputError, match="budget in labels"):
        labels_affordable(10.0, unit="usd", cost_per_label=0.0)


@settings(max_examples=200, deadline=None)
@given(
    scores=st.lists(st.floats(0.0, 2.0), min_size=1, max_size=8),
    caps=st.lists(st.integers(0, 60), min_size=8, max_size=8),
    n=st.integers(0, 300),
    floor=st.integers(0, 15),
)
def test_allocation_hands_out_what_it_can_within_every_cap(
    scores: list[float], caps: list[int], n: int, floor: int
) -> None:
    cap = np.array(caps[: len(scores)])
    out = allocate(scores, cap, n, min_per_slice=floor)
    assert out.sum() == min(n, cap.sum())
    assert np.all(out >= 0)
    assert np.all(out <= cap)


@settings(max_examples=100, deadline=None)
@given(
    n_slices=st.integers(1, 6),
    floor=st.integers(0, 10),
    extra=st.integers(0, 100),
)
def test_every_slice_gets_its_floor_when_the_budget_covers_all_floors(
    n_slices: int, floor: int, extra: int
) -> None:
    rng = np.random.default_rng(n_slices * 100 + floor)
    out = allocate(
        rng.random(n_slices), [1000] * n_slices, n_slices * floor + extra, min_per_slice=floor
    )
    assert np.all(out >= floor)


def test_above_the_floors_labels_follow_the_scores() -> None:
    out = allocate([3.0, 2.0, 1.0], [1000, 1000, 1000], 90, min_per_slice=10)
    assert out.tolist() == [40, 30, 20]


def test_a_slice_at_its_cap_passes_its_share_to_the_others() -> None:
    out = allocate([10.0, 1.0], [5, 1000], 50, min_per_slice=0)
    assert out.tolist() == [5, 45]


def test_a_small_budget_gives_the_floor_to_the_most_urgent_slices_first() -> None:
    out = allocate([3.0, 2.0, 1.0], [100, 100, 100], 15, min_per_slice=10)
    assert out.tolist() == [10, 5, 0]


@settings(max_examples=200, deadline=None)
@given(
    p=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=200),
    frac=st.floats(0.0, 1.0),
    seed=st.integers(0, 10),
)
def test_the_stratified_pick_never_repeats_and_takes_one_per_stratum(
    p: list[float], frac: float, seed: int
) -> None:
    n = int(frac * len(p))
    idx, strata = stratified_pick(p, n, rng=np.random.default_rng(seed))
    assert len(idx) == n == len(set(idx.tolist()))
    assert strata.tolist() == list(range(n))
    # The i-th pick sits in the i-th block of the candidates sorted by P(correct).
    rank = np.empty(len(p), dtype=int)
    rank[np.argsort(np.asarray(p), kind="stable")] = np.arange(len(p))
    edges = np.floor(np.linspace(0, len(p), n + 1)).astype(int)
    for i, j in enumerate(idx):
        assert edges[i] <= rank[j] < max(edges[i + 1], edges[i] + 1)


def test_the_pick_spans_confident_and_doubtful_answers() -> None:
    p = np.linspace(0.0, 1.0, 1000)
    idx, _ = stratified_pick(p, 10, rng=np.random.default_rng(0))
    assert p[idx].min() < 0.1
    assert p[idx].max() > 0.9


def _plan_inputs() -> tuple[list[SliceEstimate], np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    keys = np.repeat(["easy", "mid", "hard"], 50)
    p = np.concatenate(
        [rng.uniform(0.6, 1, 50), rng.uniform(0.3, 0.7, 50), rng.uniform(0, 0.4, 50)]
    )
    ids = np.array([f"t{i}" for i in range(150)])
    estimates = [est("easy", 50, 0.8), est("mid", 50, 0.5), est("hard", 50, 0.2)]
    return estimates, ids, keys, p


def test_a_plan_never_picks_a_trace_already_labelled_by_its_kind_of_labeler() -> None:
    estimates, ids, keys, p = _plan_inputs()
    labelled = keys == "hard"
    labelled[-3:] = False  # three hard ones still open
    the_plan = plan(
        estimates, ids, keys, p, labelled, by="b", budget=40, unit="labels", cost_per_label=0
    )
    picked = {i.trace_id for i in the_plan.items}
    assert picked.isdisjoint(set(ids[labelled]))
    hard = next(s for s in the_plan.slices if s.slice == "hard")
    assert hard.available == 3
    assert hard.labels == 3


def test_a_plan_stays_within_its_budget_and_starts_with_the_weakest_slice() -> None:
    estimates, ids, keys, p = _plan_inputs()
    the_plan = plan(
        estimates,
        ids,
        keys,
        p,
        np.zeros(150, bool),
        by="b",
        budget=7.0,
        unit="usd",
        cost_per_label=0.25,
        max_slices=2,
    )
    assert the_plan.n_labels == len(the_plan.items) == 28
    assert [s.slice for s in the_plan.slices] == ["hard", "mid"]
    assert len({i.trace_id for i in the_plan.items}) == 28


def test_a_plan_round_trips_through_json_and_is_seeded() -> None:
    estimates, ids, keys, p = _plan_inputs()
    args = (estimates, ids, keys, p, np.zeros(150, bool))
    kwargs = {"by": "b", "budget": 30, "unit": "labels", "cost_per_label": 0.0}
    a = plan(*args, **kwargs, seed=1)  # type: ignore[arg-type]
    b = plan(*args, **kwargs, seed=1)  # type: ignore[arg-type]
    assert a == b
    assert Plan.from_dict(a.to_dict()) == a
    assert any("hard" in line for line in a.summary_lines())


def test_plan_inputs_of_different_lengths_are_refused_with_the_shapes() -> None:
    estimates, ids, keys, p = _plan_inputs()
    with pytest.raises(InvalidInputError, match=r"\(150,\), \(150,\), \(149,\)"):
        plan(
            estimates,
            ids,
            keys,
            p[:-1],
            np.zeros(150, bool),
            by="b",
            budget=3,
            unit="labels",
            cost_per_label=0,
        )


def _traffic(seed: int = 0) -> tuple[list[SliceEstimate], np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    sizes = {"a": 200, "b": 120, "c": 40}
    keys = np.concatenate([[k] * n for k, n in sizes.items()])
    ids = np.array([f"t{i}" for i in range(keys.size)])
    p = rng.beta(2, 2, keys.size)
    estimates = [est(k, n, float(p[keys == k].mean())) for k, n in sizes.items()]
    return estimates, ids, keys, p


def test_an_active_plan_audits_every_slice_and_keeps_each_items_inclusion_probability() -> None:
    estimates, ids, keys, p = _traffic()
    done = np.zeros(ids.size, dtype=bool)
    done[:10] = True  # ten of slice a were labelled before: not in its population
    options = {"by": "route", "budget": 30, "unit": "labels", "cost_per_label": 0.0}
    active = plan(estimates, ids, keys, p, done, design="active", seed=3, **options)  # type: ignore[arg-type]
    assert active.design == "active"
    assert active.n_labels == 30
    assert {s.slice for s in active.slices} == {"a", "b", "c"}  # max_slices is not applied
    assert all(s.labels >= 2 for s in active.slices)  # the audit's floor per slice
    assert {s.slice: s.available for s in active.slices} == {"a": 190, "b": 120, "c": 40}
    for item in active.items:
        assert item.pi is not None
        assert 0.0 < item.pi <= 1.0
        assert item.population == {"a": 190, "b": 120, "c": 40}[item.slice]
    assert not set(ids[:10]) & {i.trace_id for i in active.items}
    assert len({i.trace_id for i in active.items}) == 30
    # Stored as JSON and read back, the design and the probabilities survive.
    assert Plan.from_dict(active.to_dict()) == active
    assert plan(estimates, ids, keys, p, done, design="active", seed=3, **options) == active  # type: ignore[arg-type]


def test_a_plan_stored_before_the_active_design_reads_back_as_a_priority_plan() -> None:
    estimates, ids, keys, p = _traffic()
    old = plan(
        estimates,
        ids,
        keys,
        p,
        np.zeros(ids.size, bool),
        by="route",
        budget=5,
        unit="labels",
        cost_per_label=0.0,
    )
    stored = old.to_dict()
    del stored["design"]
    for item in stored["items"]:
        del item["pi"], item["population"]
    assert Plan.from_dict(stored) == old
    assert old.design == "priority"
    with pytest.raises(InvalidInputError, match="expected design in"):
        plan(
            estimates,
            ids,
            keys,
            p,
            np.zeros(ids.size, bool),
            by="route",
            budget=5,
            unit="labels",
            cost_per_label=0.0,
            design="activ",
        )  # type: ignore[arg-type]


def test_a_plan_says_why_part_of_its_budget_stays_unplanned_and_what_the_score_is() -> None:
    estimates, ids, keys, p = _traffic()
    done = keys != "c"  # only slice c (40 responses) has anything left to label
    options = {"by": "route", "budget": 50, "unit": "labels", "cost_per_label": 0.0}
    for design in ("active", "priority"):
        lines = plan(estimates, ids, keys, p, done, design=design, **options).summary_lines()  # type: ignore[arg-type]
        unplanned = [line for line in lines if "unplanned" in line]
        assert len(unplanned) == 1, lines  # one line, saying how many and why
        assert "10 of the 50 labels the budget buys" in unplanned[0]
        assert "score: the ranking rule" in lines[-1]
    full = plan(estimates, ids, keys, p, np.zeros(ids.size, bool), design="active", **options)  # type: ignore[arg-type]
    assert not any("unplanned" in line for line in full.summary_lines())
