"""A small OpenAI-compatible judge server for tests: stdlib ``http.server`` in a thread.

It speaks the chat.completions wire format (``choices``, ``usage``, ``model``)
as llama.cpp's ``llama-server`` and OpenAI do. Its verdicts are GENERATED, not
a model's: a response is judged correct when the reference answer (the text
after ``REFERENCE ANSWER...:`` in the user message) appears in the response
(the text after ``RESPONSE:``); without a reference it is judged incorrect.
Token counts are generated too: a prompt token per 3 bytes of message text
plus 12 for the template, a completion token per 4 bytes of the verdict
(at most ``max_tokens``).

Faults are scripted per request, in order, before normal answers resume:

- ``Step.error(429, "slow down", headers={"Retry-After": "2"})``: an HTTP error;
- ``Step.text("not json")``: a 200 whose verdict text is given (garbage,
  a field missing, a fenced verdict);
- ``Step.slow(1.0)``: a normal answer after a pause (a client timeout);
- ``Step.no_usage()``: a normal answer without ``usage``;
- ``Step(body={...})``: a 200 with exactly that body.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_RESPONSE = re.compile(r"RESPONSE:\n(.*?)(?:\n\nREFERENCE ANSWER[^:\n]*: (.*))?\Z", re.DOTALL)


@dataclass(frozen=True)
class Step:
    """One scripted answer: an HTTP status with a body and headers, or a 200 variant."""

    status: int = 200
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)
    content: str | None = None
    sleep_s: float = 0.0
    usage: bool = True

    @classmethod
    def error(cls, status: int, message: str, *, headers: Mapping[str, str] | None = None) -> Step:
        """An HTTP error with an OpenAI-style error body.

        Without ``headers`` it asks the client to retry after 10 ms (``retry-after-ms``),
        so retried faults keep the tests fast; pass ``headers={}`` for the client's backoff.
        """
        body = {"error": {"code": status, "message": message, "type": "server_error"}}
        chosen = {"retry-after-ms": "10"} if headers is None else dict(headers)
        return cls(status=status, body=body, headers=chosen)

    @classmethod
    def text(cls, content: str) -> Step:
        """A 200 whose verdict text is ``content``."""
        return cls(content=content)

    @classmethod
    def slow(cls, seconds: float) -> Step:
        """A normal answer after ``seconds``."""
        return cls(sleep_s=seconds)

    @classmethod
    def no_usage(cls) -> Step:
        """A normal answer whose body has no ``usage``."""
        return cls(usage=False)


def generated_verdict(request: Mapping[str, Any]) -> dict[str, Any]:
    """The GENERATED verdict: correct when the reference string appears in the response."""
    user = str(request["messages"][-1]["content"])
    found = _RESPONSE.search(user)
    response, reference = (found.group(1), found.group(2)) if found else (user, None)
    if reference is None:
        return {"correct": False, "reason": "no reference answer to compare with"}
    correct = reference.strip() in response
    return {"correct": correct, "reason": f"reference {'found' if correct else 'not found'}"}


def chat_completion(request: Mapping[str, Any], content: str, *, usage: bool) -> dict[str, Any]:
    """A chat.completion body carrying ``content``, with generated ``usage`` if asked."""
    prompt_bytes = sum(len(str(m["content"]).encode()) for m in request["messages"])
    prompt_tokens = prompt_bytes // 3 + 12
    completion_tokens = min(int(request.get("max_tokens") or 256), len(content.encode()) // 4 + 1)
    body: dict[str, Any] = {
        "id": f"chatcmpl-judge-{prompt_bytes}",
        "object": "chat.completion",
        "created": 1_795_000_000,
        "model": request.get("model"),
        "system_fingerprint": "b1-generated",
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "message": {"role": "assistant", "content": content},
            }
        ],
    }
    if usage:
        body["usage"] = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
    return body


class JudgeServer:
    """The server; ``script`` holds the steps to serve first, ``requests`` what it received.

    ``headers`` keeps each request's headers, names lowercased (to check the API key was sent).
    """

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.times: list[float] = []
        self.script: list[Step] = []
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def _answer(self, request: dict[str, Any], headers: dict[str, str]) -> Step:
        with self.lock:
            self.requests.append(request)
            self.headers.append(headers)
            self.times.append(time.monotonic())
            step = self.script.pop(0) if self.script else Step()
        if step.sleep_s:
            time.sleep(step.sleep_s)
        if step.status != 200 or step.body is not None:
            return step
        content = step.content
        if content is None:
            content = json.dumps(generated_verdict(request))
        return Step(body=chat_completion(request, content, usage=step.usage))

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if self.path == "/v1/chat/completions":
                    headers = {k.lower(): v for k, v in self.headers.items()}
                    step = fake._answer(request, headers)
                else:
                    step = Step.error(404, "File Not Found")
                data = json.dumps(step.body).encode()
                self.send_response(step.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in step.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                # The client may have given up waiting (the timeout test): nothing to answer.
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


@contextlib.contextmanager
def running_judge_server() -> Iterator[JudgeServer]:
    """A started ``JudgeServer``, shut down on exit."""
    fake = JudgeServer()
    fake.thread.start()
    try:
        yield fake
    finally:
        fake.server.shutdown()
        fake.server.server_close()
        fake.thread.join()
