"""Collect responses with top-20 logprobs from an OpenAI-compatible server into the store.

Over 400 lines: the collector's prompt selection, bounded concurrency and batched
storing, which must stop cleanly on any error.

Each prompt of a prompts JSONL (``id, benchmark, question, gold, kind``, as in
``shared/data/prompts/dev.jsonl``) becomes one user message, the question and
the suffix the corpus was made with, sent with ``logprobs=True,
top_logprobs=20, temperature=0, seed=0``. Each response is stored as a wrapper
record through ``ingest_records`` (the path of ``sentinel ingest``), its trace
id the prompt id, in small batches so a crash loses little; a rerun skips the
prompt ids already stored, so collection resumes where it stopped.

Retries are the ``openai`` client's own, set in one place (``labeling.openai_client``:
timeouts, 429 and 5xx, exponential backoff with jitter, ``Retry-After`` honoured);
what still fails stops the run, and a rerun resumes it. These are plain functions;
the CLI's ``collect`` calls them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass
from itertools import zip_longest
from pathlib import Path
from typing import Any

from openai import OpenAI
from openai.types.chat import ChatCompletion
from sqlalchemy import Engine
from sqlmodel import Session, select

from labeling.openai_client import DEFAULT_MAX_RETRIES, excerpt, make_client, openai_errors
from sentinel_core.errors import SentinelError
from sentinel_core.ingest import EMPTY_REPORT, IngestReport, ingest_records
from sentinel_core.schema import TraceRow

#: The user-message suffixes of the dev corpus (``shared/data/prompts/README.md``).
SUFFIX = "\n\nPlease reason step by step, and put your final answer within \\boxed{}."
CHOICE_SUFFIX = (
    "\n\nPlease reason step by step, and put the letter of the correct option within \\boxed{}."
)
TOP_LOGPROBS = 20
_KINDS = frozenset({"number", "latex", "choice"})
_ID_CHUNK = 500


class CollectError(SentinelError):
    """The LLM server cannot be reached, refuses a request, or answers without logprobs."""


@dataclass(frozen=True, slots=True)
class Prompt:
    """One benchmark question to send."""

    id: str
    benchmark: str
    question: str
    gold: str
    kind: str

    @property
    def user_message(self) -> str:
        """The question and the suffix the corpus was made with."""
        return self.question + (CHOICE_SUFFIX if self.kind == "choice" else SUFFIX)


@dataclass(frozen=True, slots=True)
class Completion:
    """One server answer: the body unchanged, and the counts the report adds up."""

    prompt: Prompt
    body: dict[str, Any]
    completion_tokens: int
    predicted_n: int | None
    predicted_ms: float | None
    prompt_ms: float | None


@dataclass(frozen=True, slots=True)
class CollectReport:
    """What one collection did; ``sent == stored + quarantined + duplicates``.

    ``server_tokens_per_s`` is the server's own generation rate (llama.cpp's
    ``timings``: predicted tokens over predicted milliseconds, summed over the
    responses); ``None`` when the server reports no timings.
    ``server_busy_s`` adds the server's prompt and generation milliseconds.
    """

    sent: int
    stored: int
    skipped: int
    quarantined: int
    duplicates: int
    completion_tokens: int
    wall_s: float
    server_tokens_per_s: float | None
    server_busy_s: float | None

    @property
    def client_tokens_per_s(self) -> float:
        """Completion tokens over the wall-clock seconds of sending and storing."""
        return self.completion_tokens / self.wall_s if self.wall_s > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        """The figures as a plain mapping (the CLI's JSON line)."""
        return {**asdict(self), "client_tokens_per_s": self.client_tokens_per_s}


def read_prompts(path: Path) -> list[Prompt]:
    """Parse a prompts JSONL; a bad line raises with its line number and what was wrong."""
    if not path.is_file():
        raise CollectError(f"expected a prompts JSONL file, got {str(path)!r} (no such file)")
    prompts: list[Prompt] = []
    with path.open(encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if line.strip():
                prompts.append(_parse_prompt(line, f"{path}:{line_no}"))
    return prompts


def _parse_prompt(line: str, where: str) -> Prompt:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        raise CollectError(f"{where}: expected a JSON object, got invalid JSON ({exc})") from exc
    fields = ("id", "benchmark", "question", "gold", "kind")
    if not isinstance(row, dict) or any(not isinstance(row.get(f), str) for f in fields):
        got = sorted(row) if isinstance(row, dict) else type(row).__name__
        raise CollectError(f"{where}: expected string fields {list(fields)}, got {got}")
    if row["kind"] not in _KINDS:
        raise CollectError(f"{where}: expected kind in {sorted(_KINDS)}, got {row['kind']!r}")
    return Prompt(*(row[f] for f in fields))


def round_robin(prompts: Sequence[Prompt]) -> list[Prompt]:
    """Interleave benchmarks (file order inside each) so any prefix covers them evenly."""
    by_benchmark: dict[str, list[Prompt]] = {}
    for prompt in prompts:
        by_benchmark.setdefault(prompt.benchmark, []).append(prompt)
    rounds = zip_longest(*by_benchmark.values())
    return [prompt for batch in rounds for prompt in batch if prompt is not None]


def stored_ids(engine: Engine, ids: Collection[str]) -> set[str]:
    """The subset of ``ids`` already stored as traces."""
    found: set[str] = set()
    wanted = list(ids)
    with Session(engine) as session:
        for start in range(0, len(wanted), _ID_CHUNK):
            chunk = wanted[start : start + _ID_CHUNK]
            found.update(session.exec(select(TraceRow.id).where(TraceRow.id.in_(chunk))).all())  # type: ignore[attr-defined]
    return found


def request_completion(
    client: OpenAI,
    prompt: Prompt,
    *,
    model: str,
    max_tokens: int,
) -> Completion:
    """Send one prompt; a refusal, a dead server or a body without logprobs is a CollectError."""
    url = f"{str(client.base_url).rstrip('/')}/chat/completions"
    with openai_errors(
        f"expected a chat.completion from {url}",
        timeout_s=client.timeout if isinstance(client.timeout, float | int) else None,
        error=lambda message, _transient: CollectError(message),
        hint="is the server running? (scripts/llm-server start)",
    ):
        response = client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": prompt.user_message}],
            logprobs=True,
            top_logprobs=TOP_LOGPROBS,
            temperature=0,
            seed=0,
            max_tokens=max_tokens,
        )
    if not isinstance(response, ChatCompletion):
        raise CollectError(
            f"expected a chat.completion JSON object from {url}, got "
            f"{type(response).__name__}: {excerpt(str(response))}"
        )
    return _completion(prompt, response.to_dict(mode="json"), url)


def _completion(prompt: Prompt, body: dict[str, Any], url: str) -> Completion:
    choices = body.get("choices")
    if not choices or not isinstance(choices[0], dict):
        raise CollectError(
            f"expected a chat.completion with choices from {url}, got {excerpt(json.dumps(body))}"
        )
    usage = body.get("usage") or {}
    tokens = int(usage.get("completion_tokens") or 0)
    logprobs = choices[0].get("logprobs") or {}
    content = logprobs.get("content")
    if content is None or (not content and tokens > 0):
        raise CollectError(
            f"expected top_logprobs for every token from {url} (logprobs=true, "
            f"top_logprobs={TOP_LOGPROBS}), got a response without logprobs: "
            f"{excerpt(json.dumps(body))}"
        )
    timings = body.get("timings") or {}
    return Completion(
        prompt=prompt,
        body=body,
        completion_tokens=tokens or len(content),
        predicted_n=timings.get("predicted_n"),
        predicted_ms=timings.get("predicted_ms"),
        prompt_ms=timings.get("prompt_ms"),
    )


def wrapper_record(completion: Completion) -> dict[str, Any]:
    """The wrapper line that carries the prompt's slice keys with the response."""
    prompt, body = completion.prompt, completion.body
    return {
        "id": prompt.id,
        "model": body.get("model"),
        "created": body.get("created"),
        "metadata": {
            "benchmark": prompt.benchmark,
            "prompt_id": prompt.id,
            "gold": prompt.gold,
            "kind": prompt.kind,
        },
        "prompt": prompt.user_message,
        "response": body,
    }


def select_prompts(
    engine: Engine,
    prompts_path: Path,
    *,
    limit: int | None = None,
    ids: Iterable[str] | None = None,
    benchmarks: Iterable[str] | None = None,
) -> tuple[list[Prompt], int]:
    """The prompts still to send, round-robin over benchmarks, and how many were skipped.

    ``ids`` and ``benchmarks`` narrow the file; prompts already stored are skipped;
    ``limit`` caps how many are sent this time.
    """
    prompts = read_prompts(prompts_path)
    if ids is not None:
        wanted = set(ids)
        prompts = [p for p in prompts if p.id in wanted]
    if benchmarks is not None:
        chosen, known = set(benchmarks), {p.benchmark for p in prompts}
        if chosen - known:
            raise CollectError(
                f"expected benchmarks among {sorted(known)} in {prompts_path}, "
                f"got unknown {sorted(chosen - known)}"
            )
        prompts = [p for p in prompts if p.benchmark in chosen]
    done = stored_ids(engine, {p.id for p in prompts})
    pending = [p for p in round_robin(prompts) if p.id not in done]
    skipped = len(prompts) - len(pending)
    return (pending if limit is None else pending[:limit]), skipped


def collect(
    engine: Engine,
    prompts_path: Path,
    *,
    base_url: str,
    model: str,
    max_tokens: int,
    concurrency: int = 2,
    api_key: str | None = None,
    limit: int | None = None,
    ids: Iterable[str] | None = None,
    benchmarks: Iterable[str] | None = None,
    timeout_s: float = 300.0,
    batch_size: int = 4,
    keep_prompt: bool = False,
    dtype: str = "float32",
    max_retries: int = DEFAULT_MAX_RETRIES,
    on_progress: Callable[[int, int, int], None] | None = None,
) -> CollectReport:
    """Send every prompt not yet stored, ``concurrency`` at a time, and store the responses.

    ``on_progress(done, total, completion_tokens)`` is called once before the first
    request and after every response. On an error, the responses already received
    (and those in flight) are stored before the CollectError is raised.
    """
    if concurrency < 1 or batch_size < 1 or max_tokens < 1:
        raise CollectError(
            f"expected concurrency, batch_size and max_tokens >= 1, got "
            f"{concurrency}, {batch_size} and {max_tokens}"
        )
    pending, skipped = select_prompts(
        engine, prompts_path, limit=limit, ids=ids, benchmarks=benchmarks
    )
    source = f"collect:{model}@{base_url}"
    sink = _Sink(engine, source=source, batch_size=batch_size, keep_prompt=keep_prompt, dtype=dtype)
    if on_progress is not None:
        on_progress(0, len(pending), 0)
    started = time.perf_counter()
    with make_client(
        base_url, api_key=api_key, timeout_s=timeout_s, max_retries=max_retries
    ) as client:
        try:
            for completion in _run(client, pending, model, max_tokens, concurrency):
                sink.add(completion)
                if on_progress is not None:
                    on_progress(len(sink.completions), len(pending), sink.tokens)
        finally:
            sink.flush()
    return sink.report(skipped=skipped, wall_s=time.perf_counter() - started)


def _run(
    client: OpenAI,
    prompts: Sequence[Prompt],
    model: str,
    max_tokens: int,
    concurrency: int,
) -> Iterator[Completion]:
    """Yield completions as they arrive, at most ``concurrency`` requests in flight.

    Requests are submitted as slots free up, so nothing new is sent after an error;
    the requests still in flight then finish and are yielded before it is raised.
    """
    queue = iter(prompts)
    error: Exception | None = None
    pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="collect")

    def submit() -> Future[Completion] | None:
        prompt = next(queue, None) if error is None else None
        if prompt is None:
            return None
        return pool.submit(request_completion, client, prompt, model=model, max_tokens=max_tokens)

    in_flight = {f for f in (submit() for _ in range(concurrency)) if f is not None}
    try:
        while in_flight:
            finished, in_flight = wait(in_flight, return_when=FIRST_COMPLETED)
            for future in finished:
                try:
                    completion = future.result()
                except Exception as exc:
                    error = error or exc
                    continue
                following = submit()  # keep the server busy while this one is stored
                if following is not None:
                    in_flight.add(following)
                yield completion
    finally:
        # Interrupted (Ctrl-C, or the consumer failed): drop what is queued, do not wait.
        pool.shutdown(wait=not in_flight, cancel_futures=True)
    if error is not None:
        raise error


class _Sink:
    """Stores completions in batches through ``ingest_records`` and keeps the counts."""

    def __init__(
        self, engine: Engine, *, source: str, batch_size: int, keep_prompt: bool, dtype: str
    ) -> None:
        self.engine = engine
        self.source = source
        self.batch_size = batch_size
        self.keep_prompt = keep_prompt
        self.dtype = dtype
        self.completions: list[Completion] = []
        self.batch: list[Mapping[str, Any]] = []
        self.ingested: IngestReport = EMPTY_REPORT
        self.tokens = 0

    def add(self, completion: Completion) -> None:
        self.completions.append(completion)
        self.tokens += completion.completion_tokens
        self.batch.append(wrapper_record(completion))
        if len(self.batch) >= self.batch_size:
            self.flush()

    def flush(self) -> None:
        if self.batch:
            self.ingested += ingest_records(
                self.engine,
                self.batch,
                source=self.source,
                batch_size=len(self.batch),
                keep_prompt=self.keep_prompt,
                dtype=self.dtype,
            )
            self.batch = []

    def report(self, *, skipped: int, wall_s: float) -> CollectReport:
        timed = [c for c in self.completions if c.predicted_n is not None and c.predicted_ms]
        predicted_ms = sum(c.predicted_ms or 0.0 for c in timed)
        busy_ms = predicted_ms + sum(c.prompt_ms or 0.0 for c in timed)
        return CollectReport(
            sent=len(self.completions),
            stored=self.ingested.stored,
            skipped=skipped,
            quarantined=self.ingested.quarantined,
            duplicates=self.ingested.duplicates,
            completion_tokens=self.tokens,
            wall_s=wall_s,
            server_tokens_per_s=(
                sum(c.predicted_n or 0 for c in timed) / (predicted_ms / 1000) if timed else None
            ),
            server_busy_s=busy_ms / 1000 if timed else None,
        )
