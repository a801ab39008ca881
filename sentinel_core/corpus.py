"""The shipped sample of real traces (Qwen2.5-Coder-1.5B-Instruct, 14 STEM benchmarks).

``data/corpus-dev.npz`` holds the top-20 and chosen-token logprobs as float16
(so features differ from the wire-format originals by about 1e-3 nats);
``data/corpus-dev.jsonl`` the text, metadata and the datasheet's labels. See
``data/DATASHEET.md``. The records are rebuilt in the wrapper format, so the
sample enters the store through the same path as any ingested file.
"""

from __future__ import annotations

from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from numpy.typing import NDArray

SAMPLE_NAME = "corpus-dev"


def iter_sample_records(name: str = SAMPLE_NAME) -> Iterator[tuple[dict[str, Any], int]]:
    """Yield ``(wrapper record, label)`` for every response of a shipped compact corpus."""
    data = resources.files("sentinel_core") / "data"
    with (data / f"{name}.npz").open("rb") as handle, np.load(handle) as arrays:
        top = arrays["top"].astype(np.float32)
        chosen = arrays["chosen"].astype(np.float32)
        lengths = arrays["lengths"].astype(np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    lines = (data / f"{name}.jsonl").read_bytes().splitlines()
    if len(lines) != len(lengths):
        raise RuntimeError(
            f"expected one metadata line per response in the sample, got {len(lines)} lines "
            f"for {len(lengths)} responses"
        )
    for i, line in enumerate(lines):
        meta = orjson.loads(line)
        start, stop = int(offsets[i]), int(offsets[i + 1])
        content = [
            {"logprob": float(c), "top_logprobs": [{"logprob": float(v)} for v in row]}
            for c, row in zip(chosen[start:stop], top[start:stop], strict=True)
        ]
        response = {
            "object": "chat.completion",
            "model": meta["model"],
            "created": meta["created"],
            "choices": [
                {
                    "index": 0,
                    "finish_reason": meta["finish_reason"],
                    "message": {"role": "assistant", "content": meta["response_text"]},
                    "logprobs": {"content": content},
                }
            ],
            "usage": meta.get("usage"),
        }
        record = {
            "id": meta["id"],
            "model": meta["model"],
            "created": meta["created"],
            "metadata": meta["metadata"],
            "prompt": meta["prompt"],
            "response": response,
        }
        yield record, int(meta["label"])


def write_compact(
    folder: Path,
    name: str,
    meta: list[dict[str, Any]],
    tops: list[NDArray[np.floating[Any]]],
    chosen: list[NDArray[np.floating[Any]]],
) -> None:
    """Write responses in the shipped compact form: ``name.npz`` (float16) and ``name.jsonl``.

    ``meta[i]`` needs id, model, created, metadata, prompt, response_text,
    finish_reason, usage, label and label_how; ``tops[i]`` is ``(T_i, k)`` and
    ``chosen[i]`` is ``(T_i,)``.
    """
    np.savez_compressed(
        folder / f"{name}.npz",
        top=np.concatenate(tops).astype(np.float16),
        chosen=np.concatenate(chosen).astype(np.float16),
        lengths=np.array([len(c) for c in chosen], dtype=np.int32),
    )
    with (folder / f"{name}.jsonl").open("wb") as handle:
        for item in meta:
            handle.write(orjson.dumps(item) + b"\n")
