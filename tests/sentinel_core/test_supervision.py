"""Difficulty-mixed and pooled sampling of the supervision set."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sentinel_core.errors import InvalidInputError
from sentinel_core.supervision import difficulty_mixed, difficulty_tiers, pooled, supervision_set


@st.composite
def labelled_slices(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    """Slice keys and 0/1/NaN labels: 2-8 slices of 5-40 rows, some unlabelled."""
    n_slices = draw(st.integers(2, 8))
    keys, labels = [], []
    for s in range(n_slices):
        size = draw(st.integers(5, 40))
        accuracy = draw(st.floats(0.0, 1.0))
        seed = draw(st.integers(0, 2**16))
        rng = np.random.default_rng(seed)
        y = (rng.random(size) < accuracy).astype(float)
        y[rng.random(size) < 0.2] = np.nan
        keys += [f"s{s}"] * size
        labels += y.tolist()
    return np.array(keys), np.array(labels)


@given(labelled_slices(), st.integers(0, 1000))
@settings(max_examples=60, deadline=None)
def test_easy_and_hard_tiers_contribute_the_same_number_of_labelled_rows_once_each(
    data: tuple[np.ndarray, np.ndarray], seed: int
) -> None:
    keys, labels = data
    try:
        chosen = difficulty_mixed(keys, labels, min_labels=3, seed=seed)
    except InvalidInputError:
        return  # no slice with 3 labels: refused, tested below
    idx = chosen.indices
    assert np.unique(idx).size == idx.size
    assert not np.isnan(labels[idx]).any()
    assert chosen.tiers is not None
    tier_rows = {
        tier: int(np.isin(keys[idx], names).sum())
        for tier, names in (("easy", chosen.tiers.easy), ("hard", chosen.tiers.hard))
        if names
    }
    assert len(set(tier_rows.values())) == 1
    assert sum(chosen.per_slice.values()) == idx.size


@given(labelled_slices(), st.integers(0, 1000))
@settings(max_examples=40, deadline=None)
def test_the_same_seed_gives_the_same_supervision_set(
    data: tuple[np.ndarray, np.ndarray], seed: int
) -> None:
    keys, labels = data
    try:
        a = difficulty_mixed(keys, labels, min_labels=3, seed=seed)
    except InvalidInputError:
        return
    b = difficulty_mixed(keys, labels, min_labels=3, seed=seed)
    np.testing.assert_array_equal(a.indices, b.indices)


@given(labelled_slices())
@settings(max_examples=40, deadline=None)
def test_slices_within_a_tier_get_shares_as_even_as_their_labels_allow(
    data: tuple[np.ndarray, np.ndarray],
) -> None:
    keys, labels = data
    try:
        chosen = difficulty_mixed(keys, labels, min_labels=3, seed=0)
    except InvalidInputError:
        return
    assert chosen.tiers is not None
    for names in (chosen.tiers.easy, chosen.tiers.hard):
        if not names:
            continue
        available = {n: int((~np.isnan(labels[keys == n])).sum()) for n in names}
        got = {n: chosen.per_slice[n] for n in names}
        short = [n for n in names if got[n] < available[n]]  # slices not exhausted
        if short:
            # a slice that was not exhausted got at least as much as any other, minus one
            assert min(got[n] for n in short) >= max(got.values()) - 1


def test_tiers_split_at_the_median_slice_accuracy() -> None:
    keys = np.repeat(["a", "b", "c", "d"], 10)
    labels = np.concatenate([np.r_[np.ones(k), np.zeros(10 - k)] for k in (2, 4, 6, 9)])
    split = difficulty_tiers(keys, labels)
    assert split.threshold == pytest.approx(0.5)
    assert split.hard == ("a", "b")
    assert split.easy == ("c", "d")
    assert not split.degenerate


def test_with_an_odd_count_the_median_slice_goes_to_easy() -> None:
    keys = np.repeat(["a", "b", "c"], 10)
    labels = np.concatenate([np.r_[np.ones(k), np.zeros(10 - k)] for k in (2, 5, 9)])
    split = difficulty_tiers(keys, labels)
    assert (split.hard, split.easy) == (("a",), ("b", "c"))


def test_one_slice_is_a_single_degenerate_tier_sampled_whole() -> None:
    keys = np.repeat(["only"], 12)
    labels = np.r_[np.ones(6), np.zeros(6)]
    chosen = difficulty_mixed(keys, labels)
    assert chosen.tiers is not None
    assert chosen.tiers.degenerate
    assert chosen.indices.size == 12


def test_slices_of_equal_accuracy_reduce_to_slice_balanced_sampling() -> None:
    keys = np.r_[np.repeat("a", 10), np.repeat("b", 30)]
    labels = np.r_[np.tile([1.0, 0.0], 5), np.tile([1.0, 0.0], 15)]
    chosen = difficulty_mixed(keys, labels, size=20)
    assert chosen.tiers is not None
    assert chosen.tiers.degenerate
    assert dict(chosen.per_slice) == {"a": 10, "b": 10}


def test_slices_below_min_labels_are_excluded_and_listed() -> None:
    keys = np.r_[np.repeat("big", 10), np.repeat("tiny", 2), np.repeat("other", 10)]
    labels = np.r_[np.ones(10), [0.0, 0.0], np.zeros(10)]
    chosen = difficulty_mixed(keys, labels, min_labels=5)
    assert chosen.tiers is not None
    assert chosen.tiers.excluded == ("tiny",)
    assert "tiny" not in chosen.per_slice


def test_no_slice_with_enough_labels_is_a_clear_error() -> None:
    with pytest.raises(InvalidInputError, match="at least one slice with >= 5 labels"):
        difficulty_tiers(np.array(["a", "b"]), np.array([1.0, 0.0]))


def test_asking_for_more_rows_than_the_smaller_tier_holds_is_refused() -> None:
    keys = np.r_[np.repeat("easy", 20), np.repeat("hard", 6)]
    labels = np.r_[np.ones(20), np.zeros(6)]
    with pytest.raises(InvalidInputError, match="ask for at most 12"):
        difficulty_mixed(keys, labels, size=20)


def test_labels_other_than_0_1_or_nan_are_refused() -> None:
    with pytest.raises(InvalidInputError, match="0/1 or NaN"):
        difficulty_tiers(np.array(["a"] * 5), np.array([1.0, 0.0, 2.0, 1.0, 0.0]))


def test_pooled_draws_uniformly_without_repeats_and_is_seeded() -> None:
    keys = np.repeat(["a", "b", "c"], 20)
    labels = np.tile([1.0, 0.0, np.nan, 1.0], 15)
    a = pooled(keys, labels, size=30, seed=3)
    b = pooled(keys, labels, size=30, seed=3)
    np.testing.assert_array_equal(a.indices, b.indices)
    assert np.unique(a.indices).size == 30
    assert not np.isnan(labels[a.indices]).any()
    assert pooled(keys, labels).indices.size == int((~np.isnan(labels)).sum())


def test_supervision_set_pools_every_label_until_a_slice_has_enough() -> None:
    keys = np.array(["a", "a", "b", "b", "c"])
    labels = np.array([1.0, 0.0, 1.0, np.nan, 0.0])
    few = supervision_set(keys, labels, min_labels=3)
    assert few.indices.tolist() == [0, 1, 2, 4]
    assert few.tiers is None
    assert few.strategy == "pooled (no slice has 3 labels yet; the largest has 2)"
    enough = supervision_set(keys, labels, min_labels=2)
    assert enough.strategy == "difficulty_mixed"
    assert np.array_equal(enough.indices, difficulty_mixed(keys, labels, min_labels=2).indices)
