"""The retrain flow on the real corpus, read back from a real MLflow store."""

from __future__ import annotations

import numpy as np
import pytest

from flows.retrain import retrain
from sentinel_core.estimator import EntropyEstimator
from sentinel_core.features import FEATURE_NAMES, FEATURE_SET_VERSION
from tasks.registry import CHAMPION, IDEMPOTENCY_TAG, load_champion
from tests.factories import plant_champion
from tests.flows.conftest import Env

MODEL = "entropy-sentinel-estimator"

pytestmark = [
    # The test harness maps Prefect's server ORM in this process; MLflow's store then
    # configures every SQLAlchemy mapper, and SQLAlchemy 2.1 deprecates Prefect's UUID
    # column type for lacking operator classes. Prefect's code, not ours (fixed upstream
    # by declaring operator_classes); only this exact message is ignored.
    pytest.mark.filterwarnings(
        "ignore:Type object <class 'prefect\\.server\\.:sqlalchemy.exc.SADeprecationWarning"
    ),
]


def _versions(env: Env) -> list[object]:
    return env.client().search_model_versions(f"name='{MODEL}'")


def test_a_first_retrain_registers_and_promotes_the_challenger(corpus_env: Env) -> None:
    report = retrain(**corpus_env.kwargs())
    client = corpus_env.client()
    version = client.get_model_version_by_alias(MODEL, CHAMPION)
    assert report["version"] == str(version.version) == "1"
    assert report["verdict"] == "promoted"
    assert version.tags["promotion"] == "promoted"
    assert "no champion in service" in version.tags["promotion_reason"]
    assert len(version.tags[IDEMPOTENCY_TAG]) == 64
    # Issue 17: the newest registered version is also the challenger; both read alone.
    assert client.get_model_version_by_alias(MODEL, "challenger").version == version.version
    assert "P(correct)" in client.get_registered_model(MODEL).description
    assert version.description.startswith("promoted: ")
    run = client.get_run(report["mlflow_run_id"])
    assert run.data.tags["sentinel_kind"] == "retrain"
    assert len(run.data.tags["prefect_flow_run_id"]) == 36
    assert 0.0 <= run.data.metrics["challenger_aee"] <= 1.0
    assert run.data.metrics["challenger_n_slices"] == 14
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"held_out.csv", "supervision.json", "charts"} <= artifacts
    charts = {a.path for a in client.list_artifacts(run.info.run_id, "charts")}
    assert "charts/reliability_held_out.png" in charts
    assert 0.0 < run.data.metrics["challenger_ece"] < 0.5
    per_tier = report["supervision"]["per_tier"]
    assert per_tier["easy"] == per_tier["hard"] > 0
    # The default pins responses cut at max_tokens at their training share (few correct)
    assert 0.0 < run.data.metrics["cut_p"] < 0.1
    served = load_champion(corpus_env.settings())
    assert served.estimator.cut_p_ == run.data.metrics["cut_p"]


def test_a_rerun_after_success_registers_no_second_version(corpus_env: Env) -> None:
    first = retrain(**corpus_env.kwargs())
    again = retrain(**corpus_env.kwargs())
    assert first["new_version"] is True
    assert again["new_version"] is False
    assert again["version"] == first["version"]
    assert again["verdict"] == "already-champion"
    assert len(_versions(corpus_env)) == 1


def _register_poor_champion(env: Env) -> str:
    """A champion trained on the labels of one easy benchmark only: it overrates hard ones."""
    from sentinel_core.features import ALL_SCORE_NAMES
    from sentinel_core.store import load_scores, open_store, slice_values

    frame = load_scores(
        open_store(env.db_url), feature_set=FEATURE_SET_VERSION, names=ALL_SCORE_NAMES
    )
    frame["slice"] = slice_values(frame["metadata"], "benchmark")
    accuracy = frame.groupby("slice")["label"].mean()
    easiest = frame[frame["slice"] == accuracy.idxmax()]
    X = easiest[list(FEATURE_NAMES)]
    y = np.ones(len(easiest), dtype=int)  # everything "correct": a constant 0.99 estimator
    settings = env.settings()
    return plant_champion(settings, EntropyEstimator(search=False).fit(X, y), calibration_error=0.0)


def test_a_challenger_that_beats_the_champion_by_the_margin_is_promoted(corpus_env: Env) -> None:
    poor = _register_poor_champion(corpus_env)
    report = retrain(**corpus_env.kwargs())
    client = corpus_env.client()
    assert report["champion_before"] == poor
    assert report["verdict"] == "promoted"
    assert (
        str(client.get_model_version_by_alias(MODEL, CHAMPION).version) == report["version"] != poor
    )
    assert report["challenger"]["median_abs_error"] < report["champion"]["median_abs_error"]
    run = client.get_run(report["mlflow_run_id"])
    assert {"challenger_aee", "champion_aee", "challenger_rho", "champion_auroc"} <= set(
        run.data.metrics
    )
    assert "beats champion" in run.data.tags["decision_reason"]


def test_a_challenger_that_does_not_win_by_the_margin_stays_out_of_service(
    corpus_env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    poor = _register_poor_champion(corpus_env)
    monkeypatch.setenv("SENTINEL_PROMOTE_MARGIN", "1.0")  # no challenger can win by 1.0
    report = retrain(**corpus_env.kwargs())
    client = corpus_env.client()
    assert report["verdict"] == "kept-challenger"
    assert str(client.get_model_version_by_alias(MODEL, CHAMPION).version) == poor
    version = client.get_model_version(MODEL, report["version"])
    assert version.tags["promotion"] == "kept-challenger"
    assert "does not beat" in version.description
