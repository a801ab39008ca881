"""``sentinel proxy`` in front of the real model server (scripts/llm-server, llama.cpp).

The command runs as a subprocess, as an operator starts it. Greedy decoding makes a
direct call and one through the proxy comparable: the same content, and a trace with
20 top_logprobs per token in the store. A second proxy whose store is down spills, and
``sentinel ingest`` of the spill file stores every trace.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import openai
import pytest
from sqlmodel import Session, select

from sentinel_core.schema import TraceRow
from sentinel_core.store import open_store

pytestmark = pytest.mark.llm_server
SENTINEL = str(Path(sys.executable).with_name("sentinel"))
MESSAGES = [{"role": "user", "content": "Name three primary colours, briefly."}]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def sentinel_proxy(upstream: str, db: str, home: Path) -> Iterator[str]:
    port = _free_port()
    env = {**os.environ, "SENTINEL_HOME": str(home)}
    home.mkdir(parents=True, exist_ok=True)
    log = home / "proxy.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [SENTINEL, "proxy", "--upstream", upstream, "--port", str(port), "--db", db],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    root = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(root + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "sentinel proxy did not start"
            time.sleep(0.2)
        yield root + "/v1"
    finally:
        process.terminate()  # uvicorn shuts down: the writer empties its queue first
        process.wait(60)


def _ask(client: openai.OpenAI, *, stream: bool) -> str:
    kwargs = {"model": "local", "messages": MESSAGES, "max_tokens": 24, "temperature": 0.0}
    if not stream:
        return client.chat.completions.create(**kwargs).choices[0].message.content or ""  # type: ignore[call-overload]
    chunks = client.chat.completions.create(stream=True, **kwargs)  # type: ignore[call-overload]
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def _rows(db: str) -> list[TraceRow]:
    engine = open_store(db)
    try:
        with Session(engine) as session:
            return list(session.exec(select(TraceRow)).all())
    finally:
        engine.dispose()


def test_plain_and_streaming_through_the_proxy(llm_server_url: str, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 's.db'}"
    direct = openai.OpenAI(base_url=llm_server_url, api_key="unused", max_retries=0)
    with sentinel_proxy(llm_server_url, db, tmp_path / "home") as url:
        client = openai.OpenAI(
            base_url=url,
            api_key="unused",
            max_retries=0,
            default_headers={"X-Sentinel-Customer": "acme"},
        )
        for stream in (False, True):
            assert _ask(client, stream=stream) == _ask(direct, stream=stream)
        client.close()
    direct.close()
    rows = _rows(db)
    assert len(rows) == 2
    assert all(row.k == 20 and row.n_steps >= 1 for row in rows)
    assert all(row.meta == {"customer": "acme"} for row in rows)
    assert len({row.response_text for row in rows}) == 1  # plain == reassembled stream


def test_store_down_spills_then_ingests(llm_server_url: str, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    home = tmp_path / "home"
    with sentinel_proxy(llm_server_url, f"sqlite:///{blocker / 's.db'}", home) as url:
        client = openai.OpenAI(base_url=url, api_key="unused", max_retries=0)
        _ask(client, stream=False)
        _ask(client, stream=True)
        client.close()
    spill = home / "proxy-spill.jsonl"
    assert len(spill.read_bytes().splitlines()) == 2
    good = f"sqlite:///{tmp_path / 'good.db'}"
    done = subprocess.run(
        [SENTINEL, "ingest", str(spill), "--db", good], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert sorted(row.k for row in _rows(good)) == [20, 20]
