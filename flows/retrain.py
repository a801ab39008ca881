"""The ``retrain`` flow: fold the labels in, train a challenger, promote it only if it wins.

Steps (METHOD §8.4-8.5): sample the supervision set from every label with
difficulty-mixed sampling; evaluate the challenger recipe out of slice and the champion
as it is, on the same labelled slices; fit the challenger on the supervision set; log
both side by side in one MLflow run; register the challenger once per idempotency key
(hash of the supervision trace ids, method, feature set, seed), so a rerun after a
crash or a success adds no registry version; move the ``champion`` alias only if the
promotion rule of ``sentinel_core.promotion`` says so, recording why on the version.
"""

from __future__ import annotations

from typing import Any

from prefect import flow
from prefect.runtime import flow_run

from flows.settings import TIMEOUT_S
from sentinel_core.estimator import Calibration
from sentinel_core.recipe import Recipe
from sentinel_core.settings import Settings
from tasks.models import apply_decision, describe_champion, find_registered, register_challenger
from tasks.tracking import log_retrain_run
from tasks.training import (
    decide_promotion,
    evaluate_challenger,
    evaluate_version,
    fit_challenger,
    sample_supervision,
)


@flow(name="retrain", timeout_seconds=TIMEOUT_S["retrain"])
def retrain(
    by: str = "benchmark",
    method: str = "default",
    calibration: Calibration = "auto",
    balanced: bool = False,
    force: bool = False,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """Train, evaluate, register and maybe promote a challenger; a JSON-ready report.

    ``sentinel train`` runs this flow too, so the command and the nightly loop share
    one recipe, one registry key and one promotion rule.

    Args:
        by: metadata key whose values are the slices (held out in evaluation).
        method: a servable method of ``sentinel_core.estimator`` (``default``: lr_11d
            anchored per slice on ATC on H_max); ``calibration``, ``balanced``: its
            options (``Recipe``).
        settings: the run's settings (default: from the environment, ``Settings()``).
        force: promote the challenger even where the rule would not (recorded as the
            reason), and train on labels of one slice (served with error 1.0).
    """
    settings = settings or Settings()
    recipe = Recipe(method, calibration, balanced, settings.seed)
    run_id = str(flow_run.id)
    supervision = sample_supervision(settings, by, recipe, force)
    existing = find_registered(settings, supervision["key"])
    champion = describe_champion(settings)
    challenger_scores = evaluate_challenger(settings, by, recipe)
    champion_scores = (
        None if champion is None else evaluate_version(settings, by, champion["version"])
    )
    decision = decide_promotion(
        challenger_scores, champion_scores, settings.training.promote_margin, force
    )
    model = None if existing else fit_challenger(settings, by, recipe, supervision["trace_ids"])
    logged = log_retrain_run(
        settings,
        flow_run_id=run_id,
        by=by,
        recipe=recipe,
        supervision=supervision,
        challenger=challenger_scores,
        champion=champion_scores,
        champion_version=None if champion is None else champion["version"],
        decision=decision,
        model=model,
    )
    version = existing or register_challenger(
        settings,
        key=supervision["key"],
        model_uri=str(logged["model_uri"]),
        run_id=str(logged["run_id"]),
        calibration_error=model[1] if model else float("nan"),
        method=recipe.name,
    )
    already_champion = champion is not None and champion["version"] == version
    verdict = (
        "already-champion" if already_champion else apply_decision(settings, version, decision)
    )
    return {
        "version": version,
        "new_version": existing is None,
        "verdict": verdict,
        "reason": decision.reason,
        "recipe": recipe.name,
        "mlflow_run_id": logged["run_id"],
        "champion_before": None if champion is None else champion["version"],
        "challenger": None if challenger_scores is None else challenger_scores.metrics(""),
        "champion": None if champion_scores is None else champion_scores.metrics(""),
        "supervision": {
            k: supervision[k]
            for k in ("strategy", "per_tier", "easy", "hard", "excluded", "n_labelled")
        }
        | {"n_trained": len(supervision["trace_ids"])},
    }
