"""GENERATED test data: OpenAI-format responses with synthetic logprobs.

Everything here is made up from a seeded generator and named as generated;
real responses live in ``tests/data/real-traces.jsonl.gz``.
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import numpy as np
import orjson

REAL_TRACES = Path(__file__).parent / "data" / "real-traces.jsonl.gz"


def generated_top_logprobs(n_steps: int, k: int = 20, *, seed: int = 0) -> np.ndarray:
    """(n_steps, k) descending natural-log probabilities of a proper truncated distribution."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=rng.uniform(0.5, 4.0), size=(n_steps, k + 5))
    logp = logits - np.logaddexp.reduce(logits, axis=1, keepdims=True)
    return -np.sort(-logp, axis=1)[:, :k]


def chat_completion(
    top: np.ndarray | None = None,
    *,
    seed: int = 0,
    response_id: str | None = "chatcmpl-gen",
    text: str = "generated answer",
    model: str = "generated-model",
    n_choices: int = 1,
) -> dict[str, Any]:
    """A chat.completion object (the OpenAI wire format) around generated logprobs."""
    top = generated_top_logprobs(12, seed=seed) if top is None else top
    content = [
        {
            "token": f"t{t}",
            "logprob": float(row[0]) if len(row) else -0.1,
            "top_logprobs": [{"token": f"a{j}", "logprob": float(v)} for j, v in enumerate(row)],
        }
        for t, row in enumerate(top)
    ]
    body: dict[str, Any] = {
        "object": "chat.completion",
        "created": 1_795_000_000,
        "model": model,
        "choices": [
            {
                "index": i,
                "finish_reason": "stop",
                "message": {"role": "assistant", "content": text},
                "logprobs": {"content": content},
            }
            for i in range(n_choices)
        ],
    }
    if response_id is not None:
        body["id"] = response_id
    return body


def legacy_completion(top: np.ndarray, *, response_id: str = "cmpl-gen") -> dict[str, Any]:
    """A legacy completions object: one token -> logprob map per step."""
    return {
        "id": response_id,
        "object": "text_completion",
        "created": 1_795_000_000,
        "model": "generated-model",
        "choices": [
            {
                "index": 0,
                "text": "generated",
                "finish_reason": "stop",
                "logprobs": {
                    "tokens": [f"t{t}" for t in range(len(top))],
                    "token_logprobs": [float(row[0]) for row in top],
                    "top_logprobs": [{f"a{j}": float(v) for j, v in enumerate(row)} for row in top],
                },
            }
        ],
    }


def wrapper(response: dict[str, Any], *, trace_id: str, **metadata: Any) -> dict[str, Any]:
    """The wrapper line that carries slice keys with a response."""
    return {
        "id": trace_id,
        "model": response["model"],
        "created": response["created"],
        "metadata": metadata,
        "prompt": "generated prompt",
        "response": response,
    }


def write_jsonl(path: Path, records: list[Any], *, compress: bool = False) -> Path:
    """Write records (dicts, or raw bytes lines) as JSON lines."""
    lines = [r if isinstance(r, bytes) else orjson.dumps(r) for r in records]
    data = b"\n".join(lines) + b"\n"
    if compress:
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    return path


def real_lines() -> list[bytes]:
    """The 14 unmodified wire-format lines of real responses shipped for tests."""
    with gzip.open(REAL_TRACES, "rb") as handle:
        return [line for line in handle.read().splitlines() if line.strip()]


def plant_champion(settings: Any, estimator: Any, *, calibration_error: float) -> str:
    """Serve ``estimator`` as champion the way the retrain flow does (log, register with
    the serving tags, promote), without its evaluation; the new version."""
    from sentinel_core.promotion import Decision
    from tasks.models import apply_decision, register_challenger
    from tasks.registry import log_estimator, tracking_for

    tracking = tracking_for(settings)
    client = tracking.client
    run_id = client.create_run(tracking.experiment_id, run_name="planted").info.run_id
    uri = log_estimator(tracking, run_id, estimator, calibration_error)
    client.set_terminated(run_id)
    version: str = register_challenger.fn(
        settings,
        key=f"planted-{run_id}",
        model_uri=uri,
        run_id=run_id,
        calibration_error=calibration_error,
        method="planted",
    )
    apply_decision.fn(settings, version, Decision(True, "planted by a test"))
    return version
