"""The retrain tasks on the real corpus, called through ``task.fn``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sentinel_core.corpus import iter_sample_records
from sentinel_core.errors import InvalidInputError
from sentinel_core.ingest import ingest_records
from sentinel_core.promotion import Decision
from sentinel_core.recipe import Recipe
from sentinel_core.settings import Settings
from sentinel_core.store import add_labels, open_store
from tasks.alerts import compare_estimates
from tasks.training import decide_promotion, evaluate_challenger, fit_challenger, sample_supervision


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    url = f"sqlite:///{tmp_path / 'sentinel.db'}"
    records = list(iter_sample_records())
    engine = open_store(url)
    ingest_records(engine, (r for r, _ in records), source="dev")
    add_labels(engine, ((r["id"], bool(y), None) for r, y in records), labeler="import")
    return Settings(home=tmp_path, db_url=url)


def test_the_supervision_set_balances_tiers_and_its_key_is_stable(settings: Settings) -> None:
    first = sample_supervision.fn(settings, "benchmark", Recipe())
    again = sample_supervision.fn(settings, "benchmark", Recipe())
    other = sample_supervision.fn(settings, "benchmark", Recipe("lr_11d"))
    assert first["per_tier"]["easy"] == first["per_tier"]["hard"]
    assert len(first["trace_ids"]) == 2 * first["per_tier"]["easy"]
    assert first["key"] == again["key"] != other["key"]
    assert set(first["easy"]).isdisjoint(first["hard"])


def test_the_challenger_is_scored_out_of_slice_on_every_labelled_trace(settings: Settings) -> None:
    scores = evaluate_challenger.fn(settings, "benchmark", Recipe())
    assert scores.n_slices == 14
    assert scores.n_labels == 134
    assert 0.0 <= scores.median_abs_error <= scores.aee + 1.0
    assert np.isfinite(scores.auroc)


def test_the_fitted_challenger_predicts_probabilities(settings: Settings) -> None:
    supervision = sample_supervision.fn(settings, "benchmark", Recipe())
    estimator, held_out = fit_challenger.fn(
        settings, "benchmark", Recipe(), supervision["trace_ids"]
    )
    assert 0.0 <= held_out <= 1.0
    assert hasattr(estimator, "predict_proba")


def test_promotion_without_a_champion_is_automatic(settings: Settings) -> None:
    scores = evaluate_challenger.fn(settings, "benchmark", Recipe())
    decision = decide_promotion.fn(scores, None, 0.01)
    assert decision == Decision(True, decision.reason)
    assert "no champion" in decision.reason
    assert not decide_promotion.fn(scores, scores, 0.01).promote


def test_force_promotes_over_the_rule_and_says_what_the_rule_said(settings: Settings) -> None:
    scores = evaluate_challenger.fn(settings, "benchmark", Recipe())
    kept = decide_promotion.fn(scores, scores, 0.01)
    forced = decide_promotion.fn(scores, scores, 0.01, True)
    assert forced == Decision(
        True, f"forced by the operator (--force) over the rule: {kept.reason}"
    )
    # Force changes nothing where the rule promotes anyway.
    assert decide_promotion.fn(scores, None, 0.01, True) == decide_promotion.fn(scores, None, 0.01)
    unmeasured = decide_promotion.fn(None, None, 0.01)
    assert not unmeasured.promote
    assert "cannot be measured" in unmeasured.reason


def test_a_recipe_key_names_its_options_and_a_typo_is_refused(settings: Settings) -> None:
    plain = sample_supervision.fn(settings, "benchmark", Recipe("lr_11d"))
    sigmoid = sample_supervision.fn(settings, "benchmark", Recipe("lr_11d", "sigmoid"))
    assert plain["key"] != sigmoid["key"]
    assert Recipe("lr_11d", "sigmoid", balanced=True).name == "lr_11d[calibration=sigmoid,balanced]"
    with pytest.raises(
        InvalidInputError, match=r"method must be 'default' or one of .*got 'lr11d'"
    ):
        Recipe("lr11d")
    with pytest.raises(InvalidInputError, match=r"calibration must be one of .*got 'platt'"):
        Recipe("lr_11d", "platt")  # type: ignore[arg-type]


def test_comparing_two_runs_returns_typed_alerts() -> None:
    from sentinel_core.drift import DriftAlert
    from sentinel_core.slices import SliceEstimate

    previous = [SliceEstimate("a", 100, 0.9, 0.85, 0.95, "bootstrap", False)]
    current = [SliceEstimate("a", 100, 0.5, 0.45, 0.55, "bootstrap", False)]
    alerts = compare_estimates.fn(previous, current, 0.0)
    assert [a.slice for a in alerts] == ["a"]
    assert isinstance(alerts[0], DriftAlert)
    assert alerts[0].drop == pytest.approx(0.4)
    assert compare_estimates.fn(previous, previous, 0.0) == []
