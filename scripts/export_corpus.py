"""Export responses collected into a store as a shipped compact corpus (run by hand).

    .venv/bin/python scripts/export_corpus.py sqlite:///path/store.db corpus-collected \
        [--exclude-source sample] [--prompts ../shared/data/prompts/dev.jsonl]

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

import numpy as np
from sqlmodel import Session, select

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from labeling.verifier import verify_record  # noqa: E402
from sentinel_core.corpus import write_compact  # noqa: E402
from sentinel_core.store import TraceRow, open_store  # noqa: E402
from tasks.collect import read_prompts  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store_url")
    parser.add_argument("name")
    parser.add_argument("--exclude-source", default="sample", help="skip traces from this source")
    parser.add_argument("--prompts", type=Path, help="prompts JSONL to restore the prompt text")
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
                "id": row.id,
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
    by_benchmark: dict[str, list[int]] = {}
    for item in meta:
        by_benchmark.setdefault(item["metadata"]["benchmark"], []).append(item["label"])
    for benchmark, labels in sorted(by_benchmark.items()):
        print(f"{benchmark}: {len(labels)} responses, {sum(labels)} correct")
    print(f"exported {len(meta)} responses as {args.name}")


if __name__ == "__main__":
    main()
