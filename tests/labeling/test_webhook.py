"""Label Studio's webhooks: the receiver stores each pushed label before answering.

The first tests POST deliveries shaped as Label Studio sends them (its webhook payload:
``action``, ``annotation``, ``task``, ``project``) to a real receiver on 127.0.0.1,
hostile ones included; the last one has the session's real Label Studio server call
the receiver when an annotation is made.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from labeling.campaign import run_campaign
from labeling.label_studio import CHOICE_NAME, WEBHOOK_SECRET_HEADER, LabelStudioLabeler
from labeling.webhook import AnnotationReceiver
from sentinel_core import ledger
from sentinel_core.corpus import iter_sample_records
from sentinel_core.ingest import ingest_records
from sentinel_core.schema import LabelRow
from tests.labeling.conftest import LabelStudioServer
from tests.labeling.planning import plan_stored

PRICE = 0.3
SENTINEL = str(Path(sys.executable).with_name("sentinel"))
SECRET = "s3cret-for-tests"


def _result(choice: str) -> list[dict[str, Any]]:
    return [
        {
            "id": uuid.uuid4().hex[:10],
            "from_name": CHOICE_NAME,
            "to_name": "response",
            "type": "choices",
            "origin": "manual",
            "value": {"choices": [choice]},
        }
    ]


def _delivery(
    trace_id: str, choice: str, *, overlap: int = 1, action: str = "ANNOTATION_CREATED"
) -> dict[str, Any]:
    return {
        "action": action,
        "project": {"id": 7},
        "task": {"id": 11, "overlap": overlap, "data": {"trace_id": trace_id, "response": "r"}},
        "annotation": {
            "id": 101,
            "result": _result(choice),
            "was_cancelled": False,
            "completed_by": 1,
            "created_at": "2026-12-03T08:00:00Z",
            "updated_at": "2026-12-03T08:00:00Z",
        },
    }


@pytest.fixture
def campaign(engine: Engine) -> list[str]:
    """A planned campaign whose items all wait for Label Studio; their trace ids."""
    ingest_records(
        engine, (r for r, _ in iter_sample_records("corpus-dev")), source="dev", keep_prompt=True
    )
    plan_stored(
        engine, "pushed", labeler="label-studio", budget=4 * PRICE, unit="usd",
        cost_per_label=PRICE, max_slices=1, min_per_slice=4,
    )  # fmt: skip
    rows = ledger.items(engine, "pushed")
    for row in rows:
        assert ledger.reserve(engine, row.id, PRICE, labeler="label-studio")  # type: ignore[arg-type]
    ledger.mark_submitted(engine, [r.id for r in rows])  # type: ignore[misc]
    return [r.trace_id for r in rows]


@pytest.fixture
def receiver(engine: Engine) -> Iterator[AnnotationReceiver]:
    server = AnnotationReceiver(engine, price_per_label=PRICE, secret=SECRET)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _post(
    receiver: AnnotationReceiver, body: Any, *, secret: str | None = SECRET
) -> httpx.Response:
    headers = {} if secret is None else {WEBHOOK_SECRET_HEADER: secret}
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(receiver.url, content=content, headers=headers, timeout=10)


def test_a_delivery_is_stored_and_paid_once_before_it_is_answered(
    engine: Engine, campaign: list[str], receiver: AnnotationReceiver
) -> None:
    answer = _post(receiver, _delivery(campaign[0], "incorrect"))
    assert answer.status_code == 200, answer.text
    assert answer.json()["settled"] == 1
    # Stored by the time the answer came: no waiting needed.
    with Session(engine) as session:
        label = session.exec(select(LabelRow).where(LabelRow.trace_id == campaign[0])).one()
    assert label.correct is False
    assert json.loads(label.detail or "{}")["via"] == "webhook"
    assert ledger.budget_state(engine, "pushed").committed == pytest.approx(PRICE)
    again = _post(receiver, _delivery(campaign[0], "correct", action="ANNOTATION_UPDATED"))
    assert again.json()["settled"] == 0  # settled already: paid once, first verdict kept
    assert ledger.budget_state(engine, "pushed").committed == pytest.approx(PRICE)


@pytest.mark.parametrize(
    ("body", "secret", "status"),
    [
        (b"{not json", SECRET, 400),
        ({"action": "ANNOTATION_CREATED", "task": "seven"}, SECRET, 400),
        ("wrong-shape", SECRET, 400),
        (None, "not-the-secret", 401),
        (None, None, 401),
    ],
)
def test_hostile_deliveries_are_refused_and_store_nothing(
    engine: Engine,
    campaign: list[str],
    receiver: AnnotationReceiver,
    body: Any,
    secret: str | None,
    status: int,
) -> None:
    sent = _delivery(campaign[0], "correct") if body is None else body
    answer = _post(receiver, sent, secret=secret)
    assert answer.status_code == status, answer.text
    assert "error" in answer.json()
    assert ledger.budget_state(engine, "pushed").committed == 0.0


def test_deliveries_without_a_label_to_store_are_answered_and_skipped(
    engine: Engine, campaign: list[str], receiver: AnnotationReceiver
) -> None:
    cancelled = _delivery(campaign[0], "correct")
    cancelled["annotation"]["was_cancelled"] = True
    for body, why in [
        (_delivery(campaign[0], "correct", action="PROJECT_UPDATED"), "carries no label"),
        (_delivery(campaign[0], "correct", overlap=2), "left to the campaign's poll"),
        (_delivery("not-a-campaign-trace", "correct"), "ANNOTATION_CREATED"),
        (cancelled, "cancelled"),
    ]:
        answer = _post(receiver, body)
        assert answer.status_code == 200, answer.text
        assert answer.json()["settled"] == 0
        assert why in answer.json()["detail"]
    assert httpx.post(receiver.url.replace("label-studio", "other"), json={}).status_code == 404
    assert ledger.budget_state(engine, "pushed").committed == 0.0


@pytest.mark.services
def test_the_real_label_studio_pushes_an_annotation_that_the_poll_then_does_not_pay_again(
    engine: Engine, label_studio: LabelStudioServer, http: httpx.Client
) -> None:
    ingest_records(
        engine, (r for r, _ in iter_sample_records("corpus-dev")), source="dev", keep_prompt=True
    )
    plan_stored(
        engine, "live", labeler="label-studio", budget=4 * PRICE, unit="usd",
        cost_per_label=PRICE, max_slices=1, min_per_slice=4,
    )  # fmt: skip
    server = AnnotationReceiver(engine, price_per_label=PRICE, secret=SECRET)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    title = f"sentinel-webhook-{uuid.uuid4().hex[:8]}"
    try:
        with LabelStudioLabeler(
            url=label_studio.url, api_key=label_studio.token, project_title=title,
            price_per_label=PRICE,
        ) as labeler:  # fmt: skip
            assert run_campaign(engine, "live", labeler).submitted == 4
            hook = labeler.register_webhook(server.url, secret=SECRET)
            assert labeler.register_webhook(server.url, secret=SECRET) == hook  # reused
            project = labeler.project_id()
            tasks = http.get("/api/tasks", params={"project": project, "fields": "all"}).json()
            first = tasks["tasks"][0]
            made = http.post(
                f"/api/tasks/{first['id']}/annotations/", json={"result": _result("correct")}
            )
            assert made.status_code == 201, made.text
            deadline = time.monotonic() + 20
            while server.settled < 1 and time.monotonic() < deadline:
                time.sleep(0.2)
            assert server.settled == 1
            trace = first["data"]["trace_id"]
            with Session(engine) as session:
                label = session.exec(select(LabelRow).where(LabelRow.trace_id == trace)).one()
            assert label.correct is True
            assert json.loads(label.detail or "{}")["via"] == "webhook"
            # The poll (the fallback) finds the label stored and pays nothing twice.
            again = run_campaign(engine, "live", labeler)
            assert again.labelled == 0
        assert ledger.budget_state(engine, "live").committed == pytest.approx(PRICE)
        hooks = http.get("/api/webhooks/", params={"project": project}).json()
        assert [h["url"] for h in hooks] == [server.url]
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.services
def test_sentinel_campaign_receive_stores_pushed_labels_and_stops_on_sigterm(
    engine: Engine, store_url: str, label_studio: LabelStudioServer, http: httpx.Client,
    tmp_path: Path,
) -> None:  # fmt: skip
    ingest_records(
        engine, (r for r, _ in iter_sample_records("corpus-dev")), source="dev", keep_prompt=True
    )
    plan_stored(
        engine, "cli", labeler="label-studio", budget=4 * PRICE, unit="usd",
        cost_per_label=PRICE, max_slices=1, min_per_slice=4,
    )  # fmt: skip
    title = f"sentinel-receive-{uuid.uuid4().hex[:8]}"
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "SENTINEL_HOME": str(tmp_path / ".sentinel"),
        "SENTINEL_LABEL_STUDIO_URL": label_studio.url,
        "SENTINEL_LABEL_STUDIO_API_KEY": label_studio.token,
        "SENTINEL_LABEL_STUDIO_PROJECT": title,
        "SENTINEL_LABEL_STUDIO_PRICE_PER_LABEL": str(PRICE),
        "SENTINEL_LABEL_STUDIO_WEBHOOK_SECRET": SECRET,
    }
    run = [SENTINEL, "campaign", "run", "cli", "--labeler", "label-studio", "--db", store_url]
    done = subprocess.run(run, env=env, cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    receive = subprocess.Popen(
        [SENTINEL, "campaign", "receive", "--db", store_url, "--port", "0"],
        env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert receive.stdout is not None
        banner = receive.stdout.readline()
        assert "receiving Label Studio annotations at http://127.0.0.1:" in banner, banner
        projects = http.get("/api/projects", params={"title": title}).json()["results"]
        tasks = http.get("/api/tasks", params={"project": projects[0]["id"]}).json()["tasks"]
        made = http.post(
            f"/api/tasks/{tasks[0]['id']}/annotations/", json={"result": _result("incorrect")}
        )
        assert made.status_code == 201, made.text
        deadline = time.monotonic() + 20
        while ledger.budget_state(engine, "cli").committed == 0 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert ledger.budget_state(engine, "cli").committed == pytest.approx(PRICE)
    finally:
        receive.send_signal(signal.SIGTERM)
        out, err = receive.communicate(timeout=30)
    assert receive.returncode == 0, err[-2000:]
    assert "received 1 deliveries, settled 1 label(s)" in out
    assert SECRET not in out + err
