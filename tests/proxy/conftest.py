"""Fixtures of the proxy tests: the generated upstream, a proxy in front of it, clients."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import openai
import pytest
from sqlmodel import Session, select

from proxy.app import Proxy, create_app, running_proxy
from sentinel_core.schema import TraceRow
from sentinel_core.settings import Settings
from sentinel_core.store import open_store
from tests.proxy.upstream import FakeUpstream, running_upstream

API_KEY = "sk-proxy-test-secret"


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with running_upstream() as fake:
        yield fake


@dataclass
class Running:
    """A proxy in front of ``upstream``: its URL, its state, and clients both ways."""

    url: str
    state: Proxy
    settings: Settings
    upstream: FakeUpstream
    clients: list[openai.OpenAI] = field(default_factory=list)

    def client(self, **headers: str) -> openai.OpenAI:
        """An ``openai`` client through the proxy (no retries), sending ``headers``."""
        made = openai.OpenAI(
            base_url=self.url, api_key=API_KEY, max_retries=0, default_headers=headers
        )
        self.clients.append(made)
        return made

    def direct(self) -> openai.OpenAI:
        """An ``openai`` client straight to the upstream."""
        made = openai.OpenAI(base_url=self.upstream.base_url, api_key=API_KEY, max_retries=0)
        self.clients.append(made)
        return made

    def stored(self) -> dict[str, TraceRow]:
        """Every trace in the store once the writer is idle, by id."""
        assert self.state.writer.wait_idle(10)
        engine = open_store(self.settings.store_url)
        try:
            with Session(engine) as session:
                return {row.id: row for row in session.exec(select(TraceRow)).all()}
        finally:
            engine.dispose()


@pytest.fixture
def make_proxy(upstream: FakeUpstream, tmp_path: Path) -> Iterator[Callable[..., Running]]:
    """Start a proxy with settings overridden by keyword; stopped at the end of the test."""
    stack: list[Any] = []

    def start(**overrides: Any) -> Running:
        values: dict[str, Any] = {
            "home": tmp_path / "home",
            "db_url": f"sqlite:///{tmp_path / 'store' / 's.db'}",
            "proxy_spill_path": tmp_path / "spill.jsonl",
            **overrides,
        }
        settings = Settings(**values)
        app = create_app(upstream.base_url, settings)
        context = running_proxy(app)
        url = context.__enter__()
        running = Running(url, app.state.proxy, settings, upstream)
        stack.append((context, running))
        return running

    yield start
    for context, running in reversed(stack):
        for client in running.clients:
            client.close()
        context.__exit__(None, None, None)


@pytest.fixture
def proxied(make_proxy: Callable[..., Running]) -> Running:
    return make_proxy()
