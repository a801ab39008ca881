"""A small, fast OpenAI-compatible upstream for the proxy's tests and benchmark.

Stdlib ``http.server`` in a thread on 127.0.0.1, like ``tests/labeling/judge_server.py``,
whose :class:`Step` scripts the faults here too (``Step.error(429, ...)``,
``Step.slow(s)``); this one also speaks what the proxy needs and the judge does not:
``/v1/completions`` as well as ``/v1/chat/completions``, ``n`` choices, ``logprobs`` /
``top_logprobs`` (chat) and ``logprobs: k`` (legacy), and ``stream: true`` as server-sent
events, one token per chunk, ``data: [DONE]`` last.

Answers are GENERATED and deterministic: the same request gets the same bytes, so a
direct call and one through the proxy can be compared byte for byte. The top-k of a
step is the first k of one top-20 list, so asking for fewer alternatives gives a prefix.
Bodies are compact JSON (``,`` and ``:`` without spaces, UTF-8), as OpenAI and llama.cpp
send them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.labeling.judge_server import Step

K_MAX = 20
CREATED = 1_795_000_000


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def _seed(request: dict[str, Any]) -> int:
    return int(
        hashlib.sha256(_dumps(request.get("messages") or request.get("prompt"))).hexdigest()[:8], 16
    )


def generated_steps(seed: int, n_tokens: int) -> list[tuple[str, list[tuple[str, float]]]]:
    """``n_tokens`` steps of (chosen token, top-20 (token, logprob) descending), from ``seed``."""
    steps = []
    for t in range(n_tokens):
        h = hashlib.sha256(f"{seed}:{t}".encode()).digest()
        scale = 0.5 + h[0] / 64  # sharp to flat
        logits = sorted((-(scale * j) - h[j % 32] / 256 for j in range(K_MAX + 5)), reverse=True)
        top = max(logits)
        norm = top + math.log(sum(math.exp(x - top) for x in logits))
        alternatives = [
            (f" w{h[1] % 50}" if j == 0 else f" a{t}.{j}", round(x - norm, 6))
            for j, x in enumerate(logits[:K_MAX])
        ]
        steps.append((alternatives[0][0], alternatives))
    return steps


def _chat_entry(token: str, logprob: float, top: list[tuple[str, float]], k: int) -> dict[str, Any]:
    return {
        "token": token,
        "logprob": logprob,
        "bytes": list(token.encode()),
        "top_logprobs": [
            {"token": alt, "logprob": lp, "bytes": list(alt.encode())} for alt, lp in top[:k]
        ],
    }


class FakeUpstream:
    """The server; ``script`` holds steps to serve first, ``requests``/``headers`` what came."""

    def __init__(self, *, n_tokens: int = 6) -> None:
        self.n_tokens = n_tokens
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.script: list[Step] = []
        self.linger_after_done_s = 0.0  # a stream's body stays open this long after [DONE]
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def _take(self, request: dict[str, Any], headers: dict[str, str]) -> Step | None:
        with self.lock:
            self.requests.append(request)
            self.headers.append(headers)
            step = self.script.pop(0) if self.script else None
        if step is not None and step.sleep_s:
            time.sleep(step.sleep_s)
            return None
        return step

    # -- bodies ----------------------------------------------------------------------------

    def _choices(self, request: dict[str, Any]) -> list[tuple[int, list[Any]]]:
        seed = _seed(request)
        n_tokens = min(int(request.get("max_tokens") or self.n_tokens), self.n_tokens)
        return [(i, generated_steps(seed + i, n_tokens)) for i in range(int(request.get("n") or 1))]

    def _id(self, request: dict[str, Any], chat: bool) -> str:
        return f"{'chatcmpl' if chat else 'cmpl'}-{_seed(request):08x}"

    def chat_body(self, request: dict[str, Any]) -> dict[str, Any]:
        k = int(request.get("top_logprobs") or 0) if request.get("logprobs") else -1
        choices = []
        for i, steps in self._choices(request):
            logprobs = (
                None
                if k < 0
                else {
                    "content": [_chat_entry(tok, top[0][1], top, k) for tok, top in steps],
                    "refusal": None,
                }
            )
            choices.append(
                {
                    "index": i,
                    "message": {
                        "role": "assistant",
                        "content": "".join(tok for tok, _ in steps),
                        "refusal": None,
                    },
                    "logprobs": logprobs,
                    "finish_reason": "stop",
                }
            )
        tokens = sum(len(s) for _, s in self._choices(request))
        return {
            "id": self._id(request, True),
            "object": "chat.completion",
            "created": CREATED,
            "model": request.get("model"),
            "choices": choices,
            "usage": {
                "prompt_tokens": 11,
                "completion_tokens": tokens,
                "total_tokens": 11 + tokens,
            },
            "system_fingerprint": "fp_generated",
        }

    def legacy_body(self, request: dict[str, Any]) -> dict[str, Any]:
        k = request.get("logprobs")
        choices = []
        for i, steps in self._choices(request):
            logprobs = None
            if k is not None:
                offsets, at = [], 0
                for tok, _ in steps:
                    offsets.append(at)
                    at += len(tok)
                logprobs = {
                    "tokens": [tok for tok, _ in steps],
                    "token_logprobs": [top[0][1] for _, top in steps],
                    "top_logprobs": [dict(top[: int(k)]) for _, top in steps],
                    "text_offset": offsets,
                }
            choices.append(
                {
                    "text": "".join(tok for tok, _ in steps),
                    "index": i,
                    "logprobs": logprobs,
                    "finish_reason": "length",
                }
            )
        return {
            "id": self._id(request, False),
            "object": "text_completion",
            "created": CREATED,
            "model": request.get("model"),
            "choices": choices,
            "usage": {"prompt_tokens": 5, "completion_tokens": 6, "total_tokens": 11},
        }

    def chat_chunks(self, request: dict[str, Any]) -> Iterator[dict[str, Any]]:
        k = int(request.get("top_logprobs") or 0) if request.get("logprobs") else -1
        head = {
            "id": self._id(request, True),
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": request.get("model"),
            "system_fingerprint": "fp_generated",
        }
        choices = self._choices(request)
        for i, _ in choices:
            yield {
                **head,
                "choices": [
                    {
                        "index": i,
                        "delta": {"role": "assistant", "content": ""},
                        "logprobs": None,
                        "finish_reason": None,
                    }
                ],
            }
        for t in range(max(len(s) for _, s in choices)):
            for i, steps in choices:
                tok, top = steps[t]
                logprobs = (
                    None
                    if k < 0
                    else {"content": [_chat_entry(tok, top[0][1], top, k)], "refusal": None}
                )
                yield {
                    **head,
                    "choices": [
                        {
                            "index": i,
                            "delta": {"content": tok},
                            "logprobs": logprobs,
                            "finish_reason": None,
                        }
                    ],
                }
        for i, _ in choices:
            yield {
                **head,
                "choices": [{"index": i, "delta": {}, "logprobs": None, "finish_reason": "stop"}],
            }
        if (request.get("stream_options") or {}).get("include_usage"):
            yield {**head, "choices": [], "usage": self.chat_body(request)["usage"]}

    def legacy_chunks(self, request: dict[str, Any]) -> Iterator[dict[str, Any]]:
        k = request.get("logprobs")
        head = {
            "id": self._id(request, False),
            "object": "text_completion",
            "created": CREATED,
            "model": request.get("model"),
        }
        choices = self._choices(request)
        for t in range(max(len(s) for _, s in choices)):
            for i, steps in choices:
                tok, top = steps[t]
                logprobs = (
                    None
                    if k is None
                    else {
                        "tokens": [tok],
                        "token_logprobs": [top[0][1]],
                        "top_logprobs": [dict(top[: int(k)])],
                        "text_offset": [t],
                    }
                )
                yield {
                    **head,
                    "choices": [
                        {"text": tok, "index": i, "logprobs": logprobs, "finish_reason": None}
                    ],
                }
        for i, _ in choices:
            yield {
                **head,
                "choices": [{"text": "", "index": i, "logprobs": None, "finish_reason": "length"}],
            }

    # -- HTTP ------------------------------------------------------------------------------

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body are separate writes: with Nagle, the body waits for the
            # client's delayed ACK (40 ms on Linux), which no real server makes you pay.
            disable_nagle_algorithm = True

            def _send(
                self, status: int, body: bytes, headers: dict[str, str] | None = None
            ) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("X-Request-Id", "req-generated")
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(body)

            def do_GET(self) -> None:
                if self.path == "/v1/models":
                    self._send(
                        200,
                        _dumps(
                            {
                                "object": "list",
                                "data": [{"id": "generated-model", "object": "model"}],
                            }
                        ),
                    )
                else:
                    self._send(404, _dumps({"error": {"message": "File Not Found", "code": 404}}))

            def do_POST(self) -> None:
                request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                chat = self.path == "/v1/chat/completions"
                if not chat and self.path != "/v1/completions":
                    self._send(404, _dumps({"error": {"message": "File Not Found", "code": 404}}))
                    return
                step = fake._take(request, {k.lower(): v for k, v in self.headers.items()})
                if step is not None:
                    self._send(step.status, _dumps(step.body), dict(step.headers))
                    return
                if not request.get("stream"):
                    body = fake.chat_body(request) if chat else fake.legacy_body(request)
                    self._send(200, _dumps(body))
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-cache")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                chunks = fake.chat_chunks(request) if chat else fake.legacy_chunks(request)
                events = [b"data: " + _dumps(c) + b"\n\n" for c in chunks] + [b"data: [DONE]\n\n"]
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    for event in events:
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
                        self.wfile.flush()
                    time.sleep(fake.linger_after_done_s)
                    self.wfile.write(b"0\r\n\r\n")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


@contextlib.contextmanager
def running_upstream(*, n_tokens: int = 6) -> Iterator[FakeUpstream]:
    """A started :class:`FakeUpstream`, shut down on exit."""
    fake = FakeUpstream(n_tokens=n_tokens)
    fake.thread.start()
    try:
        yield fake
    finally:
        fake.server.shutdown()
        fake.server.server_close()
        fake.thread.join()


if __name__ == "__main__":  # serve until killed (benchmarks/proxy.py runs it in its own process)
    import sys

    with running_upstream(n_tokens=int(sys.argv[1]) if len(sys.argv) > 1 else 6) as served:
        print(served.base_url, flush=True)
        threading.Event().wait()
