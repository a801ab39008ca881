"""Collection throughput: client-observed tokens/s against the server's own generation rate.

Starts the real model server with ``scripts/llm-server start`` (or uses the one
already running, and leaves it running), collects N short prompts into a fresh
temporary SQLite store through ``tasks.collect.collect`` (the path of
``sentinel collect``), and prints, for the same run:

* client tokens/s: completion tokens over the wall-clock seconds from the first
  request to the last response stored (requests, queueing, prompt processing,
  parsing, featurising and storing included);
* server tokens/s: llama.cpp's own ``timings`` (predicted tokens over predicted
  milliseconds, summed over the responses), the decoding rate alone;
* their ratio (goal >= 0.9), and the ratio to the server's busy time (prompt
  processing plus decoding), which isolates what the client itself costs.

llama.cpp's rate is per slot: with ``-np 2`` two responses decode at once, so the
client's aggregate rate can reach twice the server's figure; ``server_slots`` (from
``/props``) and ``ratio_client_to_server_x_slots`` put the two on one footing.

The prompts are GENERATED short arithmetic questions unless ``--prompts`` names a
prompts JSONL. Prints a table, then one JSON object of the figures as its last line.

``--model qwen|qwen-0.5b|gemma`` picks the model ``scripts/llm-server --model`` serves
(default qwen; slots as ``SENTINEL_LLM_SLOTS`` says, port as ``SENTINEL_LLM_PORT``).

Usage: .venv/bin/python benchmarks/collect.py [--model qwen] [--n 8] [--max-tokens 128]
       [--concurrency 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sentinel_core.store import open_store  # noqa: E402
from tasks.collect import collect  # noqa: E402

SCRIPT = ROOT / "scripts" / "llm-server"
MODELS = ("qwen", "qwen-0.5b", "gemma")


def generated_prompts(path: Path, n: int) -> Path:
    """GENERATED short arithmetic questions, one benchmark name for all."""
    rows = [
        {
            "id": f"generated-{i}",
            "benchmark": "generated",
            "question": f"What is {17 + 3 * i} + {25 + 7 * i}?",
            "gold": str(42 + 10 * i),
            "kind": "number",
        }
        for i in range(n)
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def llm_server(command: str, model: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), "--model", model, command], capture_output=True, text=True, check=False
    )


def served_alias(model: str) -> str:
    """The alias ``scripts/llm-server`` serves the model under (its ``paths`` output)."""
    done = llm_server("paths", model)
    for line in done.stdout.splitlines():
        key, _, value = line.partition(" ")
        if key == "alias":
            return value.strip()
    sys.exit(f"expected an alias line from scripts/llm-server --model {model} paths, got none")


def ensure_server(model: str) -> tuple[str, bool]:
    """The server's base URL, and whether this run started it (and so should stop it)."""
    already = llm_server("status", model).returncode == 0
    done = llm_server("start", model)
    if done.returncode != 0:
        sys.exit(f"scripts/llm-server start failed:\n{done.stderr.strip()}")
    return done.stdout.strip().splitlines()[-1] + "/v1", not already


def server_slots(base_url: str) -> int | None:
    """How many slots the server decodes at once (llama.cpp's ``/props``), if it says."""
    try:
        with urllib.request.urlopen(base_url.removesuffix("/v1") + "/props", timeout=5) as answer:
            slots = json.load(answer).get("total_slots")
    except (OSError, ValueError):
        return None
    return slots if isinstance(slots, int) and slots > 0 else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=MODELS, default="qwen", help="model to serve")
    parser.add_argument("--n", type=int, default=8, help="prompts to collect")
    parser.add_argument("--max-tokens", type=int, default=128, help="most tokens per response")
    parser.add_argument("--concurrency", type=int, default=2, help="requests in flight")
    parser.add_argument("--prompts", type=Path, help="a prompts JSONL instead of generated ones")
    # Generous: with one server slot a request also waits for the one ahead of it, and a
    # timed-out request is generated again, which would measure the timeout, not the client.
    parser.add_argument("--timeout-s", type=float, default=1800.0, help="seconds per request")
    args = parser.parse_args()

    alias = served_alias(args.model)
    base_url, started = ensure_server(args.model)
    slots = server_slots(base_url)
    load_before = os.getloadavg()[0]
    try:
        with tempfile.TemporaryDirectory() as tmp:
            prompts = args.prompts or generated_prompts(Path(tmp) / "prompts.jsonl", args.n)
            engine = open_store(f"sqlite:///{Path(tmp) / 'bench.db'}")
            report = collect(
                engine,
                prompts,
                base_url=base_url,
                model=alias,
                max_tokens=args.max_tokens,
                concurrency=args.concurrency,
                limit=args.n,
                timeout_s=args.timeout_s,
            )
            engine.dispose()
    finally:
        if started:
            llm_server("stop", args.model)

    server = report.server_tokens_per_s or float("nan")
    busy_rate = report.completion_tokens / report.server_busy_s if report.server_busy_s else 0.0
    figures = {
        "model": alias,
        "prompts": report.sent,
        "stored": report.stored,
        "completion_tokens": report.completion_tokens,
        "max_tokens": args.max_tokens,
        "concurrency": args.concurrency,
        "wall_s": round(report.wall_s, 3),
        "client_tokens_per_s": round(report.client_tokens_per_s, 3),
        "server_tokens_per_s": round(server, 3),
        "ratio_client_to_server": round(report.client_tokens_per_s / server, 3),
        "server_slots": slots,
        "ratio_client_to_server_x_slots": round(report.client_tokens_per_s / (server * slots), 3)
        if slots
        else None,
        "server_busy_s": round(report.server_busy_s or 0.0, 3),
        "ratio_client_to_server_busy": round(report.client_tokens_per_s / busy_rate, 3)
        if busy_rate
        else None,
        # The machine is shared: other work on its cores slows the server, not the ratio.
        "load_avg_1m_before": round(load_before, 2),
        "load_avg_1m_after": round(os.getloadavg()[0], 2),
        "cpu_count": os.cpu_count(),
    }
    width = max(len(k) for k in figures)
    print(f"{'figure':<{width}}  value")
    for key, value in figures.items():
        print(f"{key:<{width}}  {value}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
