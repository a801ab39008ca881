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
