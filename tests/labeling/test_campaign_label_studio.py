"""A Label Studio campaign on the real server: killed with SIGKILL, rerun, annotated, collected.

The server is the session's real Label Studio (tests/labeling/conftest.py). The
campaign runs through the ``sentinel`` command in a subprocess that is killed
at several moments; the reruns must leave exactly one task per planned trace,
and the annotations POSTed as a human would are stored as labels and paid for
once each.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from labeling.label_studio import CHOICE_NAME
from sentinel_core import ledger
from sentinel_core.corpus import iter_sample_records
from sentinel_core.ingest import ingest_records
from sentinel_core.schema import LabelRow
from tests.labeling.conftest import LabelStudioServer
from tests.labeling.planning import plan_stored

pytestmark = pytest.mark.services

SENTINEL = str(Path(sys.executable).with_name("sentinel"))
PRICE = 0.4


def project_tasks(http: httpx.Client, title: str) -> list[dict[str, Any]]:
    projects = http.get("/api/projects", params={"title": title, "page_size": 100}).json()
    matches = [p for p in projects["results"] if p["title"] == title]
    assert len(matches) == 1, [p["title"] for p in projects["results"]]
    tasks = http.get(
        "/api/tasks", params={"project": matches[0]["id"], "page_size": 1000, "fields": "all"}
    ).json()
    return list(tasks["tasks"])


def annotate(http: httpx.Client, task_id: int, choice: str) -> None:
    result = [
        {
            "id": uuid.uuid4().hex[:10],
            "from_name": CHOICE_NAME,
            "to_name": "response",
            "type": "choices",
            "origin": "manual",
            "value": {"choices": [choice]},
        }
    ]
    done = http.post(f"/api/tasks/{task_id}/annotations", json={"result": result})
    assert done.status_code == 201, done.text


def test_a_killed_label_studio_campaign_never_duplicates_a_task_and_pays_each_label_once(
    engine: Engine, store_url: str, label_studio: LabelStudioServer, http: httpx.Client,
    tmp_path: Path,
) -> None:  # fmt: skip
    ingest_records(
        engine, (r for r, _ in iter_sample_records("corpus-dev")), source="dev", keep_prompt=True
    )
    plan_stored(
        engine,
        "humans",
        labeler="label-studio",
        budget=8 * PRICE,
        unit="usd",
        cost_per_label=PRICE,
        max_slices=2,
        min_per_slice=4,
        p_correct="spread",
    )
    title = f"sentinel-campaign-{uuid.uuid4().hex[:8]}"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "SENTINEL_HOME": str(tmp_path / ".sentinel"),
        "SENTINEL_LABEL_STUDIO_URL": label_studio.url,
        "SENTINEL_LABEL_STUDIO_API_KEY": label_studio.token,
        "SENTINEL_LABEL_STUDIO_PROJECT": title,
        "SENTINEL_LABEL_STUDIO_PRICE_PER_LABEL": str(PRICE),
    }
    command = [SENTINEL, "campaign", "run", "humans", "--labeler", "label-studio"]
    command += ["--db", store_url, "--json"]
    # Killed at several moments of its life: importing, creating the project, reserving.
    for delay in (0.5, 1.5, 2.5, 3.5):
        victim = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL)
        time.sleep(delay)
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=30)
    done = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]

    planned = {r.trace_id for r in ledger.items(engine, "humans")}
    tasks = project_tasks(http, title)
    per_trace = Counter(t["data"]["trace_id"] for t in tasks)
    assert set(per_trace) == planned
    assert max(per_trace.values()) == 1
    budget = ledger.budget_state(engine, "humans")
    assert (budget.committed, budget.reserved) == (0.0, pytest.approx(8 * PRICE))
    # The question, the response and the estimator's P(correct) reach the annotator.
    assert all(t["data"]["question"] and t["data"]["response"] for t in tasks)

    verdicts = {t["data"]["trace_id"]: i % 3 != 0 for i, t in enumerate(tasks)}
    for t in tasks[:5]:
        annotate(http, t["id"], "correct" if verdicts[t["data"]["trace_id"]] else "incorrect")
    collected = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True)
    assert collected.returncode == 0, collected.stderr[-2000:]
    for t in tasks[5:]:
        annotate(http, t["id"], "correct" if verdicts[t["data"]["trace_id"]] else "incorrect")
    again = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-2000:]
    once_more = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True)
    assert once_more.returncode == 0, once_more.stderr[-2000:]

    budget = ledger.budget_state(engine, "humans")
    assert budget.committed == pytest.approx(8 * PRICE)
    assert budget.reserved == pytest.approx(0.0)
    with Session(engine) as session:
        labels = session.exec(select(LabelRow).where(LabelRow.labeler == "label-studio")).all()
    assert {lab.trace_id: lab.correct for lab in labels} == verdicts
    assert len(project_tasks(http, title)) == len(planned)
