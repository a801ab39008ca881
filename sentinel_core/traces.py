"""Parse logged LLM responses, once, into typed traces.

Over 400 lines: the three accepted wire shapes (chat, legacy completions, wrapper) and
their validation messages, parsed once here so nothing downstream digs in JSON.

Three shapes are accepted, from JSON lines or from Python objects:

* an OpenAI ``chat.completion`` object returned with ``logprobs=true,
  top_logprobs=k`` (``choices[i].logprobs.content[t].top_logprobs[j].logprob``),
  as OpenAI, vLLM, SGLang, TGI and llama.cpp's server return it;
* the legacy completions object (``choices[i].logprobs.top_logprobs``: one
  token -> logprob map per step, ``token_logprobs`` for the chosen token);
* a wrapper ``{"id", "model", "created", "metadata": {...}, "response": <one of
  the above>, "prompt": optional}`` so slice keys travel with the response.

Anything else raises :class:`InvalidTraceError` whose message is the
quarantine reason: what was expected and what came.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson
from numpy.typing import NDArray

from sentinel_core.errors import InvalidTraceError

#: Logprobs up to this much above zero are float noise from the server and
#: are clipped to 0; anything larger is not a log-probability.
POSITIVE_LOGPROB_TOLERANCE = 1e-6
#: The top-k probabilities of one step may not sum above 1 by more than this.
MASS_TOLERANCE = 1e-3
#: Longest id, model name and finish reason the store's columns hold.
MAX_ID_CHARS = 500  # the column holds 512: room for the "/<choice>" suffix
MAX_MODEL_CHARS = 255
MAX_FINISH_REASON_CHARS = 32
#: The finish reason of a response cut at ``max_tokens`` (OpenAI wire format).
CUT_FINISH_REASON = "length"
#: A NUL character in text cannot be stored by PostgreSQL (nor sent through most tools):
#: in response text, metadata and kept prompts it becomes U+FFFD, before the content hash.
NUL_REPLACEMENT = "\ufffd"
#: The dtypes the store keeps raw logprobs in; parsing validates in the one in use.
STORED_DTYPES = frozenset({"float32", "float16"})


@dataclass(frozen=True, slots=True, eq=False)
class Trace:
    """One LLM response with its top-k next-token log-probabilities.

    ``top_logprobs`` has shape ``(T, k)``, natural-log probabilities with each
    row sorted descending; ``chosen_logprobs`` has shape ``(T,)``: the logprob
    of the token actually generated at each step.
    """

    id: str
    model: str
    created: datetime
    metadata: dict[str, Any]
    response_text: str
    top_logprobs: NDArray[np.float32]
    chosen_logprobs: NDArray[np.float32]
    prompt_hash: str | None = None
    prompt: str | None = None
    finish_reason: str | None = None
    resorted: bool = False
    content_hash: str = field(default="")

    @property
    def n_steps(self) -> int:
        """Number of generated tokens T."""
        return int(self.top_logprobs.shape[0])

    @property
    def k(self) -> int:
        """Number of alternatives per step."""
        return int(self.top_logprobs.shape[1])


def parse_json_line(
    line: bytes | str, *, keep_prompt: bool = False, dtype: str = "float32"
) -> list[Trace]:
    """Parse one JSON line into its traces (one per choice)."""
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise InvalidTraceError(
            f"expected one JSON object per line, got invalid JSON: {exc}"
        ) from exc
    return parse_record(obj, keep_prompt=keep_prompt, dtype=dtype)


def parse_record(obj: object, *, keep_prompt: bool = False, dtype: str = "float32") -> list[Trace]:
    """Parse a wrapper, chat.completion or legacy completion object into traces.

    The prompt text is kept only with ``keep_prompt=True``; its SHA-256 is
    always kept so that responses to one prompt can be grouped. Logprobs are
    validated in ``dtype``, the dtype the store keeps them in (``float32`` or
    ``float16``): a value that the store would turn into ``-inf``, or whose
    underflow to 0 would change the step's distribution, is rejected here,
    and the trace carries the values as stored, so features are computed on
    what the store holds.
    """
    if dtype not in STORED_DTYPES:
        raise InvalidTraceError(
            f"expected a stored dtype in {sorted(STORED_DTYPES)}, got {dtype!r}"
        )
    if not isinstance(obj, Mapping):
        raise InvalidTraceError(f"expected a JSON object, got {type(obj).__name__}")
    if "response" in obj:
        response = obj["response"]
        if not isinstance(response, Mapping):
            raise InvalidTraceError(
                f"expected 'response' to be an OpenAI completion object, "
                f"got {type(response).__name__}"
            )
        wrapper: Mapping[str, Any] = obj
    elif "choices" in obj:
        response, wrapper = obj, {}
    else:
        raise InvalidTraceError(
            "expected a chat.completion / completion object (with 'choices') or a wrapper "
            f"(with 'response'), got an object with keys {sorted(obj)[:8]}"
        )
    return _parse_response(response, wrapper, keep_prompt=keep_prompt, dtype=dtype)


def _parse_response(
    response: Mapping[str, Any], wrapper: Mapping[str, Any], *, keep_prompt: bool, dtype: str
) -> list[Trace]:
    model = wrapper.get("model") or response.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidTraceError(f"expected a non-empty string 'model', got {model!r}")
    _check_identifier("model", model, MAX_MODEL_CHARS)
    created = _parse_created(wrapper.get("created", response.get("created")))
    metadata = wrapper.get("metadata") or {}
    if not isinstance(metadata, Mapping):
        raise InvalidTraceError(
            f"expected 'metadata' to be an object, got {type(metadata).__name__}"
        )
    metadata = _without_nul(metadata)
    prompt = wrapper.get("prompt")
    prompt_hash = None if prompt is None else _hash_prompt(prompt)
    choices = response.get("choices")
    if not isinstance(choices, list) or not choices:
        raise InvalidTraceError(f"expected a non-empty list 'choices', got {_short(choices)}")
    base_id = wrapper.get("id") or response.get("id")
    if base_id is not None and not isinstance(base_id, str | int):
        raise InvalidTraceError(f"expected 'id' to be a string, got {type(base_id).__name__}")
    if base_id is not None:
        _check_identifier("id", str(base_id), MAX_ID_CHARS)
    traces = []
    for position, choice in enumerate(choices):
        if not isinstance(choice, Mapping):
            raise InvalidTraceError(
                f"expected choices[{position}] to be an object, got {type(choice).__name__}"
            )
        text, top, chosen, resorted = _parse_choice(choice, position, dtype)
        finish_reason = choice.get("finish_reason")
        if finish_reason is not None and (
            not isinstance(finish_reason, str) or len(finish_reason) > MAX_FINISH_REASON_CHARS
        ):
            raise InvalidTraceError(
                f"expected choices[{position}].finish_reason to be null or a string of at most "
                f"{MAX_FINISH_REASON_CHARS} characters, got {_short(finish_reason)}"
            )
        content_hash = _content_hash(model, prompt_hash, text, chosen)
        if base_id is None:
            trace_id = f"sha256:{content_hash[:40]}"
        else:
            trace_id = str(base_id) if len(choices) == 1 else f"{base_id}/{position}"
        traces.append(
            Trace(
                id=trace_id,
                model=model,
                created=created,
                metadata=dict(metadata),
                response_text=text,
                top_logprobs=top,
                chosen_logprobs=chosen,
                prompt_hash=prompt_hash,
                prompt=(
                    _prompt_text(prompt).replace("\x00", NUL_REPLACEMENT)
                    if keep_prompt and prompt is not None
                    else None
                ),
                finish_reason=finish_reason,
                resorted=resorted,
                content_hash=content_hash,
            )
        )
    return traces


def _parse_choice(
    choice: Mapping[str, Any], position: int, dtype: str
) -> tuple[str, NDArray[np.float32], NDArray[np.float32], bool]:
    where = f"choices[{position}]"
    logprobs = choice.get("logprobs")
    if not isinstance(logprobs, Mapping):
        raise InvalidTraceError(
            f"expected {where}.logprobs (request with logprobs=true and top_logprobs=k), "
            f"got {_short(logprobs)}"
        )
    if "content" in logprobs:
        message = choice.get("message") or {}
        text = message.get("content") if isinstance(message, Mapping) else None
        rows, chosen = _chat_rows(logprobs["content"], where)
    elif "top_logprobs" in logprobs:
        text = choice.get("text")
        rows, chosen = _legacy_rows(logprobs, where)
    else:
        raise InvalidTraceError(
            f"expected {where}.logprobs.content (chat) or {where}.logprobs.top_logprobs "
            f"(legacy), got keys {sorted(logprobs)}"
        )
    if not isinstance(text, str):
        text = ""
    text = text.replace("\x00", NUL_REPLACEMENT)
    top, resorted = _validated_top(rows, where, dtype)
    chosen_arr = _validated_chosen(chosen, where, dtype)
    return text, top, chosen_arr, resorted


def _chat_rows(content: object, where: str) -> tuple[list[list[Any]], list[Any]]:
    if content is None or (isinstance(content, list) and not content):
        raise InvalidTraceError(
            f"expected at least one generated token (T >= 1) in {where}.logprobs.content, "
            f"got {_short(content)} (T = 0)"
        )
    if not isinstance(content, list):
        raise InvalidTraceError(
            f"expected {where}.logprobs.content to be a list, got {type(content).__name__}"
        )
    try:
        rows = [[alt["logprob"] for alt in step["top_logprobs"]] for step in content]
        chosen = [step["logprob"] for step in content]
    except (KeyError, TypeError) as exc:
        raise InvalidTraceError(
            f"expected every step of {where}.logprobs.content to carry 'logprob' and a list "
            f"'top_logprobs' of objects with 'logprob', missing or malformed: {exc!r}"
        ) from exc
    return rows, chosen


def _legacy_rows(logprobs: Mapping[str, Any], where: str) -> tuple[list[list[Any]], list[Any]]:
    steps = logprobs["top_logprobs"]
    if steps is None or (isinstance(steps, list) and not steps):
        raise InvalidTraceError(
            f"expected at least one generated token (T >= 1) in {where}.logprobs.top_logprobs, "
            f"got {_short(steps)} (T = 0)"
        )
    if not isinstance(steps, list) or not all(isinstance(s, Mapping) for s in steps):
        raise InvalidTraceError(
            f"expected {where}.logprobs.top_logprobs to be a list of token -> logprob maps, "
            f"got {_short(steps)}"
        )
    rows = [list(step.values()) for step in steps]
    chosen = logprobs.get("token_logprobs")
    if not isinstance(chosen, list) or len(chosen) != len(rows):
        # Without per-token logprobs the greedy choice is the best we know.
        chosen = [max(row, default=None, key=_sort_key) for row in rows]
    return rows, chosen


def _sort_key(value: Any) -> float:
    return value if isinstance(value, int | float) else -math.inf


def _validated_top(
    rows: list[list[Any]], where: str, dtype: str
) -> tuple[NDArray[np.float32], bool]:
    widths = {len(row) for row in rows}
    if len(widths) != 1:
        first = len(rows[0])
        step = next(t for t, row in enumerate(rows) if len(row) != first)
        raise InvalidTraceError(
            f"expected the same number k of top_logprobs at every step of {where}, got k = "
            f"{first} at step 0 and k = {len(rows[step])} at step {step}"
        )
    if widths == {0}:
        raise InvalidTraceError(
            f"expected k >= 1 top_logprobs per step in {where} (request with top_logprobs=k), "
            "got k = 0"
        )
    top = _numbers(rows, f"{where} top_logprobs")
    _check_logprob_values(top, f"{where} top_logprobs")
    np.minimum(top, 0.0, out=top)
    mass = np.exp(top).sum(axis=1)
    if mass.max() > 1.0 + MASS_TOLERANCE:
        step = int(mass.argmax())
        raise InvalidTraceError(
            f"expected the top-k probabilities of a step to sum to at most 1, got "
            f"{mass[step]:.4f} at step {step} of {where}"
        )
    resorted = bool((np.diff(top, axis=1) > 0).any())
    if resorted:
        # Order carries no information for the entropy; a shuffled list is sorted, not lost.
        top = -np.sort(-top, axis=1)
    stored = _as_stored(top, dtype, f"{where} top_logprobs")
    # Rounding to the stored dtype (a logprob near 0 underflowing to 0 is a probability of 1)
    # must leave a proper distribution: check the mass again on the values the store keeps.
    stored_mass = np.exp(stored.astype(np.float64)).sum(axis=1)
    if stored_mass.max() > 1.0 + MASS_TOLERANCE:
        step = int(stored_mass.argmax())
        raise InvalidTraceError(
            f"expected top-k probabilities that still sum to at most 1 once stored as {dtype}, "
            f"got {stored_mass[step]:.4f} at step {step} of {where} (rounding or underflow to 0)"
        )
    return stored.astype(np.float32), resorted


def _validated_chosen(chosen: list[Any], where: str, dtype: str) -> NDArray[np.float32]:
    arr = _numbers(chosen, f"{where} chosen-token logprob")
    if arr.ndim != 1:
        raise InvalidTraceError(f"expected one numeric 'logprob' per step of {where}")
    _check_logprob_values(arr, f"{where} chosen-token logprob")
    stored = _as_stored(np.minimum(arr, 0.0), dtype, f"{where} chosen-token logprob")
    return stored.astype(np.float32)


def _numbers(values: list[Any], what: str) -> NDArray[np.float64]:
    """``values`` as float64, only if every one is a JSON number (or null, reported later).

    ``np.array(..., dtype=float)`` would read the string ``"-0.5"`` as a number; the wire
    format has numbers, so a string is a malformed response, not a logprob.
    """
    try:
        arr = np.asarray(values)
    except ValueError:  # a list where a number belongs: the array would be ragged
        arr = np.empty(0, dtype=object)
    if arr.dtype.kind in "iuf":
        return arr.astype(np.float64, copy=False)
    # Slow path, only for a malformed response: find the first value that is not a number.
    # null (None) is reported as such by _check_logprob_values.
    for step, row in enumerate(values):
        for value in row if isinstance(row, list) else [row]:
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int | float)
            ):
                kind = {str: "string", bool: "boolean"}.get(type(value), type(value).__name__)
                raise InvalidTraceError(
                    f"expected JSON numbers as log-probabilities in {what}, got {kind} "
                    f"{_short(value)} at step {step}"
                )
    try:
        return np.array(values, dtype=np.float64)
    except (TypeError, ValueError, OverflowError) as exc:
        raise InvalidTraceError(
            f"expected log-probabilities that fit a float64, got {exc} in {what}"
        ) from exc


def _as_stored(values: NDArray[np.float64], dtype: str, what: str) -> NDArray[Any]:
    """``values`` cast to the store's ``dtype``; a value that would overflow to -inf is an error."""
    lowest = float(np.finfo(dtype).min)
    if values.size and values.min() < lowest:
        index = np.unravel_index(int(values.argmin()), values.shape)
        raise InvalidTraceError(
            f"expected log-probabilities >= {lowest:.6g} (the lowest the store's {dtype} can "
            f"hold), got {float(values[index])!r} at step {index[0]} of {what}: it would be stored "
            "as -inf"
        )
    return values.astype(dtype)


def _check_logprob_values(values: NDArray[np.float64], what: str) -> None:
    finite = np.isfinite(values)
    if not finite.all():
        index = np.argwhere(~finite)[0]
        bad = values[tuple(index)]
        kind = "NaN or null" if np.isnan(bad) else "infinite"
        raise InvalidTraceError(
            f"expected finite log-probabilities in {what}, got {kind} ({bad}) at step {index[0]}"
        )
    high = values.max()
    if high > POSITIVE_LOGPROB_TOLERANCE:
        step = int(np.argwhere(values == high)[0][0])
        raise InvalidTraceError(
            f"expected log-probabilities <= 0 in {what}, got positive {float(high)!r} "
            f"at step {step}"
        )


def _check_identifier(name: str, value: str, limit: int) -> None:
    if "\x00" in value or len(value) > limit:
        raise InvalidTraceError(
            f"expected '{name}' of at most {limit} characters without NUL, got "
            f"{len(value)} characters{' with a NUL' if chr(0) in value else ''}: {_short(value)}"
        )


def _without_nul(value: Any) -> Any:
    """``value`` with NUL characters in every string (keys included) replaced."""
    if isinstance(value, str):
        return value.replace("\x00", NUL_REPLACEMENT)
    if isinstance(value, Mapping):
        return {_without_nul(k): _without_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_nul(v) for v in value]
    return value


def _parse_created(value: object) -> datetime:
    if value is None:
        raise InvalidTraceError("expected 'created' (Unix seconds or ISO 8601), got nothing")
    if isinstance(value, bool):
        raise InvalidTraceError(f"expected 'created' as Unix seconds or ISO 8601, got {value!r}")
    if isinstance(value, int | float):
        if not math.isfinite(value) or value < 0:
            raise InvalidTraceError(f"expected 'created' as Unix seconds >= 0, got {value!r}")
        try:
            return datetime.fromtimestamp(value, tz=UTC)
        except (OverflowError, ValueError, OSError) as exc:
            raise InvalidTraceError(
                f"expected 'created' as Unix seconds of a date up to year 9999, got {value!r} "
                f"({exc})"
            ) from exc
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError as exc:
            raise InvalidTraceError(
                f"expected 'created' as Unix seconds or ISO 8601, got {value!r}"
            ) from exc
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    raise InvalidTraceError(
        f"expected 'created' as Unix seconds or ISO 8601, got {type(value).__name__}"
    )


def _prompt_text(prompt: object) -> str:
    return prompt if isinstance(prompt, str) else orjson.dumps(prompt).decode()


def _hash_prompt(prompt: object) -> str:
    data = (
        prompt.encode()
        if isinstance(prompt, str)
        else orjson.dumps(prompt, option=orjson.OPT_SORT_KEYS)
    )
    return hashlib.sha256(data).hexdigest()


def _content_hash(
    model: str, prompt_hash: str | None, text: str, chosen: NDArray[np.float32]
) -> str:
    digest = hashlib.sha256()
    for part in (model, prompt_hash or "", text):
        digest.update(part.encode())
        digest.update(b"\x00")
    digest.update(chosen.tobytes())
    return digest.hexdigest()


def _short(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def stack_traces(
    traces: Sequence[Trace],
) -> tuple[NDArray[np.float32], NDArray[np.float32], NDArray[np.int64]]:
    """Concatenate traces into the flat layout the featuriser takes.

    Returns ``(flat_top (N, k), flat_chosen (N,), lengths (n,))``. All traces
    must share k; the caller groups by k first.
    """
    lengths = np.fromiter((t.n_steps for t in traces), dtype=np.int64, count=len(traces))
    flat_top = np.concatenate([t.top_logprobs for t in traces])
    flat_chosen = np.concatenate([t.chosen_logprobs for t in traces])
    return flat_top, flat_chosen, lengths


#: Keys whose value is request text (the wrapper's prompt, a chat request's messages, a
#: responses-API input); quarantine keeps their SHA-256 instead unless prompts are kept.
PROMPT_KEYS: tuple[str, ...] = ("prompt", "messages", "input")
_PROMPT_KEY = re.compile(rb'"(' + b"|".join(k.encode() for k in PROMPT_KEYS) + rb')"\s*:\s*')


def redact_prompts(raw: bytes) -> bytes:
    """``raw`` with the value of every prompt key replaced by ``"sha256:<hex>"``.

    Works on text, not on parsed JSON, so it also covers the lines quarantine exists for:
    invalid or truncated JSON. A value whose end cannot be found (the line breaks inside
    it) is replaced up to the end of the line. A string value hashes like the stored
    ``prompt_hash`` (SHA-256 of its text), anything else hashes its JSON bytes.
    """
    parts: list[bytes] = []
    position = 0
    for match in _PROMPT_KEY.finditer(raw):
        start = match.end()
        if start < position:  # a key inside a value already replaced
            continue
        end = _json_value_end(raw, start)
        value = raw[start:end] if end is not None else raw[start:]
        parts += [raw[position:start], b'"sha256:', _value_hash(value).encode(), b'"']
        if end is None:
            return b"".join(parts) + b" <rest of the line redacted: it breaks inside a prompt>"
        position = end
    return b"".join(parts) + raw[position:] if parts else raw


def _value_hash(value: bytes) -> str:
    try:
        decoded = orjson.loads(value)
    except orjson.JSONDecodeError:
        return hashlib.sha256(value).hexdigest()
    return _hash_prompt(decoded)


def _json_value_end(raw: bytes, start: int) -> int | None:
    """The index just past the JSON value that starts at ``start``, or None if it never ends."""
    if start >= len(raw):
        return None
    opener = raw[start : start + 1]
    if opener == b'"':
        i = start + 1
        while i < len(raw):
            char = raw[i : i + 1]
            if char == b"\\":
                i += 2
                continue
            if char == b'"':
                return i + 1
            i += 1
        return None
    if opener in (b"[", b"{"):
        depth, i, in_string = 0, start, False
        while i < len(raw):
            char = raw[i : i + 1]
            if in_string:
                if char == b"\\":
                    i += 1
                elif char == b'"':
                    in_string = False
            elif char == b'"':
                in_string = True
            elif char in (b"[", b"{"):
                depth += 1
            elif char in (b"]", b"}"):
                depth -= 1
                if depth == 0:
                    return i + 1
            i += 1
        return None
    # A number, true, false or null: up to the next delimiter.
    match = re.compile(rb"[,}\]\s]").search(raw, start)
    return match.start() if match else len(raw)


def cut_flags(finish_reasons: Sequence[str | None]) -> NDArray[np.bool_]:
    """Whether each response was cut at ``max_tokens``, from its finish reasons."""
    return np.array([r == CUT_FINISH_REASON for r in finish_reasons], dtype=bool)
