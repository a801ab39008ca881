"""Cross-model transfer: train on one model's traces, estimate the other's benchmarks.

    .venv/bin/python benchmarks/transfer.py [--methods default,lr_11d,atc_H_max]

Models: Qwen2.5-Coder-1.5B-Instruct (corpus-dev + corpus-collected, about 17 responses
per benchmark) and Qwen2.5-Coder-0.5B-Instruct (corpus-qwen2.5-coder-0.5b, 60 per
benchmark). Slices are benchmarks of one model. For each method it prints:

- within: leave-one-benchmark-out on the model itself (train on its 13 other
  benchmarks, estimate the held-out one), the AEE over its 14 benchmarks;
- transfer A -> B: fitted on every labelled response of model A, the mean P(correct)
  on each benchmark of model B against B's labelled accuracy, the AEE over B's 14;
- the null: B's benchmarks all estimated by A's overall accuracy (what knowing nothing
  per response gives), and the sampling floor of B (mean binomial s.e. of a slice).

Deterministic (seed 0); prints a table, writes nothing.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sentinel_core.corpus import iter_sample_records  # noqa: E402
from sentinel_core.estimator import fit_estimator, make_estimator, predict_in_slices  # noqa: E402
from sentinel_core.features import ALL_SCORE_NAMES, FEATURE_NAMES, FEATURE_SET_VERSION  # noqa: E402
from sentinel_core.ingest import ingest_records  # noqa: E402
from sentinel_core.store import add_labels, load_scores, open_store, slice_values  # noqa: E402

MODELS = {
    "qwen-1.5b": ("corpus-dev", "corpus-collected"),
    "qwen-0.5b": ("corpus-qwen2.5-coder-0.5b",),
}


def model_frame(corpora: tuple[str, ...]) -> pd.DataFrame:
    """The model's labelled responses, featurised through ingest, sliced by benchmark."""
    tmp = Path(tempfile.mkdtemp(prefix="sentinel-transfer-"))
    engine = open_store(f"sqlite:///{tmp / 'store.db'}")
    for name in corpora:
        records = list(iter_sample_records(name))
        ingest_records(engine, (r for r, _ in records), source=f"sample:{name}")
        add_labels(engine, ((r["id"], bool(y), None) for r, y in records), labeler="import")
    frame = load_scores(engine, feature_set=FEATURE_SET_VERSION, names=ALL_SCORE_NAMES)
    frame["slice"] = slice_values(frame["metadata"], "benchmark")
    return frame[frame["label"].notna()].reset_index(drop=True)


def _fit(method: str, frame: pd.DataFrame) -> object:
    model = make_estimator(method, search=False, random_state=0)
    return fit_estimator(
        model,
        frame[list(FEATURE_NAMES)],
        frame["label"].to_numpy().astype(int),
        groups=frame["slice"].to_numpy(),
    )


def slice_errors(probs: np.ndarray, frame: pd.DataFrame) -> pd.Series:
    """|mean P(correct) - labelled accuracy| per benchmark."""
    table = pd.DataFrame({"p": probs, "y": frame["label"].to_numpy(), "s": frame["slice"]})
    means = table.groupby("s")[["p", "y"]].mean()
    return (means["p"] - means["y"]).abs()


def within(method: str, frame: pd.DataFrame) -> pd.Series:
    errors = {}
    for name in sorted(frame["slice"].unique()):
        test = frame["slice"] == name
        model = _fit(method, frame[~test])
        p = predict_in_slices(
            model, frame.loc[test, list(FEATURE_NAMES)], frame.loc[test, "slice"].to_numpy()
        )
        errors[name] = abs(float(p.mean()) - float(frame.loc[test, "label"].mean()))
    return pd.Series(errors)


def transfer(method: str, source: pd.DataFrame, target: pd.DataFrame) -> pd.Series:
    model = _fit(method, source)
    probs = predict_in_slices(model, target[list(FEATURE_NAMES)], target["slice"].to_numpy())
    return slice_errors(np.asarray(probs), target)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--methods", default="default,lr_11d,atc_H_max,soft_atc_H_sea,rf_11d")
    args = parser.parse_args()
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    frames = {name: model_frame(corpora) for name, corpora in MODELS.items()}
    for name, frame in frames.items():
        acc = frame.groupby("slice")["label"].agg(["mean", "count"])
        floor = float(np.mean(np.sqrt(acc["mean"] * (1 - acc["mean"]) / acc["count"])))
        print(
            f"{name}: {len(frame)} labelled responses, {len(acc)} benchmarks, "
            f"accuracy {frame['label'].mean():.3f}; sampling floor (mean s.e. of a "
            f"benchmark's accuracy) {floor:.3f}"
        )
    rows = []
    pairs = [("qwen-1.5b", "qwen-0.5b"), ("qwen-0.5b", "qwen-1.5b")]
    for method in methods:
        row: dict[str, object] = {"method": method}
        for name, frame in frames.items():
            e = within(method, frame)
            row[f"within {name}"] = f"{e.mean():.3f} ({e.median():.3f})"
        for a, b in pairs:
            e = transfer(method, frames[a], frames[b])
            row[f"{a} -> {b}"] = f"{e.mean():.3f} ({e.median():.3f})"
        rows.append(row)
    null: dict[str, object] = {"method": "null: source's overall accuracy"}
    for name in frames:
        null[f"within {name}"] = ""
    for a, b in pairs:
        truth = frames[b].groupby("slice")["label"].mean()
        e = (truth - frames[a]["label"].mean()).abs()
        null[f"{a} -> {b}"] = f"{e.mean():.3f} ({e.median():.3f})"
    rows.append(null)
    print("\nAEE over the target's benchmarks: mean (median)")
    print(pd.DataFrame(rows).to_string(index=False))


if __name__ == "__main__":
    main()
