"""The estimator for a notebook: fit, estimate and plot on a DataFrame of traces.

In the spirit of NannyML's estimators (``fit`` on a labelled reference, ``estimate`` on
the traffic to judge, ``plot`` the result), over the project's own recipe and
statistics, with no store, server or tracking::

    import pandas as pd
    from sentinel_core.notebook import SliceMonitor

    reference = pd.read_json("labelled.jsonl", lines=True)   # response, correct, route
    traffic = pd.read_json("last_week.jsonl", lines=True)    # response, route
    monitor = SliceMonitor(by="route").fit(reference, label="correct")
    table = monitor.estimate(traffic)      # one row per route: accuracy, low, high, ...
    monitor.plot(table)                    # a matplotlib Figure

A DataFrame of traces has one row per LLM response: a ``response`` column holding the
OpenAI ``chat.completion`` (or legacy ``completion``) object with top-k logprobs, as a
dict or its JSON text (the first choice is used); the slice column named by ``by``; and,
for ``fit`` (optionally for ``estimate``), a 0/1 label column. ``features`` turns it
into the 11-number entropy profile (METHOD §3); ``fit`` trains with difficulty-mixed
supervision (the nightly retrain's ``supervision_set`` and ``Recipe.fit``); ``estimate``
gives every slice its accuracy and interval as ``sentinel estimate`` does (label-free,
or prediction-powered with the labels in the frame).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pandas as pd
from matplotlib.figure import Figure

from sentinel_core.charts import slice_chart
from sentinel_core.errors import InvalidInputError, InvalidTraceError, NotFittedError
from sentinel_core.estimator import ServableEstimator, predict_in_slices, score_in_slices
from sentinel_core.features import FEATURE_NAMES, entropy_profiles
from sentinel_core.recipe import Recipe
from sentinel_core.slices import estimate_slices_with_labels
from sentinel_core.supervision import supervision_set
from sentinel_core.traces import cut_flags, parse_record

RESPONSE = "response"


def features(traces: pd.DataFrame) -> pd.DataFrame:
    """The 11 entropy features of each row's response, indexed like ``traces``.

    Raises:
        InvalidInputError: no ``response`` column, or a row whose response cannot be
            parsed (the message names the row and the reason).
    """
    return _parsed(traces)[0]


def _parsed(traces: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray[Any, np.dtype[np.bool_]]]:
    """:func:`features`, and whether each response was cut at ``max_tokens``."""
    if RESPONSE not in traces.columns:
        raise InvalidInputError(
            f"expected a {RESPONSE!r} column with OpenAI completion objects, got columns "
            f"{list(traces.columns)[:10]}"
        )
    tops, reasons = [], []
    for index, value in traces[RESPONSE].items():
        try:
            response = orjson.loads(value) if isinstance(value, str | bytes) else value
            parsed = parse_record(response)[0]
            tops.append(parsed.top_logprobs)
            reasons.append(parsed.finish_reason)
        except (orjson.JSONDecodeError, InvalidTraceError, IndexError) as exc:
            raise InvalidInputError(
                f"expected row {index!r} to hold an OpenAI completion with top logprobs, got: {exc}"
            ) from exc
    profile = pd.DataFrame(entropy_profiles(tops), index=traces.index, columns=list(FEATURE_NAMES))
    return profile, cut_flags(reasons)


class SliceMonitor:
    """Per-slice accuracy of an LLM from its traces (see the module's docstring).

    Args:
        by: the column whose values are the slices.
        method: a servable method (``default``: lr_11d anchored per slice on ATC on
            H_max; ``lr_11d`` etc.).
        confidence: nominal coverage of the intervals.
        min_labels: labels a slice needs to enter difficulty-mixed supervision.
        min_n: slices with fewer traces are flagged ``too_few``.
        n_bootstrap: bootstrap resamples per slice (label-free intervals).
        seed: seed of every draw.

    Attributes (after ``fit``):
        estimator_: the fitted estimator (``predict_correct_proba`` on features).
        calibration_error_: its held-out slice error (leave-one-slice-out median),
            which widens the label-free intervals.
    """

    def __init__(
        self,
        by: str,
        *,
        method: str = "default",
        confidence: float = 0.9,
        min_labels: int = 5,
        min_n: int = 30,
        n_bootstrap: int = 2000,
        seed: int = 0,
    ) -> None:
        self.by = by
        self.recipe = Recipe(method, seed=seed)
        self.confidence = confidence
        self.min_labels = min_labels
        self.min_n = min_n
        self.n_bootstrap = n_bootstrap
        self.seed = seed

    def fit(self, reference: pd.DataFrame, *, label: str = "correct") -> SliceMonitor:
        """Train on labelled traces (every row needs a 0/1 ``label``)."""
        slices = self._slices(reference)
        y = _labels(reference, label, required=True)
        X, cut = _parsed(reference)
        chosen = supervision_set(slices, y, min_labels=self.min_labels, seed=self.seed).indices
        self.estimator_, self.calibration_error_ = self.recipe.fit(
            X.iloc[chosen], y[chosen].astype(int), slices[chosen], cut[chosen]
        )
        return self

    def predict_correct_proba(self, traces: pd.DataFrame) -> pd.Series:
        """P(correct) of each row's response, indexed like ``traces``; the default
        anchors each slice (the ``by`` column) on ATC's share, so pass whole slices."""
        estimator = self._fitted()
        X, cut = _parsed(traces)
        p = predict_in_slices(estimator, X, self._slices(traces), cut)
        return pd.Series(p, index=traces.index, name="p_correct")

    def estimate(self, analysis: pd.DataFrame, *, label: str | None = None) -> pd.DataFrame:
        """Every slice's accuracy with its interval, lowest first.

        Label-free (widened by the held-out error) where the slice has no labels;
        prediction-powered where ``label`` names a column with 0/1 for some rows (NaN or
        missing for the others). Columns: slice, n, accuracy, low, high, method,
        too_few, n_labelled.
        """
        estimator = self._fitted()
        slices = self._slices(analysis)
        X, cut = _parsed(analysis)
        p, votes = score_in_slices(estimator, X, slices, cut)
        y = np.full(p.shape, np.nan) if label is None else _labels(analysis, label)
        error = self.calibration_error_
        estimates = estimate_slices_with_labels(
            p,
            slices,
            y,
            calibration_error=1.0 if np.isnan(error) else error,
            confidence=self.confidence,
            n_boot=self.n_bootstrap,
            min_n=self.min_n,
            seed=self.seed,
            resample=votes,
        )
        return pd.DataFrame([e.to_dict() for e in estimates])

    def plot(self, estimates: pd.DataFrame, *, title: str | None = None) -> Figure:
        """The slices' estimates with their intervals (a matplotlib ``Figure``)."""
        rows = [{str(k): v for k, v in row.items()} for row in estimates.to_dict("records")]
        return slice_chart(
            rows, {}, title=title or f"accuracy by {self.by} (confidence {self.confidence:g})"
        )

    def _slices(self, frame: pd.DataFrame) -> np.ndarray[Any, Any]:
        if self.by not in frame.columns:
            raise InvalidInputError(
                f"expected a slice column {self.by!r}, got columns {list(frame.columns)[:10]}"
            )
        return frame[self.by].astype(str).to_numpy()

    def _fitted(self) -> ServableEstimator:
        if not hasattr(self, "estimator_"):
            raise NotFittedError("SliceMonitor must be fitted before use; call fit(reference)")
        return self.estimator_


def _labels(frame: pd.DataFrame, label: str, *, required: bool = False) -> np.ndarray[Any, Any]:
    if label not in frame.columns:
        raise InvalidInputError(
            f"expected a label column {label!r} (0/1), got columns {list(frame.columns)[:10]}"
        )
    values = pd.to_numeric(frame[label], errors="coerce").astype(float).to_numpy()
    present = values[~np.isnan(values)]
    if np.any((present != 0.0) & (present != 1.0)):
        raise InvalidInputError(
            f"expected 0/1 in {label!r}, got values {np.unique(present)[:5].tolist()}"
        )
    if required and np.isnan(values).any():
        raise InvalidInputError(
            f"expected a 0/1 {label!r} on every row to fit on, got "
            f"{int(np.isnan(values).sum())} rows without one"
        )
    return values
