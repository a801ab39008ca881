"""Build the shipped real-trace sample from the shared corpus (run by hand, not at run time).

Writes
* ``sentinel_core/data/corpus-dev.npz``: float16 top-20 logprobs and chosen-token
  logprobs of every response, ragged, with their lengths;
* ``sentinel_core/data/corpus-dev.jsonl``: one line per response with its id,
  model, created, metadata (benchmark, gold, kind...), prompt, response text,
  finish reason and the datasheet's label;
* ``tests/data/real-traces.jsonl.gz``: one unmodified wire-format line per
  benchmark, for ingest tests on the real format.

Usage: python scripts/build_sample.py ../shared/data/traces
"""

from __future__ import annotations

import csv
import gzip
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sentinel_core.corpus import write_compact  # noqa: E402


def main(traces_dir: Path) -> None:
    labels = {row["id"]: row for row in csv.DictReader((traces_dir / "labels.csv").open())}
    tops, chosen, meta, raw_by_benchmark = [], [], [], {}
    with gzip.open(traces_dir / "traces.jsonl.gz", "rt") as handle:
        for line in handle:
            record = json.loads(line)
            choice = record["response"]["choices"][0]
            steps = choice["logprobs"]["content"]
            tops.append(np.array([[a["logprob"] for a in s["top_logprobs"]] for s in steps]))
            chosen.append(np.array([s["logprob"] for s in steps]))
            label = labels[record["id"]]
            meta.append(
                {
                    "id": record["id"],
                    "model": record["model"],
                    "created": record["created"],
                    "metadata": record["metadata"],
                    "prompt": record["prompt"],
                    "response_text": choice["message"]["content"],
                    "finish_reason": choice["finish_reason"],
                    "usage": record["response"].get("usage"),
                    "label": int(label["correct"]),
                    "label_how": label["how"],
                }
            )
            raw_by_benchmark.setdefault(record["metadata"]["benchmark"], line)
    write_compact(ROOT / "sentinel_core" / "data", "corpus-dev", meta, tops, chosen)
    with gzip.open(ROOT / "tests" / "data" / "real-traces.jsonl.gz", "wt") as handle:
        for benchmark in sorted(raw_by_benchmark):
            handle.write(raw_by_benchmark[benchmark])


if __name__ == "__main__":
    main(Path(sys.argv[1]))
