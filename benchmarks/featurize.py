"""Featurising and ingest throughput, and the ingest's peak memory.

Prints a table, then one JSON object of the figures as its last line:

* featurise: token-steps per second of ``scores_from_flat`` (the 11-d profile
  and the nine baselines) on a GENERATED ragged batch of >= 2,000,000
  token-steps with k = 20, and the ratio to a bare numpy kernel that computes
  only the per-step entropies of the same array (goal >= 0.5);
* ingest: MB/s of ``ingest_file`` on a GENERATED OpenAI-format JSONL file of
  >= 300 MB into a fresh SQLite store, against ``orjson.loads`` of every line
  of the same file (ratio; goal >= 0.3);
* peak RSS of the ingest, measured in a fresh process for two file sizes
  (goal under 1 GB, and independent of file size).

Usage: .venv/bin/python benchmarks/featurize.py [--mb 300] [--steps 2000000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sentinel_core.features import scores_from_flat  # noqa: E402


def generated_batch(n_steps: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A GENERATED ragged batch: lengths 50..600, proper truncated distributions."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(50, 601, size=n_steps // 300 + 1)
    lengths = lengths[np.cumsum(lengths) <= n_steps + 600]
    total = int(lengths.sum())
    logits = rng.normal(scale=2.0, size=(total, k + 4)).astype(np.float32)
    logits -= np.log(np.exp(logits).sum(axis=1, keepdims=True))
    top = -np.sort(-logits, axis=1)[:, :k].astype(np.float32)
    return top, top[:, 0].copy(), lengths.astype(np.int64)


def bare_entropy(top: np.ndarray) -> np.ndarray:
    """The reference kernel: per-step truncated entropy only."""
    return -(np.exp(top) * top).sum(axis=1)


def best_of(fn, repeats: int = 3) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def bench_featurise(n_steps: int) -> dict[str, float]:
    top, chosen, lengths = generated_batch(n_steps, 20, seed=0)
    ours = best_of(lambda: scores_from_flat(top, chosen, lengths))
    bare = best_of(lambda: bare_entropy(top))
    steps = int(lengths.sum())
    return {
        "featurise_token_steps": steps,
        "featurise_traces": len(lengths),
        "featurise_steps_per_s": steps / ours,
        "bare_entropy_steps_per_s": steps / bare,
        "featurise_ratio_to_bare": bare / ours,
    }


def write_generated_jsonl(path: Path, target_mb: float, seed: int = 1) -> int:
    """A GENERATED OpenAI chat.completion JSONL of about ``target_mb``; returns its line count."""
    rng = np.random.default_rng(seed)
    templates = []
    for t in range(40):
        n = int(rng.integers(100, 500))
        logits = rng.normal(scale=2.0, size=(n, 24))
        logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        top = -np.sort(-logp, axis=1)[:, :20]
        content = [
            {
                "id": int(i),
                "token": f"tok{i}",
                "bytes": [116, 111, 107],
                "logprob": float(row[0]),
                "top_logprobs": [
                    {"id": int(j), "token": f"alt{j}", "bytes": [97, 108, 116], "logprob": float(v)}
                    for j, v in enumerate(row)
                ],
            }
            for i, row in enumerate(top)
        ]
        templates.append(
            {
                "object": "chat.completion",
                "created": 1_795_000_000 + t,
                "model": "generated-model",
                "choices": [
                    {
                        "index": 0,
                        "finish_reason": "stop",
                        "message": {"role": "assistant", "content": "generated " * n},
                        "logprobs": {"content": content},
                    }
                ],
                "usage": {"completion_tokens": n},
            }
        )
    written, lines = 0, 0
    with path.open("wb") as handle:
        while written < target_mb * 1e6:
            body = templates[lines % len(templates)]
            record = {
                "id": f"gen-{lines}",
                "model": body["model"],
                "created": body["created"],
                "metadata": {"customer": f"c{lines % 7}"},
                "response": body,
            }
            line = orjson.dumps(record) + b"\n"
            handle.write(line)
            written += len(line)
            lines += 1
    return lines


_ORJSON_CHILD = """
import time, orjson
start = time.perf_counter()
with open({path!r}, "rb") as handle:
    for line in handle:
        orjson.loads(line)
print(time.perf_counter() - start)
"""


def orjson_only(path: Path) -> float:
    """Seconds for ``orjson.loads`` of every line, in a fresh process like the ingest's.

    Both sides run in fresh processes: the allocator state of a long-lived process
    changes orjson's speed by up to 3x on these large lines.
    """
    code = _ORJSON_CHILD.format(path=str(path))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(done.stdout.strip())


_CHILD = """
import sys, time
from pathlib import Path
sys.path.insert(0, {root!r})
from sentinel_core.ingest import ingest_file
from sentinel_core.store import open_store
engine = open_store({url!r})
start = time.perf_counter()
report = ingest_file(engine, Path({path!r}))
elapsed = time.perf_counter() - start
# VmHWM is this process image's peak; ru_maxrss would carry the parent's peak
# across fork+exec on Linux and report the benchmark's own arrays instead.
status = Path("/proc/self/status").read_text().splitlines()
rss_kb = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
print(report.read, report.stored, elapsed, rss_kb)
"""


def ingest_in_child(path: Path, workdir: Path) -> dict[str, float]:
    url = f"sqlite:///{workdir / (path.stem + '.db')}"
    code = _CHILD.format(root=str(ROOT), url=url, path=str(path))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    read, stored, elapsed, rss_kb = done.stdout.split()
    return {
        "read": int(read),
        "stored": int(stored),
        "seconds": float(elapsed),
        "peak_rss_mb": int(rss_kb) / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=300.0, help="size of the big JSONL file")
    parser.add_argument("--steps", type=int, default=2_000_000, help="token-steps to featurise")
    args = parser.parse_args()
    figures: dict[str, float] = {}
    figures.update(bench_featurise(args.steps))
    with tempfile.TemporaryDirectory(prefix="sentinel-bench-") as tmp:
        work = Path(tmp)
        small, big = work / "small.jsonl", work / "big.jsonl"
        write_generated_jsonl(small, args.mb / 3)
        lines = write_generated_jsonl(big, args.mb)
        size_mb = big.stat().st_size / 1e6
        parse_s = min(orjson_only(big) for _ in range(2))
        small_run = ingest_in_child(small, work)
        big_run = ingest_in_child(big, work)
        assert big_run["stored"] == lines, "every generated line must be stored"
    figures.update(
        {
            "ingest_file_mb": size_mb,
            "ingest_lines": lines,
            "orjson_mb_per_s": size_mb / parse_s,
            "ingest_mb_per_s": size_mb / big_run["seconds"],
            "ingest_ratio_to_orjson": parse_s / big_run["seconds"],
            "ingest_peak_rss_mb": big_run["peak_rss_mb"],
            "ingest_peak_rss_mb_third_size": small_run["peak_rss_mb"],
        }
    )
    width = max(map(len, figures))
    print(f"{'figure'.ljust(width)}  value")
    for name, value in figures.items():
        shown = f"{value:,.3f}" if isinstance(value, float) else f"{value:,}"
        print(f"{name.ljust(width)}  {shown}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
