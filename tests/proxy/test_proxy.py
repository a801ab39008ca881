"""The proxy end to end: the ``openai`` client through it, compared with a direct call.

The upstream is the GENERATED one of ``tests/proxy/upstream.py`` on 127.0.0.1; the store
is a SQLite file. Each test checks what the client received against the same request
sent straight to the upstream, and what reached the store.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import openai
import pytest
from typer.testing import CliRunner

from flows.cli import app as cli
from sentinel_core.store import open_store
from tests.labeling.judge_server import Step
from tests.proxy.conftest import API_KEY, Running

MESSAGES = [{"role": "user", "content": "What is 2 + 2?"}]


def _raw_chat(client: openai.OpenAI, **kwargs: Any) -> tuple[int, bytes]:
    raw = client.chat.completions.with_raw_response.create(model="generated-model", **kwargs)
    return raw.http_response.status_code, raw.http_response.content


def _stream_bytes(url: str, path: str, body: dict[str, Any], **headers: str) -> bytes:
    with httpx.stream(
        "POST", url + path, json=body, headers={"Authorization": f"Bearer {API_KEY}", **headers}
    ) as response:
        assert response.status_code == 200
        return b"".join(response.iter_raw())


def _logprobs(row: Any) -> np.ndarray:
    return np.frombuffer(row.logprobs, dtype=row.dtype).reshape(row.n_steps, row.k)


def test_plain_chat_is_byte_for_byte_and_stored_with_top_20(
    proxied: Running, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    client = proxied.client(**{"X-Sentinel-Customer": "acme", "X-Sentinel-Route": "faq"})
    status, through = _raw_chat(client, messages=MESSAGES)
    direct_status, direct = _raw_chat(proxied.direct(), messages=MESSAGES)
    assert (status, through) == (direct_status, direct)
    assert json.loads(through)["choices"][0]["logprobs"] is None
    # Upstream was asked for top-20, with the client's key and without the slice headers.
    sent, headers = proxied.upstream.requests[0], proxied.upstream.headers[0]
    assert (sent["logprobs"], sent["top_logprobs"]) == (True, 20)
    assert headers["authorization"] == f"Bearer {API_KEY}"
    assert not [h for h in headers if h.startswith("x-sentinel-")]
    stored = proxied.stored()
    row = stored[json.loads(through)["id"]]
    assert (row.k, row.n_steps) == (20, 6)
    assert row.meta == {"customer": "acme", "route": "faq"}
    assert row.prompt is None
    assert row.prompt_hash
    assert row.response_text == json.loads(through)["choices"][0]["message"]["content"]
    assert np.all(np.diff(_logprobs(row), axis=1) <= 0)
    assert API_KEY not in caplog.text


def test_streaming_chat_is_byte_for_byte_and_reassembled(proxied: Running) -> None:
    body = {"model": "generated-model", "messages": MESSAGES, "stream": True}
    through = _stream_bytes(proxied.url, "/chat/completions", body, **{"X-Sentinel-Customer": "b"})
    direct = _stream_bytes(proxied.upstream.base_url, "/chat/completions", body)
    assert through == direct
    assert b'"top_logprobs"' not in through
    # The openai client reads the same stream.
    chunks = list(
        proxied.client().chat.completions.create(
            model="generated-model", messages=MESSAGES, stream=True
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    stored = proxied.stored()
    assert len(stored) == 1  # the same stream twice: the second is a duplicate
    row = next(iter(stored.values()))
    assert (row.k, row.n_steps, row.response_text) == (20, 6, text)
    assert row.meta == {"customer": "b"}
    assert row.finish_reason == "stop"


def test_stream_trace_equals_the_plain_one(proxied: Running) -> None:
    """The logprobs reassembled from chunks are those of the non-streamed answer."""
    client = proxied.client()
    list(client.chat.completions.create(model="generated-model", messages=MESSAGES, stream=True))
    streamed = next(iter(proxied.stored().values()))
    plain = client.chat.completions.create(
        model="generated-model", messages=MESSAGES, logprobs=True, top_logprobs=20
    )
    assert plain.choices[0].logprobs is not None
    content = plain.choices[0].logprobs.content or []
    expected = np.array([[alt.logprob for alt in step.top_logprobs] for step in content])
    np.testing.assert_allclose(_logprobs(streamed), expected, rtol=1e-6)


def test_a_client_that_hangs_up_after_done_still_gets_its_trace_stored(proxied: Running) -> None:
    """The upstream holds its body open after ``[DONE]``; the client reads to ``[DONE]`` and
    closes the connection, which makes Starlette cancel the stream. The trace is whole, so
    it is stored (it was lost before: the submit came after the cancelled await)."""
    proxied.upstream.linger_after_done_s = 1.5
    body = {"model": "generated-model", "messages": MESSAGES, "stream": True}
    headers = {"Authorization": f"Bearer {API_KEY}", "X-Sentinel-Customer": "early-leaver"}
    url = proxied.url + "/chat/completions"
    http = httpx.Client(timeout=10)
    with http, http.stream("POST", url, json=body, headers=headers) as r:
        seen = b""
        for part in r.iter_raw():
            seen += part
            if b"data: [DONE]" in seen:
                break
    # The connection closed with the upstream still open: the proxy was cancelled mid-body.
    stored = proxied.stored()
    assert [(row.meta, row.n_steps, row.finish_reason) for row in stored.values()] == [
        ({"customer": "early-leaver"}, 6, "stop")
    ]


def test_a_client_that_hangs_up_mid_stream_stores_nothing(proxied: Running) -> None:
    """A stream the client abandons before the model finished is no whole trace."""
    proxied.upstream.linger_after_done_s = 0.0
    proxied.upstream.n_tokens = 400
    body = {"model": "generated-model", "messages": MESSAGES, "stream": True}
    headers = {"Authorization": f"Bearer {API_KEY}"}
    url = proxied.url + "/chat/completions"
    http = httpx.Client(timeout=10)
    with http, http.stream("POST", url, json=body, headers=headers) as r:
        next(r.iter_raw())
    assert proxied.stored() == {}


@pytest.mark.parametrize("stream", [False, True])
def test_n_choices(proxied: Running, stream: bool) -> None:
    body = {"model": "generated-model", "messages": MESSAGES, "n": 3, "stream": stream}
    if stream:
        through = _stream_bytes(proxied.url, "/chat/completions", body)
        direct = _stream_bytes(proxied.upstream.base_url, "/chat/completions", body)
        assert through == direct
        chunks = list(
            proxied.client().chat.completions.create(
                model="generated-model", messages=MESSAGES, n=3, stream=True
            )
        )
        texts = ["", "", ""]
        for chunk in chunks:
            for choice in chunk.choices:
                texts[choice.index] += choice.delta.content or ""
    else:
        got = proxied.client().chat.completions.create(
            model="generated-model", messages=MESSAGES, n=3
        )
        want = proxied.direct().chat.completions.create(
            model="generated-model", messages=MESSAGES, n=3
        )
        assert got.model_dump() == want.model_dump()
        texts = [c.message.content or "" for c in got.choices]
    stored = proxied.stored()
    base = proxied.upstream.requests[0]
    assert sorted(stored) == [f"{proxied.upstream._id(base, True)}/{i}" for i in range(3)]
    assert [stored[k].response_text for k in sorted(stored)] == texts
    assert all(row.k == 20 for row in stored.values())


def test_client_that_asked_for_fewer_logprobs_gets_them(proxied: Running) -> None:
    kwargs: dict[str, Any] = {"messages": MESSAGES, "logprobs": True, "top_logprobs": 5}
    got = proxied.client().chat.completions.create(model="generated-model", **kwargs)
    want = proxied.direct().chat.completions.create(model="generated-model", **kwargs)
    assert got.model_dump() == want.model_dump()
    assert got.choices[0].logprobs is not None
    assert all(len(s.top_logprobs) == 5 for s in got.choices[0].logprobs.content or [])
    assert proxied.upstream.requests[0]["top_logprobs"] == 20
    assert next(iter(proxied.stored().values())).k == 20


def test_client_that_asked_for_20_gets_the_upstream_bytes(proxied: Running) -> None:
    kwargs: dict[str, Any] = {"messages": MESSAGES, "logprobs": True, "top_logprobs": 20}
    assert _raw_chat(proxied.client(), **kwargs) == _raw_chat(proxied.direct(), **kwargs)
    body = {"model": "generated-model", "stream": True, **kwargs}
    through = _stream_bytes(proxied.url, "/chat/completions", body)
    assert through == _stream_bytes(proxied.upstream.base_url, "/chat/completions", body)
    assert next(iter(proxied.stored().values())).k == 20


@pytest.mark.parametrize("logprobs", [None, 3])
@pytest.mark.parametrize("stream", [False, True])
def test_legacy_completions(proxied: Running, logprobs: int | None, stream: bool) -> None:
    body: dict[str, Any] = {"model": "generated-model", "prompt": "Once", "n": 2}
    if logprobs is not None:
        body["logprobs"] = logprobs
    if stream:
        body["stream"] = True
        through = _stream_bytes(proxied.url, "/completions", body)
        assert through == _stream_bytes(proxied.upstream.base_url, "/completions", body)
    else:
        got = proxied.client().completions.create(**body)
        want = proxied.direct().completions.create(**body)
        assert got.model_dump() == want.model_dump()
    assert proxied.upstream.requests[0]["logprobs"] == 20
    stored = proxied.stored()
    assert len(stored) == 2
    assert all((row.k, row.n_steps) == (20, 6) for row in stored.values())


@pytest.mark.parametrize(
    ("status", "error"), [(429, openai.RateLimitError), (500, openai.InternalServerError)]
)
def test_upstream_errors_pass_through(proxied: Running, status: int, error: type) -> None:
    step = Step.error(status, "generated failure", headers={"Retry-After": "7"})
    proxied.upstream.script = [step, step]
    with pytest.raises(error) as through:
        proxied.client().chat.completions.create(model="generated-model", messages=MESSAGES)
    with pytest.raises(error) as direct:
        proxied.direct().chat.completions.create(model="generated-model", messages=MESSAGES)
    got, want = through.value.response, direct.value.response  # type: ignore[attr-defined]
    assert (got.status_code, got.content) == (want.status_code, want.content)
    assert got.headers["retry-after"] == "7"
    assert proxied.stored() == {}
    metrics = httpx.get(proxied.url.removesuffix("/v1") + "/metrics").text
    assert f'sentinel_proxy_requests_total{{endpoint="chat/completions",status="{status}"}} 1' in (
        metrics
    )


def test_upstream_timeout_is_504(make_proxy: Callable[..., Running]) -> None:
    proxied = make_proxy(proxy_timeout_s=0.3)
    proxied.upstream.script = [Step.slow(1.5)]
    with pytest.raises(openai.APIStatusError) as caught:
        proxied.client().chat.completions.create(model="generated-model", messages=MESSAGES)
    assert caught.value.status_code == 504
    assert "upstream" in caught.value.message


def test_other_paths_pass_through_or_404(proxied: Running) -> None:
    models = proxied.client().models.list()
    assert [m.id for m in models.data] == ["generated-model"]
    root = proxied.url.removesuffix("/v1")
    missing = httpx.get(root + "/nope")
    assert missing.status_code == 404
    assert "/v1/" in missing.json()["error"]["message"]
    assert httpx.get(root + "/healthz").json()["status"] == "ok"


def test_metadata_field_gives_slice_keys_and_headers_win(proxied: Running) -> None:
    proxied.client(**{"X-Sentinel-Customer": "header"}).chat.completions.create(
        model="generated-model",
        messages=MESSAGES,
        metadata={"customer": "body", "route": "search"},
    )
    assert next(iter(proxied.stored().values())).meta == {"customer": "header", "route": "search"}
    # The client's metadata goes upstream untouched.
    assert proxied.upstream.requests[0]["metadata"] == {"customer": "body", "route": "search"}


def test_prompt_kept_only_when_opted_in(make_proxy: Callable[..., Running]) -> None:
    proxied = make_proxy(keep_prompt_text=True)
    proxied.client().chat.completions.create(model="generated-model", messages=MESSAGES)
    row = next(iter(proxied.stored().values()))
    assert row.prompt is not None
    assert "What is 2 + 2?" in row.prompt


def test_store_down_spills_then_sentinel_ingest_stores(
    make_proxy: Callable[..., Running], tmp_path: Path
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the store's folder should be\n")
    proxied = make_proxy(db_url=f"sqlite:///{blocker / 's.db'}")
    client = proxied.client(**{"X-Sentinel-Customer": "acme"})
    client.chat.completions.create(model="generated-model", messages=MESSAGES)
    list(
        client.chat.completions.create(
            model="generated-model", messages=[{"role": "user", "content": "2"}], stream=True
        )
    )
    assert proxied.state.writer.wait_idle(10)
    counts = proxied.state.writer.counts.snapshot()
    assert (counts["spilled"], counts["stored"], counts["dropped_queue_full"]) == (2, 0, 0)
    spill = proxied.settings.proxy.spill_path
    assert spill is not None
    lines = spill.read_bytes().splitlines()
    assert len(lines) == 2
    assert b"What is 2 + 2?" not in spill.read_bytes()  # the prompt is hashed in the spill too
    metrics = httpx.get(proxied.url.removesuffix("/v1") + "/metrics").text
    assert "sentinel_proxy_traces_spilled_total 2" in metrics
    good = f"sqlite:///{tmp_path / 'good.db'}"
    done = CliRunner().invoke(cli, ["ingest", str(spill), "--db", good, "--json"])
    assert done.exit_code == 0, done.output
    assert json.loads(done.output.strip().splitlines()[-1])["stored"] == 2
    from sqlmodel import Session, select

    from sentinel_core.schema import TraceRow

    engine = open_store(good)
    with Session(engine) as session:
        rows = session.exec(select(TraceRow)).all()
    engine.dispose()
    assert sorted(r.meta["customer"] for r in rows) == ["acme", "acme"]
    assert all(r.k == 20 for r in rows)
