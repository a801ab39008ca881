"""Leave one benchmark out: slice AEE and per-response calibration of each estimator.

    .venv/bin/python scripts/leave_one_benchmark_out.py [--corpus qwen1.5b|qwen0.5b|all]
        [--methods default,lr_11d,atc_H_max,soft_atc_H_max]

Every benchmark's responses are scored by ``make_estimator(method, search=False)``
trained on the other benchmarks' responses, with P(correct) in slices
(``estimator.predict_in_slices``, the benchmark being the slice, as ``sentinel
estimate`` scores it; the default pins responses cut at ``max_tokens`` as the product
does, which leaves the slice means as they are). Printed per method: mean and median
|slice mean P - accuracy| over benchmarks, pooled ECE (10 equal-width bins), Brier
score and the number of bins holding at least 5 responses (the table of
docs/estimator.md). The data are
``benchmarks/labels.py``'s (the same shipped corpora, the same featurisation).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from labels import CORPORA, load_corpus  # noqa: E402

from sentinel_core.estimator import fit_estimator, make_estimator, predict_in_slices  # noqa: E402
from sentinel_core.metrics import brier, ece, reliability_bins  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--corpus", choices=sorted(CORPORA), default="qwen1.5b")
    parser.add_argument("--methods", default="default,lr_11d,atc_H_max,soft_atc_H_max")
    args = parser.parse_args()
    corpus = load_corpus(args.corpus)
    names = sorted(set(corpus.benchmark.tolist()))
    print(
        f"corpus {args.corpus}: {corpus.y.size} responses, {len(names)} benchmarks, "
        f"accuracy {corpus.y.mean():.3f}"
    )
    print("| estimator | mean AEE | median AEE | ECE (pooled, 10 bins) | Brier | bins >= 5 |")
    print("|---|---|---|---|---|---|")
    for method in args.methods.split(","):
        p = np.empty(corpus.y.size)
        errors = []
        for name in names:
            test = corpus.benchmark == name
            model = fit_estimator(
                make_estimator(method, search=False, random_state=0),
                corpus.X[~test],
                corpus.y[~test],
                groups=corpus.benchmark[~test],
                cut=corpus.cut[~test],
            )
            p[test] = predict_in_slices(
                model, corpus.X[test], corpus.benchmark[test], corpus.cut[test]
            )
            errors.append(abs(float(p[test].mean()) - float(corpus.y[test].mean())))
        bins = reliability_bins(p, corpus.y)
        populated = int(np.sum(bins.n >= 5))
        print(
            f"| {method} | {np.mean(errors):.3f} | {np.median(errors):.3f} | "
            f"{ece(p, corpus.y):.3f} | {brier(p, corpus.y):.3f} | {populated} |"
        )


if __name__ == "__main__":
    main()
