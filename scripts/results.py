"""Regenerate docs/results*.md and their plots from the shipped real traces, in one command.

    .venv/bin/python scripts/results.py [--corpus qwen1.5b|qwen0.5b|all] [--max-g 4]
        [--groups-per-g N] [--tidy tidy.csv]

Corpora (``--corpus``, default ``qwen1.5b``), each written to its own document and folder:

* ``qwen1.5b``: Qwen2.5-Coder-1.5B-Instruct, corpus-dev + corpus-collected (about 17
  responses per benchmark) -> docs/results.md and docs/results/;
* ``qwen0.5b``: Qwen2.5-Coder-0.5B-Instruct, corpus-qwen2.5-coder-0.5b (60 per
  benchmark) -> docs/results-qwen0.5b.md and docs/results/qwen0.5b/;
* ``all``: both models together, a slice is model x benchmark (28 slices, named
  ``1.5b:gsm8k``, ``0.5b:gsm8k``) -> docs/results-all.md and docs/results/all/, with a
  cross-model section (each method trained on one model's benchmarks, evaluated on the
  other's, beside leave-one-benchmark-out within each model).

Every group of g slices is used for g = 1..max-g, except where ``--groups-per-g N``
caps it: then a g with more than N groups runs N of them, drawn without replacement
(seed 0), plus the Extremes and Intermediate pairs at g = 2. ``all`` caps at 100 by
default (C(28, 4) = 20475 groups would take hours on 2 cores); the other corpora run
every group unless told otherwise (``--groups-per-g 0``: every group).

Builds a throw-away store per model from its shipped corpora (ingest, exact verifier),
runs the group protocol by slice (or reads a tidy CSV that `sentinel evaluate --out`
wrote), and writes, into the corpus's folder:

* summary.csv: median/IQR AEE, median rho, floor per method and g;
* aee_by_g.png: median AEE against g per method;
* estimated_vs_true.png: per slice, mean estimate over the g = max-g groups that held
  it out, against its true accuracy (paper's Fig. 1);
* reliability.png: leave-one-slice-out reliability diagram of the default (lr_11d
  anchored per slice on ATC on H_max) beside lr_11d;
* the document: the data and its sampling floor, the tables, the Extremes vs
  Intermediate comparison, AUROC / ECE per slice, the paper's findings checked against
  the floor, and (``all``) the cross-model transfer table.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import combinations, permutations
from math import comb
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
    predict_in_slices,
    score_in_slices,
)
from sentinel_core.features import ALL_SCORE_NAMES, FEATURE_NAMES, FEATURE_SET_VERSION  # noqa: E402
from sentinel_core.ingest import ingest_records  # noqa: E402
from sentinel_core.intervals import INTERVAL_RULES, loso_residuals, slice_interval  # noqa: E402
from sentinel_core.metrics import accuracy_floor, auroc, ece, reliability_bins  # noqa: E402
from sentinel_core.protocol import (  # noqa: E402
    default_methods,
    run_group_protocol,
    summarise_protocol,
)
from sentinel_core.store import load_scores, open_store, slice_values  # noqa: E402

DOCS = ROOT / "docs"
#: Shown in the main table; "default" is DEFAULT_METHOD (anchored_H_max), run once.
SHOWN = [
    "default",
    "atc_H_max",
    "soft_atc_H_max",
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
#: The issue's goal for the median AEE.
GOAL_AEE = 0.05
PAPER = {"atc_H_max": 0.077, "classifier (11-d)": 0.128}
#: Methods of the cross-model section: the servable ones as `sentinel train` fits them,
#: and the two nulls.
CROSS_METHODS = (
    "default",
    "lr_11d",
    "rf_11d",
    "atc_H_max",
    "soft_atc_H_sea",
    "null_train_mean",
    "doc_mean_max_prob",
)
NULLS = ("null_train_mean", "doc_mean_max_prob")
#: Seed of the groups drawn when --groups-per-g caps a g.
GROUP_SEED = 0


@dataclass(frozen=True)
class Model:
    """One model's shipped corpora."""

    tag: str  # slice prefix when models are pooled: "1.5b:gsm8k"
    name: str
    corpora: tuple[str, ...]
    source: str  # how its corpora were made, for the document


MODELS = {
    "1.5b": Model(
        "1.5b",
        "Qwen2.5-Coder-1.5B-Instruct",
        ("corpus-dev", "corpus-collected", "corpus-qwen2.5-coder-1.5b-extra"),
        "corpus-dev from the shared traces, corpus-collected and "
        "corpus-qwen2.5-coder-1.5b-extra, gathered by `sentinel collect` from the project's "
        "own llama-server (the extra on `prompts-first60`, the prompts the 0.5B answered)",
    ),
    "0.5b": Model(
        "0.5b",
        "Qwen2.5-Coder-0.5B-Instruct",
        ("corpus-qwen2.5-coder-0.5b",),
        "corpus-qwen2.5-coder-0.5b, gathered by `sentinel collect` from the project's own "
        "llama-server on the first 60 prompts of each benchmark (`prompts-first60`)",
    ),
}


@dataclass(frozen=True)
class Corpus:
    """What ``--corpus`` selects: the models, where the results go, the default cap."""

    key: str
    models: tuple[Model, ...]
    doc: Path
    out: Path
    groups_per_g: int | None  # default cap on groups per g; None: every group

    @property
    def pooled(self) -> bool:
        return len(self.models) > 1


CORPORA = {
    "qwen1.5b": Corpus("qwen1.5b", (MODELS["1.5b"],), DOCS / "results.md", DOCS / "results", None),
    "qwen0.5b": Corpus(
        "qwen0.5b",
        (MODELS["0.5b"],),
        DOCS / "results-qwen0.5b.md",
        DOCS / "results" / "qwen0.5b",
        None,
    ),
    "all": Corpus(
        "all",
        (MODELS["1.5b"], MODELS["0.5b"]),
        DOCS / "results-all.md",
        DOCS / "results" / "all",
        100,
    ),
}
DEFAULT_CORPUS = "qwen1.5b"


def labelled_frame(model: Model, *, prefix: bool = False) -> pd.DataFrame:
    """One model's shipped corpora in a fresh SQLite store, labelled by the exact verifier.

    Columns as :func:`load_scores` gives them, plus ``benchmark``, ``slice`` (the
    benchmark, or ``<tag>:<benchmark>`` with ``prefix``), ``model_tag`` and
    ``shipped_label`` (the label the corpus file carries, to check the verifier's).
    """
    tmp = Path(tempfile.mkdtemp(prefix="sentinel-results-"))
    engine = open_store(f"sqlite:///{tmp / 'store.db'}")
    shipped: dict[str, int] = {}
    for name in model.corpora:
        records = list(iter_sample_records(name))
        shipped.update((str(r["id"]), int(y)) for r, y in records)
        ingest_records(engine, (r for r, _ in records), source=f"sample:{name}")
    label_store(engine)
    frame = load_scores(engine, feature_set=FEATURE_SET_VERSION, names=ALL_SCORE_NAMES)
    frame["benchmark"] = slice_values(frame["metadata"], "benchmark")
    frame["slice"] = (model.tag + ":" + frame["benchmark"]) if prefix else frame["benchmark"]
    frame["model_tag"] = model.tag
    frame["shipped_label"] = frame["trace_id"].map(shipped)
    return frame[frame["label"].notna()].reset_index(drop=True)


def corpus_frame(corpus: Corpus) -> pd.DataFrame:
    """Every model of the corpus, one row per labelled response."""
    parts = [labelled_frame(model, prefix=corpus.pooled) for model in corpus.models]
    return pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]


def supervision_pairs(frame: pd.DataFrame) -> tuple[pd.Series, list[str], list[str]]:
    """Slice accuracies (ascending), the Extremes pair and the Intermediate pair."""
    accuracy = frame.groupby("slice")["label"].mean().sort_values(kind="stable")
    names = list(accuracy.index)
    extremes = sorted([names[0], names[-1]])
    mid = len(names) // 2
    intermediate = sorted([names[mid - 1], names[mid]])
    return accuracy, extremes, intermediate


def extremes_vs_intermediate(frame: pd.DataFrame, tidy: pd.DataFrame) -> pd.DataFrame:
    """AEE of training on easiest+hardest vs two middle benchmarks, on the same held-out slices."""
    accuracy, extremes, intermediate = supervision_pairs(frame)
    held_out = set(accuracy.index) - set(extremes) - set(intermediate)
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


def sample_groups(
    names: Sequence[str],
    max_g: int,
    per_g: int,
    forced: Sequence[Sequence[str]] = (),
    seed: int = GROUP_SEED,
) -> list[tuple[int, ...]]:
    """Groups (indices into sorted ``names``) of g = 1..max_g, at most ``per_g`` per g.

    A g with more than ``per_g`` groups gets ``per_g`` drawn without replacement from
    one generator seeded by ``seed`` (in order of g), plus any ``forced`` group of that
    size; a g with fewer gets all of them. Sorted within each g, as the protocol would
    enumerate them.
    """
    ordered = sorted(names)
    index = {name: i for i, name in enumerate(ordered)}
    wanted = {tuple(sorted(index[n] for n in group)) for group in forced}
    rng = np.random.default_rng(seed)
    chosen: list[tuple[int, ...]] = []
    for g in range(1, min(max_g, len(ordered) - 1) + 1):
        every = list(combinations(range(len(ordered)), g))
        if len(every) > per_g:
            picked = {every[i] for i in rng.choice(len(every), size=per_g, replace=False)}
            every = sorted(picked | {group for group in wanted if len(group) == g})
        chosen.extend(every)
    return chosen


def sampled_group_protocol(
    scores: pd.DataFrame,
    y: np.ndarray,
    slices: np.ndarray,
    groups: Sequence[tuple[int, ...]],
    *,
    methods: Sequence[str],
    intervals: Sequence[str],
    progress: Callable[[int, int], None] | None = None,
) -> pd.DataFrame:
    """:func:`run_group_protocol` over the given groups only (same tidy rows).

    The protocol's own per-group step (its fits, its interval seeding by group), so a
    group's rows are exactly those the exhaustive run gives for it.
    """
    return run_group_protocol(
        scores,
        y,
        slices,
        max_g=max(len(group) for group in groups),
        methods=methods,
        intervals=intervals,
        progress=progress,
        groups=groups,
    )


def run_protocol(frame: pd.DataFrame, max_g: int, groups_per_g: int | None) -> pd.DataFrame:
    """The group protocol on ``frame``'s slices: every group, or at most groups_per_g per g."""
    methods = [*default_methods(), "soft_atc_H_max", "soft_atc_H_sea"]

    def progress(done: int, total: int) -> None:
        if done % 100 == 0 or done == total:
            print(f"{done}/{total} groups", flush=True)

    scores = frame[list(ALL_SCORE_NAMES)]
    y = frame["label"].to_numpy().astype(int)
    slices = frame["slice"].to_numpy()
    if groups_per_g is None:
        return run_group_protocol(
            scores,
            y,
            slices,
            max_g=max_g,
            methods=methods,
            intervals=WITH_INTERVALS,
            progress=progress,
        )
    _, extremes, intermediate = supervision_pairs(frame)
    groups = sample_groups(
        sorted(frame["slice"].unique()), max_g, groups_per_g, forced=[extremes, intermediate]
    )
    return sampled_group_protocol(
        scores, y, slices, groups, methods=methods, intervals=WITH_INTERVALS, progress=progress
    )


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
        probs[test] = predict_in_slices(model, X[test], slices[test])
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
        return predict_in_slices(model, X_te, np.zeros(len(X_te), dtype=str))  # one slice

    rng = np.random.default_rng(0)
    rows = []
    for name in sorted(set(slices)):
        test = slices == name
        model = fit_estimator(
            make_estimator("default", search=False), X[~test], y[~test], groups=slices[~test]
        )
        p, votes = score_in_slices(model, X[test], slices[test])
        residuals = loso_residuals(predict, X[~test], y[~test], slices[~test])
        row: dict[str, object] = {
            "benchmark": name,
            "truth": float(y[test].mean()),
            "estimate": float(p.mean()),
        }
        for rule in INTERVAL_RULES:
            low, high = slice_interval(
                rule, p, residuals, confidence=confidence, rng=rng, resample=votes
            )
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


# --- cross-model transfer -------------------------------------------------------------


def fit_predict(method: str, train: pd.DataFrame, test: pd.DataFrame) -> np.ndarray:
    """P(correct) per row of ``test`` from ``method`` fitted on ``train``.

    Servable methods as ``sentinel train`` fits them (``make_estimator`` without search,
    the training slices as groups: benchmarks/transfer.py's recipe); the nulls as the
    protocol defines them: ``null_train_mean`` the training accuracy for every row,
    ``doc_<score>`` the training accuracy shifted by the change in mean confidence.
    """
    y = train["label"].to_numpy().astype(int)
    if method == "null_train_mean":
        return np.full(len(test), float(y.mean()))
    if method.startswith("doc_"):
        score = method.removeprefix("doc_")
        shift = float(y.mean()) - float(train[score].mean())
        return test[score].to_numpy(np.float64) + shift
    model = fit_estimator(
        make_estimator(method, search=False, random_state=0),
        train[list(FEATURE_NAMES)].to_numpy(np.float64),
        y,
        groups=train["slice"].to_numpy().astype(str),
    )
    return predict_in_slices(
        model,
        test[list(FEATURE_NAMES)].to_numpy(np.float64),
        test["slice"].to_numpy().astype(str),
    )


def benchmark_errors(probs: np.ndarray, target: pd.DataFrame) -> pd.Series:
    """|mean P(correct) - labelled accuracy| per benchmark of ``target``."""
    table = pd.DataFrame(
        {"p": probs, "y": target["label"].to_numpy(), "b": target["benchmark"].to_numpy()}
    )
    means = table.groupby("b")[["p", "y"]].mean()
    return (means["p"] - means["y"]).abs()


def model_floor(part: pd.DataFrame) -> float:
    """Mean over the model's benchmarks of the AEE a perfect estimator would show."""
    acc = part.groupby("benchmark")["label"].agg(["mean", "count"])
    return float(np.mean([accuracy_floor(int(n), float(p)) for p, n in acc.to_numpy()]))


def cross_model(frame: pd.DataFrame, methods: Sequence[str] = CROSS_METHODS) -> pd.DataFrame:
    """Per method: within-model AEE (leave one benchmark out) and transfer AEE both ways.

    ``within <m>``: each benchmark of model m estimated by the method trained on m's other
    benchmarks; ``<a> -> <b>``: every benchmark of b estimated by the method trained on
    all of a's responses. AEE is the mean over the target's benchmarks (the paper's AEE);
    ``median <a> -> <b>`` the median, for a view less moved by one benchmark.
    """
    tags = list(dict.fromkeys(frame["model_tag"]))
    parts = {tag: frame[frame["model_tag"] == tag].reset_index(drop=True) for tag in tags}
    rows = []
    for method in methods:
        row: dict[str, object] = {"method": method}
        for tag, part in parts.items():
            errors = []
            for name in sorted(part["benchmark"].unique()):
                test = (part["benchmark"] == name).to_numpy()
                p = fit_predict(method, part[~test], part[test])
                errors.append(abs(float(p.mean()) - float(part.loc[test, "label"].mean())))
            row[f"within {tag}"] = float(np.mean(errors))
        for a, b in permutations(tags, 2):
            errors_ab = benchmark_errors(fit_predict(method, parts[a], parts[b]), parts[b])
            row[f"{a} -> {b}"] = float(errors_ab.mean())
            row[f"median {a} -> {b}"] = float(errors_ab.median())
        rows.append(row)
    table = pd.DataFrame(rows)
    for a, b in permutations(tags, 2):
        table[f"({a} -> {b}) - within {b}"] = table[f"{a} -> {b}"] - table[f"within {b}"]
    return table


def cross_model_notes(table: pd.DataFrame, floors: dict[str, float]) -> str:
    """The best-transferring method, by how much, each against the target's floor."""
    tags = list(floors)
    directions = [f"{a} -> {b}" for a, b in permutations(tags, 2)]
    methods = table[~table["method"].isin(NULLS)].set_index("method")
    nulls = table[table["method"].isin(NULLS)].set_index("method")
    mean_transfer = methods[directions].mean(axis=1).sort_values(kind="stable")
    best, runner = mean_transfer.index[0], mean_transfer.index[1]

    def against(gap: float, floor: float) -> str:
        side = "beyond" if abs(gap) > floor else "within"
        return f"{gap:+.3f}, {side} the floor {floor:.3f}"

    lines = [
        f"- Best transfer (lowest AEE averaged over both directions): **{best}**, "
        f"{mean_transfer[best]:.3f} against {mean_transfer[runner]:.3f} for the "
        f"runner-up, {runner}."
    ]
    for direction, (a, b) in zip(directions, permutations(tags, 2), strict=True):
        floor = floors[b]
        ranked = methods[direction].sort_values(kind="stable")
        first, second = ranked.index[0], ranked.index[1]
        best_null = nulls[direction].idxmin()
        lines.append(
            f"- {a} -> {b} (floor of {b}: {floor:.3f}): best {first} "
            f"{ranked.iloc[0]:.3f}, then {second} {ranked.iloc[1]:.3f} "
            f"({against(ranked.iloc[0] - ranked.iloc[1], floor)}); {best} "
            f"{methods.loc[best, direction]:.3f} against {best} trained on {b} itself "
            f"{methods.loc[best, f'within {b}']:.3f} "
            f"({against(methods.loc[best, direction] - methods.loc[best, f'within {b}'], floor)})"
            f" and against the best null, {best_null}, {nulls.loc[best_null, direction]:.3f} "
            f"({against(methods.loc[best, direction] - nulls.loc[best_null, direction], floor)})."
        )
    worst = (
        methods[[f"({a} -> {b}) - within {b}" for a, b in permutations(tags, 2)]]
        .mean(axis=1)
        .sort_values(kind="stable")
    )
    lines.append(
        "- Cost of crossing models (transfer minus within, mean of both directions): "
        + ", ".join(f"{m} {v:+.3f}" for m, v in worst.items())
        + "."
    )
    return "\n".join(lines)


# --- plots ---------------------------------------------------------------------------


def plot_aee_by_g(summary: pd.DataFrame, out: Path, label: str) -> None:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for method in SHOWN:
        part = summary[summary["method"] == method]
        ax.plot(part["g"], part["median_aee"], marker="o", label=method)
    floor = summary.groupby("g")["floor"].mean()
    ax.plot(floor.index, floor.values, "k--", label="floor (perfect estimator)")
    ax.set_xlabel("g (benchmarks in the training group)")
    ax.set_ylabel("median AEE over groups")
    ax.set_title(f"Accuracy estimation error against supervision size ({label})")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "aee_by_g.png", dpi=110)
    plt.close(fig)


def plot_estimated_vs_true(tidy: pd.DataFrame, g: int, out: Path) -> None:
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
    fig.savefig(out / "estimated_vs_true.png", dpi=110)
    plt.close(fig)


def reliability_table(probs: np.ndarray, y: np.ndarray) -> pd.DataFrame:
    """Ten equal-width bins of P(correct): mean P, observed accuracy, responses (non-empty)."""
    bins = reliability_bins(probs, y)
    return pd.DataFrame({"mean_p": bins.mean_p, "observed": bins.observed, "n": bins.n})


def plot_reliability(curves: dict[str, np.ndarray], y: np.ndarray, out: Path) -> None:
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.plot([0, 1], [0, 1], "k:")
    for label, probs in curves.items():
        bins = reliability_table(probs, y)
        ax.plot(bins["mean_p"], bins["observed"], marker="o", label=label)
        for row in bins.itertuples(index=False):
            ax.annotate(str(row.n), (row.mean_p, row.observed), fontsize=7)
    ax.set_xlabel("predicted P(correct), leave one benchmark out")
    ax.set_ylabel("observed accuracy")
    ax.set_title("Reliability diagram (numbers: responses per bin)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "reliability.png", dpi=110)
    plt.close(fig)


def markdown_table(frame: pd.DataFrame, digits: int = 3) -> str:
    header = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "---|" * len(frame.columns)
    lines = [header, rule]
    for row in frame.itertuples(index=False):
        cells = [f"{v:.{digits}f}" if isinstance(v, float) else str(v) for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# --- command line --------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--corpus",
        choices=sorted(CORPORA),
        default=DEFAULT_CORPUS,
        help=f"which model's traces (default {DEFAULT_CORPUS}; all: both, slices model x "
        "benchmark)",
    )
    parser.add_argument("--max-g", type=int, default=4)
    parser.add_argument(
        "--groups-per-g",
        type=int,
        default=None,
        help="at most this many groups per g, drawn with seed 0 (default: 100 for all, "
        "every group otherwise; 0: every group)",
    )
    parser.add_argument("--tidy", type=Path, help="tidy CSV from `sentinel evaluate --out`")
    parser.add_argument(
        "--save-tidy", type=Path, help="also write the protocol's tidy rows here (for --tidy)"
    )
    args = parser.parse_args(argv)
    if args.max_g < 1:
        parser.error(f"--max-g must be at least 1, got {args.max_g}")
    if args.groups_per_g is not None and args.groups_per_g < 0:
        parser.error(f"--groups-per-g must be 0 (every group) or more, got {args.groups_per_g}")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    corpus = CORPORA[args.corpus]
    # None: every group; 0 on the command line says so explicitly.
    cap = corpus.groups_per_g if args.groups_per_g is None else args.groups_per_g
    groups_per_g = cap or None
    out = corpus.out
    out.mkdir(parents=True, exist_ok=True)
    frame = corpus_frame(corpus)
    if args.tidy is not None:
        tidy = pd.read_csv(args.tidy)
        tidy = tidy[tidy["g"] <= args.max_g]
        groups_per_g = None  # whatever the CSV holds
    else:
        tidy = run_protocol(frame, args.max_g, groups_per_g)
    summary = summarise_protocol(tidy)
    summary.to_csv(out / "summary.csv", index=False)
    if args.save_tidy is not None:
        tidy.to_csv(args.save_tidy, index=False)
    y = frame["label"].to_numpy().astype(np.float64)
    probs = leave_one_benchmark_out(frame, "lr_11d")
    default_probs = leave_one_benchmark_out(frame, "default")
    quality = per_benchmark_quality(frame, probs, default_probs)
    versus = extremes_vs_intermediate(frame, tidy)
    served = served_intervals(frame)
    cross = cross_model(frame) if corpus.pooled else None
    if cross is not None:
        cross.to_csv(out / "cross_model.csv", index=False)
    label = " + ".join(m.name for m in corpus.models)
    plot_aee_by_g(summary, out, label)
    plot_estimated_vs_true(tidy, args.max_g, out)
    plot_reliability({f"default ({DEFAULT_METHOD})": default_probs, "lr_11d": probs}, y, out)
    bins = reliability_table(default_probs, y)
    report = Report(
        corpus, frame, summary, quality, versus, served, bins, cross, oracle_widths(tidy)
    )
    corpus.doc.write_text(report.markdown(args.max_g, groups_per_g, args.tidy is not None))
    print(f"wrote {corpus.doc} and {out}/")


# --- the document --------------------------------------------------------------------


def findings(summary: pd.DataFrame, versus: pd.DataFrame, max_g: int) -> str:
    """The paper's findings, each checked against the figures above and the floor."""

    def med(method: str, g: int) -> float:
        row = summary[(summary["method"] == method) & (summary["g"] == g)]
        return float(row["median_aee"].iloc[0]) if len(row) else float("nan")

    noise = float(summary["floor"].mean())

    def against(gap: float) -> str:
        if abs(gap) < noise:
            return f"gap {abs(gap):.3f}, below the floor {noise:.3f}: within noise"
        return f"gap {abs(gap):.3f}, above the floor {noise:.3f}: beyond noise"

    def verdict(holds: bool, gap: float) -> str:
        return f"{'reproduced' if holds else 'not reproduced'} ({against(gap)})"

    sizes = [g for g in range(1, max_g + 1) if g in set(summary["g"])]
    last_g = sizes[-1]
    lines = []
    for method in ("lr_11d", "default"):
        first, last = med(method, 1), med(method, last_g)
        lines.append(
            f"- More training benchmarks lower AEE ({method}): g = 1 {first:.3f} -> "
            f"g = {last_g} {last:.3f}: {verdict(last < first, last - first)}."
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
    cells, wins, clear = [], 0, 0
    for g in sizes:
        part = singles[singles["g"] == g].set_index("method")["median_aee"]
        best = part.idxmin()
        gap = med("lr_11d", g) - float(part[best])
        wins += int(gap < 0)
        clear += int(-gap > noise)
        cells.append(f"g = {g}: {med('lr_11d', g):.3f} vs {float(part[best]):.3f} ({best})")
    in_full = "reproduced" if wins == len(sizes) else "not reproduced"
    lines.append(
        f"- The 11-d profile beats every single statistic (logistic regression on one "
        f"score): at {wins} of {len(sizes)} group sizes ({in_full} in full; the "
        f"paper says usually, not always), by more than the floor {noise:.3f} at {clear}. "
        f"lr_11d vs the best single statistic: {'; '.join(cells)}."
    )
    cells, atc_wins, clear = [], 0, 0
    for g in sizes:
        gap = med("atc_H_max", g) - med("lr_11d", g)
        atc_wins += int(gap < 0)
        clear += int(abs(gap) > noise)
        cells.append(f"g = {g}: {med('atc_H_max', g):.3f} vs {med('lr_11d', g):.3f}")
    lines.append(
        f"- ATC on H_max has a lower median AEE than the 11-d classifier (as in the paper's "
        f"own result files): at {atc_wins} of {len(sizes)} group sizes; the gap exceeds the "
        f"floor {noise:.3f} at {clear}. atc_H_max vs lr_11d: {'; '.join(cells)}."
    )
    cells, clear = [], 0
    for g in sizes:
        best_null = min(med(null, g) for null in NULLS)
        gap = med("default", g) - best_null
        clear += int(-gap > noise)
        cells.append(f"g = {g}: {med('default', g):.3f} vs {best_null:.3f}")
    lines.append(
        f"- The default beats both honest nulls by more than the floor {noise:.3f} at "
        f"{clear} of {len(sizes)} group sizes. default vs the better null: "
        f"{'; '.join(cells)}."
    )
    return "\n".join(lines)


def oracle_widths(tidy: pd.DataFrame) -> dict[int, float]:
    """Per g, the mean width of the narrowest intervals of one half-width, centred on the
    default's estimates and clipped to [0, 1], that cover ``TARGET_COVERAGE`` of the
    held-out rows (the half-width is that quantile of |error|).

    An oracle (it is chosen with the true accuracies): no rule that widens every slice's
    estimate by the same amount can do better at that coverage.
    """
    rows = tidy[tidy["method"] == "default"]
    out = {}
    for g, part in rows.groupby("g"):
        half = float(np.quantile((part["estimate"] - part["truth"]).abs(), TARGET_COVERAGE))
        low = np.clip(part["estimate"] - half, 0.0, 1.0)
        high = np.clip(part["estimate"] + half, 0.0, 1.0)
        out[int(g)] = float(np.mean(high - low))
    return out


def interval_notes(
    summary: pd.DataFrame, served: pd.DataFrame, max_g: int, oracle: dict[int, float]
) -> str:
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
    cells = ", ".join(f"g = {g}: {w:.3f}" for g, w in sorted(oracle.items()))
    lines.append(
        f"- The bound on any rule of one half-width per g (oracle: the {TARGET_COVERAGE} "
        f"quantile of the default's |error| over the held-out rows, chosen with their true "
        f"accuracies, around every estimate, clipped to [0, 1]; mean width): {cells}. "
        f"Where it is at or above {TARGET_WIDTH}, no such rule can "
        f"meet the target: the errors on the benchmarks the entropy cannot see coming "
        f"(large shifts between benchmarks) set the width, not the interval rule."
    )
    return "\n".join(lines)


@dataclass(frozen=True)
class Report:
    """Everything the document shows; :meth:`markdown` writes it."""

    corpus: Corpus
    frame: pd.DataFrame
    summary: pd.DataFrame
    quality: pd.DataFrame
    versus: pd.DataFrame
    served: pd.DataFrame
    bins: pd.DataFrame
    cross: pd.DataFrame | None
    oracle: dict[int, float]

    def command(self, max_g: int, groups_per_g: int | None) -> str:
        corpus = "" if self.corpus.key == DEFAULT_CORPUS else f" --corpus {self.corpus.key}"
        cap = "" if groups_per_g is None else f" --groups-per-g {groups_per_g}"
        return f".venv/bin/python scripts/results.py{corpus} --max-g {max_g}{cap}"

    def model_stats(self) -> list[dict[str, object]]:
        """Per model: responses, n per benchmark, accuracy, label agreement, floors."""
        rows: list[dict[str, object]] = []
        for model in self.corpus.models:
            part = self.frame[self.frame["model_tag"] == model.tag]
            per = part.groupby("benchmark")["label"].agg(["mean", "count"])
            n_median = int(per["count"].median())
            rows.append(
                {
                    "model": model.name,
                    "corpora": " + ".join(model.corpora),
                    "responses": len(part),
                    "benchmarks": len(per),
                    "n_min": int(per["count"].min()),
                    "n_max": int(per["count"].max()),
                    "n_median": n_median,
                    "correct": int(part["label"].sum()),
                    "accuracy": float(part["label"].mean()),
                    "acc_min": float(per["mean"].min()),
                    "acc_max": float(per["mean"].max()),
                    "agree": int((part["label"] == part["shipped_label"]).sum()),
                    "floor_half": accuracy_floor(n_median, 0.5),
                    "floor_observed": model_floor(part),
                }
            )
        return rows

    def data_table(self) -> pd.DataFrame:
        return pd.DataFrame(
            [
                {
                    "model": s["model"],
                    "corpora": s["corpora"],
                    "responses": s["responses"],
                    "benchmarks": s["benchmarks"],
                    "n per benchmark": f"{s['n_min']}-{s['n_max']} (median {s['n_median']})",
                    "correct": s["correct"],
                    "accuracy": s["accuracy"],
                    "accuracy per benchmark": f"{s['acc_min']:.2f}-{s['acc_max']:.2f}",
                    "verifier = shipped label": f"{s['agree']}/{s['responses']}",
                    "floor at p = 0.5": s["floor_half"],
                    "floor at its accuracies": s["floor_observed"],
                }
                for s in self.model_stats()
            ]
        )

    def protocol_scope(self, max_g: int, groups_per_g: int | None, from_tidy: bool) -> str:
        n_slices = self.frame["slice"].nunique()
        if from_tidy:
            return (
                f"the groups of g = 1..{max_g} that the tidy CSV holds (`n_groups` column; "
                f"all C({n_slices}, g) = "
                + ", ".join(str(comb(n_slices, g)) for g in range(1, max_g + 1))
                + ")"
            )
        if groups_per_g is None:
            return f"g = 1..{max_g}, all C({n_slices}, g) groups"
        capped = [g for g in range(1, max_g + 1) if comb(n_slices, g) > groups_per_g]
        total = sum(comb(n_slices, g) for g in range(1, max_g + 1))
        ran = self.summary.groupby("g")["n_groups"].max()
        return (
            f"g = 1..{max_g}, at most {groups_per_g} per g to bound the run time (every "
            f"group would be {total:,}): all C({n_slices}, g) groups where that is at most "
            f"{groups_per_g}, otherwise {groups_per_g} drawn without replacement (numpy seed "
            f"{GROUP_SEED}), plus the Extremes and Intermediate pairs at g = 2; ran "
            + ", ".join(
                f"g = {g}: {int(ran.get(g, 0))}"
                + (f" of {comb(n_slices, g):,}" if g in capped else " (all)")
                for g in range(1, max_g + 1)
            )
            + ". A drawn group's rows are exactly those the exhaustive run gives for it, so "
            "each median estimates the exhaustive one from a random sample of groups"
        )

    def data_paragraph(self) -> str:
        n, n_slices = len(self.frame), self.frame["slice"].nunique()
        sentences = [
            f"{s['responses']} real responses of {model.name} ({model.source}) on "
            f"{s['benchmarks']} STEM benchmarks, accuracy {s['accuracy']:.3f}, labelled by "
            f"the project's exact verifier ({s['agree']}/{s['responses']} agree with the "
            f"labels shipped in the corpus files; docs/verifier.md)"
            for model, s in zip(self.corpus.models, self.model_stats(), strict=True)
        ]
        text = (
            "Data: the shipped real corpora (llama.cpp, greedy, top-20 logprobs, "
            "sentinel_core/data/DATASHEET.md): " + "; ".join(sentences) + "."
        )
        if self.corpus.pooled:
            text += (
                f" Both models together: {n} responses, and a slice is one model's "
                f"responses to one benchmark (`1.5b:gsm8k`, `0.5b:gsm8k`), {n_slices} "
                f'slices; below, "benchmark" in the protocol means such a slice.'
            )
        others = [
            f"`--corpus {key}` ({c.doc.relative_to(ROOT)})"
            for key, c in CORPORA.items()
            if key != self.corpus.key
        ]
        text += " The same report for the other corpora: " + " and ".join(others) + "."
        if not self.corpus.pooled:
            text += " Cross-model transfer is measured in the `all` report."
        return text

    def floor_paragraph(self) -> str:
        stats = self.model_stats()
        parts = [
            f"a benchmark of {s['model']} has about {s['n_median']} responses, so a perfect "
            f"estimator would still show an AEE of about {s['floor_half']:.3f} at that n and "
            f"accuracy 0.5, and {s['floor_observed']:.3f} on average at its benchmarks' "
            f"observed accuracies"
            for s in stats
        ]
        lowest = min(float(s["floor_observed"]) for s in stats)  # type: ignore[arg-type]
        if lowest >= GOAL_AEE:
            goal = f"the goal of median AEE <= {GOAL_AEE} cannot be shown on a corpus this small"
        else:
            goal = (
                f"the goal of median AEE <= {GOAL_AEE} lies only {GOAL_AEE - lowest:.3f} above "
                f"the lowest of these floors, so it can be met here but not by a margin "
                f"that tells methods apart"
            )
        return (
            "**Read every figure against the floor.** A benchmark's true accuracy is "
            "itself uncertain: "
            + "; ".join(parts)
            + " (`floor` column: the expected |binomial mean - p| at each held-out slice's "
            "n and accuracy). No method can be told apart from another by less than that; "
            + goal
            + "."
        )

    def cross_section(self) -> str:
        if self.cross is None:
            return ""
        tags = [m.tag for m in self.corpus.models]
        floors = {tag: model_floor(self.frame[self.frame["model_tag"] == tag]) for tag in tags}
        names = {m.tag: m.name for m in self.corpus.models}
        pairs = list(permutations(tags, 2))
        main = ["method", *(f"within {t}" for t in tags), *(f"{a} -> {b}" for a, b in pairs)]
        main += [f"({a} -> {b}) - within {b}" for a, b in pairs]
        medians = ["method", *(f"median {a} -> {b}" for a, b in pairs)]
        floor_rows = pd.DataFrame(
            [{"model": t, "name": names[t], "floor": floors[t]} for t in tags]
        )
        return f"""
## Cross-model transfer

Each method trained on one model's responses and evaluated on the other model's
benchmarks, beside the same method within each model (leave one benchmark out: each
benchmark estimated by the method trained on that model's other benchmarks). Servable
methods are fitted as `sentinel train` fits them (`make_estimator`, no search, the
training benchmarks as groups; benchmarks/transfer.py's recipe), the nulls as in the
protocol (`null_train_mean`: the source's accuracy for every benchmark;
`doc_mean_max_prob`: the source's accuracy shifted by the change in mean top-token
probability). AEE is the mean |estimate - truth| over the target's
{self.frame.groupby("model_tag")["benchmark"].nunique().min()} benchmarks; the last
columns are transfer minus within on the same target (positive: crossing models costs
that much). Read each against the target's floor (mean over its benchmarks of the
expected |binomial mean - p|):

{markdown_table(floor_rows)}

{markdown_table(self.cross[main])}

The same transfers, median over the target's benchmarks:

{markdown_table(self.cross[medians])}

{cross_model_notes(self.cross, floors)}

Both models are Qwen2.5-Coder (same tokenizer and template, 1.5B vs 0.5B, both
Q4_K_M): this is transfer across model size within one family, not across families
(DATASHEET: the only other family shipped, Gemma 3 270M base, cannot answer).
"""

    def markdown(self, max_g: int, groups_per_g: int | None, from_tidy: bool) -> str:
        frame, summary, quality = self.frame, self.summary, self.quality
        versus, served, bins = self.versus, self.served, self.bins
        n_slices = frame["slice"].nunique()
        images = self.corpus.out.relative_to(DOCS).as_posix()
        shown = summary[summary["method"].isin(SHOWN)].sort_values(["g", "median_aee"])
        main_columns = ["method", "g", "n_groups", "median_aee", "iqr_aee", "median_rho"]
        main_columns += ["floor", "gap_floor", "gap_null_mean", "gap_doc"]
        interval_columns = ["method", "g"] + [
            f"{stat}_{rule}" for rule in INTERVAL_RULES for stat in ("coverage", "width")
        ]
        intervals = shown[shown["coverage_served"].notna()].sort_values(["method", "g"])
        ece_all = quality.set_index("benchmark").loc["all"]
        pooled = summary.groupby("method")["median_aee"].median().sort_values()
        best_single = [m for m in pooled.index if m.startswith("lr_") and m != "lr_11d"][:3]
        singles = summary[summary["method"].isin(best_single)].sort_values(["g", "median_aee"])
        names = " and ".join(m.name for m in self.corpus.models)
        scope = self.protocol_scope(max_g, groups_per_g, from_tidy)
        whose = "these two models' pooled" if self.corpus.pooled else "this model's"
        return f"""# Results: the paper's protocol on real traces ({names})

Regenerate with `{self.command(max_g, groups_per_g)}` (the
numbers below come from that command; nothing here is typed by hand).

{self.data_paragraph()}

{markdown_table(self.data_table())}

Protocol (METHOD §7): train on every group of g benchmarks, estimate every other
benchmark's accuracy; AEE is the mean |estimate - truth| over held-out benchmarks,
rho the Spearman correlation. Groups: {scope}.

{self.floor_paragraph()}

## Median AEE per method and g (main methods)

`default` is what `sentinel estimate` serves ({DEFAULT_METHOD}: lr_11d's P(correct)
shifted per slice onto ATC on H_max's share, so its slice estimate is ATC's up to a
1/(2n) margin; `soft_atc_H_max` was the default before it).
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

{interval_notes(summary, served, max_g, self.oracle)}

## Best single statistics (logistic regression on one score)

{markdown_table(singles[["method", "g", "median_aee", "iqr_aee", "median_rho"]])}

## Median AEE over all g, every method

{markdown_table(pooled.rename("median_aee").reset_index())}

Paper, for comparison (its own result files): ATC on H_max median AEE
{PAPER["atc_H_max"]}, its 11-d classifier {PAPER["classifier (11-d)"]}.

![AEE against g]({images}/aee_by_g.png)

## Extremes vs Intermediate supervision (g = 2)

Groups chosen by measured accuracy: the easiest and the hardest benchmark vs the
two around the median, each evaluated on the same {n_slices - 4} other benchmarks.

{markdown_table(versus[versus["method"].isin(SHOWN)].sort_values(["method", "supervision"]))}

## Estimated vs true accuracy per benchmark (as the paper's Figure 1)

![estimated vs true]({images}/estimated_vs_true.png)

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

![reliability diagram]({images}/reliability.png)

## What reproduced

Each finding of the paper with its figures from the tables above, against the mean
floor of the held-out slices (a gap smaller than the floor is within noise).

{findings(summary, versus, max_g)}

Calibration is model-dependent (METHOD §7): the reliability diagram above is
{whose}, measured on benchmarks the estimator did not see.
{self.cross_section()}"""


if __name__ == "__main__":
    main()
