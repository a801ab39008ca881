"""The logging proxy as an ASGI app: Starlette in front, :mod:`proxy.client` behind.

Why these: Starlette is maintained and already installed (FastAPI, which the project
pins for Prefect's server, is Starlette); the upstream client is aiohttp (maintained,
C-parsed, kept-alive connections, environment proxies), and both stream: a server-sent event
is forwarded as soon as it arrives while its logprobs are collected aside.

* ``POST /v1/chat/completions`` and ``POST /v1/completions`` are traced (see
  :mod:`proxy.wire` for what is asked upstream and taken out again);
* anything else under ``/v1/`` passes through untouched and is not traced;
* ``GET /healthz`` and ``GET /metrics`` (Prometheus text) are the proxy's own;
  any other path is a clear 404.

The client's headers go upstream unchanged (``Authorization`` included; nothing here
logs headers) except hop-by-hop ones and the ``X-Sentinel-*`` slice keys; the path and
query go as the client wrote them. Upstream errors come back as they are (status, body,
headers); a timeout is a 504 and an unreachable upstream a 502, each with an
OpenAI-style error body.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import anyio
import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from proxy.client import Headers, Upstream, UpstreamError, UpstreamResponse, UpstreamTimeoutError
from proxy.client import open_upstream as _open_upstream
from proxy.metrics import Metrics
from proxy.wire import (
    HEADER_PREFIX,
    Kind,
    Plan,
    SSESplitter,
    StreamAssembler,
    build_record,
    kind_of,
    plan_request,
    strip_body,
    strip_event,
)
from proxy.writer import TraceWriter
from sentinel_core.settings import Settings

log = logging.getLogger("sentinel.proxy")

_HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"trailers",
        b"transfer-encoding",
        b"upgrade",
        b"host",
        b"content-length",
    }
)
# Not sent upstream: the proxy asks for ``identity`` itself (and the slice keys stay here).
_NOT_UPSTREAM = _HOP_BY_HOP | {b"accept-encoding"}
_SLICE_PREFIX = HEADER_PREFIX.encode()
_IDENTITY = (b"accept-encoding", b"identity")


def spill_path(settings: Settings) -> Path:
    """The spill file in force: the setting, or ``<home>/proxy-spill.jsonl``."""
    return settings.proxy.spill_path or settings.home / "proxy-spill.jsonl"


def upstream_root(url: str) -> str:
    """``http://host:8080/v1`` or ``http://host:8080`` -> ``http://host:8080`` (paths keep /v1)."""
    root = url.rstrip("/")
    return root.removesuffix("/v1")


def _error(status: int, message: str, kind: str) -> Response:
    body = {"error": {"message": message, "type": kind, "code": status}}
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def _respond(response: Response, headers: Headers) -> Response:
    """``response`` with the upstream's ``headers`` (repeated ones kept apart) added."""
    response.raw_headers.extend((k, v) for k, v in headers if k not in _HOP_BY_HOP)
    return response


class Proxy:
    """The state behind the routes: the upstream client, the writer, the counters."""

    def __init__(
        self,
        upstream: str,
        settings: Settings,
        writer: TraceWriter,
    ) -> None:
        self.root = upstream_root(upstream)
        self.settings = settings
        self.writer = writer
        self.metrics = Metrics()
        self.keep_prompt = settings.store.keep_prompt_text
        self.upstream: Upstream | None = None

    def open_upstream(self) -> Upstream:
        return _open_upstream(self.root, self.settings.proxy.timeout_s)

    # -- routes --------------------------------------------------------------------------

    async def healthz(self, request: Request) -> Response:
        body = {
            "status": "ok",
            "upstream": self.root,
            "queue_depth": self.writer.depth,
            "spill_path": str(self.writer.spill_path),
            **self.writer.counts.snapshot(),
        }
        return Response(orjson.dumps(body), media_type="application/json")

    async def metrics_text(self, request: Request) -> Response:
        text = self.metrics.render(self.writer.counts, self.writer.depth)
        return Response(text, media_type="text/plain; version=0.0.4; charset=utf-8")

    async def forward(self, request: Request) -> Response:
        path: str = request.scope["path"]  # not request.url: its parsing costs per request
        if not path.startswith("/v1/"):
            self.metrics.request("other", 404)
            return _error(
                404,
                f"no route {path!r}: the proxy serves /v1/... (forwarded upstream), "
                "/healthz and /metrics",
                "not_found",
            )
        kind = kind_of(path) if request.method == "POST" else None
        raw = await request.body()
        plan: Plan | None = None
        parsed: Any = None
        if kind is not None:
            with contextlib.suppress(orjson.JSONDecodeError):
                parsed = orjson.loads(raw)
            if isinstance(parsed, dict):
                plan = plan_request(kind, parsed)
        content = raw if plan is None or plan.body is None else orjson.dumps(plan.body)
        endpoint = path.removeprefix("/v1/") if kind is not None else "other"
        response = await self._send(request, content, endpoint)
        if isinstance(response, Response):
            return response
        if response.status_code == 400 and plan is not None and plan.body is not None:
            # The upstream refused what the proxy added (a server that caps logprobs): ask
            # again exactly as the client did, untraced, rather than fail the client.
            await response.aclose()
            log.warning("upstream refused the logprobs the proxy added; forwarded untraced")
            retried = await self._send(request, raw, endpoint)
            if isinstance(retried, Response):
                return retried
            response, plan = retried, None
        content_type = response.header(b"content-type") or b""
        if response.status_code == 200 and content_type.startswith(b"text/event-stream"):
            stream = self._stream(response, plan, kind, parsed, request, endpoint)
            return _respond(StreamingResponse(stream, status_code=200), response.headers)
        try:
            body = await response.aread()
        except UpstreamTimeoutError:
            self.metrics.upstream_errors["timeout"] += 1
            self.metrics.request(endpoint, 504)
            return _error(504, "upstream timed out while answering", "upstream_timeout")
        except UpstreamError as exc:
            self.metrics.upstream_errors["connect"] += 1
            self.metrics.request(endpoint, 502)
            return _error(502, f"upstream broke off its answer: {exc.kind}", "bad_gateway")
        finally:
            await response.aclose()
        self.metrics.upstream_latency(response.elapsed_s)
        self.metrics.request(endpoint, response.status_code)
        if response.status_code == 200 and plan is not None and kind is not None:
            out, answer = strip_body(body, plan.strip)
            if plan.traced and isinstance(answer, dict):
                self._submit(kind, parsed, answer, request)
            body = out
        return _respond(Response(body, status_code=response.status_code), response.headers)

    # -- helpers -------------------------------------------------------------------------

    async def _send(
        self, request: Request, content: bytes, endpoint: str
    ) -> UpstreamResponse | Response:
        assert self.upstream is not None, "the app's lifespan opens the client"
        scope = request.scope
        headers = [
            (k, v)
            for k, v in scope["headers"]  # ASGI: lowercase names, as bytes
            if k not in _NOT_UPSTREAM and not k.startswith(_SLICE_PREFIX)
        ]
        headers.append(_IDENTITY)
        target = scope.get("raw_path") or quote(scope["path"]).encode()
        if query := scope.get("query_string"):
            target += b"?" + query
        try:
            return await self.upstream.send(request.method, target, headers, content)
        except UpstreamTimeoutError:
            self.metrics.upstream_errors["timeout"] += 1
            self.metrics.request(endpoint, 504)
            return _error(
                504,
                f"upstream did not answer within {self.settings.proxy.timeout_s:g} s",
                "upstream_timeout",
            )
        except UpstreamError as exc:
            self.metrics.upstream_errors["connect"] += 1
            self.metrics.request(endpoint, 502)
            return _error(502, f"upstream {self.root} unreachable: {exc.kind}", "bad_gateway")

    async def _stream(
        self,
        response: UpstreamResponse,
        plan: Plan | None,
        kind: Kind | None,
        request_body: Any,
        request: Request,
        endpoint: str,
    ) -> AsyncIterator[bytes]:
        tracing = plan is not None and plan.traced and kind is not None
        strip = None if plan is None else plan.strip
        splitter = SSESplitter()
        assembler = StreamAssembler(kind or "chat")
        complete = False  # the upstream ended its body normally
        submitted = False

        def submit_once() -> None:
            # Synchronous, at ``[DONE]`` before it is forwarded, and first in ``finally``: a
            # client that hangs up right after ``[DONE]`` makes Starlette cancel this
            # generator at its next await, and a finished trace must not be lost to that.
            nonlocal submitted
            finished = complete or assembler.done
            if kind is None or submitted or not (finished and tracing and assembler.choices):
                return
            submitted = True
            self._submit(kind, request_body, assembler.completion(), request)

        try:
            async for data in response.aiter_bytes():
                if strip is None:
                    if tracing:  # read before forwarding, so the trace is whole once sent
                        for event in splitter.feed(data):
                            assembler.add(strip_event(event, None)[1])
                        if assembler.done:
                            submit_once()
                    yield data  # forwarded as it came
                    continue
                out = []
                for event in splitter.feed(data):
                    sent, chunk = strip_event(event, strip)
                    out.append(sent)
                    assembler.add(chunk)
                if assembler.done:
                    submit_once()  # before the client has [DONE]: it may hang up at once
                if out:
                    yield b"".join(out)
            if strip is not None and (rest := splitter.rest()):
                yield rest
            complete = True
        except UpstreamError as exc:
            # The status is sent already: the client sees the stream end early.
            self.metrics.upstream_errors["stream"] += 1
            log.warning("upstream stream broke off: %s", exc.kind)
        finally:
            submit_once()
            self.metrics.request(endpoint, 200)
            with anyio.CancelScope(shield=True):  # closed even when the client hung up
                await response.aclose()  # sets elapsed: from sending to the last byte
            self.metrics.upstream_latency(response.elapsed_s)

    def _submit(
        self, kind: Kind, request_body: Any, answer: dict[str, Any], request: Request
    ) -> None:
        record = build_record(
            kind,
            request_body,
            answer,
            [  # only the slice keys: the other headers need no decoding
                (k.decode("latin-1"), v.decode("latin-1"))
                for k, v in request.scope["headers"]
                if k.startswith(_SLICE_PREFIX)
            ],
            keep_prompt=self.keep_prompt,
            received=time.time(),
        )
        self.writer.submit(record)


def create_app(
    upstream: str,
    settings: Settings | None = None,
    *,
    writer: TraceWriter | None = None,
) -> Starlette:
    """The proxy app for ``upstream``; the writer starts and stops with the app's lifespan."""
    settings = settings or Settings()
    writer = writer or TraceWriter(
        settings.store_url,
        spill_path(settings),
        queue_size=settings.proxy.queue_size,
        batch_size=settings.store.ingest_batch_size,
        keep_prompt=settings.store.keep_prompt_text,
        dtype=settings.store.logprobs_dtype,
    )
    proxy = Proxy(upstream, settings, writer)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        writer.start()
        proxy.upstream = proxy.open_upstream()
        try:
            yield
        finally:
            await proxy.upstream.aclose()
            writer.close()

    methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
    app = Starlette(
        routes=[
            Route("/healthz", proxy.healthz, methods=["GET"]),
            Route("/metrics", proxy.metrics_text, methods=["GET"]),
            Route("/{path:path}", proxy.forward, methods=methods),
        ],
        lifespan=lifespan,
    )
    app.state.proxy = proxy
    return app


def uvicorn_config(app: Starlette, *, port: int, host: str = "127.0.0.1") -> uvicorn.Config:
    """How the proxy is served: no access log, the upstream's own Date and Server headers."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        server_header=False,
        date_header=False,
        lifespan="on",
        # httptools (C) parses HTTP several times faster than h11; asyncio's own loop keeps
        # sockets visible to Python (the no-egress audit hook), unlike uvloop.
        http="httptools",
        loop="asyncio",
    )


def serve(upstream: str, settings: Settings, *, port: int | None = None) -> None:
    """Run the proxy on 127.0.0.1 until interrupted (``sentinel proxy``)."""
    app = create_app(upstream, settings)
    # What is loaded by now (the project, NumPy, SQLAlchemy, Starlette...) lives as long as
    # the process: frozen, the cyclic collector no longer walks it. The parsed answers of
    # every request trigger collections, and the full ones walking all of it took about a
    # sixth of the proxy's CPU per request (profiled: 2.2 -> 1.8 ms per request).
    gc.collect()
    gc.freeze()
    uvicorn.Server(uvicorn_config(app, port=port or settings.proxy.port)).run()


@contextlib.contextmanager
def running_proxy(app: Starlette) -> Iterator[str]:
    """``app`` served on a free 127.0.0.1 port in a thread; yields its base URL (``.../v1``)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn_config(app, port=port))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the proxy did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()
