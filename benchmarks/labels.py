"""What a label buys: random, PPI++ and active campaigns replayed on the real corpus.

    .venv/bin/python benchmarks/labels.py [--seeds 500] [--partitions 25] [--quick]
        [--methods lr_11d,atc_H_max] [--audit-share 0.2] [--floor 0.2]
        [--corpus qwen1.5b|qwen0.5b|all] [--no-pin-cut]

Data (``--corpus``): the shipped real traces of Qwen2.5-Coder-1.5B (corpus-dev +
corpus-collected + corpus-qwen2.5-coder-1.5b-extra: 840 responses, 60 on each of 14
benchmarks, the default), of Qwen2.5-Coder-0.5B (840, the same prompts) or all 1,680,
labels from the datasheet's exact verifier, featurised with
``sentinel_core.features.scores_from_flat`` (the function ingest calls).

P(correct), never in-sample: the 14 benchmarks are split at random into four groups
(4, 4, 3, 3; ``--partitions`` such splits); for each group the estimator
(``make_estimator(method, search=False)``) is trained on the other three groups'
benchmarks and predicts the group's traces. A campaign (one seed) uses one split:
every group yields ``--slices-per-group`` slices, each a mixture of 1-3 of the
group's benchmarks (Dirichlet(1) weights) of N ~ U{150..450} traces resampled with
replacement from their real responses (as ``scripts/simulate_month.py`` builds its
routes), so no slice is ever scored by a model that saw its benchmarks. A slice's
truth is the mean label of its N traces (the accuracy of that traffic).

Designs, at budgets of 5, 10, 20 and 40 labels per slice (the campaign's total is
budget x slices):

- ``random+classical``: budget labels drawn uniformly without replacement in every
  slice; the labels' mean with the Wilson interval (effective size n (N-1) / (N-n),
  the finite-population correction);
- ``random+ppi++``: the same labels; :func:`sentinel_core.active.active_mean_interval`
  with equal inclusion probabilities (PPI++ with the finite-population variance);
- ``active``: the project's campaign, through its own code path: planned by
  ``sentinel_core.acquisition.plan(design="active")`` (what ``sentinel campaign
  plan`` and the nightly acquire flow run): an audit share spread uniformly over all
  traces, the rest across slices where it narrows the predicted intervals most
  (``active.allocate_labels``), drawn within a slice with
  probabilities that grow with ``sqrt(p (1 - p))`` (randomised systematic sampling);
  estimated by ``sentinel_core.slices.estimate_slices_with_labels`` with the
  inclusion probabilities the plan stored (inverse-probability-weighted PPI++, the
  ``active`` method of ``sentinel estimate``).

Responses cut at ``max_tokens`` (``finish_reason == "length"``) have no final answer
unless they boxed one before the cut (1 of the first model's 265 is correct). As the
product does (``AnchoredEstimator.cut_p_``, ``estimator.pinned_for``), the default pins
them at the share of correct among the training groups' cut responses (add-half
smoothed, never in-sample) and anchors the others around them, so the slice's mean P
is still ATC's share; ``--no-pin-cut`` replays the default without the pins (what it
did before). The other methods are never pinned, as in the product.

Printed per estimator method, design and budget: median |estimate - truth| over all
slices of all seeds, coverage of the nominal 90% intervals, mean width, and the
labels per slice random+classical needs for the same mean width (interpolated on its
width curve over 2..200 labels per slice) with the saving that makes, and (last
column) the labels it needs for the same median |error|. The last line is one JSON
object of the figures. About a minute on 2 shared cores at the defaults.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from scipy import stats
from sklearn.metrics import roc_auc_score

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sentinel_core.acquisition import plan  # noqa: E402
from sentinel_core.active import (  # noqa: E402
    active_mean_interval,
    allocate_labels,
    campaign_probabilities,
    draw_sample,
    predicted_residual_sd,
    sampling_probabilities,
)
from sentinel_core.anchoring import anchor_slice, anchor_to_slices  # noqa: E402
from sentinel_core.estimator import make_estimator, score_parts  # noqa: E402
from sentinel_core.features import FEATURE_NAMES, scores_from_flat  # noqa: E402
from sentinel_core.slices import SliceEstimate, estimate_slices_with_labels  # noqa: E402
from sentinel_core.traces import cut_flags  # noqa: E402

#: --corpus: which shipped real traces (sentinel_core/data/DATASHEET.md).
CORPORA = {
    "qwen1.5b": ("corpus-dev", "corpus-collected", "corpus-qwen2.5-coder-1.5b-extra"),
    "qwen0.5b": ("corpus-qwen2.5-coder-0.5b",),
    "all": (
        "corpus-dev",
        "corpus-collected",
        "corpus-qwen2.5-coder-1.5b-extra",
        "corpus-qwen2.5-coder-0.5b",
    ),
}
BUDGETS = (5, 10, 20, 40)
GROUP_SIZES = (4, 4, 3, 3)
DESIGNS = ("random+classical", "random+ppi++", "active")
#: With --ablation: the active campaign's two halves apart (equal labels per slice with
#: uncertainty sampling; the allocation across slices with uniform sampling inside).
ABLATIONS = ("uncertainty-only", "neyman-only")
CLASSICAL_GRID = np.arange(2, 201)
CONFIDENCE = 0.9
TARGET_SAVING, TARGET_COVERAGE, TARGET_FROM = 0.30, 0.88, 10


@dataclass(frozen=True)
class Corpus:
    X: np.ndarray  # (n, 11) entropy profile
    y: np.ndarray  # (n,) 0/1 labels
    benchmark: np.ndarray  # (n,) benchmark names
    cut: np.ndarray  # (n,) bool, finish_reason == "length" (cut at max_tokens)


@dataclass(frozen=True)
class Split:
    groups: list[list[str]]
    p: dict[str, np.ndarray]  # method -> (n,) leave-group-out P(correct)
    #: method -> (n,) ATC votes for the default (anchored per campaign slice), else None
    votes: dict[str, np.ndarray | None]
    #: (n,) P(correct) of a cut response, from the other groups' cut responses
    cut_p: np.ndarray

    def slice_p(self, method: str, rows: np.ndarray, cut: np.ndarray | None = None) -> np.ndarray:
        """P(correct) of one campaign slice's rows: the default anchored on the slice, its
        responses cut at max_tokens (``cut``, the slice's rows) pinned at ``cut_p`` as
        ``estimator.pinned_for`` pins them; the other methods' P as predicted."""
        votes = self.votes[method]
        if votes is None:
            return self.p[method][rows]
        pinned = None if cut is None else np.where(cut, self.cut_p[rows], np.nan)
        return anchor_slice(self.p[method][rows], float(votes[rows].mean()), pinned)


def load_corpus(choice: str) -> Corpus:
    """The chosen shipped real traces: their 11-d profile, label and benchmark."""
    data = resources.files("sentinel_core") / "data"
    X, y, bench, cut = [], [], [], []
    for name in CORPORA[choice]:
        with (data / f"{name}.npz").open("rb") as handle, np.load(handle) as arrays:
            top = arrays["top"].astype(np.float32)
            chosen = arrays["chosen"].astype(np.float32)
            lengths = arrays["lengths"].astype(np.int64)
        X.append(scores_from_flat(top, chosen, lengths)[:, : len(FEATURE_NAMES)])
        for line in (data / f"{name}.jsonl").read_bytes().splitlines():
            meta = orjson.loads(line)
            y.append(int(meta["label"]))
            bench.append(meta["metadata"]["benchmark"])
            cut.append(meta.get("finish_reason"))
    return Corpus(np.vstack(X), np.array(y), np.array(bench), cut_flags(cut))


def make_splits(corpus: Corpus, methods: list[str], count: int, seed: int) -> list[Split]:
    """Random groupings of the benchmarks; P(correct) of each group from the others."""
    rng = np.random.default_rng(seed)
    names = sorted(set(corpus.benchmark.tolist()))
    splits = []
    for k in range(count):
        order = [names[i] for i in rng.permutation(len(names))]
        cuts = np.cumsum((0, *GROUP_SIZES))
        groups = [order[a:b] for a, b in itertools.pairwise(cuts)]
        p: dict[str, np.ndarray] = {}
        votes: dict[str, np.ndarray | None] = {}
        cut_p = np.empty(corpus.y.size)
        for group in groups:
            test = np.isin(corpus.benchmark, group)
            known = ~test & corpus.cut
            cut_p[test] = (corpus.y[known].sum() + 0.5) / (known.sum() + 1.0)
        for method in methods:
            out, voted = np.empty(corpus.y.size), np.empty(corpus.y.size)
            for group in groups:
                test = np.isin(corpus.benchmark, group)
                model = make_estimator(method, search=False, random_state=k)
                model.fit(corpus.X[~test], corpus.y[~test])
                out[test], part = score_parts(model, corpus.X[test])
                voted[test] = np.nan if part is None else part
            p[method] = out
            votes[method] = None if np.isnan(voted).any() else voted
        splits.append(Split(groups, p, votes, cut_p))
    return splits


def make_slices(
    corpus: Corpus, split: Split, per_group: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """Indices (into the corpus, with repeats) of every slice of one campaign."""
    slices = []
    for group in split.groups:
        for _ in range(per_group):
            k = int(rng.integers(1, min(3, len(group)) + 1))
            chosen = rng.choice(group, size=k, replace=False)
            mix = rng.dirichlet(np.ones(k))
            size = int(rng.integers(150, 451))
            counts = rng.multinomial(size, mix)
            parts = [
                rng.choice(np.flatnonzero(corpus.benchmark == b), size=c, replace=True)
                for b, c in zip(chosen, counts, strict=True)
            ]
            slices.append(np.concatenate(parts))
    return slices


def wilson(successes: np.ndarray, n: np.ndarray, big_n: int, z: float) -> tuple[Any, Any, Any]:
    """Labels' mean with the Wilson interval at effective size n (N-1)/(N-n), vectorised."""
    p_hat = successes / n
    n_eff = np.where(n < big_n, n * (big_n - 1) / np.maximum(big_n - n, 1), 1e12)
    denominator = 1.0 + z**2 / n_eff
    centre = (p_hat + z**2 / (2 * n_eff)) / denominator
    half = z / denominator * np.sqrt(p_hat * (1 - p_hat) / n_eff + z**2 / (4 * n_eff**2))
    return p_hat, np.clip(centre - half, 0, 1), np.clip(centre + half, 0, 1)


def run(args: argparse.Namespace) -> dict[str, Any]:
    z = float(stats.norm.ppf(0.5 + CONFIDENCE / 2))
    corpus = load_corpus(args.corpus)
    methods = args.methods.split(",")
    t0 = time.perf_counter()
    splits = make_splits(corpus, methods, args.partitions, seed=12345)
    fit_s = time.perf_counter() - t0
    print(
        f"corpus {args.corpus}: {corpus.y.size} real traces, {len(set(corpus.benchmark.tolist()))} "
        f"benchmarks, accuracy {corpus.y.mean():.3f}; {args.partitions} leave-group-out "
        f"splits fitted in {fit_s:.1f} s"
    )
    for method in methods:
        # Per benchmark (the default anchored on each benchmark's ATC share).
        pooled = np.concatenate([
            s.p[method] if s.votes[method] is None
            else anchor_to_slices(
                s.p[method],
                s.votes[method],
                corpus.benchmark,
                np.where(corpus.cut, s.cut_p, np.nan) if args.pin_cut else None,
            )
            for s in splits
        ])  # fmt: skip
        truth = np.tile(corpus.y, len(splits))
        print(
            f"  {method}: held-out AUROC {roc_auc_score(truth, pooled):.3f}, Brier "
            f"{np.mean((pooled - truth) ** 2):.3f}, distinct P(correct) "
            f"{np.unique(pooled.round(4)).size}, mean sqrt(p(1-p)) "
            f"{np.mean(np.sqrt(pooled * (1 - pooled))):.3f}"
        )
    designs = DESIGNS + (ABLATIONS if args.ablation else ())
    # rows[method][design][budget] -> lists of (error, covered, width)
    rows: dict[str, dict[str, dict[int, list[tuple[float, bool, float]]]]] = {
        m: {d: {b: [] for b in BUDGETS} for d in designs} for m in methods
    }
    curve = np.zeros(CLASSICAL_GRID.size)  # summed classical widths per grid budget
    curve_count = 0
    curve_errors: list[np.ndarray] = []  # classical |error| per slice, per grid budget
    within_r2: dict[str, list[float]] = {m: [] for m in methods}
    for seed in range(args.seeds):
        rng = np.random.default_rng(seed)
        split = splits[seed % len(splits)]
        slices = make_slices(corpus, split, args.slices_per_group, rng)
        sizes = np.array([s.size for s in slices], dtype=np.int64)
        ys = [corpus.y[s].astype(np.float64) for s in slices]
        truths = [float(y.mean()) for y in ys]
        orders = [rng.permutation(s.size) for s in slices]
        # The classical width curve over many budgets, nested samples per slice.
        for y, order, big_n in zip(ys, orders, sizes, strict=True):
            grid = np.minimum(CLASSICAL_GRID, big_n)
            hits = np.cumsum(y[order])[grid - 1]
            mean, low, high = wilson(hits, grid.astype(np.float64), int(big_n), z)
            curve += high - low
            curve_errors.append(np.abs(mean - y.mean()))
            curve_count += 1
        for budget in BUDGETS:
            for y, order, truth, big_n in zip(ys, orders, truths, sizes, strict=True):
                take = order[:budget]
                est, low, high = wilson(
                    np.array([y[take].sum()]), np.array([float(budget)]), int(big_n), z
                )
                for method in methods:
                    rows[method]["random+classical"][budget].append(
                        (
                            abs(float(est[0]) - truth),
                            bool(low[0] <= truth <= high[0]),
                            float(high[0] - low[0]),
                        )
                    )
        for method in methods:
            ps = [split.slice_p(method, s, corpus.cut[s] if args.pin_cut else None) for s in slices]
            for p, y in zip(ps, ys, strict=True):
                if np.std(y) > 0 and np.std(p) > 0:
                    within_r2[method].append(float(np.corrcoef(p, y)[0, 1] ** 2))
            sds = np.array([predicted_residual_sd(p) for p in ps])
            for budget in BUDGETS:
                # Random labels, PPI++ with equal inclusion probabilities.
                for p, y, order, truth in zip(ps, ys, orders, truths, strict=True):
                    take = np.sort(order[:budget])
                    pi = np.full(p.size, budget / p.size)
                    e = active_mean_interval(p, pi, take, y[take], confidence=CONFIDENCE)
                    rows[method]["random+ppi++"][budget].append(
                        (abs(e.estimate - truth), e.low <= truth <= e.high, e.width)
                    )
                # The active campaign, through the project's own code path: the plan
                # of `sentinel campaign plan --design active` and the estimate of
                # `sentinel estimate` with the inclusion probabilities it stored.
                estimates = project_campaign(ps, ys, budget * len(slices), args, seed)
                for e, truth in zip(estimates, truths, strict=True):
                    rows[method]["active"][budget].append(
                        (abs(e.accuracy - truth), e.low <= truth <= e.high, e.high - e.low)
                    )
                plan = allocate_labels(
                    sizes, sds, budget * len(slices), audit_share=args.audit_share
                )
                for i, (p, y, truth) in enumerate(zip(ps, ys, truths, strict=True)):
                    if args.ablation:
                        uniform = campaign_probabilities(
                            p, int(plan.audit[i]), int(plan.neyman[i]), floor=1.0
                        )
                        take = draw_sample(uniform, rng)
                        e = active_mean_interval(p, uniform, take, y[take], confidence=CONFIDENCE)
                        rows[method]["neyman-only"][budget].append(
                            (abs(e.estimate - truth), e.low <= truth <= e.high, e.width)
                        )
                        pi = sampling_probabilities(p, budget, floor=args.floor)
                        take = draw_sample(pi, rng)
                        e = active_mean_interval(p, pi, take, y[take], confidence=CONFIDENCE)
                        rows[method]["uncertainty-only"][budget].append(
                            (abs(e.estimate - truth), e.low <= truth <= e.high, e.width)
                        )
    mean_curve = curve / curve_count
    error_curve = np.median(np.array(curve_errors), axis=0)
    return summarise(args, rows, mean_curve, error_curve, within_r2, time.perf_counter() - t0)


def project_campaign(
    ps: list[np.ndarray], ys: list[np.ndarray], n_labels: int, args: argparse.Namespace, seed: int
) -> list[SliceEstimate]:
    """One campaign planned by ``acquisition.plan`` (active design) and estimated by
    ``slices.estimate_slices_with_labels`` with the stored ``pi``; one estimate per slice,
    in the slices' order."""
    names = [f"s{i:02d}" for i in range(len(ps))]
    keys = np.concatenate([[n] * p.size for n, p in zip(names, ps, strict=True)])
    p_all, y_all = np.concatenate(ps), np.concatenate(ys)
    ids = np.array([f"t{i}" for i in range(p_all.size)])
    current = [
        SliceEstimate(n, p.size, float(p.mean()), 0.0, 1.0, "bootstrap", False)
        for n, p in zip(names, ps, strict=True)
    ]
    the_plan = plan(
        current, ids, keys, p_all, np.zeros(p_all.size, dtype=bool), by="slice",
        budget=float(n_labels), unit="labels", cost_per_label=0.0, design="active",
        audit_share=args.audit_share, floor=args.floor, seed=seed,
    )  # fmt: skip
    labels, pi, population = (np.full(p_all.size, np.nan) for _ in range(3))
    for item in the_plan.items:
        row = int(item.trace_id[1:])
        labels[row], pi[row], population[row] = y_all[row], item.pi, item.population
    estimates = estimate_slices_with_labels(
        p_all, keys, labels, confidence=CONFIDENCE, inclusion=pi, population=population
    )
    by_name = {e.slice: e for e in estimates}
    assert all(by_name[n].method == "active" for n in names), "every slice is estimated as active"
    return [by_name[n] for n in names]


def labels_for(value: float, curve: np.ndarray) -> float:
    """Labels per slice random+classical needs to bring ``curve`` down to ``value``.

    ``curve`` is its mean width (or median |error|) over ``CLASSICAL_GRID``; log-log
    interpolation, made monotone (a running minimum) against Monte Carlo wiggles.
    """
    monotone = np.minimum.accumulate(curve)
    if value >= monotone[0]:
        return float(CLASSICAL_GRID[0])
    if value <= monotone[-1]:
        return float("inf")
    first = int(np.argmax(monotone <= value))  # first grid budget at or below value
    x0, x1 = np.log(CLASSICAL_GRID[first - 1 : first + 1].astype(np.float64))
    y0, y1 = np.log(monotone[first - 1 : first + 1])
    t = 0.0 if y0 == y1 else (np.log(value) - y0) / (y1 - y0)
    return float(np.exp(x0 + t * (x1 - x0)))


def summarise(
    args: argparse.Namespace,
    rows: dict[str, dict[str, dict[int, list[tuple[float, bool, float]]]]],
    mean_curve: np.ndarray,
    error_curve: np.ndarray,
    within_r2: dict[str, list[float]],
    seconds: float,
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "seeds": args.seeds,
        "partitions": args.partitions,
        "slices_per_campaign": 4 * args.slices_per_group,
        "audit_share": args.audit_share,
        "floor": args.floor,
        "pin_cut": args.pin_cut,
        "confidence": CONFIDENCE,
        "seconds": round(seconds, 1),
        "methods": {},
    }
    header = (
        f"{'design':<17} {'labels/slice':>12} {'median|err|':>11} {'coverage':>8} "
        f"{'mean width':>10} {'classical needs':>15} {'saving':>7} {'same |err|':>10}"
    )
    for method, designs in rows.items():
        r2 = within_r2[method]
        print(
            f"\n== P(correct) from {method}{'' if args.pin_cut else ', cut not pinned'} "
            f"(leave-benchmarks-out); within-slice "
            f"corr(p, y)^2 median {np.median(r2):.3f}, mean {np.mean(r2):.3f} =="
        )
        print(header)
        figures: dict[str, Any] = {}
        for design, per_budget in designs.items():
            figures[design] = {}
            for budget, items in per_budget.items():
                err = np.array([i[0] for i in items])
                cov = np.array([i[1] for i in items])
                wid = np.array([i[2] for i in items])
                need = labels_for(float(wid.mean()), mean_curve)
                saving = 1.0 - budget / need
                need_error = labels_for(float(np.median(err)), error_curve)
                figures[design][str(budget)] = {
                    "median_abs_error": round(float(np.median(err)), 4),
                    "coverage": round(float(cov.mean()), 4),
                    "mean_width": round(float(wid.mean()), 4),
                    "classical_labels_same_width": round(need, 2),
                    "label_saving": round(saving, 4),
                    "classical_labels_same_median_error": round(need_error, 2),
                }
                print(
                    f"{design:<17} {budget:>12} {np.median(err):>11.3f} {cov.mean():>8.3f} "
                    f"{wid.mean():>10.3f} {need:>15.1f} {saving:>7.1%} {need_error:>10.1f}"
                )
        active = figures["active"]
        met = all(
            active[str(b)]["label_saving"] >= TARGET_SAVING
            and active[str(b)]["coverage"] >= TARGET_COVERAGE
            for b in BUDGETS
            if b >= TARGET_FROM
        )
        figures["target_met"] = met
        figures["within_slice_r2_median"] = round(float(np.median(r2)), 4)
        out["methods"][method] = figures
        print(
            f"target (active: >= {TARGET_SAVING:.0%} fewer labels than random+classical "
            f"for the same mean width, coverage >= {TARGET_COVERAGE}, every budget from "
            f"{TARGET_FROM}): {'met' if met else 'NOT met'}"
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=500, help="campaigns replayed")
    parser.add_argument("--partitions", type=int, default=25, help="benchmark groupings")
    parser.add_argument("--slices-per-group", type=int, default=2)
    parser.add_argument("--methods", default="default,lr_11d,atc_H_max")
    parser.add_argument("--audit-share", type=float, default=0.2)
    parser.add_argument("--floor", type=float, default=0.2)
    parser.add_argument(
        "--corpus",
        choices=sorted(CORPORA),
        default="qwen1.5b",
        help="shipped traces: qwen1.5b (840), qwen0.5b (840) or all",
    )
    parser.add_argument(
        "--ablation", action="store_true", help="also the active campaign's halves apart"
    )
    parser.add_argument("--quick", action="store_true", help="100 seeds, 10 partitions")
    parser.add_argument(
        "--no-pin-cut",
        dest="pin_cut",
        action="store_false",
        help="the default without pinning responses cut at max_tokens (as before)",
    )
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.partitions = min(args.seeds, 100), min(args.partitions, 10)
    result = run(args)
    print(json.dumps(result, sort_keys=True))


if __name__ == "__main__":
    main()
