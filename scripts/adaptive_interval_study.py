"""Could label-free intervals of varying width meet coverage 0.88 below width 0.35?

    .venv/bin/python scripts/adaptive_interval_study.py [--corpus qwen1.5b|qwen0.5b|all]
        [--groups 60]

docs/results.md bounds every rule that widens each slice's estimate by one half-width
(per g): even chosen with the true accuracies, it needs a mean width of 0.45-0.50 to
cover 0.88 of the held-out benchmarks. A rule whose half-width follows a per-slice
scale ``s`` (normalised split-conformal: ``estimate +- q s``, ``q`` a quantile of
``|residual| / s``) can beat that bound only if ``s`` predicts where the errors are
large. This study measures it for the default estimator and four scales:

- ``one``: ``s = 1`` (the one-width rule, for reference);
- ``bernoulli``: ``s = sqrt(e (1 - e)) + 0.05``, ``e`` the slice estimate (errors
  shrink towards accuracy 0 or 1);
- ``disagreement``: ``s = |e - m| + 0.05``, ``m`` the slice mean of the default's own
  classifier before anchoring (two label-free estimates that disagree);
- ``both``: ``s = |e - m| + 0.5 sqrt(e (1 - e))``.

Per g in 2, 3, 4: ``--groups`` random groups of g training benchmarks (seed 0); the
default (``make_estimator("default", search=False)``, cut responses pinned as in the
product) is fitted on each group and estimates every other benchmark; leave-one-out
fits within the group give the training residuals. Printed per scale: the oracle mean
width at coverage 0.88 (``q`` the 0.88 quantile over the held-out rows, chosen with
their truths, intervals clipped to [0, 1]) and the conformal rule's coverage and width
(``q`` from the group's leave-one-out residuals, the ``ceil((k + 1) 0.9)``-th of ``k``;
no bootstrap term, so its coverage is below the protocol's ``conformal`` column).
The last line is one JSON object of the figures.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from labels import CORPORA, Corpus, load_corpus  # noqa: E402

from sentinel_core.estimator import make_estimator, score_in_slices, score_parts  # noqa: E402
from sentinel_core.intervals import conformal_slice_quantile  # noqa: E402

TARGET_COVERAGE, TARGET_WIDTH = 0.88, 0.35


def bernoulli(e: float) -> float:
    return math.sqrt(max(e * (1.0 - e), 0.0))


SCALES: dict[str, Callable[[float, float], float]] = {
    "one": lambda e, m: 1.0,
    "bernoulli": lambda e, m: bernoulli(e) + 0.05,
    "disagreement": lambda e, m: abs(e - m) + 0.05,
    "both": lambda e, m: abs(e - m) + 0.5 * bernoulli(e),
}


def fitted(corpus: Corpus, train: list[str]) -> Any:
    """The default (``search=False``) fitted on the benchmarks ``train``, cut flags given."""
    fit = np.isin(corpus.benchmark, train)
    model = make_estimator("default", search=False)
    model.fit(corpus.X[fit], corpus.y[fit], groups=corpus.benchmark[fit], cut=corpus.cut[fit])
    return model


def figures(model: Any, corpus: Corpus, held: str) -> tuple[float, float, float]:
    """``(estimate, unanchored mean, truth)`` of benchmark ``held`` under ``model``."""
    rows = corpus.benchmark == held
    p, _ = score_in_slices(model, corpus.X[rows], corpus.benchmark[rows], corpus.cut[rows])
    raw, _ = score_parts(model, corpus.X[rows])
    return float(p.mean()), float(raw.mean()), float(corpus.y[rows].mean())


def slice_figures(corpus: Corpus, train: list[str], held: str) -> tuple[float, float, float]:
    """:func:`figures` of benchmark ``held``, the default fitted on ``train``."""
    return figures(fitted(corpus, train), corpus, held)


def held_out_rows(corpus: Corpus, train: list[str]) -> list[tuple[float, float, float]]:
    """:func:`figures` of every benchmark outside ``train``, one fit for all."""
    model = fitted(corpus, train)
    return [figures(model, corpus, b) for b in sorted(set(corpus.benchmark.tolist()) - set(train))]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--corpus", choices=sorted(CORPORA), default="qwen1.5b")
    parser.add_argument("--groups", type=int, default=60, help="training groups per g")
    args = parser.parse_args()
    if args.groups < 1:
        parser.error(f"--groups must be at least 1, got {args.groups}")
    corpus = load_corpus(args.corpus)
    names = np.array(sorted(set(corpus.benchmark.tolist())))
    rng = np.random.default_rng(0)
    out: dict[str, Any] = {}
    for g in (2, 3, 4):
        records = []  # (held-out rows, leave-one-out rows) per group
        for _ in range(args.groups):
            train = sorted(rng.choice(names, size=g, replace=False).tolist())
            loo = [slice_figures(corpus, [b for b in train if b != t], t) for t in train]
            records.append((held_out_rows(corpus, train), loo))
        held = np.array([row for rows, _ in records for row in rows])
        error = np.abs(held[:, 0] - held[:, 2])
        gap = np.abs(held[:, 0] - held[:, 1])
        spread = np.sqrt(held[:, 0] * (1 - held[:, 0]))
        print(
            f"g = {g}: {held.shape[0]} held-out rows, median |error| {np.median(error):.3f}; "
            f"corr(|error|, |e - m|) {np.corrcoef(error, gap)[0, 1]:.3f}, "
            f"corr(|error|, sqrt(e(1-e))) {np.corrcoef(error, spread)[0, 1]:.3f}"
        )
        out[str(g)] = {}
        for name, scale in SCALES.items():
            s = np.array([scale(e, m) for e, m, _ in held])
            q = float(np.quantile(error / s, TARGET_COVERAGE))
            oracle = float(
                np.mean(np.clip(held[:, 0] + q * s, 0, 1) - np.clip(held[:, 0] - q * s, 0, 1))
            )
            covered, widths = [], []
            for rows, loo in records:
                q_conf = conformal_slice_quantile(
                    [abs(t - e) / scale(e, m) for e, m, t in loo], 0.9
                )
                for e, m, t in rows:
                    low = max(0.0, e - q_conf * scale(e, m))
                    high = min(1.0, e + q_conf * scale(e, m))
                    covered.append(low <= t <= high)
                    widths.append(high - low)
            out[str(g)][name] = {
                "oracle_width": round(oracle, 3),
                "conformal_coverage": round(float(np.mean(covered)), 3),
                "conformal_width": round(float(np.mean(widths)), 3),
            }
            print(
                f"  {name:<13} oracle width at coverage {TARGET_COVERAGE}: {oracle:.3f}"
                f"{' (below ' + str(TARGET_WIDTH) + ')' if oracle < TARGET_WIDTH else ''}; "
                f"conformal coverage {np.mean(covered):.3f}, width {np.mean(widths):.3f}"
            )
    print(json.dumps(out, sort_keys=True))


if __name__ == "__main__":
    main()
