"""Regenerate docs/results.md and its plots from the shipped real traces, in one command.

    .venv/bin/python scripts/results.py [--max-g 4] [--tidy tidy.csv]

Builds a throw-away store from the shipped real traces (corpus-dev and
corpus-collected; ingest, exact verifier),
runs the group protocol by benchmark (or reads a tidy CSV that `sentinel
evaluate --out` wrote), and writes:

* docs/results/summary.csv: median/IQR AEE, median rho, floor per method and g;
* docs/results/aee_by_g.png: median AEE against g per method;
* docs/results/estimated_vs_true.png: per benchmark, mean estimate over the
  g = max-g groups that held it out, against its true accuracy (paper's Fig. 1);
* docs/results/reliability.png: leave-one-benchmark-out reliability diagram of the
  default (soft ATC on H_max) beside lr_11d;
* docs/results.md: the tables, the Extremes vs Intermediate comparison, and
  AUROC / ECE per benchmark.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from labeling.exact import label_store  # noqa: E402
from sentinel_core.corpus import iter_sample_records  # noqa: E402
from sentinel_core.estimator import (  # noqa: E402
    DEFAULT_METHOD,
    EntropyEstimator,
    fit_estimator,
    make_estimator,
)
from sentinel_core.features import ALL_SCORE_NAMES, FEATURE_NAMES, FEATURE_SET_VERSION  # noqa: E402
from sentinel_core.ingest import ingest_records  # noqa: E402
from sentinel_core.intervals import INTERVAL_RULES, loso_residuals, slice_interval  # noqa: E402
from sentinel_core.metrics import accuracy_floor, auroc, ece  # noqa: E402
from sentinel_core.protocol import (  # noqa: E402
    default_methods,
    run_group_protocol,
    summarise_protocol,
)
from sentinel_core.store import load_scores, open_store, slice_values  # noqa: E402

DOCS = ROOT / "docs"
OUT = DOCS / "results"
#: Shown in the main table; "default" is DEFAULT_METHOD (soft ATC on H_max), run once.
SHOWN = [
    "default",
    "atc_H_max",
    "atc_seq_loglik",
    "atc_H_sea",
    "soft_atc_H_sea",
    "lr_11d",
    "rf_11d",
    "mlp_11d",
    "null_train_mean",
    "doc_mean_max_prob",
]
#: Methods whose label-free intervals are measured: the cheap ones (ATC, soft ATC, the
#: nulls) and lr_11d, the paper's classifier.
WITH_INTERVALS = [m for m in SHOWN if m not in ("rf_11d", "mlp_11d")]
#: The issue's target for the default's label-free intervals at nominal 0.90.
TARGET_COVERAGE, TARGET_WIDTH = 0.88, 0.35
PAPER = {"atc_H_max": 0.077, "classifier (11-d)": 0.128}
#: The shipped real corpora: the shared dev sample and what this project collected.
CORPORA = ("corpus-dev", "corpus-collected")


def labelled_frame() -> pd.DataFrame:
    """The shipped sample in a fresh SQLite store, labelled by the exact verifier."""
    tmp = Path(tempfile.mkdtemp(prefix="sentinel-results-"))
    engine = open_store(f"sqlite:///{tmp / 'store.db'}")
    for name in CORPORA:
        ingest_records(engine, (r for r, _ in iter_sample_records(name)), source=f"sample:{name}")
    label_store(engine)
    frame = load_scores(engine, feature_set=FEATURE_SET_VERSION, names=ALL_SCORE_NAMES)
    frame["slice"] = slice_values(frame["metadata"], "benchmark")
    return frame[frame["label"].notna()].reset_index(drop=True)


def extremes_vs_intermediate(frame: pd.DataFrame, tidy: pd.DataFrame) -> pd.DataFrame:
    """AEE of training on easiest+hardest vs two middle benchmarks, on the same held-out slices."""
    accuracy = frame.groupby("slice")["label"].mean().sort_values(kind="stable")
    names = list(accuracy.index)
    extremes = sorted([names[0], names[-1]])
    mid = len(names) // 2
    intermediate = sorted([names[mid - 1], names[mid]])
    held_out = set(names) - set(extremes) - set(intermediate)
    rows = []
    for label, group in (("Extremes", extremes), ("Intermediate", intermediate)):
        part = tidy[(tidy["g"] == 2) & (tidy["group"] == "+".join(group))]
        part = part[part["slice"].isin(held_out)]
        for method, sub in part.groupby("method"):
            rows.append(
                {
                    "supervision": label,
                    "group": " + ".join(f"{n} ({accuracy[n]:.2f})" for n in group),
                    "method": method,
                    "aee": float((sub["estimate"] - sub["truth"]).abs().mean()),
                }
            )
    return pd.DataFrame(rows, columns=["supervision", "group", "method", "aee"])


def leave_one_benchmark_out(frame: pd.DataFrame, method: str) -> np.ndarray:
    """P(correct) of every trace from ``method`` trained on the other benchmarks.

    ``lr_11d`` as in the protocol's final runs (3 calibration folds); any other servable
    method (the default) through ``fit_estimator`` with the training benchmarks as
    groups, as ``sentinel train`` fits it.
    """
    probs = np.empty(len(frame))
    X = frame[list(FEATURE_NAMES)].to_numpy()
    y = frame["label"].to_numpy().astype(int)
    slices = frame["slice"].to_numpy().astype(str)
    for name in sorted(frame["slice"].unique()):
        test = slices == name
        if method == "lr_11d":
            model = EntropyEstimator(search=False, cv=3).fit(X[~test], y[~test])
        else:
            model = fit_estimator(
                make_estimator(method, search=False), X[~test], y[~test], groups=slices[~test]
            )
        probs[test] = model.predict_correct_proba(X[test])
    return probs


def served_intervals(frame: pd.DataFrame, confidence: float = 0.9) -> pd.DataFrame:
    """The default's intervals on each benchmark with every other one in training.

    What `sentinel train` on all shipped benchmarks but one, then `sentinel estimate` on
    the new one, would serve (g = B - 1): per held-out benchmark, the default fitted on
    the other B - 1, its LOSO residuals over them, and each rule's interval.
    """
    X = frame[list(FEATURE_NAMES)].to_numpy(np.float64)
    y = frame["label"].to_numpy().astype(np.float64)
    slices = frame["slice"].to_numpy().astype(str)

    def predict(X_tr: np.ndarray, y_tr: np.ndarray, X_te: np.ndarray, g_tr: np.ndarray):
        model = fit_estimator(make_estimator("default", search=False), X_tr, y_tr, groups=g_tr)
        return model.predict_correct_proba(X_te)

    rng = np.random.default_rng(0)
    rows = []
    for name in sorted(set(slices)):
        test = slices == name
        p = predict(X[~test], y[~test], X[test], slices[~test])
        residuals = loso_residuals(predict, X[~test], y[~test], slices[~test])
        row: dict[str, object] = {
            "benchmark": name,
            "truth": float(y[test].mean()),
            "estimate": float(p.mean()),
        }
        for rule in INTERVAL_RULES:
            low, high = slice_interval(rule, p, residuals, confidence=confidence, rng=rng)
            row[f"{rule}"] = f"[{low:.2f}, {high:.2f}]"
            row[f"covered_{rule}"] = bool(low <= row["truth"] <= high)
            row[f"width_{rule}"] = high - low
        rows.append(row)
    return pd.DataFrame(rows)


def per_benchmark_quality(
    frame: pd.DataFrame, probs: np.ndarray, default_probs: np.ndarray
) -> pd.DataFrame:
    """Per held-out benchmark, then pooled ("all"): AUROC and ECE of both estimators."""
    rows = []
    parts = list(frame.assign(p=probs, q=default_probs).groupby("slice"))
    parts.append(("all", frame.assign(p=probs, q=default_probs)))
    for name, sub in parts:
        y = sub["label"].to_numpy()
        rows.append(
            {
                "benchmark": name,
                "n": len(sub),
                "accuracy": y.mean(),
                "auroc_default": auroc(sub["q"], y),
                "auroc_lr_11d": auroc(sub["p"], y),
                "auroc_neg_H_max": auroc(1 / (1 + np.exp(sub["H_max"].to_numpy())), y),
                "ece_default": ece(sub["q"], y),
                "ece_lr_11d": ece(sub["p"], y),
            }
        )
    return pd.DataFrame(rows)


def plot_aee_by_g(summary: pd.DataFrame) -> None:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for method in SHOWN:
        part = summary[summary["method"] == method]
        ax.plot(part["g"], part["median_aee"], marker="o", label=method)
    floor = summary.groupby("g")["floor"].mean()
    ax.plot(floor.index, floor.values, "k--", label="floor (perfect estimator)")
    ax.set_xlabel("g (benchmarks in the training group)")
    ax.set_ylabel("median AEE over groups")
    ax.set_title("Accuracy estimation error against supervision size (real traces)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(OUT / "aee_by_g.png", dpi=110)
    plt.close(fig)


def plot_estimated_vs_true(tidy: pd.DataFrame, g: int) -> None:
    fig, ax = plt.subplots(figsize=(5.5, 5.5))
    for method in ("default", "lr_11d"):
        part = tidy[(tidy["g"] == g) & (tidy["method"] == method)]
        mean = part.groupby("slice")[["estimate", "truth"]].mean()
        ax.scatter(mean["truth"], mean["estimate"], label=method)
        if method == "default":
            for name, row in mean.iterrows():
                ax.annotate(str(name), (row["truth"], row["estimate"]), fontsize=7)
    ax.plot([0, 1], [0, 1], "k:")
    ax.set_xlabel("true accuracy")
    ax.set_ylabel(f"estimated accuracy (mean over g = {g} groups)")
    ax.set_title("Estimated vs true accuracy per benchmark")
    ax.legend()
    fig.tight_layout()
    fig.savefig(OUT / "estimated_vs_true.png", dpi=110)
    plt.close(fig)


def reliability_bins(probs: np.ndarray, y: np.ndarray) -> pd.DataFrame:
    """Ten equal-width bins of P(correct): mean P, observed accuracy, responses (non-empty)."""
    index = np.clip((probs * 10).astype(int), 0, 9)
    rows = [
        {"mean_p": probs[index == b].mean(), "observed": y[index == b].mean(), "n": int(n)}
        for b, n in enumerate(np.bincount(index, minlength=10))
        if n
    ]
    return pd.DataFrame(rows, columns=["mean_p", "observed", "n"])


def plot_reliability(curves: dict[str, np.ndarray], y: np.ndarray) -> None:
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.plot([0, 1], [0, 1], "k:")
    for label, probs in curves.items():
        bins = reliability_bins(probs, y)
        ax.plot(bins["mean_p"], bins["observed"], marker="o", label=label)
        for row in bins.itertuples(index=False):
            ax.annotate(str(row.n), (row.mean_p, row.observed), fontsize=7)
    ax.set_xlabel("predicted P(correct), leave one benchmark out")
    ax.set_ylabel("observed accuracy")
    ax.set_title("Reliability diagram (numbers: responses per bin)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(OUT / "reliability.png", dpi=110)
    plt.close(fig)


def markdown_table(frame: pd.DataFrame, digits: int = 3) -> str:
    header = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "---|" * len(frame.columns)
    lines = [header, rule]
    for row in frame.itertuples(index=False):
        cells = [f"{v:.{digits}f}" if isinstance(v, float) else str(v) for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-g", type=int, default=4)
    parser.add_argument("--tidy", type=Path, help="tidy CSV from `sentinel evaluate --out`")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    frame = labelled_frame()
    if args.tidy is not None:
        tidy = pd.read_csv(args.tidy)
        tidy = tidy[tidy["g"] <= args.max_g]
    else:
        methods = [*default_methods(), "soft_atc_H_sea"]
        tidy = run_group_protocol(
            frame[list(ALL_SCORE_NAMES)],
            frame["label"].to_numpy().astype(int),
            frame["slice"].to_numpy(),
            max_g=args.max_g,
            methods=methods,
            intervals=WITH_INTERVALS,
            progress=lambda done, total: (
                (done % 100 and done < total) or print(f"{done}/{total} groups", flush=True)
            ),
        )
    summary = summarise_protocol(tidy)
    summary.to_csv(OUT / "summary.csv", index=False)
    y = frame["label"].to_numpy().astype(np.float64)
    probs = leave_one_benchmark_out(frame, "lr_11d")
    default_probs = leave_one_benchmark_out(frame, "default")
    quality = per_benchmark_quality(frame, probs, default_probs)
    versus = extremes_vs_intermediate(frame, tidy)
    served = served_intervals(frame)
    plot_aee_by_g(summary)
    plot_estimated_vs_true(tidy, args.max_g)
    plot_reliability({f"default ({DEFAULT_METHOD})": default_probs, "lr_11d": probs}, y)
    bins = reliability_bins(default_probs, y)
    write_markdown(frame, summary, quality, versus, served, bins, args.max_g)
    print(f"wrote {DOCS / 'results.md'} and {OUT}/")


def findings(summary: pd.DataFrame, versus: pd.DataFrame, max_g: int) -> str:
    """The paper's findings, each checked against the figures above."""

    def med(method: str, g: int) -> float:
        row = summary[(summary["method"] == method) & (summary["g"] == g)]
        return float(row["median_aee"].iloc[0]) if len(row) else float("nan")

    noise = float(summary["floor"].mean())

    def verdict(holds: bool, gap: float | None = None) -> str:
        said = "reproduced" if holds else "not reproduced"
        if gap is not None and abs(gap) < noise:
            said += f" (gap {abs(gap):.3f}, below the floor {noise:.3f}: within noise)"
        return said

    lines = []
    for method in ("lr_11d", "default"):
        first, last = med(method, 1), med(method, max_g)
        lines.append(
            f"- More training benchmarks lower AEE ({method}): g = 1 {first:.3f} -> "
            f"g = {max_g} {last:.3f}: {verdict(last < first, last - first)}."
        )
    for method in ("lr_11d", "default"):
        part = versus[versus["method"] == method].set_index("supervision")["aee"]
        if {"Extremes", "Intermediate"} <= set(part.index):
            gap = part["Extremes"] - part["Intermediate"]
            lines.append(
                f"- Extremes beat Intermediate supervision ({method}): "
                f"{part['Extremes']:.3f} vs {part['Intermediate']:.3f}: "
                f"{verdict(gap < 0, gap)}."
            )
    singles = summary[summary["method"].str.startswith("lr_") & (summary["method"] != "lr_11d")]
    wins = 0
    for g in range(1, max_g + 1):
        best = singles[singles["g"] == g]["median_aee"].min()
        wins += int(med("lr_11d", g) < best)
    lines.append(
        f"- The 11-d profile beats every single statistic (logistic regression on one "
        f"score): at {wins} of {max_g} group sizes ({verdict(wins == max_g)} in full; the "
        f"paper says usually, not always)."
    )
    atc_wins = sum(int(med("atc_H_max", g) < med("lr_11d", g)) for g in range(1, max_g + 1))
    lines.append(
        f"- ATC on H_max has a lower median AEE than the 11-d classifier (as in the paper's "
        f"own result files): at {atc_wins} of {max_g} group sizes."
    )
    return "\n".join(lines)


def interval_notes(summary: pd.DataFrame, served: pd.DataFrame, max_g: int) -> str:
    """The default's intervals against the issue's target, per rule and g."""
    rows = summary[summary["method"] == "default"].set_index("g")
    lines = []
    for rule in INTERVAL_RULES:
        cells = ", ".join(
            f"g = {g}: {rows.loc[g, f'coverage_{rule}']:.3f} / {rows.loc[g, f'width_{rule}']:.3f}"
            for g in range(1, max_g + 1)
            if g in rows.index
        )
        met = [
            g
            for g in rows.index
            if rows.loc[g, f"coverage_{rule}"] >= TARGET_COVERAGE
            and rows.loc[g, f"width_{rule}"] < TARGET_WIDTH
        ]
        covered = served[f"covered_{rule}"].mean()
        width = served[f"width_{rule}"].mean()
        lines.append(
            f"- `{rule}` (coverage / mean width): {cells}; with every other benchmark "
            f"in training {covered:.3f} / {width:.3f}. Target (>= {TARGET_COVERAGE}, "
            f"< {TARGET_WIDTH}) met at {len(met)} of {len(rows)} group sizes."
        )
    return "\n".join(lines)


def write_markdown(
    frame: pd.DataFrame,
    summary: pd.DataFrame,
    quality: pd.DataFrame,
    versus: pd.DataFrame,
    served: pd.DataFrame,
    bins: pd.DataFrame,
    max_g: int,
) -> None:
    n, n_slices = len(frame), frame["slice"].nunique()
    shown = summary[summary["method"].isin(SHOWN)].sort_values(["g", "median_aee"])
    main_columns = ["method", "g", "n_groups", "median_aee", "iqr_aee", "median_rho", "floor"]
    main_columns += ["gap_floor", "gap_null_mean", "gap_doc"]
    interval_columns = ["method", "g"] + [
        f"{stat}_{rule}" for rule in INTERVAL_RULES for stat in ("coverage", "width")
    ]
    intervals = shown[shown["coverage_served"].notna()].sort_values(["method", "g"])
    ece_all = quality.set_index("benchmark").loc["all"]
    pooled = summary.groupby("method")["median_aee"].median().sort_values()
    best_single = [m for m in pooled.index if m.startswith("lr_") and m != "lr_11d"][:3]
    singles = summary[summary["method"].isin(best_single)].sort_values(["g", "median_aee"])
    median_n = int(frame.groupby("slice").size().median())
    floor_n = accuracy_floor(median_n, 0.5)
    text = f"""# Results: the paper's protocol on real traces

Regenerate with `.venv/bin/python scripts/results.py --max-g {max_g}` (the
numbers below come from that command; nothing here is typed by hand).

Data: the shipped real corpora (corpus-dev from the shared traces and
corpus-collected, gathered by `sentinel collect` from the project's own
llama-server), {n} real responses of Qwen2.5-Coder-1.5B-Instruct (llama.cpp,
greedy, top-20 logprobs) on {n_slices} STEM benchmarks, labelled by the project's
exact verifier (134/134 agreement with the datasheet on corpus-dev,
docs/verifier.md).
Protocol (METHOD §7): train on every group of g benchmarks, g = 1..{max_g} (all
C({n_slices}, g) groups), estimate every other benchmark's accuracy; AEE is the mean
|estimate - truth| over held-out benchmarks, rho the Spearman correlation.

**Read every figure against the floor.** A benchmark here has about {median_n} responses,
so its true accuracy is itself uncertain: a perfect estimator would still show an
AEE of about {floor_n:.3f} at that n and accuracy 0.5 (`floor` column: the
expected |binomial mean - p| at each held-out slice's n and accuracy). No method
can be told apart from another by less than that; the goal of median AEE <= 0.05
cannot be shown on a corpus this small.

## Median AEE per method and g (main methods)

`default` is what `sentinel estimate` serves ({DEFAULT_METHOD}, soft ATC on H_max).
Gaps: `gap_floor` is median AEE minus the floor; `gap_null_mean` and `gap_doc` are
median AEE minus that of the honest nulls, `null_train_mean` (the training
benchmarks' mean accuracy for every benchmark) and `doc_mean_max_prob` (difference of
confidences on the mean top-token probability), at the same g: negative means the
method beats the null.

{markdown_table(shown[main_columns])}

## Label-free intervals: coverage and width (nominal 0.90)

For every group and held-out benchmark, the interval the project would serve for it,
with the training benchmarks as the only labelled data (`sentinel_core/intervals.py`):

- `served` (today's rule, `estimate_slices`): percentile bootstrap of the slice mean of
  P(correct), widened on both sides by the median absolute leave-one-slice-out (LOSO)
  residual of the training benchmarks (no widening at g = 1: nothing to hold out,
  and the serving code turns that NaN into 0);
- `conformal` (split-conformal over slices, proposed): the same bootstrap widened by
  the finite-sample-corrected 0.90 quantile of the absolute LOSO residuals, the
  ceil((k + 1) 0.9)-th smallest of k (the largest when k < 9), and [0, 1] with one
  training benchmark.

`coverage_*`: share of (group, held-out benchmark) pairs whose true accuracy lies in
the interval; `width_*`: mean width. The issue's target for the default:
coverage >= {TARGET_COVERAGE} with mean width < {TARGET_WIDTH}.

{markdown_table(intervals[interval_columns])}

With every other benchmark in training (g = {n_slices - 1}, what `sentinel train` on the
shipped corpus serves for a new benchmark), the default's intervals:

{markdown_table(served)}

{interval_notes(summary, served, max_g)}

## Best single statistics (logistic regression on one score)

{markdown_table(singles[["method", "g", "median_aee", "iqr_aee", "median_rho"]])}

## Median AEE over all g, every method

{markdown_table(pooled.rename("median_aee").reset_index())}

Paper, for comparison (its own result files): ATC on H_max median AEE
{PAPER["atc_H_max"]}, its 11-d classifier {PAPER["classifier (11-d)"]}.

![AEE against g](results/aee_by_g.png)

## Extremes vs Intermediate supervision (g = 2)

Groups chosen by measured accuracy: the easiest and the hardest benchmark vs the
two around the median, each evaluated on the same {n_slices - 4} other benchmarks.

{markdown_table(versus[versus["method"].isin(SHOWN)].sort_values(["method", "supervision"]))}

## Estimated vs true accuracy per benchmark (as the paper's Figure 1)

![estimated vs true](results/estimated_vs_true.png)

## Calibration and ranking per benchmark

The default ({DEFAULT_METHOD}, fitted with the training benchmarks as groups, as
`sentinel train` does) and lr_11d, each trained on the other {n_slices - 1} benchmarks
(leave one benchmark out); AUROC of P(correct) and of -H_max within each benchmark
(NaN where a benchmark has one class only), ECE of P(correct); the last row, `all`,
pools every held-out response. ECE on held-out benchmarks, pooled: default
{ece_all["ece_default"]:.3f}, lr_11d {ece_all["ece_lr_11d"]:.3f}.

{markdown_table(quality)}

The default's reliability bins (ten equal-width bins of P(correct), held-out
benchmarks pooled; {len(bins)} populated):

{markdown_table(bins)}

![reliability diagram](results/reliability.png)

## What reproduced

{findings(summary, versus, max_g)}

Calibration is model-dependent (METHOD §7): the reliability diagram above is this
model's, measured on benchmarks the estimator did not see.
"""
    (DOCS / "results.md").write_text(text)


if __name__ == "__main__":
    main()
