"""Fixtures of the flow tests: one Prefect test server per session, real stores per test.

The store is seeded from the shipped real corpus (corpus-dev and corpus-collected, every
response of 14 benchmarks) with the datasheet's labels; a template is ingested once
per session and copied per test. The MLflow store is a fresh SQLite file per test,
read back with ``MlflowClient``.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sentinel_core.corpus import iter_sample_records
from sentinel_core.ingest import ingest_records
from sentinel_core.settings import Settings
from sentinel_core.store import add_labels, open_store

CORPORA = ("corpus-dev", "corpus-collected")


@pytest.fixture(scope="session", autouse=True)
def prefect_server() -> Iterator[None]:
    """Every flow in these tests runs against one temporary Prefect server (slow to start)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


def corpus_records() -> list[tuple[dict[str, Any], int]]:
    """Every shipped real response with its label, dev corpus first."""
    return [pair for name in CORPORA for pair in iter_sample_records(name)]


def seed_store(url: str, records: list[tuple[dict[str, Any], int]], *, source: str) -> None:
    """Ingest ``records`` and store their labels (labeler ``import``)."""
    engine = open_store(url)
    ingest_records(engine, (r for r, _ in records), source=source)
    add_labels(engine, ((r["id"], bool(y), None) for r, y in records), labeler="import")
    engine.dispose()


@pytest.fixture(scope="session")
def corpus_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite store holding the whole labelled corpus, made once."""
    path = tmp_path_factory.mktemp("template") / "sentinel.db"
    seed_store(f"sqlite:///{path}", corpus_records(), source="sample:corpus")
    return path


@dataclass(frozen=True)
class Env:
    """Where one test's stores live, as the flows take them."""

    home: Path
    db_url: str
    tracking_uri: str

    def settings(self) -> Settings:
        """The one settings object a test run of a flow takes."""
        return Settings(home=self.home, db_url=self.db_url, mlflow_tracking_uri=self.tracking_uri)

    def kwargs(self) -> dict[str, Settings]:
        return {"settings": self.settings()}

    def client(self) -> Any:
        from mlflow import MlflowClient

        return MlflowClient(self.tracking_uri)


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Env:
    """An empty store and an empty MLflow store under ``tmp_path``."""
    monkeypatch.setenv("SENTINEL_N_BOOTSTRAP", "200")  # 2000 resamples add nothing to these tests
    home = tmp_path / "home"
    home.mkdir()
    return Env(home, f"sqlite:///{home / 'sentinel.db'}", f"sqlite:///{home / 'mlflow.db'}")


@pytest.fixture
def corpus_env(env: Env, corpus_template: Path) -> Env:
    """``env`` with the labelled corpus already in its store."""
    shutil.copy(corpus_template, env.home / "sentinel.db")
    return env
