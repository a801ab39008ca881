"""The collector against a small OpenAI-compatible server started by the test itself.

The server (stdlib ``http.server`` in a thread, on 127.0.0.1) speaks the
chat.completions wire format as llama.cpp's ``llama-server`` does: top-20
``logprobs`` with token ids and bytes, ``usage`` and ``timings``. Its answers
are GENERATED; faults (5xx, slowness, bodies without logprobs) are scripted
per request.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select
from typer.testing import CliRunner

from flows.cli import app
from sentinel_core.schema import TraceRow
from sentinel_core.store import open_store
from tasks.collect import (
    CHOICE_SUFFIX,
    SUFFIX,
    CollectError,
    Prompt,
    collect,
    read_prompts,
)
from tests.factories import REAL_TRACES, generated_top_logprobs

MODEL = "generated-model"
#: A scripted fault asks the client to wait this long before its retry (keeps tests fast).
FAST_RETRY = {"retry-after-ms": "10"}
SENTINEL = str(Path(sys.executable).with_name("sentinel"))


def llama_body(request: dict[str, Any]) -> dict[str, Any]:
    """A GENERATED chat.completion shaped like llama-server's, seeded by the prompt."""
    text = request["messages"][-1]["content"]
    seed = int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)
    n = min(int(request.get("max_tokens") or 16), 5 + seed % 4)
    k = int(request.get("top_logprobs") or 0)
    top = generated_top_logprobs(n, max(k, 1), seed=seed)

    def entry(t: int, j: int) -> dict[str, Any]:
        token = f"t{t}" if j == 0 else f"a{t}.{j}"
        return {
            "id": 100 + j,
            "token": token,
            "bytes": list(token.encode()),
            "logprob": float(top[t, j]),
        }

    content = [{**entry(t, 0), "top_logprobs": [entry(t, j) for j in range(k)]} for t in range(n)]
    return {
        "choices": [
            {
                "finish_reason": "length" if n == request.get("max_tokens") else "stop",
                "index": 0,
                "message": {"role": "assistant", "content": " ".join(f"t{t}" for t in range(n))},
                "logprobs": {"content": content} if request.get("logprobs") else None,
            }
        ],
        "created": 1_795_000_000,
        "model": request["model"],
        "system_fingerprint": "b1-generated",
        "object": "chat.completion",
        "usage": {"completion_tokens": n, "prompt_tokens": 40, "total_tokens": 40 + n},
        "id": f"chatcmpl-{seed}",
        "timings": {
            "prompt_n": 40,
            "prompt_ms": 100.0,
            "predicted_n": n,
            "predicted_ms": 50.0 * n,
            "predicted_per_second": 20.0,
        },
    }


class FakeLLM:
    """An OpenAI-compatible chat.completions server; ``script`` holds faults to serve first.

    Each script entry is ``(status, body)``, ``(status, body, headers)``, ``("sleep",
    seconds)`` or ``None`` (a normal answer); once the script is used up every request
    gets a normal answer. A fault without headers says ``retry-after-ms: 10``.
    """

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.times: list[float] = []
        self.script: list[tuple[Any, Any] | None] = []
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def _next(self, request: dict[str, Any]) -> tuple[int, Any, dict[str, str]]:
        with self.lock:
            self.requests.append(request)
            self.times.append(time.monotonic())
            step = self.script.pop(0) if self.script else None
        if step is None:
            return 200, llama_body(request), {}
        if step[0] == "sleep":
            time.sleep(step[1])
            return 200, llama_body(request), {}
        return step[0], step[1], (step[2] if len(step) > 2 else FAST_RETRY)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                status, body, headers = (
                    fake._next(request)
                    if self.path == "/v1/chat/completions"
                    else (404, {"error": {"code": 404, "message": "File Not Found"}}, {})
                )
                data = json.dumps(body).encode()
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                # The client may have given up waiting (the timeout test): nothing to answer.
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


@pytest.fixture
def llm() -> Iterator[FakeLLM]:
    fake = FakeLLM()
    fake.thread.start()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()
    fake.thread.join()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Engine]:
    engine = open_store(f"sqlite:///{tmp_path / 's.db'}")
    yield engine
    engine.dispose()


PROMPTS = [
    {"id": "gsm8k-1", "benchmark": "gsm8k", "question": "1 + 1?", "gold": "2", "kind": "number"},
    {"id": "gsm8k-2", "benchmark": "gsm8k", "question": "2 + 2?", "gold": "4", "kind": "number"},
    {
        "id": "aqua-1",
        "benchmark": "aqua",
        "question": "Pick\nA)1\nB)2",
        "gold": "B",
        "kind": "choice",
    },
    {
        "id": "aqua-2",
        "benchmark": "aqua",
        "question": "Pick\nA)3\nB)4",
        "gold": "A",
        "kind": "choice",
    },
    {
        "id": "math500-1",
        "benchmark": "math500",
        "question": "x^2=4, x>0",
        "gold": "2",
        "kind": "latex",
    },
]


@pytest.fixture
def prompts(tmp_path: Path) -> Path:
    path = tmp_path / "prompts.jsonl"
    path.write_text("".join(json.dumps(p) + "\n" for p in PROMPTS))
    return path


def run(store: Engine, prompts: Path, url: str, **options: Any) -> Any:
    options = {"model": MODEL, "max_tokens": 16, **options}
    return collect(store, prompts, base_url=url, **options)


def stored(store: Engine) -> dict[str, TraceRow]:
    with Session(store) as session:
        return {row.id: row for row in session.exec(select(TraceRow)).all()}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_every_prompt_is_stored_once_and_a_second_run_sends_nothing(
    llm: FakeLLM, store: Engine, prompts: Path
) -> None:
    first = run(store, prompts, llm.base_url)
    second = run(store, prompts, llm.base_url)
    assert (first.sent, first.stored, first.skipped, first.quarantined) == (5, 5, 0, 0)
    assert (second.sent, second.stored, second.skipped) == (0, 0, 5)
    assert len(llm.requests) == 5
    assert set(stored(store)) == {p["id"] for p in PROMPTS}


def test_a_request_asks_for_top_20_logprobs_greedily_with_the_corpus_suffix(
    llm: FakeLLM, store: Engine, prompts: Path
) -> None:
    run(store, prompts, llm.base_url, ids=["aqua-1", "gsm8k-1"], max_tokens=7)
    by_text = {r["messages"][0]["content"]: r for r in llm.requests}
    choice = by_text["Pick\nA)1\nB)2" + CHOICE_SUFFIX]
    assert "1 + 1?" + SUFFIX in by_text
    assert choice["messages"] == [{"role": "user", "content": "Pick\nA)1\nB)2" + CHOICE_SUFFIX}]
    expected = {"logprobs": True, "top_logprobs": 20, "temperature": 0, "seed": 0}
    assert {key: choice[key] for key in expected} == expected
    assert (choice["model"], choice["max_tokens"]) == (MODEL, 7)


def test_the_user_message_reproduces_the_real_corpus_prompts_exactly() -> None:
    with gzip.open(REAL_TRACES, "rt", encoding="utf-8") as handle:
        lines = [json.loads(line) for line in handle if line.strip()]
    for line in lines:
        meta = line["metadata"]
        suffix = CHOICE_SUFFIX if meta["kind"] == "choice" else SUFFIX
        question = line["prompt"].removesuffix(suffix)
        prompt = Prompt(meta["prompt_id"], meta["benchmark"], question, meta["gold"], meta["kind"])
        assert prompt.user_message == line["prompt"]
        assert question != line["prompt"]


def test_metadata_prompt_and_logprobs_travel_with_the_stored_trace(
    llm: FakeLLM, store: Engine, prompts: Path
) -> None:
    run(store, prompts, llm.base_url, ids=["aqua-2"], keep_prompt=True)
    row = stored(store)["aqua-2"]
    assert row.meta == {"benchmark": "aqua", "prompt_id": "aqua-2", "gold": "A", "kind": "choice"}
    assert row.prompt == "Pick\nA)3\nB)4" + CHOICE_SUFFIX
    assert (row.model, row.k) == (MODEL, 20)
    expected = llama_body(llm.requests[0])["choices"][0]["logprobs"]["content"]
    top = np.frombuffer(row.logprobs, dtype=row.dtype).reshape(row.n_steps, row.k)
    assert top[:, 0] == pytest.approx([step["logprob"] for step in expected], rel=1e-6)


def test_the_report_adds_up_tokens_and_the_servers_own_generation_rate(
    llm: FakeLLM, store: Engine, prompts: Path
) -> None:
    report = run(store, prompts, llm.base_url)
    tokens = sum(llama_body(r)["usage"]["completion_tokens"] for r in llm.requests)
    assert report.completion_tokens == tokens
    assert report.server_tokens_per_s == pytest.approx(20.0)
    assert report.server_busy_s == pytest.approx(0.05 * tokens + 0.1 * 5)
    assert report.client_tokens_per_s == pytest.approx(tokens / report.wall_s)
    assert report.as_dict()["sent"] == 5


def test_limit_and_benchmarks_narrow_the_prompts_round_robin(
    llm: FakeLLM, store: Engine, prompts: Path
) -> None:
    first = run(store, prompts, llm.base_url, limit=2, concurrency=1)
    narrowed = run(store, prompts, llm.base_url, benchmarks=["gsm8k"])
    assert [r["messages"][0]["content"].split("\n\n")[0] for r in llm.requests[:2]] == [
        "1 + 1?",
        "Pick\nA)1\nB)2",
    ]
    assert (first.sent, narrowed.sent, narrowed.skipped) == (2, 1, 1)
    assert set(stored(store)) == {"gsm8k-1", "aqua-1", "gsm8k-2"}


def test_progress_is_reported_before_the_first_request_and_after_every_response(
    llm: FakeLLM, store: Engine, prompts: Path
) -> None:
    calls: list[tuple[int, int, int]] = []
    report = run(store, prompts, llm.base_url, on_progress=lambda *a: calls.append(a))
    assert calls[0] == (0, 5, 0)
    assert [c[0] for c in calls] == [0, 1, 2, 3, 4, 5]
    assert calls[-1] == (5, 5, report.completion_tokens)


def test_a_server_that_is_down_is_one_clear_error_naming_the_url(
    store: Engine, prompts: Path
) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(CollectError, match=rf"from {url}/chat/completions, got no connection"):
        run(store, prompts, url)
    assert stored(store) == {}


def test_a_500_then_success_is_retried_and_stored(
    llm: FakeLLM, store: Engine, prompts: Path
) -> None:
    llm.script = [(500, {"error": {"code": 500, "message": "slot busy"}})]
    report = run(store, prompts, llm.base_url, ids=["gsm8k-1"])
    assert (report.sent, report.stored) == (1, 1)
    assert len(llm.requests) == 2


def test_a_429_is_retried_after_the_wait_the_server_asks_for(
    llm: FakeLLM, store: Engine, prompts: Path
) -> None:
    slow_down = (429, {"error": {"message": "slow down"}}, {"retry-after-ms": "300"})
    llm.script = [slow_down, slow_down]
    report = run(store, prompts, llm.base_url, ids=["gsm8k-1"])
    assert (report.stored, len(llm.requests)) == (1, 3)
    gaps = [later - earlier for earlier, later in zip(llm.times, llm.times[1:], strict=False)]
    assert min(gaps) >= 0.3


def test_a_429_without_retry_after_backs_off_exponentially(
    llm: FakeLLM, store: Engine, prompts: Path
) -> None:
    # The openai client's backoff: 0.5 s then 1 s, each less up to 25% jitter.
    llm.script = [(429, {"error": {"message": "slow down"}}, {})] * 2
    report = run(store, prompts, llm.base_url, ids=["gsm8k-1"])
    assert (report.stored, len(llm.requests)) == (1, 3)
    gaps = [later - earlier for earlier, later in zip(llm.times, llm.times[1:], strict=False)]
    assert gaps[0] >= 0.37  # 0.5 s less at most 25%
    assert gaps[1] >= 0.75  # 1 s less at most 25%


def test_a_500_that_persists_is_one_clear_error_with_the_status_and_body(
    llm: FakeLLM, store: Engine, prompts: Path
) -> None:
    llm.script = [(503, {"error": {"message": "loading model"}})] * 4
    with pytest.raises(
        CollectError, match=r"/v1/chat/completions, got HTTP 503 \(after retries\): .*loading model"
    ):
        run(store, prompts, llm.base_url, ids=["gsm8k-1"], max_retries=3)
    assert len(llm.requests) == 4


def test_a_4xx_is_not_retried(llm: FakeLLM, store: Engine, prompts: Path) -> None:
    llm.script = [(400, {"error": {"message": "bad top_logprobs"}})]
    with pytest.raises(CollectError, match=r"got HTTP 400: .*bad top_logprobs"):
        run(store, prompts, llm.base_url, ids=["gsm8k-1"])
    assert len(llm.requests) == 1


def test_a_timeout_is_retried_then_one_clear_error(
    llm: FakeLLM, store: Engine, prompts: Path
) -> None:
    llm.script = [("sleep", 1.0)] * 2
    with pytest.raises(CollectError, match=r"got no answer within 0.2 s"):
        run(store, prompts, llm.base_url, ids=["gsm8k-1"], timeout_s=0.2, max_retries=1)
    assert len(llm.requests) == 2


def test_a_response_without_logprobs_is_one_clear_error(
    llm: FakeLLM, store: Engine, prompts: Path
) -> None:
    body = llama_body({"messages": [{"content": "q"}], "model": MODEL, "max_tokens": 4})
    llm.script = [(200, body)]
    with pytest.raises(CollectError, match=r"got a response without logprobs"):
        run(store, prompts, llm.base_url, ids=["gsm8k-1"])


def test_responses_received_before_an_error_are_stored_and_a_rerun_resumes(
    llm: FakeLLM, store: Engine, prompts: Path
) -> None:
    llm.script = [None, None, (400, {"error": {"message": "context too long"}})]
    with pytest.raises(CollectError, match="context too long"):
        run(store, prompts, llm.base_url, concurrency=1, batch_size=10)
    assert len(stored(store)) == 2
    resumed = run(store, prompts, llm.base_url)
    assert (resumed.sent, resumed.skipped, len(stored(store))) == (3, 2, 5)


def test_a_bad_prompts_line_names_the_line_and_what_was_wrong(tmp_path: Path) -> None:
    path = tmp_path / "prompts.jsonl"
    path.write_text(json.dumps(PROMPTS[0]) + "\n" + json.dumps({"id": "x"}) + "\n")
    with pytest.raises(CollectError, match=r"prompts.jsonl:2: expected string fields"):
        read_prompts(path)


def test_the_cli_collects_and_ends_with_one_json_line(
    llm: FakeLLM, prompts: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SENTINEL_HOME", str(tmp_path / "home"))
    args = ["collect", str(prompts), "--base-url", llm.base_url, "--model", MODEL, "--json"]
    first = CliRunner().invoke(app, [*args, "--limit", "2", "--benchmarks", "aqua,gsm8k"])
    again = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    assert json.loads(first.output.strip().splitlines()[-1])["stored"] == 2
    assert json.loads(again.output.strip().splitlines()[-1])["skipped"] == 2
    assert "sent 3 = stored 3 + quarantined 0 + duplicates 0; skipped 2" in again.output


def test_an_unknown_benchmark_is_one_clear_error(store: Engine, prompts: Path) -> None:
    with pytest.raises(CollectError, match=r"got unknown \['gsm9k'\]"):
        run(store, prompts, "http://127.0.0.1:9/v1", benchmarks=["gsm9k"])


def test_the_cli_prints_one_line_and_exits_2_when_the_server_is_down(
    prompts: Path, tmp_path: Path
) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    done = subprocess.run(
        [SENTINEL, "collect", str(prompts), "--base-url", url, "--model", MODEL],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode == 2
    assert done.stderr.startswith(f"error: expected a chat.completion from {url}/chat/completions")
    assert len(done.stderr.strip().splitlines()) == 1


def test_a_body_that_is_not_a_chat_completion_is_one_clear_error(
    llm: FakeLLM, store: Engine, prompts: Path
) -> None:
    llm.script = [(200, {"status": "loading"})]
    with pytest.raises(
        CollectError, match=r"with choices from .*, got \{\"status\": \"loading\"\}"
    ):
        run(store, prompts, llm.base_url, ids=["gsm8k-1"])
