"""Retries of calls to OpenAI-compatible servers, decided in one place.

The collector (``tasks.collect``) and the LLM judge (``labeling.judge``) both
call chat.completions; both retry through ``with_retries`` (a timeout, 429 or a
5xx is tried again after an exponential backoff), and both build their client
with ``make_client``, whose own retries are off (``max_retries=0``) so a call
is never retried twice over.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol, TypeVar

import openai
from openai import OpenAI

T = TypeVar("T")


class Retry(Protocol):
    """A policy that runs a call, trying again as it sees fit (``with_retries``, or a test's)."""

    def __call__(self, call: Callable[[], T], /) -> T:
        """The call's result, or the error that ended the tries."""
        ...


def is_transient(exc: BaseException) -> bool:
    """Worth another try: a timeout, 429 (rate limited) or a 5xx."""
    if isinstance(exc, openai.APITimeoutError):
        return True
    return isinstance(exc, openai.APIStatusError) and (
        exc.status_code == 429 or exc.status_code >= 500
    )


def retry_after_s(exc: BaseException) -> float | None:
    """The wait a 429 or 503 asks for (``retry-after-ms`` or ``retry-after`` in seconds), if any.

    An HTTP-date ``Retry-After`` is ignored (the backoff applies).
    """
    if not isinstance(exc, openai.APIStatusError):
        return None
    headers = exc.response.headers
    for name, scale in (("retry-after-ms", 1e-3), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is not None:
            try:
                return max(0.0, float(value) * scale)
            except ValueError:
                continue
    return None


def with_retries(
    call: Callable[[], T],
    *,
    attempts: int = 4,
    base_delay_s: float = 1.0,
    max_delay_s: float = 30.0,
    transient: Callable[[BaseException], bool] = is_transient,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run ``call``; on a transient error wait ``base_delay_s * 2**i`` (capped) and try again.

    A server that says how long to wait (``Retry-After``) is waited for at least
    that long, still capped at ``max_delay_s``. The one place retries are
    decided: the OpenAI client runs with ``max_retries=0``.
    """
    for attempt in range(attempts):
        try:
            return call()
        except Exception as exc:
            if attempt == attempts - 1 or not transient(exc):
                raise
            backoff = base_delay_s * 2**attempt
            sleep(min(max_delay_s, max(backoff, retry_after_s(exc) or 0.0)))
    raise AssertionError("unreachable: the last attempt returns or raises")


def make_client(base_url: str, *, api_key: str | None, timeout_s: float) -> OpenAI:
    """An OpenAI client for ``base_url`` without its own retries (``with_retries`` decides)."""
    return OpenAI(
        base_url=base_url, api_key=api_key or "not-needed", timeout=timeout_s, max_retries=0
    )
