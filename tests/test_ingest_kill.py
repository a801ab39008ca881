"""A `sentinel ingest` SIGKILLed at several points, with the default settings, then rerun.

Each batch (500 responses by default) is one transaction: a kill keeps every batch
committed before it and nothing of the batch in flight, and the rerun stores the rest, so
after the rerun the store holds exactly what one uninterrupted ingest would.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from tests.factories import real_lines

SENTINEL = str(Path(sys.executable).parent / "sentinel")
N_GOOD = 1800
BAD_EVERY = 97  # a quarantined line every 97 lines, so quarantine is cut by the kills too
_TOKENS = 60


def _hostile_big_file(path: Path) -> tuple[int, int]:
    records = []
    for line in real_lines():
        record = orjson.loads(line)
        choice = record["response"]["choices"][0]
        choice["logprobs"]["content"] = choice["logprobs"]["content"][:_TOKENS]
        records.append(record)
    good = bad = 0
    with path.open("wb") as sink:
        for i in range(N_GOOD):
            record = records[i % len(records)]
            record["id"] = f"kill-{i:05d}"
            sink.write(orjson.dumps(record) + b"\n")
            good += 1
            if i % BAD_EVERY == 0:
                sink.write(b'{"id": "broken-%d", "response": [' % i + b"\n")
                bad += 1
    return good, bad


def _counts(db: Path) -> tuple[int, int, int]:
    if not db.exists():
        return 0, 0, 0
    try:
        with contextlib.closing(sqlite3.connect(db, timeout=5)) as con:
            return (
                con.execute("SELECT count(*) FROM traces").fetchone()[0],
                con.execute("SELECT count(*) FROM features").fetchone()[0],
                con.execute("SELECT count(*) FROM quarantine").fetchone()[0],
            )
    except sqlite3.OperationalError:  # tables not created yet
        return 0, 0, 0


def _ingest(path: Path, db: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SENTINEL_")}
    return subprocess.Popen(
        [SENTINEL, "ingest", str(path), "--db", f"sqlite:///{db}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        start_new_session=True,
    )


def _kill_when(process: subprocess.Popen[bytes], db: Path, *, rows: int) -> tuple[int, int, int]:
    """SIGKILL ``process`` once the store holds at least ``rows`` traces + quarantine rows."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        traces, _, quarantined = _counts(db)
        if traces + quarantined >= rows or process.poll() is not None:
            break
        time.sleep(0.01)
    assert process.poll() is None, "the ingest finished before the kill: make the file larger"
    os.killpg(process.pid, signal.SIGKILL)
    process.communicate(timeout=30)
    return _counts(db)


@pytest.mark.parametrize("kill_after", [[0], [1, 501], [1001]])
def test_a_killed_ingest_keeps_whole_batches_and_the_rerun_finishes_the_job(
    tmp_path: Path, kill_after: list[int]
) -> None:
    path = tmp_path / "big.jsonl"
    good, bad = _hostile_big_file(path)
    db = tmp_path / "store.db"
    for rows in kill_after:
        process = _ingest(path, db)
        traces, features, quarantined = _kill_when(process, db, rows=rows)
        # Whole batches only: 500 responses (traces + quarantined lines) per commit.
        assert (traces + quarantined) % 500 == 0, (traces, quarantined)
        assert features == traces
        assert traces + quarantined >= rows - (rows % 500)
    rerun = subprocess.run(
        [SENTINEL, "ingest", str(path), "--db", f"sqlite:///{db}"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert rerun.returncode == 0, rerun.stderr
    assert _counts(db) == (good, good, bad)
    line = rerun.stdout.strip().splitlines()[-1]
    before = traces + quarantined
    assert f"read {good + bad} = stored {good - traces} + quarantined {bad - quarantined} " in line
    assert line.endswith(f"duplicates {before}")


def _short_file(path: Path, *, n: int, answer: str) -> None:
    records = []
    for line in real_lines():
        record = orjson.loads(line)
        choice = record["response"]["choices"][0]
        choice["logprobs"]["content"] = choice["logprobs"]["content"][:20]
        choice["message"]["content"] = answer
        records.append(record)
    with path.open("wb") as sink:
        for i in range(n):
            record = records[i % len(records)]
            record["id"] = f"race-{i:05d}"
            sink.write(orjson.dumps(record) + b"\n")


@pytest.mark.parametrize("other_content", [False, True])
def test_two_ingests_at_once_store_each_response_once_and_lose_no_conflict(
    tmp_path: Path, other_content: bool
) -> None:
    n = 2500
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    _short_file(first, n=n, answer="one answer")
    _short_file(second, n=n, answer="another answer" if other_content else "one answer")
    db = tmp_path / "store.db"
    runs = [
        subprocess.Popen(
            [SENTINEL, "ingest", str(path), "--db", f"sqlite:///{db}", "--json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for path in (first, second)
    ]
    reports = []
    for run in runs:
        stdout, stderr = run.communicate(timeout=600)
        assert run.returncode == 0, stderr
        reports.append(orjson.loads(stdout.strip().splitlines()[-1]))
    for report in reports:
        assert report["read"] == report["stored"] + report["quarantined"] + report["duplicates"]
    # Whoever wrote an id first stored it; the other saw a duplicate, or a conflict that is
    # quarantined: the counts of the two runs add up to what the store holds.
    assert sum(r["stored"] for r in reports) == n
    traces, features, quarantined = _counts(db)
    assert (traces, features) == (n, n)
    assert sum(r["quarantined"] for r in reports) == quarantined == (n if other_content else 0)
    assert sum(r["duplicates"] for r in reports) == (0 if other_content else n)
