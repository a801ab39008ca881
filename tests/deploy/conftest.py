"""The deploy tests' shared fixture: a real Prefect server and worker started by
``scripts/prefect-server``, each test with its own PREFECT_HOME and a free port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = str(ROOT / "scripts" / "prefect-server")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def server_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A started server and worker; the environment that reaches them (API URL included)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "SENTINEL_"))}
    env |= {
        "SENTINEL_PREFECT_HOME": str(tmp_path / "prefect"),
        "SENTINEL_PREFECT_PORT": str(_free_port()),
        "SENTINEL_PYTHON": sys.executable,
        "SENTINEL_N_BOOTSTRAP": "200",  # reaches the flow run through the worker
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    started = subprocess.run([SCRIPT, "start"], env=env, capture_output=True, text=True)
    try:
        if started.returncode != 0:
            pytest.skip(f"scripts/prefect-server start failed: {started.stderr[-1500:]}")
        env["PREFECT_API_URL"] = started.stdout.strip().splitlines()[-1]
        yield env
    finally:
        stopped = subprocess.run([SCRIPT, "stop"], env=env, capture_output=True, text=True)
        assert stopped.returncode == 0, stopped.stderr
