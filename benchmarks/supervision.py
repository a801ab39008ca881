"""Difficulty-mixed against pooled supervision, in leave-benchmarks-out evaluation.

On the shipped real corpus (corpus-dev + corpus-collected: real responses of 14
benchmarks with the datasheet's labels), for EVERY way of holding out ``--held-out``
benchmarks (C(14, 4) = 1001 splits by default), the estimator (``--method``, default:
the project's default, ATC on H_max) is trained on the other benchmarks' labels,
chosen three ways, and its slice estimates are compared with the held-out benchmarks'
labelled accuracies (AEE: mean |estimate - accuracy| over held-out slices):

* ``mixed``: ``sentinel_core.supervision.difficulty_mixed`` (the nightly retrain's);
* ``pooled=``: ``pooled`` with as many rows as ``mixed`` drew (same size, no balance);
* ``pooled``: every label of the training benchmarks.

Two labelling scenarios:

* ``as-labelled``: every training benchmark fully labelled, as shipped;
* ``skewed``: what the acquisition loop produces, labels concentrated on hard slices:
  training benchmarks above the median accuracy keep each label with probability
  ``--keep-easy`` (seeded), the others keep all.

Sampling draws are repeated over ``--seeds`` seeds per split. Prints, per scenario and
strategy, the median / mean / IQR of AEE over splits, the share of splits where
``mixed`` beats each pooled variant, and the AEE per held-out benchmark (so no single
benchmark carries the result); the last line is one JSON object of the headline
figures. Nothing here is tuned: min_labels, tier rule and sizes are the defaults.

Usage: .venv/bin/python benchmarks/supervision.py [--held-out 4] [--seeds 5]
       [--method default] [--keep-easy 0.4]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sentinel_core.corpus import iter_sample_records  # noqa: E402
from sentinel_core.errors import InvalidInputError  # noqa: E402
from sentinel_core.estimator import make_estimator, predict_in_slices  # noqa: E402
from sentinel_core.features import ALL_SCORE_NAMES, FEATURE_NAMES, FEATURE_SET_VERSION  # noqa: E402
from sentinel_core.ingest import ingest_records  # noqa: E402
from sentinel_core.store import add_labels, load_scores, open_store, slice_values  # noqa: E402
from sentinel_core.supervision import difficulty_mixed, pooled  # noqa: E402

CORPORA = ("corpus-dev", "corpus-collected")
STRATEGIES = ("mixed", "pooled=", "pooled")


def corpus_frame() -> pd.DataFrame:
    """Every shipped real response, featurised through ingest, with its datasheet label."""
    tmp = Path(tempfile.mkdtemp(prefix="sentinel-supervision-"))
    engine = open_store(f"sqlite:///{tmp / 'store.db'}")
    for name in CORPORA:
        records = list(iter_sample_records(name))
        ingest_records(engine, (r for r, _ in records), source=f"sample:{name}")
        add_labels(engine, ((r["id"], bool(y), None) for r, y in records), labeler="import")
    frame = load_scores(engine, feature_set=FEATURE_SET_VERSION, names=ALL_SCORE_NAMES)
    frame["slice"] = slice_values(frame["metadata"], "benchmark")
    return frame[frame["label"].notna()].reset_index(drop=True)


def skew(
    keys: np.ndarray, labels: np.ndarray, keep_easy: float, rng: np.random.Generator
) -> np.ndarray:
    """Labels as the acquisition loop leaves them: easy-half benchmarks partly unlabelled."""
    accuracy = pd.Series(labels).groupby(keys).mean()
    easy = accuracy.index[accuracy > accuracy.median()]
    out = labels.copy()
    drop = np.isin(keys, easy) & (rng.random(labels.size) >= keep_easy)
    out[drop] = np.nan
    return out


def held_out_aee(
    X: np.ndarray,
    keys: np.ndarray,
    y: np.ndarray,
    train_rows: np.ndarray,
    test: np.ndarray,
    method: str,
    seed: int,
) -> float:
    """AEE over the held-out slices of a model fitted on ``train_rows``."""
    model = make_estimator(method, search=False, random_state=seed)
    model.fit(X[train_rows], y[train_rows].astype(int))
    p = predict_in_slices(model, X[test], keys[test])
    frame = pd.DataFrame({"slice": keys[test], "p": p, "y": y[test]}).groupby("slice").mean()
    return float((frame["p"] - frame["y"]).abs().mean())


def run(frame: pd.DataFrame, *, held_out: int, seeds: int, method: str, keep_easy: float) -> Any:
    X = frame[list(FEATURE_NAMES)].to_numpy()
    keys = frame["slice"].to_numpy().astype(str)
    y = frame["label"].to_numpy()
    names = sorted(set(keys))
    rows: list[dict[str, Any]] = []
    for scenario in ("as-labelled", "skewed"):
        for split in combinations(names, held_out):
            test = np.isin(keys, split)
            train = np.flatnonzero(~test)
            for seed in range(seeds):
                rng = np.random.default_rng(seed)
                labels = (
                    y[train]
                    if scenario == "as-labelled"
                    else skew(keys[train], y[train], keep_easy, rng)
                )
                try:
                    mixed = difficulty_mixed(keys[train], labels, seed=seed)
                except InvalidInputError:
                    continue
                chosen = {
                    "mixed": train[mixed.indices],
                    "pooled=": train[
                        pooled(
                            keys[train], labels, size=mixed.indices.size, min_labels=5, seed=seed
                        ).indices
                    ],
                    "pooled": train[pooled(keys[train], labels, min_labels=5, seed=seed).indices],
                }
                for strategy, picked in chosen.items():
                    rows.append(
                        {
                            "scenario": scenario,
                            "split": "+".join(split),
                            "seed": seed,
                            "strategy": strategy,
                            "n_train": int(picked.size),
                            "aee": held_out_aee(X, keys, y, picked, test, method, seed),
                        }
                    )
    return pd.DataFrame(rows)


def per_benchmark(frame: pd.DataFrame, tidy: pd.DataFrame) -> pd.DataFrame:
    """Mean AEE of the splits that held each benchmark out, per scenario and strategy."""
    out = []
    for name in sorted(frame["slice"].unique()):
        part = tidy[tidy["split"].str.split("+").apply(lambda s, n=name: n in s)]
        means = part.groupby(["scenario", "strategy"])["aee"].mean()
        out.append({"benchmark": name, **{f"{a}/{b}": v for (a, b), v in means.items()}})
    return pd.DataFrame(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--held-out", type=int, default=4)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--method", default="default")
    parser.add_argument("--keep-easy", type=float, default=0.4)
    args = parser.parse_args()
    started = time.perf_counter()
    frame = corpus_frame()
    tidy = run(
        frame,
        held_out=args.held_out,
        seeds=args.seeds,
        method=args.method,
        keep_easy=args.keep_easy,
    )
    accuracy = frame.groupby("slice")["label"].agg(["mean", "count"])
    print(
        f"corpus: {len(frame)} labelled responses, {len(accuracy)} benchmarks, accuracy "
        f"{accuracy['mean'].min():.2f}-{accuracy['mean'].max():.2f} per benchmark"
    )
    print(
        f"method {args.method}; {tidy['split'].nunique()} splits holding out {args.held_out} "
        f"benchmarks x {args.seeds} seeds; skewed: easy-half labels kept with p={args.keep_easy}"
    )
    summary = tidy.groupby(["scenario", "strategy"]).agg(
        n_train=("n_train", "mean"),
        median_aee=("aee", "median"),
        mean_aee=("aee", "mean"),
        q25=("aee", lambda a: a.quantile(0.25)),
        q75=("aee", lambda a: a.quantile(0.75)),
    )
    print(summary.round(4).to_string())
    wide = tidy.pivot_table(index=["scenario", "split", "seed"], columns="strategy", values="aee")
    headline: dict[str, Any] = {"method": args.method, "held_out": args.held_out}
    for scenario in ("as-labelled", "skewed"):
        part = wide.loc[scenario]
        for other in ("pooled=", "pooled"):
            diff = part["mixed"] - part[other]
            print(
                f"{scenario}: mixed - {other}: mean {diff.mean():+.4f}, median "
                f"{diff.median():+.4f}; mixed lower in {np.mean(diff < 0):.1%}, "
                f"equal in {np.mean(diff == 0):.1%} of split x seed pairs"
            )
            headline[f"{scenario}/mixed-{other}/mean_diff"] = round(float(diff.mean()), 4)
            headline[f"{scenario}/mixed-{other}/share_lower"] = round(float(np.mean(diff < 0)), 3)
        for strategy in STRATEGIES:
            headline[f"{scenario}/{strategy}/median_aee"] = round(
                float(summary.loc[(scenario, strategy), "median_aee"]), 4
            )
    print("mean AEE of the splits holding each benchmark out:")
    print(per_benchmark(frame, tidy).round(3).to_string(index=False))
    print(f"wall time {time.perf_counter() - started:.1f} s")
    print(json.dumps(headline))


if __name__ == "__main__":
    main()
