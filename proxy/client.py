"""The proxy's side toward the upstream: one origin, kept-alive connections, streamed bodies.

One client behind a small interface (:class:`Upstream`, :class:`UpstreamResponse`):
:class:`AiohttpUpstream`, an ``aiohttp.ClientSession`` (maintained, with a C HTTP
parser) over a ``TCPConnector`` that keeps connections alive, for ``http://`` and
``https://`` alike. An ``HTTP_PROXY`` / ``HTTPS_PROXY`` setting (and ``NO_PROXY``) that
covers the upstream is used, as httpx did before: looked up once, when the client opens,
with aiohttp's own lookup (what ``trust_env=True`` does per request). ``trust_env`` itself
stays off: per request it also looks the upstream's host up in ``~/.netrc`` (on a worker
thread: a thread hop on every request), would attach those credentials to a client's
request that has no ``Authorization``, and fails one that has.

The request goes as it is given (no ``User-Agent``/``Accept``/``Content-Type`` added,
no cookie jar: a proxy shared by many clients must not carry one client's cookies to
another), with no redirect followed. Failures raise :class:`UpstreamTimeoutError` (the
proxy answers 504) or :class:`UpstreamError` (502) with ``kind`` named as httpx names
the failure (``ConnectError``, ``ConnectTimeout``, ``ReadTimeout``,
``RemoteProtocolError``, ...). Headers are ``(name, value)`` bytes with lowercase
names, repeated headers kept apart. aiohttp's own decompression is off
(``auto_decompress=False``): a body the upstream sent ``gzip`` or ``deflate`` encoded
(although asked for ``identity``) is decoded here and its ``content-encoding`` dropped;
another encoding (``br``, ``zstd``, a list) passes through as it is, header included.
"""

from __future__ import annotations

import contextlib
import time
import zlib
from collections.abc import AsyncIterator
from typing import Any, Protocol

import aiohttp
from aiohttp.helpers import get_env_proxy_for_url
from yarl import URL

Headers = list[tuple[bytes, bytes]]

#: Idle kept-alive connections are closed after this many seconds (httpx's default).
KEEPALIVE_EXPIRY_S = 5.0
#: Headers aiohttp would add to a request that lacks them; the proxy adds none.
_NO_AUTO_HEADERS = ("User-Agent", "Accept", "Accept-Encoding", "Content-Type")


class UpstreamError(Exception):
    """The upstream could not be reached, or broke off its answer (the proxy's 502)."""

    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind


class UpstreamTimeoutError(UpstreamError):
    """The upstream did not connect or answer in time (the proxy's 504)."""


class UpstreamResponse(Protocol):
    """An answer whose head has arrived; its body is read with ``aread``/``aiter_bytes``."""

    status_code: int
    headers: Headers

    def header(self, name: bytes) -> bytes | None: ...

    async def aread(self) -> bytes: ...

    def aiter_bytes(self) -> AsyncIterator[bytes]: ...

    async def aclose(self) -> None: ...

    @property
    def elapsed_s(self) -> float:
        """Seconds from sending the request to closing the answer (after its last byte)."""
        ...


class Upstream(Protocol):
    """Sends requests to one origin; ``target`` is the request target (path and query)."""

    async def send(
        self, method: str, target: bytes, headers: Headers, body: bytes
    ) -> UpstreamResponse: ...

    async def aclose(self) -> None: ...


def _first(headers: Headers, name: bytes) -> bytes | None:
    for key, value in headers:
        if key == name:
            return value
    return None


def _decoder(headers: Headers) -> tuple[Any, Headers]:
    """A zlib decompressor for a gzip/deflate body (and the headers without the encoding)."""
    encoding = _first(headers, b"content-encoding")
    if encoding is None:
        return None, headers
    name = encoding.strip().lower()
    if name in (b"gzip", b"x-gzip"):
        wbits = zlib.MAX_WBITS | 16
    elif name == b"deflate":
        wbits = zlib.MAX_WBITS
    elif name in (b"", b"identity"):
        wbits = 0
    else:
        return None, headers  # br, zstd, a list: passed through, header and all
    kept = [(k, v) for k, v in headers if k != b"content-encoding"]
    return (zlib.decompressobj(wbits) if wbits else None), kept


def _mapped(exc: BaseException) -> UpstreamError:
    """aiohttp's (or asyncio's) failure as the proxy's error, named as httpx names it."""
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return UpstreamTimeoutError("ConnectTimeout", str(exc))
    if isinstance(exc, TimeoutError):  # SocketTimeoutError, ServerTimeoutError, asyncio's
        return UpstreamTimeoutError("ReadTimeout", str(exc))
    if isinstance(exc, aiohttp.ClientProxyConnectionError | aiohttp.ClientHttpProxyError):
        return UpstreamError("ProxyError", str(exc))
    if isinstance(exc, aiohttp.ClientConnectorError):
        return UpstreamError("ConnectError", str(exc))
    if isinstance(exc, aiohttp.ClientOSError):
        return UpstreamError("ReadError", str(exc))
    return UpstreamError("RemoteProtocolError", str(exc))  # payload cut, disconnect, parse


class _Response:
    def __init__(self, response: aiohttp.ClientResponse, started: float) -> None:
        self._response = response
        self._started = started
        self._ended: float | None = None
        self.status_code = response.status
        self._decompress, self.headers = _decoder([(k.lower(), v) for k, v in response.raw_headers])

    def header(self, name: bytes) -> bytes | None:
        return _first(self.headers, name)

    @property
    def elapsed_s(self) -> float:
        return (self._ended or time.perf_counter()) - self._started

    def _decode(self, data: bytes) -> bytes:
        if self._decompress is None:
            return data
        try:
            return bytes(self._decompress.decompress(data))
        except zlib.error as exc:
            raise UpstreamError("DecodingError", str(exc)) from None

    def _rest(self) -> bytes:
        return b"" if self._decompress is None else bytes(self._decompress.flush())

    async def aread(self) -> bytes:
        try:
            data = await self._response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _mapped(exc) from exc
        return self._decode(data) + self._rest()

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        try:
            async for piece in self._response.content.iter_any():
                if data := self._decode(piece):
                    yield data
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _mapped(exc) from exc
        if rest := self._rest():
            yield rest

    async def aclose(self) -> None:
        if self._ended is None:
            self._ended = time.perf_counter()
            # back to the pool when the body was read whole; the connection closed otherwise
            self._response.release()


class AiohttpUpstream:
    """aiohttp toward one origin: kept-alive connections, TLS, environment proxies.

    The session is opened on the first request, in the running event loop.
    """

    def __init__(self, root: str, timeout_s: float) -> None:
        self.root = root.rstrip("/")
        self.timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=min(timeout_s, 10.0), sock_read=timeout_s
        )
        self._session: aiohttp.ClientSession | None = None
        self.proxy: URL | None = None
        self.proxy_auth: aiohttp.BasicAuth | None = None
        with contextlib.suppress(LookupError):  # no proxy set, or NO_PROXY covers it
            self.proxy, self.proxy_auth = get_env_proxy_for_url(URL(self.root))

    def _open(self) -> aiohttp.ClientSession:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(
                limit=0, limit_per_host=0, keepalive_timeout=KEEPALIVE_EXPIRY_S
            ),
            timeout=self.timeout,
            cookie_jar=aiohttp.DummyCookieJar(),
            skip_auto_headers=_NO_AUTO_HEADERS,
            auto_decompress=False,  # gzip/deflate decoded here, other encodings kept
            trust_env=False,  # the environment's proxy is looked up once (module doc)
        )
        return self._session

    async def send(
        self, method: str, target: bytes, headers: Headers, body: bytes
    ) -> UpstreamResponse:
        session = self._session or self._open()
        url = URL(self.root + target.decode("latin-1"), encoded=True)
        started = time.perf_counter()
        try:
            response = await session.request(
                method,
                url,
                headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in headers],
                data=body or None,
                allow_redirects=False,
                proxy=self.proxy,
                proxy_auth=self.proxy_auth,
            )
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _mapped(exc) from exc
        return _Response(response, started)

    async def aclose(self) -> None:
        if self._session is not None:
            with contextlib.suppress(aiohttp.ClientError, OSError):
                await self._session.close()
            self._session = None


def open_upstream(root: str, timeout_s: float) -> Upstream:
    """The client for ``root`` (``scheme://host[:port][/prefix]``): see the module doc."""
    return AiohttpUpstream(root, timeout_s)
