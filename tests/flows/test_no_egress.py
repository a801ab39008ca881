"""Nothing leaves the machine: no telemetry by default, every socket on the loopback.

The real ``sentinel nightly`` runs in its own process under an audit hook
(``tests/flows/egress/sitecustomize.py``) that every Python process of the run
imports at startup, the ephemeral Prefect server included. It runs as a user runs
it, on a terminal (its stderr is a pseudo-terminal: Prefect's SDK analytics only
report from one), in an environment made from scratch, so none of the switches that
quiet Prefect or MLflow on their own (``CI``, ``PYTEST_CURRENT_TEST``,
``DO_NOT_TRACK``) is set by the test: what keeps them quiet is the project's own
default, ``SENTINEL_TELEMETRY=false`` (``tasks/__init__.py``).
"""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

import tasks

SENTINEL = str(Path(sys.executable).with_name("sentinel"))
HOOK = Path(__file__).with_name("egress")
SERVER_APP = "prefect.server.api.server:create_app"  # the ephemeral server's uvicorn app


ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]")


def hooked_env(tmp_path: Path) -> dict[str, str]:
    """A bare environment (home and store under ``tmp_path``) with the audit hook on."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "SENTINEL_HOME": str(tmp_path / ".sentinel"),
        "SENTINEL_N_BOOTSTRAP": "200",
        "PYTHONPATH": str(HOOK),
        "SENTINEL_EGRESS_LOG": str(tmp_path / "sockets.jsonl"),
    }


def recorded(tmp_path: Path) -> list[dict[str, Any]]:
    log = tmp_path / "sockets.jsonl"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def on_a_terminal(
    args: list[str], *, env: dict[str, str], cwd: Path, timeout: float
) -> tuple[int, str, str]:
    """Run ``args`` with stdout on a pipe and stderr on a pseudo-terminal.

    Returns the exit status, stdout, and what the terminal showed (colours stripped).
    """
    terminal, child_end = pty.openpty()
    shown: list[bytes] = []

    def read_terminal() -> None:
        while True:
            try:
                data = os.read(terminal, 65536)
            except OSError:  # EIO: every process holding the terminal has ended
                return
            if not data:
                return
            shown.append(data)

    reader = threading.Thread(target=read_terminal, daemon=True)
    reader.start()
    try:
        process = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=child_end, env=env, cwd=cwd, text=True
        )
        os.close(child_end)
        child_end = -1
        try:
            stdout, _ = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            raise
        reader.join(timeout=30)
    finally:
        if child_end >= 0:
            os.close(child_end)
        os.close(terminal)
    return process.returncode, stdout, ANSI.sub("", b"".join(shown).decode(errors="replace"))


def test_the_hook_records_and_refuses_a_target_outside_the_machine(tmp_path: Path) -> None:
    code = (
        "import socket\n"
        "outside = socket.socket()\n"
        "for call in (lambda: socket.getaddrinfo('sens-o-matic.prefect.io', 443),\n"
        "             lambda: outside.connect(('192.0.2.1', 443))):\n"
        "    try:\n"
        "        call()\n"
        "    except PermissionError as exc:\n"
        "        print('refused:', exc)\n"
        "server = socket.create_server(('127.0.0.1', 0))\n"
        "socket.create_connection(server.getsockname(), timeout=5).close()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True, text=True, env=hooked_env(tmp_path), timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("refused:") == 2
    events = [(r["event"], r["target"], r["local"]) for r in recorded(tmp_path)[1:]]
    assert ("socket.getaddrinfo", ["sens-o-matic.prefect.io", 443], False) in events
    assert ("socket.connect", ["192.0.2.1", 443], False) in events
    assert ("socket.bind", ["127.0.0.1", 0], True) in events
    assert any(e == "socket.connect" and local for e, _, local in events)


@pytest.mark.parametrize(("telemetry", "reports"), [("false", False), ("true", True)])
def test_prefect_reports_from_a_terminal_only_when_telemetry_is_switched_on(
    telemetry: str, reports: bool, tmp_path: Path
) -> None:
    # The control for the nightly run below: the same hook and terminal do catch
    # Prefect's SDK analytics (an event to Amplitude on the first import of a new
    # install) once SENTINEL_TELEMETRY=true lets it through.
    status, _, shown = on_a_terminal(
        [sys.executable, "-c", "import flows.nightly, time; time.sleep(5)"],
        env={**hooked_env(tmp_path), "SENTINEL_TELEMETRY": telemetry},
        cwd=tmp_path,
        timeout=300,
    )
    assert status == 0, shown[-2000:]
    outside = [r for r in recorded(tmp_path) if r["event"] != "start" and not r["local"]]
    assert bool(outside) is reports, outside
    assert ("anonymous usage data" in shown) is reports, shown[-2000:]


def test_sentinel_nightly_opens_no_connection_outside_the_loopback(tmp_path: Path) -> None:
    status, stdout, shown = on_a_terminal(
        [SENTINEL, "nightly", "--sample", "--budget", "12", "--key", "night-1"],
        env=hooked_env(tmp_path), cwd=tmp_path, timeout=900,
    )  # fmt: skip
    output = stdout + shown
    assert status == 0, output[-3000:]
    assert "acquire: campaign acquire-night-1-benchmark-exact: labelled 12" in stdout
    assert "Failed to send telemetry" not in output
    assert "anonymous usage data" not in output  # Prefect's notice on a terminal
    assert "send_telemetry_heartbeat" not in output  # its error when the server's db is busy
    assert "refused" not in output
    records = recorded(tmp_path)
    started = {r["pid"]: r["argv"] for r in records if r["event"] == "start"}
    # The hook ran in the CLI and in the ephemeral Prefect server the CLI started.
    assert any(argv[0] == SENTINEL for argv in started.values()), started
    assert any(SERVER_APP in argv for argv in started.values()), started
    sockets = [r for r in records if r["event"] != "start"]
    assert [r for r in sockets if not r["local"]] == []
    # Not vacuous: the CLI talked to its Prefect server over loopback TCP.
    assert any(r["event"] == "socket.connect" and isinstance(r["target"], list) for r in sockets)


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, tasks.TELEMETRY_OFF),
        ({"SENTINEL_TELEMETRY": "false"}, tasks.TELEMETRY_OFF),
        ({"SENTINEL_TELEMETRY": "not-a-bool"}, tasks.TELEMETRY_OFF),
        ({"SENTINEL_TELEMETRY": "true"}, {}),
        (
            {"PREFECT_SERVER_ANALYTICS_ENABLED": "true"},
            {**tasks.TELEMETRY_OFF, "PREFECT_SERVER_ANALYTICS_ENABLED": "true"},
        ),
        ({"DO_NOT_TRACK": "1"}, {**tasks.TELEMETRY_OFF, "DO_NOT_TRACK": "1"}),
    ],
)
def test_telemetry_is_switched_off_unless_the_user_says_otherwise(
    environ: dict[str, str],
    expected: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.chdir(tmp_path)  # no .env of the checkout
    for name in [*tasks.TELEMETRY_OFF, "SENTINEL_TELEMETRY"]:
        monkeypatch.delenv(name, raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    tasks.switch_telemetry_off()
    assert {name: os.environ.get(name) for name in tasks.TELEMETRY_OFF} == {
        name: expected.get(name) for name in tasks.TELEMETRY_OFF
    }


def test_a_dot_env_file_can_switch_telemetry_back_on(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("SENTINEL_TELEMETRY=true\n")
    for name in [*tasks.TELEMETRY_OFF, "SENTINEL_TELEMETRY"]:
        monkeypatch.delenv(name, raising=False)
    tasks.switch_telemetry_off()
    assert all(name not in os.environ for name in tasks.TELEMETRY_OFF)


def test_prefect_and_mlflow_read_the_switches_when_imported_through_the_cli(
    tmp_path: Path,
) -> None:
    # A bare environment: CI or PYTEST_CURRENT_TEST would quiet MLflow on their own.
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path)}
    code = (
        "import flows.cli, mlflow.telemetry.utils as m\n"
        "from prefect.settings import get_current_settings\n"
        "print(get_current_settings().server.analytics_enabled, m.is_telemetry_disabled())"
    )
    for telemetry, expected in (("false", "False True"), ("true", "True False")):
        done = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True, text=True, timeout=300, cwd=tmp_path,
            env={**env, "SENTINEL_TELEMETRY": telemetry},
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]
        assert done.stdout.split()[-2:] == expected.split(), telemetry
