"""The proxy's pure parts, without a server: plans, stripping, stream reassembly, records."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from proxy.wire import (
    SSESplitter,
    StreamAssembler,
    build_record,
    event_data,
    plan_request,
    slice_keys,
    strip_body,
    strip_event,
    strip_response,
)
from proxy.writer import TraceWriter
from sentinel_core.traces import parse_record
from tests.proxy.upstream import FakeUpstream

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(scope="module")
def fake() -> Any:
    server = FakeUpstream()
    server.server.server_close()  # only its body generators are used
    return server


def test_plan_adds_top_20_when_not_asked() -> None:
    plan = plan_request("chat", CHAT)
    assert plan.body == {**CHAT, "logprobs": True, "top_logprobs": 20}
    assert (plan.strip, plan.stream, plan.traced) == ("all", False, True)
    assert "logprobs" not in CHAT  # the request itself is untouched


@pytest.mark.parametrize(
    ("asked", "strip", "sent_k"),
    [({}, 0, 20), ({"top_logprobs": 5}, 5, 20), ({"top_logprobs": 20}, None, None)],
)
def test_plan_when_the_client_asked(asked: dict[str, Any], strip: Any, sent_k: Any) -> None:
    plan = plan_request("chat", {**CHAT, "logprobs": True, **asked})
    assert plan.strip == strip
    assert (plan.body or {}).get("top_logprobs") == sent_k


def test_plan_legacy() -> None:
    assert plan_request("legacy", {"prompt": "x"}).body == {"prompt": "x", "logprobs": 20}
    assert plan_request("legacy", {"prompt": "x", "logprobs": 2}).strip == 2
    assert plan_request("legacy", {"prompt": "x", "logprobs": 20}).body is None
    echoed = plan_request("legacy", {"prompt": "x", "echo": True})
    assert (echoed.body, echoed.traced) == (None, False)


def test_strip_all_gives_what_upstream_sends_unasked(fake: FakeUpstream) -> None:
    full = fake.chat_body({**CHAT, "n": 2, "logprobs": True, "top_logprobs": 20})
    unasked = fake.chat_body({**CHAT, "n": 2})
    assert strip_response(full, "all") == unasked
    assert full["choices"][0]["logprobs"] is not None  # not mutated
    raw = json.dumps(full, separators=(",", ":")).encode()
    out, parsed = strip_body(raw, "all")
    assert out == json.dumps(unasked, separators=(",", ":")).encode()
    assert parsed == full


def test_strip_to_k_chat_and_legacy(fake: FakeUpstream) -> None:
    full = fake.chat_body({**CHAT, "logprobs": True, "top_logprobs": 20})
    assert strip_response(full, 3) == fake.chat_body({**CHAT, "logprobs": True, "top_logprobs": 3})
    legacy = {"prompt": "p", "model": "m"}
    assert strip_response(fake.legacy_body({**legacy, "logprobs": 20}), 4) == fake.legacy_body(
        {**legacy, "logprobs": 4}
    )


def test_unstripped_body_is_the_same_bytes() -> None:
    raw = b'{"choices": [{"logprobs": null}],  "x": 1.50}'
    assert strip_body(raw, "all")[0] == raw  # nothing to strip: not re-serialised
    assert strip_body(b"not json", "all") == (b"not json", None)


def test_sse_splitter_across_arbitrary_cuts() -> None:
    stream = b'data: {"a":1}\n\n: comment\n\ndata: {"b":2}\r\n\r\ndata: [DONE]\n\n'
    for size in (1, 3, 7, len(stream)):
        splitter = SSESplitter()
        events = [
            e for i in range(0, len(stream), size) for e in splitter.feed(stream[i : i + size])
        ]
        assert b"".join(events) == stream
        assert [event_data(e) for e in events] == [b'{"a":1}', None, b'{"b":2}', b"[DONE]"]


def _events(chunks: list[dict[str, Any]]) -> list[bytes]:
    return [b"data: " + orjson.dumps(c) + b"\n\n" for c in chunks] + [b"data: [DONE]\n\n"]


@pytest.mark.parametrize("n", [1, 3])
def test_stream_reassembles_to_the_plain_answer(fake: FakeUpstream, n: int) -> None:
    request = {**CHAT, "n": n, "logprobs": True, "top_logprobs": 20, "stream": True}
    assembler = StreamAssembler("chat")
    unasked = []
    for event in _events(list(fake.chat_chunks(request))):
        sent, chunk = strip_event(event, "all")
        assembler.add(chunk)
        unasked.append(sent)
    assert b"".join(unasked) == b"".join(
        _events(list(fake.chat_chunks({**CHAT, "n": n, "stream": True})))
    )
    plain = fake.chat_body({**CHAT, "n": n, "logprobs": True, "top_logprobs": 20})
    rebuilt = assembler.completion()
    for got, want in zip(rebuilt["choices"], plain["choices"], strict=True):
        assert got["message"]["content"] == want["message"]["content"]
        assert got["logprobs"]["content"] == want["logprobs"]["content"]
    traces = parse_record(rebuilt)
    assert [t.k for t in traces] == [20] * n


def test_legacy_stream_reassembles(fake: FakeUpstream) -> None:
    request = {"prompt": "p", "model": "m", "logprobs": 20, "stream": True}
    assembler = StreamAssembler("legacy")
    for event in _events(list(fake.legacy_chunks(request))):
        assembler.add(strip_event(event, None)[1])
    plain = fake.legacy_body({"prompt": "p", "model": "m", "logprobs": 20})
    got = assembler.completion()["choices"][0]
    assert got["text"] == plain["choices"][0]["text"]
    assert got["logprobs"]["top_logprobs"] == plain["choices"][0]["logprobs"]["top_logprobs"]


def test_slice_keys_headers_win_over_metadata() -> None:
    headers = [
        ("X-Sentinel-Customer", "acme"),
        ("x-sentinel-prompt-kind", "qa"),
        ("authorization", "k"),
    ]
    request = {"metadata": {"customer": "body", "tier": 2}}
    assert slice_keys(headers, request) == {"customer": "acme", "prompt_kind": "qa", "tier": "2"}


def test_record_hashes_the_prompt_unless_kept(fake: FakeUpstream) -> None:
    response = fake.chat_body({**CHAT, "logprobs": True, "top_logprobs": 20})
    hidden = build_record("chat", CHAT, response, [], keep_prompt=False, received=1.0)
    assert hidden["prompt"].startswith("sha256:")
    assert "hi" not in json.dumps(hidden["prompt"])
    kept = build_record("chat", CHAT, response, [], keep_prompt=True, received=1.0)
    assert kept["prompt"] == CHAT["messages"]
    (trace,) = parse_record(hidden)
    assert (trace.k, trace.prompt, trace.id) == (20, None, response["id"])
    no_created = build_record(
        "chat", CHAT, {**response, "created": None}, [], keep_prompt=False, received=5.0
    )
    assert no_created["created"] == 5.0


def test_full_queue_drops_and_counts(tmp_path: Path) -> None:
    writer = TraceWriter(f"sqlite:///{tmp_path / 's.db'}", tmp_path / "spill.jsonl", queue_size=1)
    assert writer.submit({"x": 1}) is True
    assert writer.submit({"x": 2}) is False  # the thread is not started: the queue stays full
    counts = writer.counts.snapshot()
    assert (counts["submitted"], counts["dropped_queue_full"]) == (1, 1)
    writer.start()
    assert writer.wait_idle(10)
    writer.close()
    assert writer.counts.snapshot()["quarantined"] == 1  # not a trace: quarantined, not lost


def test_unwritable_store_and_spill_count_as_dropped(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    writer = TraceWriter(f"sqlite:///{blocker / 's.db'}", blocker / "spill.jsonl", queue_size=4)
    writer.start()
    writer.submit({"x": 1})
    assert writer.wait_idle(10)
    writer.close()
    counts = writer.counts.snapshot()
    assert (counts["spilled"], counts["dropped_spill_failed"], counts["store_errors"]) == (0, 1, 1)
