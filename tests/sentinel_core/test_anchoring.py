"""Slice anchoring: a logit shift per slice onto a given share. Data GENERATED, seeded."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import special

from sentinel_core.anchoring import anchor_slice, anchor_to_slices
from sentinel_core.errors import InvalidInputError


def test_the_slice_mean_becomes_the_share_by_one_shift_of_the_log_odds() -> None:
    rng = np.random.default_rng(0)
    p = rng.uniform(0.05, 0.95, size=200)
    anchored = anchor_slice(p, 0.8)
    assert anchored.mean() == pytest.approx(0.8, abs=1e-9)
    shift = special.logit(anchored) - special.logit(p)
    assert np.ptp(shift) < 1e-6  # the same shift for every response
    assert shift[0] > 0


def test_a_share_of_zero_or_one_stays_half_a_response_inside() -> None:
    p = np.array([0.2, 0.5, 0.9, 0.99])
    assert anchor_slice(p, 0.0).mean() == pytest.approx(0.5 / 4, abs=1e-9)
    assert anchor_slice(p, 1.0).mean() == pytest.approx(1 - 0.5 / 4, abs=1e-9)
    assert np.all((anchor_slice(p, 1.0) > 0) & (anchor_slice(p, 1.0) < 1))


def test_extreme_and_one_response_slices_are_finite() -> None:
    assert anchor_slice(np.array([0.0, 1.0, 1.0]), 0.5).mean() == pytest.approx(0.5, abs=1e-9)
    assert anchor_slice(np.array([0.3]), 1.0)[0] == pytest.approx(0.5)


def test_every_slice_is_anchored_on_its_own_votes_in_input_order() -> None:
    rng = np.random.default_rng(1)
    p = rng.uniform(0.1, 0.9, size=90)
    keys = np.array(["a", "b", "c"] * 30)
    votes = np.where(keys == "a", 1.0, 0.0)
    votes[keys == "c"] = (rng.uniform(size=30) < 0.4).astype(float)
    out = anchor_to_slices(p, votes, keys)
    for key in "abc":
        rows = keys == key
        np.testing.assert_allclose(out[rows], anchor_slice(p[rows], votes[rows].mean()))


def test_bad_input_says_what_was_expected() -> None:
    with pytest.raises(InvalidInputError, match="votes must be 0/1"):
        anchor_to_slices([0.5, 0.5], [0.5, 1.0], ["a", "a"])
    with pytest.raises(InvalidInputError, match="same length"):
        anchor_to_slices([0.5, 0.5], [1.0], ["a", "a"])
    with pytest.raises(InvalidInputError, match="share must lie in"):
        anchor_slice([0.5], 1.5)
    with pytest.raises(InvalidInputError, match="at least one response"):
        anchor_slice([], 0.5)
    with pytest.raises(InvalidInputError):
        anchor_to_slices([1.5], [1.0], ["a"])


def test_pinned_responses_keep_their_value_and_the_slice_mean_stays_the_share() -> None:
    rng = np.random.default_rng(2)
    p = rng.uniform(0.05, 0.95, size=100)
    pinned = np.where(rng.uniform(size=100) < 0.3, 0.01, np.nan)
    held = ~np.isnan(pinned)
    anchored = anchor_slice(p, 0.6, pinned)
    assert np.array_equal(anchored[held], pinned[held])
    assert anchored.mean() == pytest.approx(0.6, abs=1e-9)
    shift = special.logit(anchored[~held]) - special.logit(p[~held])
    assert np.ptp(shift) < 1e-6  # the free ones move by one shift, keeping their order
    # all NaN is the same as no pins
    assert np.allclose(anchor_slice(p, 0.6, np.full(100, np.nan)), anchor_slice(p, 0.6))


def test_when_the_pins_alone_exceed_the_share_the_others_go_to_the_bottom() -> None:
    p = np.array([0.5, 0.5, 0.5, 0.5])
    anchored = anchor_slice(p, 0.1, np.array([0.9, 0.9, np.nan, np.nan]))
    assert anchored[:2].tolist() == [0.9, 0.9]
    # as low as they go: kept the slice's margin, 1/(2 * 4), inside (0, 1)
    assert anchored[2:] == pytest.approx([0.125, 0.125], abs=1e-9)
    everything = anchor_slice(p, 0.3, np.full(4, 0.02))
    assert everything.tolist() == [0.02] * 4


def test_pins_are_kept_per_slice_and_checked() -> None:
    keys = np.array(["a", "b"] * 20)
    p = np.full(40, 0.5)
    votes = np.zeros(40)
    votes[np.flatnonzero(keys == "a")[:12]] = 1.0  # ATC's share: a 0.6, b 0.3
    votes[np.flatnonzero(keys == "b")[:6]] = 1.0
    pinned = np.where(np.arange(40) < 10, 0.05, np.nan)  # five of each slice
    anchored = anchor_to_slices(p, votes, keys, pinned)
    assert np.array_equal(anchored[:10], np.full(10, 0.05))
    for key, share in (("a", 0.6), ("b", 0.3)):
        assert anchored[keys == key].mean() == pytest.approx(share, abs=1e-9)
    with pytest.raises(InvalidInputError, match="pinned values must lie in"):
        anchor_slice(p[:3], 0.5, np.array([1.5, np.nan, np.nan]))
    with pytest.raises(InvalidInputError, match="pinned"):
        anchor_to_slices(p, votes, keys, np.full(39, np.nan))
