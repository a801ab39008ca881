"""Held-out scores of a challenger on the real corpus: what the retrain run logs."""

from __future__ import annotations

from importlib import resources

import numpy as np
import orjson

from sentinel_core.estimator import make_estimator
from sentinel_core.features import ALL_SCORE_NAMES, scores_from_flat
from sentinel_core.metrics import reliability_bins
from sentinel_core.promotion import cross_fit, score_held_out


def _corpus() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The 242 shipped real responses of Qwen2.5-Coder-1.5B: scores, labels, benchmarks."""
    data = resources.files("sentinel_core") / "data"
    X, y, keys = [], [], []
    for name in ("corpus-dev", "corpus-collected"):
        with (data / f"{name}.npz").open("rb") as handle, np.load(handle) as arrays:
            X.append(
                scores_from_flat(
                    arrays["top"].astype(np.float32),
                    arrays["chosen"].astype(np.float32),
                    arrays["lengths"].astype(np.int64),
                )
            )
        for line in (data / f"{name}.jsonl").read_bytes().splitlines():
            record = orjson.loads(line)
            y.append(float(record["label"]))
            keys.append(record["metadata"]["benchmark"])
    return np.vstack(X), np.array(y), np.array(keys)


def test_the_defaults_held_out_probabilities_fill_more_than_two_reliability_bins() -> None:
    # Issue 15: soft ATC gives P(correct) a spread, so the held-out reliability diagram
    # logged with every retrain (charts/reliability_held_out.png) has more than the two
    # dots a 0/1 estimator (ATC) draws.
    X, y, keys = _corpus()
    assert X.shape == (242, len(ALL_SCORE_NAMES))
    probs = cross_fit(
        X,
        y,
        keys,
        make=lambda: make_estimator("default", search=False),
        sample=lambda k, labels: np.arange(labels.size),
        n_folds=5,
    )
    scores = score_held_out(probs, y, keys)
    assert len(scores.probs) == len(scores.labels) == 242
    bins = reliability_bins(scores.probs, scores.labels)
    assert bins.n.size > 2
    assert 0.0 < scores.ece < 0.5
    atc = cross_fit(
        X,
        y,
        keys,
        make=lambda: make_estimator("atc_H_max", search=False),
        sample=lambda k, labels: np.arange(labels.size),
        n_folds=5,
    )
    assert reliability_bins(atc, y).n.size <= 2
