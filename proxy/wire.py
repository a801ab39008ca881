"""The proxy's pure parts: request rewriting, logprob stripping, stream reassembly, records.

Over 400 lines: the wire rewriting and stream reassembly the proxy must get exactly
right, with nothing else in it.

Nothing here does I/O. The ASGI app (:mod:`proxy.app`) calls these on each request:

* :func:`plan_request` decides what the upstream is asked for: ``logprobs: true,
  top_logprobs: 20`` (legacy completions: ``logprobs: 20``) when the client did not ask,
  or asked for fewer alternatives, and what must then be taken out of the answer;
* :func:`strip_response` / :func:`strip_chunk` take out what the client did not ask for,
  without mutating their input (the trace keeps the full logprobs);
* :class:`StreamAssembler` rebuilds one ``chat.completion`` / ``text_completion`` object
  from the streamed chunks, logprobs included;
* :func:`build_record` makes the wrapper record ``ingest_records`` stores, its slice keys
  from ``X-Sentinel-<Key>`` headers or the request's ``metadata``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

import orjson

#: Alternatives per token the proxy asks the upstream for (the featuriser's k).
TOP_K = 20
CHAT_PATH = "/v1/chat/completions"
COMPLETIONS_PATH = "/v1/completions"
TRACED_PATHS = frozenset({CHAT_PATH, COMPLETIONS_PATH})
#: Request headers that carry slice keys: ``X-Sentinel-Customer: acme`` -> ``customer``.
HEADER_PREFIX = "x-sentinel-"

Kind = Literal["chat", "legacy"]


@dataclass(frozen=True, slots=True)
class Plan:
    """What to send upstream for one request, and what to take out of its answer.

    ``strip`` is ``None`` when the client gets the upstream's answer untouched, ``"all"``
    when the client did not ask for logprobs (they become ``null``), or the number of
    alternatives per token the client asked for (the rest are cut).
    ``body`` is the JSON to send, ``None`` to send the client's bytes unchanged.
    """

    kind: Kind
    body: dict[str, Any] | None
    strip: Literal["all"] | int | None
    stream: bool
    traced: bool


def kind_of(path: str) -> Kind | None:
    """``chat`` or ``legacy`` for the two traced endpoints, ``None`` for anything else."""
    if path == CHAT_PATH:
        return "chat"
    if path == COMPLETIONS_PATH:
        return "legacy"
    return None


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def plan_request(kind: Kind, request: Mapping[str, Any]) -> Plan:
    """The upstream request for ``request`` and the stripping its answer needs."""
    stream = request.get("stream") is True
    body = dict(request)
    if kind == "chat":
        asked = bool(request.get("logprobs"))
        k = _int(request.get("top_logprobs"))
        if not asked:
            body["logprobs"] = True
            body["top_logprobs"] = TOP_K
            return Plan(kind, body, "all", stream, True)
        if k is None or k < TOP_K:
            body["top_logprobs"] = TOP_K
            return Plan(kind, body, k or 0, stream, True)
        return Plan(kind, None, None, stream, True)
    if request.get("echo"):
        # Echoed prompt tokens would enter the trace as generated ones: not traced.
        return Plan(kind, None, None, stream, False)
    k = _int(request.get("logprobs"))
    if request.get("logprobs") is None:
        body["logprobs"] = TOP_K
        return Plan(kind, body, "all", stream, True)
    if k is not None and k < TOP_K:
        body["logprobs"] = TOP_K
        return Plan(kind, body, k, stream, True)
    return Plan(kind, None, None, stream, True)


def _top_dict(top: Mapping[str, Any], k: int) -> dict[str, Any]:
    """The ``k`` most probable entries of a legacy token -> logprob map, in its order."""
    if len(top) <= k:
        return dict(top)
    ranked = sorted(
        top.items(),
        key=lambda kv: kv[1] if isinstance(kv[1], int | float) else float("-inf"),
        reverse=True,
    )
    keep = {token for token, _ in ranked[:k]}
    return {token: value for token, value in top.items() if token in keep}


def _stripped_logprobs(logprobs: Any, strip: Literal["all"] | int) -> Any:
    if strip == "all" or not isinstance(logprobs, Mapping):
        return None if strip == "all" else logprobs
    new = dict(logprobs)
    content = logprobs.get("content")
    if isinstance(content, list):  # chat
        new["content"] = [
            {**step, "top_logprobs": step["top_logprobs"][:strip]}
            if isinstance(step, Mapping) and isinstance(step.get("top_logprobs"), list)
            else step
            for step in content
        ]
        return new
    tops = logprobs.get("top_logprobs")
    if isinstance(tops, list):  # legacy
        new["top_logprobs"] = [
            _top_dict(top, strip) if isinstance(top, Mapping) else top for top in tops
        ]
    return new


def strip_response(response: Mapping[str, Any], strip: Literal["all"] | int) -> dict[str, Any]:
    """``response`` (a completion or one streamed chunk) without what the client did not ask.

    The input is not changed: choices and logprobs are copied where they change.
    """
    choices = response.get("choices")
    if not isinstance(choices, list):
        return dict(response)
    new_choices = [
        {**choice, "logprobs": _stripped_logprobs(choice["logprobs"], strip)}
        if isinstance(choice, Mapping) and choice.get("logprobs") is not None
        else choice
        for choice in choices
    ]
    return {**response, "choices": new_choices}


def needs_strip(response: Mapping[str, Any]) -> bool:
    """Whether any choice carries logprobs (a chunk without any is forwarded byte for byte)."""
    choices = response.get("choices")
    return isinstance(choices, list) and any(
        isinstance(c, Mapping) and c.get("logprobs") is not None for c in choices
    )


def strip_body(raw: bytes, strip: Literal["all"] | int | None) -> tuple[bytes, Any]:
    """The bytes the client gets for an upstream body ``raw``, and ``raw`` parsed (or None).

    ``raw`` comes back unchanged when nothing is to be stripped or it is not a JSON object.
    """
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw, None
    if strip is None or not isinstance(parsed, dict) or not needs_strip(parsed):
        return raw, parsed
    return orjson.dumps(strip_response(parsed, strip)), parsed


# -- server-sent events ----------------------------------------------------------------


class SSESplitter:
    """Cuts a byte stream into whole server-sent events (each ending with a blank line)."""

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, data: bytes) -> list[bytes]:
        """The events completed by ``data``, each with its terminating blank line."""
        self._buffer += data
        events: list[bytes] = []
        while True:
            cut = _event_end(self._buffer)
            if cut < 0:
                return events
            events.append(self._buffer[:cut])
            self._buffer = self._buffer[cut:]

    def rest(self) -> bytes:
        """Bytes after the last whole event (a stream cut short)."""
        rest, self._buffer = self._buffer, b""
        return rest


def _event_end(buffer: bytes) -> int:
    ends = [
        (i + len(sep)) for sep in (b"\n\n", b"\r\n\r\n", b"\r\r") if (i := buffer.find(sep)) >= 0
    ]
    return min(ends) if ends else -1


def event_data(event: bytes) -> bytes | None:
    """The ``data:`` payload of one event (its lines joined), ``None`` if it has none."""
    lines = [
        line[5:].removeprefix(b" ")
        for line in event.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
        if line.startswith(b"data:")
    ]
    return b"\n".join(lines) if lines else None


class _Done:
    def __repr__(self) -> str:
        return "DONE"


DONE: Final = _Done()
"""What :func:`strip_event` gives for the ``data: [DONE]`` event that ends a stream."""


def strip_event(event: bytes, strip: Literal["all"] | int | None) -> tuple[bytes, Any]:
    """One SSE event as the client gets it, and its parsed ``data`` (None if not JSON).

    Only an event whose choices carry logprobs is rewritten (``data: <json>\\n\\n``);
    every other event is forwarded byte for byte. The ``[DONE]`` event parses to
    :data:`DONE`.
    """
    data = event_data(event)
    if data is None:
        return event, None
    if data.strip() == b"[DONE]":
        return event, DONE
    try:
        parsed = orjson.loads(data)
    except orjson.JSONDecodeError:
        return event, None
    if strip is None or not isinstance(parsed, dict) or not needs_strip(parsed):
        return event, parsed
    return b"data: " + orjson.dumps(strip_response(parsed, strip)) + b"\n\n", parsed


@dataclass(slots=True)
class _Choice:
    index: int
    text: list[str]
    role: str | None = None
    finish_reason: Any = None
    content: list[Any] | None = None  # chat logprobs.content steps
    tokens: list[Any] | None = None  # legacy logprobs lists
    token_logprobs: list[Any] | None = None
    top_logprobs: list[Any] | None = None
    text_offset: list[Any] | None = None


class StreamAssembler:
    """Rebuilds one completion object from the parsed chunks of a stream, logprobs included."""

    def __init__(self, kind: Kind) -> None:
        self.kind = kind
        self.head: dict[str, Any] = {}
        self.usage: Any = None
        self.choices: dict[int, _Choice] = {}
        self.chunks = 0
        self.done = False  # the upstream sent ``data: [DONE]``: nothing more will come

    def add(self, chunk: Any) -> None:
        """Take one parsed ``data:`` object (:data:`DONE` ends it; anything else not a
        chunk is ignored)."""
        if chunk is DONE:
            self.done = True
            return
        if not isinstance(chunk, dict):
            return
        self.chunks += 1
        for key in ("id", "created", "model", "system_fingerprint"):
            if key not in self.head and chunk.get(key) is not None:
                self.head[key] = chunk[key]
        if chunk.get("usage") is not None:
            self.usage = chunk["usage"]
        for raw in chunk.get("choices") or ():
            if isinstance(raw, dict):
                self._add_choice(raw)

    def _add_choice(self, raw: dict[str, Any]) -> None:
        index = _int(raw.get("index")) or 0
        choice = self.choices.setdefault(index, _Choice(index, []))
        if raw.get("finish_reason") is not None:
            choice.finish_reason = raw["finish_reason"]
        if self.kind == "chat":
            delta = raw.get("delta")
            if isinstance(delta, dict):
                if isinstance(delta.get("role"), str):
                    choice.role = delta["role"]
                if isinstance(delta.get("content"), str):
                    choice.text.append(delta["content"])
        elif isinstance(raw.get("text"), str):
            choice.text.append(raw["text"])
        logprobs = raw.get("logprobs")
        if not isinstance(logprobs, dict):
            return
        if isinstance(logprobs.get("content"), list):
            if choice.content is None:
                choice.content = []
            choice.content.extend(logprobs["content"])  # in place: a long stream stays linear
        for name in ("tokens", "token_logprobs", "top_logprobs", "text_offset"):
            values = logprobs.get(name)
            if isinstance(values, list):
                if getattr(choice, name) is None:
                    setattr(choice, name, [])
                getattr(choice, name).extend(values)

    def completion(self) -> dict[str, Any]:
        """The one non-streamed object the chunks add up to."""
        choices = []
        for index in sorted(self.choices):
            c = self.choices[index]
            text = "".join(c.text)
            if self.kind == "chat":
                logprobs: Any = None if c.content is None else {"content": c.content}
                choices.append(
                    {
                        "index": index,
                        "message": {"role": c.role or "assistant", "content": text},
                        "logprobs": logprobs,
                        "finish_reason": c.finish_reason,
                    }
                )
            else:
                logprobs = (
                    None
                    if c.top_logprobs is None
                    else {
                        "tokens": c.tokens or [],
                        "token_logprobs": c.token_logprobs or [],
                        "top_logprobs": c.top_logprobs,
                        "text_offset": c.text_offset or [],
                    }
                )
                choices.append(
                    {
                        "index": index,
                        "text": text,
                        "logprobs": logprobs,
                        "finish_reason": c.finish_reason,
                    }
                )
        body: dict[str, Any] = {
            **self.head,
            "object": "chat.completion" if self.kind == "chat" else "text_completion",
            "choices": choices,
        }
        if self.usage is not None:
            body["usage"] = self.usage
        return body


# -- records ---------------------------------------------------------------------------


def slice_keys(headers: Iterable[tuple[str, str]], request: Mapping[str, Any]) -> dict[str, str]:
    """Slice keys of a request: its ``metadata`` object, then ``X-Sentinel-<Key>`` headers.

    Header names are lowercased with ``-`` as ``_`` (``X-Sentinel-Prompt-Kind`` ->
    ``prompt_kind``); a header wins over a ``metadata`` entry of the same key.
    """
    keys: dict[str, str] = {}
    metadata = request.get("metadata")
    if isinstance(metadata, Mapping):
        keys.update({str(k): v if isinstance(v, str) else str(v) for k, v in metadata.items()})
    for name, value in headers:
        lower = name.lower()
        if lower.startswith(HEADER_PREFIX) and len(lower) > len(HEADER_PREFIX):
            keys[lower[len(HEADER_PREFIX) :].replace("-", "_")] = value
    return keys


def prompt_of(kind: Kind, request: Mapping[str, Any]) -> Any:
    """The request text: a chat's ``messages``, a legacy completion's ``prompt``."""
    return request.get("messages") if kind == "chat" else request.get("prompt")


def hashed_prompt(prompt: Any) -> str:
    """``sha256:<hex>`` of a prompt (its text, or its JSON with sorted keys)."""
    data = (
        prompt.encode()
        if isinstance(prompt, str)
        else orjson.dumps(prompt, option=orjson.OPT_SORT_KEYS)
    )
    return "sha256:" + hashlib.sha256(data).hexdigest()


def build_record(
    kind: Kind,
    request: Mapping[str, Any],
    response: Mapping[str, Any],
    headers: Iterable[tuple[str, str]],
    *,
    keep_prompt: bool,
    received: float,
) -> dict[str, Any]:
    """The wrapper record of one proxied exchange, as ``ingest_records`` takes it.

    Without ``keep_prompt`` the prompt never leaves this function: the record carries
    ``sha256:<hex>`` in its place (what the store hashes again into ``prompt_hash``, the
    same on the direct and the spill path), so neither the queue nor the spill file
    holds request text. ``received`` (Unix seconds) stands in for a missing ``created``.
    """
    prompt = prompt_of(kind, request)
    record: dict[str, Any] = {
        "id": response.get("id"),
        "model": response.get("model") or request.get("model"),
        "created": response.get("created") or received,
        "metadata": slice_keys(headers, request),
        "response": response,
    }
    if prompt is not None:
        record["prompt"] = prompt if keep_prompt else hashed_prompt(prompt)
    return record
