"""Export responses collected into a store as a shipped compact corpus (run by hand).

    .venv/bin/python scripts/export_corpus.py sqlite:///path/store.db corpus-collected \
        [--exclude-source sample] [--prompts ../shared/data/prompts/dev.jsonl] [--id-prefix P:]

With ``--id-prefix``, each response's id becomes the prefix and its stored id (the prompt
id, for ``sentinel collect``), so corpora of several models on the same prompts can share
one store; ``metadata.prompt_id`` keeps pairing them.

With ``--prompts``, each response gets back the prompt text it was collected with
(question + instruction, as ``sentinel collect`` sent it), so judges and annotators
can see the question; the store itself keeps only the prompt's hash by default.

Every exported response carries the prompt metadata `sentinel collect` stored
(benchmark, prompt_id, gold, kind) and the exact verifier's label. The files
land in sentinel_core/data/ as <name>.npz (float16 logprobs) and <name>.jsonl,
the same form as corpus-dev, read back by `sentinel_core.corpus.iter_sample_records(name)`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np
from sqlmodel import Session, select

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from labeling.verifier import verify_record  # noqa: E402
from sentinel_core.corpus import write_compact  # noqa: E402
from sentinel_core.schema import TraceRow  # noqa: E402
from sentinel_core.store import open_store  # noqa: E402
from tasks.collect import read_prompts  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store_url")
    parser.add_argument("name")
    parser.add_argument("--exclude-source", default="sample", help="skip traces from this source")
    parser.add_argument("--prompts", type=Path, help="prompts JSONL to restore the prompt text")
    parser.add_argument("--id-prefix", default="", help="prefix every exported id with this")
    args = parser.parse_args()
    prompts = {} if args.prompts is None else {p.id: p for p in read_prompts(args.prompts)}
    engine = open_store(args.store_url)
    meta, tops, chosen = [], [], []
    with Session(engine) as session:
        rows = session.exec(select(TraceRow).order_by(TraceRow.created, TraceRow.id)).all()
    for row in rows:
        if row.source.startswith(args.exclude_source) or row.meta.get("gold") is None:
            continue
        record = {
            "metadata": row.meta,
            "response_text": row.response_text,
            "finish_reason": row.finish_reason,
        }
        verdict = verify_record(record)
        meta.append(
            {
                "id": args.id_prefix + row.id,
                "model": row.model,
                "created": int(row.created.timestamp()),
                "metadata": row.meta,
                "prompt": row.prompt
                or (
                    prompts[row.meta["prompt_id"]].user_message
                    if row.meta.get("prompt_id") in prompts
                    else None
                ),
                "response_text": row.response_text,
                "finish_reason": row.finish_reason,
                "usage": None,
                "label": int(verdict.correct),
                "label_how": verdict.how,
            }
        )
        tops.append(np.frombuffer(row.logprobs, dtype=row.dtype).reshape(row.n_steps, row.k))
        chosen.append(np.frombuffer(row.chosen, dtype=row.dtype))
    if not meta:
        raise SystemExit("export: no collected responses with gold answers in the store")
    write_compact(ROOT / "sentinel_core" / "data", args.name, meta, tops, chosen)
    print(datasheet_table(meta))
    print(f"exported {len(meta)} responses as {args.name}")


def datasheet_table(meta: list[dict[str, Any]]) -> str:
    """Per-benchmark n, correct, accuracy and truncation (finish_reason "length"), as Markdown."""
    rows: dict[str, list[tuple[int, bool]]] = {}
    for item in meta:
        rows.setdefault(item["metadata"]["benchmark"], []).append(
            (item["label"], item["finish_reason"] == "length")
        )
    rows["all"] = [pair for benchmark in sorted(rows) for pair in rows[benchmark]]
    lines = ["| benchmark | n | correct | accuracy | truncated |", "| --- " * 5 + "|"]
    for benchmark, pairs in sorted(rows.items(), key=lambda kv: (kv[0] == "all", kv[0])):
        n = len(pairs)
        correct = sum(label for label, _ in pairs)
        cut = sum(truncated for _, truncated in pairs)
        lines.append(f"| {benchmark} | {n} | {correct} | {correct / n:.2f} | {cut / n:.2f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
