"""The one adapter to OpenAI-compatible servers: the client, its retries, its errors.

The collector (``tasks.collect``) and the LLM judge (``labeling.judge``) both call
chat.completions through a client made by :func:`make_client` and map what fails
with :func:`openai_errors`, so both retry and report alike.

Retries are the ``openai`` client's own (``max_retries``): a timeout, a connection
error, 408, 409, 429 or a 5xx is tried again after an exponential backoff with
jitter (0.5 s doubling, capped at 8 s), and a server's ``Retry-After`` /
``retry-after-ms`` (up to 60 s) is honoured. Nothing else in the project retries an
HTTP call; what is still failing afterwards becomes the project's error here, and
the caller's unit of work (a campaign item, a collection run) stops and resumes on
the next run (docs/architecture.md, "Retries").
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import openai
from openai import OpenAI

#: Tries after the first, as the ``openai`` client counts them (its own default is 2).
DEFAULT_MAX_RETRIES = 3


def make_client(
    base_url: str,
    *,
    api_key: str | None,
    timeout_s: float,
    max_retries: int = DEFAULT_MAX_RETRIES,
) -> OpenAI:
    """An OpenAI client for ``base_url`` that retries transient failures itself."""
    return OpenAI(
        base_url=base_url,
        api_key=api_key or "not-needed",
        timeout=timeout_s,
        max_retries=max_retries,
    )


def is_transient(exc: BaseException) -> bool:
    """What the client retried before giving up: a timeout, no connection, 429 or a 5xx."""
    if isinstance(exc, openai.APIConnectionError):  # APITimeoutError is one
        return True
    return isinstance(exc, openai.APIStatusError) and (
        exc.status_code == 429 or exc.status_code >= 500
    )


@contextmanager
def openai_errors(
    expected: str,
    *,
    timeout_s: float | None,
    error: Callable[[str, bool], Exception],
    hint: str = "is the server running?",
) -> Iterator[None]:
    """Turn the ``openai`` client's errors into the project's, in one place.

    ``expected`` opens every message ("expected a judge verdict from URL");
    ``error(message, transient)`` makes the caller's exception (``transient``: the
    client retried it and a later run may succeed). The original error is chained.
    """
    try:
        yield
    except openai.APIStatusError as exc:
        transient = is_transient(exc)
        raise error(
            f"{expected}, got HTTP {exc.status_code}"
            f"{' (after retries)' if transient else ''}: {excerpt(exc.response.text)}",
            transient,
        ) from exc
    except openai.APITimeoutError as exc:
        raise error(
            f"{expected}, got no answer within {timeout_s} s (after retries)", True
        ) from exc
    except openai.APIConnectionError as exc:
        raise error(
            f"{expected}, got no connection ({exc.__cause__ or exc}); {hint}", True
        ) from exc
    except openai.APIError as exc:
        raise error(f"{expected}, got {excerpt(str(exc))}", False) from exc


def excerpt(text: str, limit: int = 300) -> str:
    """``text`` on one line, cut to ``limit`` characters."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."
