"""A real Label Studio server for the labeling tests, started once per test session."""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "label-studio"


@dataclass(frozen=True)
class LabelStudioServer:
    """Where the test server answers, and its admin's API token."""

    url: str
    token: str


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _run(env: dict[str, str], command: str, timeout_s: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), command],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def _tail(text: str, lines: int = 20) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


@pytest.fixture(scope="session")
def label_studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabelStudioServer]:
    """A fresh Label Studio (empty data dir, free port) from scripts/label-studio.

    Skipped, with the reason, only when label-studio cannot be installed (no
    package registry); an installed server that does not start fails the test.
    """
    env = dict(os.environ)
    env["SENTINEL_LS_DATA"] = str(tmp_path_factory.mktemp("label-studio"))
    env["SENTINEL_LS_PORT"] = str(_free_port())
    env.pop("SENTINEL_LABEL_STUDIO_API_KEY", None)  # the script generates one
    try:
        installed = _run(env, "install", timeout_s=1800)
    except subprocess.TimeoutExpired:
        pytest.skip("scripts/label-studio install took over 30 minutes")
    if installed.returncode != 0:
        pytest.skip(f"scripts/label-studio install failed: {_tail(installed.stderr)}")
    try:
        started = _run(env, "start", timeout_s=600)
    except subprocess.TimeoutExpired:
        _run(env, "stop", timeout_s=60)
        pytest.fail("scripts/label-studio start did not finish within 10 minutes")
    if started.returncode != 0:
        pytest.fail(
            f"scripts/label-studio start failed (exit {started.returncode}): "
            f"{_tail(started.stderr)}"
        )
    try:
        url = started.stdout.strip().splitlines()[-1]
        token = _run(env, "token", timeout_s=30).stdout.strip()
        assert token, "scripts/label-studio token printed nothing"
        yield LabelStudioServer(url=url, token=token)
    finally:
        stopped = _run(env, "stop", timeout_s=60)
        assert stopped.returncode == 0, stopped.stderr


@pytest.fixture
def http(label_studio: LabelStudioServer) -> Iterator[httpx.Client]:
    """Plain HTTP to the server with the admin's legacy token, as the web UI's calls go."""
    with httpx.Client(
        base_url=label_studio.url,
        headers={"Authorization": f"Token {label_studio.token}"},
        timeout=30,
    ) as client:
        yield client
