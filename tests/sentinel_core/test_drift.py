"""Drift alerts between two monitor runs."""

from __future__ import annotations

import pytest

from sentinel_core.drift import compare_runs, estimates_from_dicts
from sentinel_core.errors import InvalidInputError
from sentinel_core.slices import SliceEstimate


def est(name: str, accuracy: float, low: float, high: float, *, n: int = 100) -> SliceEstimate:
    return SliceEstimate(name, n, accuracy, low, high, "bootstrap", too_few=n < 30)


def test_a_slice_whose_interval_lies_below_the_previous_estimate_alerts() -> None:
    report = compare_runs([est("a", 0.8, 0.7, 0.9)], [est("a", 0.5, 0.4, 0.6)])
    assert [a.slice for a in report.alerts] == ["a"]
    assert report.alerts[0].drop == pytest.approx(0.3)
    assert "0.800 to 0.500" in report.alerts[0].message()


def test_a_drop_whose_interval_still_reaches_the_previous_estimate_does_not_alert() -> None:
    report = compare_runs([est("a", 0.8, 0.7, 0.9)], [est("a", 0.7, 0.55, 0.85)])
    assert report.alerts == ()


def test_the_interval_must_lie_below_the_previous_point_not_its_interval() -> None:
    # Intervals overlap (0.65 > 0.6) but the current one is wholly below 0.8: alert.
    report = compare_runs([est("a", 0.8, 0.6, 0.95)], [est("a", 0.55, 0.45, 0.65)])
    assert len(report.alerts) == 1


def test_a_rise_never_alerts() -> None:
    assert compare_runs([est("a", 0.3, 0.2, 0.4)], [est("a", 0.9, 0.8, 1.0)]).alerts == ()


def test_min_drop_silences_small_but_significant_falls() -> None:
    previous, current = [est("a", 0.80, 0.79, 0.81)], [est("a", 0.77, 0.76, 0.78)]
    assert len(compare_runs(previous, current).alerts) == 1
    assert compare_runs(previous, current, min_drop=0.05).alerts == ()


def test_too_few_slices_are_skipped_unless_asked() -> None:
    previous, current = [est("a", 0.9, 0.8, 1.0, n=10)], [est("a", 0.2, 0.1, 0.3, n=10)]
    assert compare_runs(previous, current).alerts == ()
    assert len(compare_runs(previous, current, include_too_few=True).alerts) == 1


def test_alerts_are_ordered_by_drop_and_new_or_gone_slices_are_listed() -> None:
    previous = [est("a", 0.9, 0.8, 1.0), est("b", 0.9, 0.8, 1.0), est("gone", 0.5, 0.4, 0.6)]
    current = [est("a", 0.6, 0.5, 0.7), est("b", 0.2, 0.1, 0.3), est("new", 0.5, 0.4, 0.6)]
    report = compare_runs(previous, current)
    assert [a.slice for a in report.alerts] == ["b", "a"]
    assert report.new_slices == ("new",)
    assert report.gone_slices == ("gone",)


def test_the_first_run_has_nothing_to_compare_with() -> None:
    assert compare_runs([], [est("a", 0.5, 0.4, 0.6)]).alerts == ()


def test_a_slice_listed_twice_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="twice"):
        compare_runs([est("a", 0.5, 0.4, 0.6), est("a", 0.5, 0.4, 0.6)], [])


def test_estimates_round_trip_through_their_stored_dicts() -> None:
    original = [est("a", 0.5, 0.4, 0.6)]
    assert estimates_from_dicts([e.to_dict() for e in original]) == original


def test_stored_rows_without_estimate_fields_are_refused() -> None:
    with pytest.raises(InvalidInputError, match="SliceEstimate fields"):
        estimates_from_dicts([{"slice": "a"}])
