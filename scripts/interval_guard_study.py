"""The active interval's small-sample guard: what other guards would cost in coverage.

    .venv/bin/python scripts/interval_guard_study.py [--seeds 300] [--synthetic-seeds 1000]
        [--corpus qwen1.5b|qwen0.5b|all] [--guards half,none,...]

``sentinel_core.active.active_mean_interval`` adds two pseudo-residuals ``+-0.5`` to
the variance of its rectifier and spends one degree of freedom on the tuned
``lambda`` (the guard). On the real corpus its nominal 90% intervals over-cover at 5-10
labels per slice (0.93-0.96), which costs label savings measured by width. This study
replays other guards, none of them in the product:

- ``half``: the product's (checked below to reproduce ``active_mean_interval``);
- ``none``: no pseudo-residuals (the lambda degree of freedom kept);
- ``half-no-lambda-df``: the pseudo-residuals, no degree of freedom for lambda;
- ``agresti-coull``: pseudo-residuals ``+-sqrt(t (1 - t))`` with
  ``t = (n theta + z^2 / 2) / (n + z^2)``, the Bernoulli sd at the Agresti-Coull
  centre (smaller near accuracy 0 or 1, where ``half`` over-covers most);
- ``wilson-ratio``: the Wilson score interval around the estimate at an effective size
  ``n (N - 1) / (N - n) / deff``, ``deff`` the ratio of the ``half`` variance to the
  same labels' classical (``lambda = 0``) one (1 when that is 0): with equal
  probabilities and ``lambda = 0`` it is ``benchmarks/labels.py``'s classical Wilson;
- ``wilson-kg``: the same, at the effective size ``theta (1 - theta) / var`` (Korn and
  Graubard's for complex surveys; ``n (N - 1) / (N - n)`` when ``theta`` is 0 or 1).

Two measurements per guard:

1. the real corpus, through ``benchmarks/labels.py``'s replay (its ``run``, with
   ``active_mean_interval`` replaced by the guard for the campaign's and PPI++'s
   intervals): coverage and label saving by width of the active design at 5, 10, 20
   and 40 labels per slice, and the active design's coverage by true accuracy;
2. synthetic slices of known truth (N = 300; ``--synthetic-seeds`` per cell), uniform
   and active designs at 5, 10, 20 and 40 labels, in eight populations: calibrated
   ``f ~ Beta(.5, .5)``; miscalibrated ``y ~ B(0.8 f + 0.1)``; uninformative ``f`` at
   accuracy 0.05, 0.2, 0.5, 0.9; low accuracy with calibrated ``f ~ Beta(.5, 6)``;
   overconfident (``f`` about 0.05, accuracy 0.2). Printed: coverage / mean width.

The last line is one JSON object of the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import labels  # noqa: E402

import sentinel_core.intervals  # noqa: E402
from sentinel_core import active  # noqa: E402

GUARDS = (
    "half",
    "none",
    "half-no-lambda-df",
    "agresti-coull",
    "wilson-ratio",
    "wilson-ratio-raw",
    "wilson-kg",
)
POPULATIONS = (
    "calibrated",
    "miscalibrated",
    "flat-0.05",
    "flat-0.2",
    "flat-0.5",
    "flat-0.9",
    "low-calibrated",
    "overconfident",
)
BUDGETS = (5, 10, 20, 40)


def guarded(guard: str) -> Any:
    """``active_mean_interval`` with ``guard`` in place of the product's (same signature)."""

    def interval(
        p_correct: Any,
        pi: Any,
        labelled: Any,
        y_labelled: Any,
        *,
        lam: float | None = None,
        confidence: float = 0.9,
        pseudo_residuals: bool = True,
    ) -> active.ActiveEstimate:
        f, probabilities = np.asarray(p_correct, float), np.asarray(pi, float)
        index, y = np.asarray(labelled, dtype=np.int64), np.asarray(y_labelled, float)
        z = float(active._z(confidence))
        big_n, n = f.size, y.size
        known, unknown = float(y.sum()), big_n - n
        low_bound, high_bound = known / big_n, (known + unknown) / big_n
        if unknown == 0:
            exact = float(y.mean())
            return active.ActiveEstimate(exact, exact, exact, 0.0, 0.0, big_n, n, confidence)
        pi_l = probabilities[index]
        scale = n / (big_n * pi_l)
        a, b, c = scale * y, scale * f[index], 1.0 - pi_l
        weight = active._tuned_lambda(a, b, c) if lam is None else float(lam)
        zs = a - weight * b
        theta = float(weight * f.mean() + zs.mean())
        if guard == "agresti-coull":
            t = (min(max(theta, 0.0), 1.0) * n + z * z / 2) / (n + z * z)
            pseudo = math.sqrt(t * (1 - t))
        else:
            plain = guard in ("none", "wilson-ratio-raw") or not pseudo_residuals
            pseudo = 0.0 if plain else 0.5
        if pseudo > 0.0:
            zs = np.concatenate([zs, [pseudo, -pseudo]])
            c = np.concatenate([c, np.full(2, 1.0 - n / big_n)])
        spent = 1 if (lam is None and guard != "half-no-lambda-df") else 0
        denominator = n * max(zs.size - 1 - spent, 1)
        centre = float(np.sum(c * zs) / c.sum()) if c.sum() > 0 else 0.0
        variance = float(np.sum(c * (zs - centre) ** 2) / denominator) if c.sum() > 0 else 0.0
        se = math.sqrt(max(variance, 0.0))
        low, high = theta - z * se, theta + z * se
        if guard.startswith("wilson"):
            n_fpc = n * (big_n - 1) / max(big_n - n, 1)
            p_hat = min(max(theta, 0.0), 1.0)
            if guard.startswith("wilson-ratio"):
                # design effect against the same labels' classical (lambda = 0) variance
                same = "none" if guard.endswith("raw") else "half"
                base = guarded(same)(f, probabilities, index, y, lam=0.0, confidence=confidence)
                deff = variance / base.se**2 if base.se > 0 else 1.0
                n_eff = n_fpc / max(deff, 1e-12)
            else:  # wilson-kg: effective size p (1 - p) / var (Korn and Graubard)
                n_eff = p_hat * (1 - p_hat) / variance if 0 < p_hat < 1 and variance > 0 else n_fpc
            k = z * z / n_eff
            centre = (p_hat + k / 2) / (1 + k)
            half = z / (1 + k) * math.sqrt(p_hat * (1 - p_hat) / n_eff + k / (4 * n_eff))
            low, high = centre - half, centre + half
        low, high = np.clip([low, high], low_bound, high_bound)
        return active.ActiveEstimate(
            float(np.clip(theta, low_bound, high_bound)),
            float(low),
            float(high),
            se,
            weight,
            big_n,
            n,
            float(confidence),
        )

    return interval


def check_reproduces_the_product() -> None:
    """``half`` must be the product's interval exactly, or this study measures nothing."""
    rng = np.random.default_rng(0)
    for _ in range(50):
        f = rng.beta(0.5, 0.5, 200)
        y = (rng.random(200) < f).astype(float)
        pi = active.sampling_probabilities(f, 12, floor=0.2)
        take = active.draw_sample(pi, rng)
        mine = guarded("half")(f, pi, take, y[take])
        theirs = active.active_mean_interval(f, pi, take, y[take])
        assert np.allclose(
            [mine.estimate, mine.low, mine.high], [theirs.estimate, theirs.low, theirs.high]
        ), "the study's 'half' guard no longer matches sentinel_core.active"


def population(name: str, rng: np.random.Generator, size: int) -> tuple[Any, Any]:
    """One synthetic slice: ``(f, y)`` (module docstring)."""
    if name == "calibrated":
        f = rng.beta(0.5, 0.5, size)
        y = rng.random(size) < f
    elif name == "miscalibrated":
        f = rng.beta(0.5, 0.5, size)
        y = rng.random(size) < 0.8 * f + 0.1
    elif name.startswith("flat-"):
        f = rng.beta(2.0, 2.0, size)
        y = rng.random(size) < float(name.split("-")[1])
    elif name == "low-calibrated":
        f = rng.beta(0.5, 6.0, size)
        y = rng.random(size) < f
    else:  # overconfident
        f = np.clip(rng.normal(0.05, 0.02, size), 0.001, 1.0)
        y = rng.random(size) < 0.2
    return f, y.astype(np.float64)


def synthetic(guard: str, seeds: int) -> dict[str, Any]:
    interval = guarded(guard)
    out: dict[str, Any] = {}
    for design in ("uniform", "active"):
        for budget in BUDGETS:
            cells = []
            for name in POPULATIONS:
                covered, widths = [], []
                for seed in range(seeds):
                    rng = np.random.default_rng(seed)
                    f, y = population(name, rng, 300)
                    pi = (
                        np.full(f.size, budget / f.size)
                        if design == "uniform"
                        else active.sampling_probabilities(f, budget, floor=0.2)
                    )
                    take = active.draw_sample(pi, rng)
                    e = interval(f, pi, take, y[take], confidence=0.9)
                    covered.append(e.low <= y.mean() <= e.high)
                    widths.append(e.width)
                out[f"{design}/{budget}/{name}"] = [
                    round(float(np.mean(covered)), 3),
                    round(float(np.mean(widths)), 3),
                ]
                cells.append(f"{name} {np.mean(covered):.3f}/{np.mean(widths):.3f}")
            print(f"  synthetic {design:<7} n={budget:<2} " + "  ".join(cells), flush=True)
    worst = min(v[0] for k, v in out.items() if k.split("/")[1] != "5")
    print(f"  synthetic: lowest coverage from 10 labels {worst:.3f}")
    return out


def real(guard: str, seeds: int, corpus: str, partitions: int = 25) -> dict[str, Any]:
    interval = guarded(guard)
    records: list[tuple[int, float, bool]] = []
    campaign = labels.project_campaign

    def recording(ps: Any, ys: Any, n_labels: int, args: Any, seed: int) -> Any:
        estimates = campaign(ps, ys, n_labels, args, seed)
        for e, y in zip(estimates, ys, strict=True):
            truth = float(np.mean(y))
            records.append((n_labels // len(ps), truth, e.low <= truth <= e.high))
        return estimates

    saved = (sentinel_core.intervals.active_mean_interval, labels.active_mean_interval)
    sentinel_core.intervals.active_mean_interval = interval
    labels.active_mean_interval = interval
    labels.project_campaign = recording
    try:
        args = argparse.Namespace(
            seeds=seeds, partitions=partitions, slices_per_group=2, methods="default",
            audit_share=0.2, floor=0.2, corpus=corpus, ablation=False, quick=False,
            pin_cut=True,
        )  # fmt: skip
        with contextlib.redirect_stdout(io.StringIO()):
            result = labels.run(args)
    finally:
        sentinel_core.intervals.active_mean_interval, labels.active_mean_interval = saved
        labels.project_campaign = campaign
    figures = result["methods"]["default"]["active"]
    for budget in BUDGETS:
        cell = figures[str(budget)]
        print(
            f"  real {corpus} active n={budget:<2} coverage {cell['coverage']:.3f} "
            f"width {cell['mean_width']:.3f} saving {cell['label_saving']:.1%}"
        )
    table = np.array(records)
    by_truth = {}
    for budget in (10, 20):
        rows = table[table[:, 0] == budget]
        edges = [0.0, 0.1, 0.2, 0.35, 0.5, 0.7, 1.01]
        cells = []
        for low, high in itertools.pairwise(edges):
            inside = (rows[:, 1] >= low) & (rows[:, 1] < high)
            coverage = float(rows[inside, 2].mean()) if inside.any() else float("nan")
            by_truth[f"{budget}/{low:.2f}-{min(high, 1.0):.2f}"] = round(coverage, 3)
            cells.append(f"[{low:.2f},{min(high, 1.0):.2f}) {coverage:.3f}")
        print(f"  real active n={budget} coverage by true accuracy: " + "  ".join(cells))
    return {"active": figures, "coverage_by_truth": by_truth}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seeds", type=int, default=300, help="campaigns replayed per guard")
    parser.add_argument(
        "--synthetic-seeds", type=int, default=1000, help="per synthetic cell; 0 skips them"
    )
    parser.add_argument("--corpus", choices=sorted(labels.CORPORA), default="qwen1.5b")
    parser.add_argument("--partitions", type=int, default=25, help="benchmark groupings")
    parser.add_argument("--guards", default=",".join(GUARDS))
    args = parser.parse_args()
    guards = args.guards.split(",")
    unknown = sorted(set(guards) - set(GUARDS))
    if args.seeds < 1 or args.synthetic_seeds < 0 or args.partitions < 1:
        parser.error(
            f"expected --seeds >= 1, --synthetic-seeds >= 0, --partitions >= 1, got "
            f"{args.seeds}, {args.synthetic_seeds}, {args.partitions}"
        )
    if unknown:
        parser.error(f"expected guards among {', '.join(GUARDS)}, got {', '.join(unknown)}")
    check_reproduces_the_product()
    out: dict[str, Any] = {}
    for guard in guards:
        print(f"== guard {guard}", flush=True)
        out[guard] = {"real": real(guard, args.seeds, args.corpus, args.partitions)}
        if args.synthetic_seeds > 0:
            out[guard]["synthetic"] = synthetic(guard, args.synthetic_seeds)
    print(json.dumps(out, sort_keys=True))


if __name__ == "__main__":
    main()
