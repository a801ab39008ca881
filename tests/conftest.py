"""Shared fixtures: stores on SQLite files and on the real PostgreSQL server; the LLM server."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlmodel import SQLModel

from sentinel_core.store import open_store

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """URL of the PostgreSQL server that scripts/postgres starts on 127.0.0.1."""
    url = os.environ.get("SENTINEL_TEST_PG_URL")
    if url:
        return url
    try:
        done = subprocess.run(
            [str(ROOT / "scripts" / "postgres"), "start"],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
        detail = getattr(exc, "stderr", "") or str(exc)
        pytest.skip(f"PostgreSQL could not be started by scripts/postgres: {detail.strip()}")
    return done.stdout.strip().splitlines()[-1]


def _llm_server(command: str, timeout_s: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ROOT / "scripts" / "llm-server"), command],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )


def _tail(done: subprocess.CompletedProcess[str], lines: int = 12) -> str:
    return "\n".join((done.stdout + done.stderr).strip().splitlines()[-lines:])


@pytest.fixture(scope="session")
def llm_server_url() -> Iterator[str]:
    """Base URL (``.../v1``) of the real model server that scripts/llm-server runs on 127.0.0.1.

    Qwen2.5-Coder-1.5B-Instruct Q4_K_M under llama.cpp's ``llama-server``. The
    first use builds the server and assembles the model (cached outside the work
    tree); skipped, with the reason, only where they cannot be built or fetched.
    Started here unless already running, and then stopped at the end of the session.
    """
    for command, timeout_s in (("build", 3600), ("model", 1800)):
        done = _llm_server(command, timeout_s)
        if done.returncode != 0:
            pytest.skip(f"scripts/llm-server {command} could not build/fetch: {_tail(done)}")
    already = _llm_server("status", 30).returncode == 0
    started = _llm_server("start", 600)
    assert started.returncode == 0, _tail(started, 30)
    try:
        yield started.stdout.strip().splitlines()[-1] + "/v1"
    finally:
        if not already:
            stopped = _llm_server("stop", 60)
            assert stopped.returncode == 0, _tail(stopped)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty store: a SQLite file, then the real PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store' / 'sentinel.db'}"
    url: str = request.getfixturevalue("postgres_url")
    engine = open_store(url)
    SQLModel.metadata.drop_all(engine)
    engine.dispose()
    return url


@pytest.fixture
def engine(store_url: str) -> Iterator[Engine]:
    """An engine on a fresh store, disposed after the test."""
    engine = open_store(store_url)
    yield engine
    engine.dispose()
