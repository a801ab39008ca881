"""Write the first N prompts of each benchmark of a prompts JSONL (run by hand).

    .venv/bin/python scripts/select_prompts.py ../shared/data/prompts/dev.jsonl \
        sentinel_core/data/prompts-first60.jsonl --per-benchmark 60

Deterministic and stable across runs: each benchmark's prompts are taken in file order,
so a larger N extends a smaller one, and the responses already shipped for Qwen
(corpus-dev and corpus-collected: the first 17-18 of each benchmark) are among the first
60. Lines are written unchanged, benchmarks in order of first appearance, so
``sentinel collect`` on the output asks every model the same questions (it sends them
round-robin over benchmarks and skips the prompt ids already stored).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def select(lines: list[str], per_benchmark: int) -> list[str]:
    """The first ``per_benchmark`` lines of each benchmark, grouped by benchmark."""
    chosen: dict[str, list[str]] = {}
    for line in lines:
        if not line.strip():
            continue
        benchmark = json.loads(line)["benchmark"]
        taken = chosen.setdefault(benchmark, [])
        if len(taken) < per_benchmark:
            taken.append(line.rstrip("\n") + "\n")
    return [line for taken in chosen.values() for line in taken]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("prompts", type=Path, help="prompts JSONL (id, benchmark, ...)")
    parser.add_argument("out", type=Path)
    parser.add_argument("--per-benchmark", type=int, default=60)
    args = parser.parse_args()
    lines = args.prompts.read_text(encoding="utf-8").splitlines()
    chosen = select(lines, args.per_benchmark)
    args.out.write_text("".join(chosen), encoding="utf-8")
    print(f"wrote {len(chosen)} prompts to {args.out}")


if __name__ == "__main__":
    main()
