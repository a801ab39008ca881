"""The proxy's upstream client (``proxy/client.py``, aiohttp) against scripted raw servers.

What the proxy relies on is checked through the client's public interface: the request
as given (no added headers), kept-alive connections, chunked bodies, bodies that end
with the connection, truncated bodies, interim 1xx answers, HEAD, encodings, timeouts,
refused connections and environment proxies; and through the app, the status the
client gets (502, 504) and repeated headers kept apart.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import socket
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlmodel import Session, select

from proxy.app import Proxy, create_app, running_proxy
from proxy.client import AiohttpUpstream, UpstreamError, UpstreamTimeoutError, open_upstream
from sentinel_core.schema import TraceRow
from sentinel_core.settings import Settings
from sentinel_core.store import open_store
from tests.proxy.conftest import API_KEY
from tests.proxy.upstream import FakeUpstream

MESSAGES = [{"role": "user", "content": "What is 2 + 2?"}]


@dataclass
class Reply:
    """What the scripted server sends for one request."""

    data: bytes | None  # None: close without answering
    close: bool = False  # close the connection after sending
    delay_s: float = 0.0


def ok(body: bytes = b"hello", *headers: str) -> Reply:
    head = "".join(f"{h}\r\n" for h in headers)
    return Reply(
        b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n%s\r\n%s" % (len(body), head.encode(), body)
    )


@dataclass
class Scripted:
    """A raw HTTP/1.1 server on 127.0.0.1: each request gets the next :class:`Reply`."""

    replies: list[Reply]
    requests: list[bytes] = field(default_factory=list)
    connections: int = 0
    sock: socket.socket = field(default_factory=socket.socket)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._connection, args=(conn,), daemon=True).start()

    def _read_request(self, conn: socket.socket, buffer: bytes) -> tuple[bytes, bytes] | None:
        while b"\r\n\r\n" not in buffer:
            data = conn.recv(65536)
            if not data:
                return None
            buffer += data
        head, _, rest = buffer.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(rest) < length:
            rest += conn.recv(65536)
        return head + b"\r\n\r\n" + rest[:length], rest[length:]

    def _connection(self, conn: socket.socket) -> None:
        buffer = b""
        with conn:
            while True:
                got = self._read_request(conn, buffer)
                if got is None:
                    return
                request, buffer = got
                self.requests.append(request)
                reply = self.replies.pop(0)
                time.sleep(reply.delay_s)
                if reply.data is None:
                    return
                with contextlib.suppress(OSError):
                    conn.sendall(reply.data)
                if reply.close:
                    return


@pytest.fixture
def scripted() -> Iterator[Scripted]:
    server = Scripted([])
    server.sock.bind(("127.0.0.1", 0))
    server.sock.listen(16)
    thread = threading.Thread(target=server.serve, daemon=True)
    thread.start()
    yield server
    server.sock.close()


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


async def _get(upstream: AiohttpUpstream, target: bytes = b"/v1/x", **kw: Any) -> tuple[int, bytes]:
    response = await upstream.send(kw.get("method", "GET"), target, kw.get("headers", []), b"")
    try:
        return response.status_code, await response.aread()
    finally:
        await response.aclose()


def _fetch(url: str, timeout_s: float = 5, **kw: Any) -> tuple[int, bytes]:
    """One request on a fresh client, closed after it."""

    async def one() -> tuple[int, bytes]:
        upstream = AiohttpUpstream(url, timeout_s)
        try:
            return await _get(upstream, **kw)
        finally:
            await upstream.aclose()

    return run(one())


def _head_lines(request: bytes) -> tuple[bytes, dict[bytes, bytes]]:
    head = request.partition(b"\r\n\r\n")[0].split(b"\r\n")
    fields = dict(line.split(b": ", 1) for line in head[1:])
    return head[0], {k.lower(): v for k, v in fields.items()}


# -- the client: requests as given, environment proxies ---------------------------------


def test_requests_share_a_kept_alive_connection_and_go_as_given(scripted: Scripted) -> None:
    scripted.replies = [ok(b"one"), ok(b"two")]

    async def both() -> list[tuple[int, bytes]]:
        upstream = open_upstream(scripted.url + "/prefix", 5)
        first = await upstream.send(
            "POST", b"/v1/chat?x=1", [(b"authorization", b"Bearer k")], b'{"a":1}'
        )
        one = (first.status_code, await first.aread())
        await first.aclose()
        assert isinstance(upstream, AiohttpUpstream)
        two = await _get(upstream)
        await upstream.aclose()
        return [one, two]

    assert run(both()) == [(200, b"one"), (200, b"two")]
    assert scripted.connections == 1
    port = scripted.url.rsplit(":", 1)[1]
    line, fields = _head_lines(scripted.requests[0])
    assert line == b"POST /prefix/v1/chat?x=1 HTTP/1.1"
    # nothing added: no user-agent, accept, accept-encoding, content-type or cookie
    assert fields == {
        b"host": b"127.0.0.1:%s" % port.encode(),
        b"authorization": b"Bearer k",
        b"content-length": b"7",
    }
    assert scripted.requests[0].endswith(b'\r\n\r\n{"a":1}')
    line, fields = _head_lines(scripted.requests[1])
    assert line == b"GET /prefix/v1/x HTTP/1.1"
    assert b"content-length" not in fields  # no body, no length (as httpx)


def test_an_http_proxy_setting_that_covers_the_upstream_is_used(
    scripted: Scripted, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.setenv("HTTP_PROXY", scripted.url)  # the scripted server is the proxy
    scripted.replies = [ok(b"via the proxy")]
    assert _fetch("http://models.example.com:8080") == (200, b"via the proxy")
    line, fields = _head_lines(scripted.requests[0])
    assert line == b"GET http://models.example.com:8080/v1/x HTTP/1.1"
    assert fields[b"host"] == b"models.example.com:8080"


def test_no_proxy_is_respected_and_netrc_credentials_are_not_added(
    scripted: Scripted, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login someone password secret\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    scripted.replies = [ok(b"direct"), ok(b"as given")]
    assert _fetch(scripted.url) == (200, b"direct")
    assert b"authorization" not in _head_lines(scripted.requests[0])[1]
    assert _fetch(scripted.url, headers=[(b"authorization", b"Bearer k")]) == (200, b"as given")
    assert _head_lines(scripted.requests[1])[1][b"authorization"] == b"Bearer k"


# -- framing, errors, encodings ---------------------------------------------------------


def test_chunked_and_until_close_bodies_are_read_whole(scripted: Scripted) -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    )
    scripted.replies = [Reply(chunked), Reply(b"HTTP/1.1 200 OK\r\n\r\nuntil the end", close=True)]

    async def both() -> list[tuple[int, bytes]]:
        upstream = AiohttpUpstream(scripted.url, 5)
        got = [await _get(upstream), await _get(upstream)]
        await upstream.aclose()
        return got

    assert run(both()) == [(200, b"abcde"), (200, b"until the end")]


def test_a_large_body_is_read_and_streamed_whole_and_the_connection_reused(
    scripted: Scripted,
) -> None:
    big = bytes(range(256)) * 8192  # 2 MiB: more than the client buffers before pausing
    scripted.replies = [ok(big), ok(big), ok(b"small")]

    async def three() -> list[tuple[int, bytes]]:
        upstream = AiohttpUpstream(scripted.url, 5)
        first = await _get(upstream)
        response = await upstream.send("GET", b"/v1/x", [], b"")
        await asyncio.sleep(0.2)  # the body arrives (or reading pauses) before it is read
        streamed = b"".join([piece async for piece in response.aiter_bytes()])
        await response.aclose()
        last = await _get(upstream)
        await upstream.aclose()
        return [first, (response.status_code, streamed), last]

    assert run(three()) == [(200, big), (200, big), (200, b"small")]
    assert scripted.connections == 1


def test_a_body_cut_short_or_no_answer_is_an_upstream_error(scripted: Scripted) -> None:
    scripted.replies = [
        Reply(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly this", close=True),
        Reply(None),
        Reply(None),  # aiohttp sends an idempotent request once more after a disconnect
    ]
    with pytest.raises(UpstreamError, match="RemoteProtocolError") as cut:
        _fetch(scripted.url)
    assert not isinstance(cut.value, UpstreamTimeoutError)
    with pytest.raises(UpstreamError, match="RemoteProtocolError"):
        _fetch(scripted.url)
    assert len(scripted.requests) == 3


def test_a_streamed_body_cut_short_is_an_upstream_error(scripted: Scripted) -> None:
    scripted.replies = [
        Reply(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n", close=True)
    ]

    async def stream() -> list[bytes]:
        upstream = AiohttpUpstream(scripted.url, 5)
        got: list[bytes] = []
        response = await upstream.send("GET", b"/v1/x", [], b"")
        try:
            async for piece in response.aiter_bytes():
                got.append(piece)
        finally:
            await response.aclose()
            await upstream.aclose()
        return got

    with pytest.raises(UpstreamError, match="RemoteProtocolError"):
        run(stream())


def test_a_refused_connection_and_a_silent_upstream(scripted: Scripted) -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    with pytest.raises(UpstreamError) as refused:
        _fetch(f"http://127.0.0.1:{port}")
    assert refused.value.kind == "ConnectError"
    assert not isinstance(refused.value, UpstreamTimeoutError)
    scripted.replies = [Reply(ok().data, delay_s=1.0)]
    with pytest.raises(UpstreamTimeoutError) as late:
        _fetch(scripted.url, 0.2)
    assert late.value.kind == "ReadTimeout"


def test_interim_answers_are_skipped_and_head_has_no_body(scripted: Scripted) -> None:
    scripted.replies = [
        Reply(b"HTTP/1.1 100 Continue\r\n\r\n" + (ok(b"after").data or b"")),
        Reply(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n"),  # HEAD: length, no body
        ok(b"next"),
    ]

    async def three() -> list[tuple[int, bytes]]:
        upstream = AiohttpUpstream(scripted.url, 5)
        got = [await _get(upstream), await _get(upstream, method="HEAD"), await _get(upstream)]
        await upstream.aclose()
        return got

    assert run(three()) == [(200, b"after"), (200, b""), (200, b"next")]


def test_a_connection_the_upstream_closed_while_idle_is_not_reused(scripted: Scripted) -> None:
    scripted.replies = [Reply(ok(b"a").data, close=True), ok(b"b")]

    async def two() -> list[tuple[int, bytes]]:
        upstream = AiohttpUpstream(scripted.url, 5)
        first = await _get(upstream)
        await asyncio.sleep(0.3)  # the close reaches the idle connection
        second = await _get(upstream)
        await upstream.aclose()
        return [first, second]

    assert run(two()) == [(200, b"a"), (200, b"b")]
    assert scripted.connections == 2


def test_gzip_and_deflate_are_decoded_and_other_encodings_pass_through(
    scripted: Scripted,
) -> None:
    packed = gzip.compress(b'{"ok":true}')
    scripted.replies = [
        ok(packed, "content-encoding: gzip"),
        ok(zlib.compress(b'{"ok":1}'), "content-encoding: deflate"),
        ok(packed, "content-encoding: gzip"),
        ok(b"\x0b\x02", "content-encoding: br"),
    ]

    async def four() -> list[tuple[bytes, bytes | None]]:
        upstream = AiohttpUpstream(scripted.url, 5)
        got = []
        for streamed in (False, False, True, False):
            response = await upstream.send("GET", b"/v1/x", [], b"")
            if streamed:
                body = b"".join([piece async for piece in response.aiter_bytes()])
            else:
                body = await response.aread()
            got.append((body, response.header(b"content-encoding")))
            await response.aclose()
        await upstream.aclose()
        return got

    assert run(four()) == [
        (b'{"ok":true}', None),
        (b'{"ok":1}', None),
        (b'{"ok":true}', None),
        (b"\x0b\x02", b"br"),
    ]


# -- through the app ---------------------------------------------------------------------


@contextlib.contextmanager
def _proxy_for(url: str, tmp_path: Path, **overrides: Any) -> Iterator[tuple[str, Proxy]]:
    settings = Settings(
        home=tmp_path / "home",
        db_url=f"sqlite:///{tmp_path / 's.db'}",
        proxy_spill_path=tmp_path / "spill.jsonl",
        **overrides,
    )
    app = create_app(url, settings)
    with running_proxy(app) as base:
        yield base, app.state.proxy


def test_repeated_headers_stay_apart_and_a_cut_body_is_502(
    scripted: Scripted, tmp_path: Path
) -> None:
    scripted.replies = [
        ok(b"{}", "set-cookie: a=1", "set-cookie: b=2", "content-type: application/json"),
        Reply(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{", close=True),
    ]
    with _proxy_for(scripted.url + "/v1", tmp_path) as (base, _):
        models = httpx.get(base + "/models")
        cut = httpx.get(base + "/models")
    assert models.status_code == 200
    assert models.headers.get_list("set-cookie") == ["a=1", "b=2"]
    assert cut.status_code == 502
    assert cut.json()["error"]["message"] == "upstream broke off its answer: RemoteProtocolError"


def test_unreachable_is_502_and_slow_is_504(scripted: Scripted, tmp_path: Path) -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    with _proxy_for(f"http://127.0.0.1:{port}/v1", tmp_path) as (base, _):
        refused = httpx.post(base + "/chat/completions", json={"messages": MESSAGES})
    assert refused.status_code == 502
    assert refused.json()["error"]["message"].endswith("unreachable: ConnectError")
    scripted.replies = [Reply(ok().data, delay_s=1.5)]
    with _proxy_for(scripted.url, tmp_path, proxy_timeout_s=0.3) as (base, _):
        late = httpx.post(base + "/chat/completions", json={"messages": MESSAGES})
    assert late.status_code == 504
    assert late.json()["error"]["type"] == "upstream_timeout"
    assert late.json()["error"]["message"] == "upstream did not answer within 0.3 s"


def test_plain_and_streamed_chats_are_proxied_alike(upstream: FakeUpstream, tmp_path: Path) -> None:
    """The GENERATED upstream through the app: the same answer plain and streamed."""
    body = {"model": "generated-model", "messages": MESSAGES}
    headers = {"Authorization": f"Bearer {API_KEY}", "X-Sentinel-Route": "faq"}
    with _proxy_for(upstream.base_url, tmp_path) as (base, state):
        assert isinstance(state.upstream, AiohttpUpstream)
        plain = [
            httpx.post(url + "/chat/completions", json=body, headers=headers)
            for url in (base, upstream.base_url)
        ]
        body["stream"] = True
        streamed = [
            httpx.post(url + "/chat/completions", json=body, headers=headers)
            for url in (base, upstream.base_url)
        ]
        assert state.writer.wait_idle(10)
    assert plain[0].content == plain[1].content
    assert streamed[0].content == streamed[1].content
    assert b'"top_logprobs"' not in plain[0].content + streamed[0].content
    engine = open_store(f"sqlite:///{tmp_path / 's.db'}")
    with Session(engine) as session:
        rows = session.exec(select(TraceRow)).all()
    engine.dispose()
    assert len(rows) == 1  # the same answer plain and streamed: one trace, one duplicate
    assert (rows[0].k, rows[0].meta) == (20, {"route": "faq"})
