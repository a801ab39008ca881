"""The shipped alert automations deliver to a webhook, on a real Prefect server.

``scripts/prefect-server automations URL`` creates the webhook block and the two
automations of ``flows/automations.py`` on a server started by the same script; a small
HTTP receiver on 127.0.0.1 plays the operator's endpoint. A slice-drop event emitted as
the monitor flow emits it, and a flow run that fails, must each reach the receiver.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = str(ROOT / "scripts" / "prefect-server")


class Receiver:
    """Collects the JSON bodies POSTed to it."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.received.append(json.loads(body or b"{}"))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def wait_for(self, needle: str, timeout_s: float = 120.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for body in self.received:
                if needle in json.dumps(body):
                    return body
            time.sleep(0.5)
        raise AssertionError(
            f"no notification with {needle!r} within {timeout_s} s: {self.received}"
        )


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    found.thread.start()
    yield found
    found.server.shutdown()
    found.server.server_close()


def _python(env: dict[str, str], code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


@pytest.mark.services
def test_a_slice_drop_and_a_failed_flow_run_each_notify_the_webhook(
    server_env: dict[str, str], receiver: Receiver
) -> None:
    installed = subprocess.run(
        [SCRIPT, "automations", receiver.url],
        env=server_env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stderr[-2000:]
    assert "sentinel: slice accuracy dropped" in installed.stdout
    assert "sentinel: flow run failed" in installed.stdout
    # Installing again replaces the automations instead of adding a second pair.
    again = subprocess.run(
        [SCRIPT, "automations", receiver.url],
        env=server_env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr[-2000:]
    counted = _python(
        server_env,
        """
        from prefect.client.orchestration import get_client
        with get_client(sync_client=True) as client:
            print(sorted(a.name for a in client.read_automations()))
        """,
    )
    assert counted.stdout.strip() == (
        "['sentinel: flow run failed', 'sentinel: slice accuracy dropped']"
    ), counted.stderr[-2000:]

    # The event exactly as the monitor flow emits it (tasks.alerts.emit_alert).
    emitted = _python(
        server_env,
        """
        from prefect import flow
        from sentinel_core.drift import DriftAlert
        from tasks.alerts import emit_alert

        @flow
        def drop() -> str:
            alert = DriftAlert("r1", 0.62, 0.16, 0.05, 0.30, 0.46, 32, 32, "ppi_recent")
            return emit_alert(alert, flow_run_id="night-10", by="route")

        print(drop())
        """,
    )
    assert emitted.returncode == 0, emitted.stderr[-2000:]
    drop = receiver.wait_for("dropped to 0.16")
    assert drop["subject"] == "Entropy Sentinel: route r1 dropped to 0.16"
    assert "0.62 -> 0.16" in drop["body"]

    failed = _python(
        server_env,
        """
        from prefect import flow

        @flow(name="sentinel-test-failing")
        def failing() -> None:
            raise RuntimeError("injected: the store is down")

        failing()
        """,
    )
    assert failed.returncode != 0  # the flow raised
    note = receiver.wait_for("Failed")
    assert note["subject"].startswith("Entropy Sentinel: flow run ")
    assert "sentinel-test-failing" in note["body"]
    assert "injected: the store is down" in note["body"]
