"""``sentinel nightly`` after traffic through the proxy monitors it by the headers' slice keys.

Issue 16's last point, end to end: the ``openai`` client sends chat requests through
the proxy with ``X-Sentinel-Route`` headers for two routes; the GENERATED upstream
(``tests/proxy/upstream.py``) answers with real-shaped ``chat.completion`` bodies and
the top-20 logprobs the proxy asks for; the proxy's writer stores the traces; then the
real ``sentinel nightly --by route`` runs in a child process (its ephemeral Prefect
server and a SQLite MLflow store, as ``tests/flows/test_cli.py`` runs it).

A night needs labels to train its first model on, sliced by the same key (retrain holds
slices out in evaluation, so it needs two labelled ones): the store starts with the
shipped labelled sample (corpus-dev, the datasheet's labels), tagged
``route=history-<benchmark>`` as labelled traffic of earlier routes would be.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sentinel_core.corpus import iter_sample_records
from sentinel_core.ingest import ingest_records
from sentinel_core.runs import previous_run
from sentinel_core.store import add_labels, open_store
from tests.proxy.conftest import Running

SENTINEL = str(Path(sys.executable).with_name("sentinel"))
ROUTES = ("faq", "search")
PER_ROUTE = 30  # the settings' min_slice_n: a slice of this many is not "too few"


def _seed_labelled_history(store_url: str) -> int:
    """The labelled sample, each trace with a ``route``; how many traces were stored."""
    records: list[tuple[dict[str, Any], int]] = []
    for record, label in iter_sample_records("corpus-dev"):
        metadata = {**record["metadata"], "route": f"history-{record['metadata']['benchmark']}"}
        records.append(({**record, "metadata": metadata}, label))
    engine = open_store(store_url)
    try:
        report = ingest_records(engine, (r for r, _ in records), source="sample:corpus-dev")
        add_labels(engine, ((r["id"], bool(y), None) for r, y in records), labeler="import")
    finally:
        engine.dispose()
    assert report.stored == len(records)
    return report.stored


def test_nightly_after_proxied_traffic_monitors_the_routes_the_headers_carried(
    make_proxy: Callable[..., Running], tmp_path: Path
) -> None:
    home = tmp_path / "home"
    store_url = f"sqlite:///{home / 'sentinel.db'}"
    seeded = _seed_labelled_history(store_url)
    proxied = make_proxy(home=home, db_url=store_url)
    for route in ROUTES:
        client = proxied.client(**{"X-Sentinel-Route": route})
        for i in range(PER_ROUTE):
            answer = client.chat.completions.create(
                model="generated-model",
                messages=[{"role": "user", "content": f"{route}: question {i}"}],
            )
            assert answer.choices[0].logprobs is None  # asked upstream, taken out again
    stored = proxied.stored()  # once the writer is idle
    routes = Counter(row.meta.get("route") for row in stored.values())
    assert {route: routes[route] for route in ROUTES} == dict.fromkeys(ROUTES, PER_ROUTE)
    assert all(row.k == 20 for row in stored.values() if row.meta.get("route") in ROUTES)

    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),  # Prefect's home too: its ephemeral server starts fresh
        "SENTINEL_HOME": str(home),
        "SENTINEL_N_BOOTSTRAP": "200",
    }
    night = [SENTINEL, "nightly", "--by", "route", "--budget", "6", "--key", "night-1"]
    done = subprocess.run(
        night, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600, check=False
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert f"monitor: {seeded + len(ROUTES) * PER_ROUTE} new traces" in done.stdout
    assert "accuracy by route" in done.stdout

    engine = open_store(store_url)
    try:
        run = previous_run(engine, slice_key="route")
    finally:
        engine.dispose()
    assert run is not None, "the night recorded no monitor run by route"
    slices = {estimate.slice: estimate for estimate in run.slices}
    for route in ROUTES:
        assert route in slices, sorted(slices)
        estimate = slices[route]
        assert estimate.n == PER_ROUTE
        assert not estimate.too_few
        assert 0.0 <= estimate.low <= estimate.accuracy <= estimate.high <= 1.0
    # Every monitored trace is in a slice: the proxied routes and the labelled history.
    assert sum(estimate.n for estimate in run.slices) == seeded + len(ROUTES) * PER_ROUTE
