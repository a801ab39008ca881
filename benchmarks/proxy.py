"""Latency and throughput the logging proxy adds, against a small fast upstream.

Starts the GENERATED OpenAI-compatible upstream of the proxy tests
(``tests/proxy/upstream.py``, stdlib ``http.server`` on 127.0.0.1) and ``sentinel proxy``
in front of it (a temporary SQLite store), each in its own process as in production (in
one process the client's and the servers' threads share one GIL, which adds tens of
milliseconds that are not the proxy's), then for the same chat request
(a few tokens; top-20 logprobs asked upstream and stripped again) measures:

* added latency per request: paired, interleaved sequential requests, direct then
  through the proxy, on kept-alive connections; the added latency is the difference
  of the medians (p50) and of the 99th percentiles (p99) of the two (goal: p50 < 2 ms,
  p99 < 10 ms);
* requests/s with ``--concurrency`` client threads, direct and through the proxy.

The client is httpx (what the ``openai`` client uses), one connection pool per thread.
Every proxied answer is also written to the store by the proxy's writer thread; the run
checks at the end that all were stored. The 1-minute load average before and after
the run is reported with the figures: on a shared machine they move with it. Prints a
table, then one JSON line.

Usage: .venv/bin/python benchmarks/proxy.py [--requests 2000] [--tokens 8] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SENTINEL = str(Path(sys.executable).with_name("sentinel"))


@contextmanager
def _process(
    command: list[str], env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    try:
        yield process
    finally:
        process.terminate()
        process.wait(60)
        if process.stdout:
            process.stdout.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _healthz(root: str) -> dict[str, Any]:
    return dict(httpx.get(root + "/healthz", timeout=5).json())


def _body(i: int) -> bytes:
    request = {"model": "generated-model", "messages": [{"role": "user", "content": f"q{i}"}]}
    return json.dumps(request).encode()


def _latencies(url: str, proxied_url: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    direct_ms, proxied_ms = [], []
    headers = {"Authorization": "Bearer sk-bench", "Content-Type": "application/json"}
    with httpx.Client(headers=headers) as direct, httpx.Client(headers=headers) as through:
        for i in range(n + 50):
            for client, base, sink in (
                (direct, url, direct_ms),
                (through, proxied_url, proxied_ms),
            ):
                started = time.perf_counter()
                response = client.post(base + "/chat/completions", content=_body(i))
                elapsed = (time.perf_counter() - started) * 1000
                assert response.status_code == 200, response.text
                if i >= 50:  # warm-up: connections, code paths
                    sink.append(elapsed)
    return np.array(direct_ms), np.array(proxied_ms)


def _throughput(base: str, n: int, concurrency: int) -> float:
    per_thread = n // concurrency
    headers = {"Authorization": "Bearer sk-bench", "Content-Type": "application/json"}

    def worker(t: int) -> None:
        with httpx.Client(headers=headers) as client:
            for i in range(per_thread):
                response = client.post(base + "/chat/completions", content=_body(t * n + i))
                assert response.status_code == 200

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return per_thread * concurrency / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--tokens", type=int, default=8)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    upstream_command = [sys.executable, "-m", "tests.proxy.upstream", str(args.tokens)]
    with tempfile.TemporaryDirectory() as tmp, _process(upstream_command) as up:
        assert up.stdout is not None
        upstream_url = up.stdout.readline().strip()
        port = _free_port()
        root = f"http://127.0.0.1:{port}"
        env = {**os.environ, "SENTINEL_HOME": tmp}
        command = [SENTINEL, "proxy", "--upstream", upstream_url, "--port", str(port)]
        with _process([*command, "--db", f"sqlite:///{tmp}/bench.db"], env=env):
            for _ in range(300):
                try:
                    _healthz(root)
                    break
                except httpx.HTTPError:
                    time.sleep(0.1)
            proxied_url = root + "/v1"
            direct_ms, proxied_ms = _latencies(upstream_url, proxied_url, args.requests)
            direct_rps = _throughput(upstream_url, args.requests, args.concurrency)
            proxied_rps = _throughput(proxied_url, args.requests, args.concurrency)
            for _ in range(600):
                counts = _healthz(root)
                if counts["queue_depth"] == 0 and counts["submitted"] == (
                    counts["stored"]
                    + counts["duplicates"]
                    + counts["quarantined"]
                    + counts["spilled"]
                    + counts["dropped_spill_failed"]
                ):
                    break
                time.sleep(0.2)
    figures = {
        "requests": args.requests,
        "tokens_per_answer": args.tokens,
        "direct_p50_ms": round(float(np.percentile(direct_ms, 50)), 3),
        "direct_p99_ms": round(float(np.percentile(direct_ms, 99)), 3),
        "proxied_p50_ms": round(float(np.percentile(proxied_ms, 50)), 3),
        "proxied_p99_ms": round(float(np.percentile(proxied_ms, 99)), 3),
        "added_p50_ms": round(
            float(np.percentile(proxied_ms, 50) - np.percentile(direct_ms, 50)), 3
        ),
        "added_p99_ms": round(
            float(np.percentile(proxied_ms, 99) - np.percentile(direct_ms, 99)), 3
        ),
        "concurrency": args.concurrency,
        "direct_rps": round(direct_rps, 1),
        "proxied_rps": round(proxied_rps, 1),
        "traces_stored": counts["stored"],
        "traces_duplicates": counts["duplicates"],
        "traces_dropped": counts["dropped_queue_full"] + counts["dropped_spill_failed"],
        "traces_spilled": counts["spilled"],
        "cpus": os.cpu_count(),
        "load_1m_before": round(load_before, 2),
        "load_1m_after": round(os.getloadavg()[0], 2),
    }
    print(f"{'':24}{'direct':>10}{'proxied':>10}{'added':>10}")
    for q in ("p50", "p99"):
        print(
            f"latency {q} (ms){'':9}{figures[f'direct_{q}_ms']:>10.3f}"
            f"{figures[f'proxied_{q}_ms']:>10.3f}{figures[f'added_{q}_ms']:>10.3f}"
        )
    print(f"requests/s (x{args.concurrency}){'':6}{direct_rps:>10.1f}{proxied_rps:>10.1f}")
    print(
        f"traces stored {counts['stored']} (+{counts['duplicates']} duplicates), spilled "
        f"{counts['spilled']}, dropped {figures['traces_dropped']}"
    )
    print(
        f"load average (1 min) {figures['load_1m_before']} before, "
        f"{figures['load_1m_after']} after, on {figures['cpus']} CPUs"
    )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
