"""The LLM judge: a model behind an OpenAI-compatible API decides whether a response is right.

One chat.completions call per request, greedy (``temperature=0``) and
constrained to the verdict's JSON schema (``response_format`` of type
``json_schema``; llama.cpp's ``llama-server`` turns it into a grammar, OpenAI
enforces it as Structured Outputs). The verdict is parsed once, here, into
``JudgeVerdict``; nothing downstream digs in the raw text.

Money: a call costs ``prompt_tokens * price_in + completion_tokens * price_out``
(prices per million tokens) from the ``usage`` the server returns; a body
without usage is charged ``max_cost`` (an upper bound, so the ledger never
under-counts). A verdict that cannot be parsed was still paid for: its
``LabelingError`` carries that cost and is not retryable (the same greedy call
would answer the same).

Retries are the ``openai`` client's own (``labeling.openai_client``: a timeout,
429 or 5xx is tried again with backoff, ``Retry-After`` honoured, ``max_retries``
from the settings). What is still failing afterwards becomes a retryable
``LabelingError`` costing nothing, so a campaign releases the item and stops; a
refused request (4xx other than 429) is not retryable.
"""

from __future__ import annotations

import json
import re
from typing import Any

from openai.types.chat import ChatCompletion, ChatCompletionMessageParam
from openai.types.shared_params import ResponseFormatJSONSchema
from pydantic import BaseModel, ConfigDict, ValidationError

from labeling.base import LabelingError, LabelOutcome, LabelRequest
from labeling.openai_client import DEFAULT_MAX_RETRIES, excerpt, make_client, openai_errors
from sentinel_core.settings import Settings

LABELER = "judge"

JUDGE_SYSTEM_PROMPT = (
    "You grade a response to a math or science question. When a reference answer is given, "
    "the response is correct only if its final answer (often in \\boxed{}) is equivalent to "
    "the reference: the same number, expression or option letter; ignore style and working. "
    "Without a reference, judge the final answer on its merits. A response that stops before "
    "a final answer is incorrect. Reply with JSON only: "
    '{"correct": true or false, "reason": "one short sentence"}.'
)
"""The judge's instructions (the system message).

Kept short on purpose: a small local judge reads the whole prompt for every
verdict (a CPU server reads a few hundred tokens per second), and a verdict
needs about 30 tokens. It states the decision rule (the final answer against
the reference, equivalence not string equality, an unfinished response is
wrong), the fallback without a reference, and the verdict's JSON shape, which
the ``response_format`` schema then enforces.
"""

JUDGE_USER_TEMPLATE = "QUESTION:\n{question}\n\nRESPONSE:\n{response}{reference}"
"""The user message: the question (or a note that it is not available), the
response, and where known the reference answer with its kind, last, next to
where the verdict is written."""

NO_QUESTION = "(not available: judge the response on its own)"

VERDICT_SCHEMA: dict[str, object] = {
    "type": "object",
    "properties": {"correct": {"type": "boolean"}, "reason": {"type": "string"}},
    "required": ["correct", "reason"],
    "additionalProperties": False,
}
"""The verdict's JSON schema, in the subset OpenAI's strict Structured Outputs accept."""

RESPONSE_FORMAT: ResponseFormatJSONSchema = {
    "type": "json_schema",
    "json_schema": {"name": "judge_verdict", "strict": True, "schema": VERDICT_SCHEMA},
}

TEMPLATE_TOKENS = 64
"""Tokens the chat template may add around the messages (role markers, BOS, separators)."""

_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.DOTALL | re.IGNORECASE)
_RAW_LIMIT = 500
_EXCERPT = 200


class JudgeVerdict(BaseModel):
    """The judge's answer, parsed once: whether the response is correct, and why."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    correct: bool
    reason: str


def parse_verdict(text: str) -> JudgeVerdict:
    """Parse the judge's text into a verdict; a ```json fence around it is tolerated.

    Anything else (not JSON, a field missing or mistyped, extra fields) raises
    ``ValueError`` saying what was expected and what came.
    """
    fenced = _FENCE.match(text)
    body = fenced.group(1) if fenced else text
    try:
        return JudgeVerdict.model_validate_json(body)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'verdict'}: {e['msg']}" for e in exc.errors()
        )
        raise ValueError(
            f'expected a JSON verdict {{"correct": true|false, "reason": "..."}}, '
            f"got {excerpt(text, _EXCERPT)!r} ({problems})"
        ) from exc


def judge_messages(request: LabelRequest) -> list[ChatCompletionMessageParam]:
    """The two messages the judge reads for ``request``."""
    reference = ""
    if request.reference is not None:
        kind = f" ({request.kind})" if request.kind else ""
        reference = f"\n\nREFERENCE ANSWER{kind}: {request.reference}"
    user = JUDGE_USER_TEMPLATE.format(
        question=request.question if request.question else NO_QUESTION,
        response=request.response_text,
        reference=reference,
    )
    return [
        {"role": "system", "content": JUDGE_SYSTEM_PROMPT},
        {"role": "user", "content": user},
    ]


class JudgeLabeler:
    """The LLM judge behind the labeler interface (``SyncLabeler``), named ``judge``.

    Holds one OpenAI client (which retries transient failures) for ``base_url``; close it
    with ``close()`` or use the labeler as a context manager. Prices are USD per
    million tokens.
    """

    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        api_key: str | None = None,
        max_tokens: int = 256,
        timeout_s: float = 120.0,
        price_input_per_mtok: float = 0.0,
        price_output_per_mtok: float = 0.0,
        max_retries: int = DEFAULT_MAX_RETRIES,
    ) -> None:
        if max_tokens < 1 or timeout_s <= 0 or min(price_input_per_mtok, price_output_per_mtok) < 0:
            raise LabelingError(
                f"expected max_tokens >= 1, timeout_s > 0 and prices >= 0 for the judge, got "
                f"{max_tokens}, {timeout_s}, {price_input_per_mtok} and {price_output_per_mtok}"
            )
        self.base_url = base_url
        self.model = model
        self.max_tokens = max_tokens
        self.timeout_s = timeout_s
        self.price_input_per_mtok = price_input_per_mtok
        self.price_output_per_mtok = price_output_per_mtok
        self._client = make_client(
            base_url, api_key=api_key, timeout_s=timeout_s, max_retries=max_retries
        )
        self._url = f"{str(self._client.base_url).rstrip('/')}/chat/completions"

    @classmethod
    def from_settings(cls, settings: Settings) -> JudgeLabeler:
        """The judge the settings describe; a missing URL or model is a clear LabelingError."""
        base_url, model = settings.judge.base_url, settings.judge.model
        if not base_url or not model:
            missing = [
                env
                for env, value in (
                    ("SENTINEL_JUDGE_BASE_URL", base_url),
                    ("SENTINEL_JUDGE_MODEL", model),
                )
                if not value
            ]
            raise LabelingError(
                f"expected the LLM judge's server and model in the settings, got "
                f"{' and '.join(missing)} unset (e.g. SENTINEL_JUDGE_BASE_URL="
                f"http://127.0.0.1:8089/v1 SENTINEL_JUDGE_MODEL=<model name>)"
            )
        key = settings.judge.api_key
        return cls(
            base_url=base_url,
            model=model,
            api_key=key.get_secret_value() if key is not None else None,
            max_tokens=settings.judge.max_tokens,
            timeout_s=settings.judge.timeout_s,
            price_input_per_mtok=settings.judge.price_input_per_mtok,
            price_output_per_mtok=settings.judge.price_output_per_mtok,
            max_retries=settings.llm.max_retries,
        )

    def __repr__(self) -> str:
        # Never the API key: only where and what the judge asks.
        return f"JudgeLabeler(base_url={self.base_url!r}, model={self.model!r})"

    def __enter__(self) -> JudgeLabeler:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the HTTP connections of the client."""
        self._client.close()

    @property
    def name(self) -> str:
        """Stored with each label: ``judge``."""
        return LABELER

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        """USD for one call of ``prompt_tokens`` read and ``completion_tokens`` written."""
        return (
            prompt_tokens * self.price_input_per_mtok / 1e6
            + completion_tokens * self.price_output_per_mtok / 1e6
        )

    def max_cost(self, request: LabelRequest) -> float:
        """An upper bound (USD) of one verdict on ``request``.

        Prompt tokens are at most the UTF-8 bytes of every message's text and of
        the response format (OpenAI shows the schema to the model), plus
        ``TEMPLATE_TOKENS`` for the chat template: a byte-level BPE or
        byte-fallback tokenizer never makes a token of less than one byte, so a
        text has no more tokens than bytes. Completion tokens are at most
        ``max_tokens``, which the request sets.
        """
        text_bytes = sum(len(str(m["content"]).encode()) for m in judge_messages(request))
        format_bytes = len(json.dumps(RESPONSE_FORMAT).encode())
        return self.cost(text_bytes + format_bytes + TEMPLATE_TOKENS, self.max_tokens)

    def label(self, request: LabelRequest) -> LabelOutcome:
        """Ask the judge about ``request``; a failed or unparseable call is a LabelingError."""
        response = self._complete(request)
        model = getattr(response, "model", None) or self.model
        usage = response.usage
        prompt_tokens = usage.prompt_tokens if usage is not None else None
        completion_tokens = usage.completion_tokens if usage is not None else None
        charged_max = prompt_tokens is None or completion_tokens is None
        cost = (
            self.max_cost(request)
            if prompt_tokens is None or completion_tokens is None
            else self.cost(prompt_tokens, completion_tokens)
        )
        content = _content(response)
        raw = content if content is not None else _dump(response)
        try:
            verdict = parse_verdict(raw)
        except ValueError as exc:
            raise LabelingError(
                f"{self._url} ({model}) for {request.trace_id!r}: {exc}",
                cost=cost,
                retryable=False,
            ) from exc
        detail: dict[str, Any] = {
            "reason": verdict.reason,
            "model": model,
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "verdict_raw": _truncate(raw, _RAW_LIMIT),
        }
        if charged_max:
            detail["cost_note"] = "the server returned no usage; charged max_cost"
        return LabelOutcome(request.trace_id, verdict.correct, cost, detail)

    def _complete(self, request: LabelRequest) -> ChatCompletion:
        """One chat.completion (the client retries); failures become LabelingErrors."""
        with openai_errors(
            f"expected a judge verdict from {self._url}",
            timeout_s=self.timeout_s,
            error=lambda message, transient: LabelingError(message, retryable=transient),
            hint="is the judge's server running?",
        ):
            return self._client.chat.completions.create(
                model=self.model,
                messages=judge_messages(request),
                temperature=0,
                max_tokens=self.max_tokens,
                response_format=RESPONSE_FORMAT,
            )


def _content(response: ChatCompletion) -> str | None:
    """The first choice's text; ``None`` for a body without one (not a chat.completion)."""
    # The client builds the model without validating it: fields the body lacks are absent.
    choices = getattr(response, "choices", None)
    if not choices:
        return None
    message = getattr(choices[0], "message", None)
    content = getattr(message, "content", None)
    return content if isinstance(content, str) else None


def _dump(response: ChatCompletion) -> str:
    return json.dumps(response.to_dict(mode="json"))


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + "..."
