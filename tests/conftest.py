"""Shared fixtures: stores on SQLite files and on the real PostgreSQL server."""

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
