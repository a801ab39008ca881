"""An example labeling campaign on the shipped real traces, end to end (run by hand).

    .venv/bin/python scripts/campaign_example.py [--judge-base-url http://127.0.0.1:8089/v1]

1. A training store (in a temporary folder) gets corpus-dev, labelled by the
   exact verifier; the default estimator is trained on it and served as champion
   (MLflow, shared by both stores).
2. corpus-collected arrives as unlabelled production traffic in a second store.
3. ``sentinel estimate`` gives label-free slice estimates (before).
4. A campaign in labels with the exact verifier, then one in USD with the LLM
   judge (the project's own llama-server, priced at example rates), each planned
   on the weakest slices and run through ``sentinel campaign``; the estimates are
   taken again after each (prediction-powered where labels exist).
5. Truth: the exact verifier on every production trace, NOT stored, used only to
   score the estimates. The report goes to docs/campaign-example.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from labeling.verifier import verify_record  # noqa: E402
from sentinel_core.corpus import iter_sample_records  # noqa: E402

SENTINEL = str(Path(sys.executable).with_name("sentinel"))


def cli(env: dict[str, str], *args: str) -> Any:
    """Run a sentinel command with --json; return its last line parsed."""
    started = time.monotonic()
    done = subprocess.run(
        [SENTINEL, *args, "--json"], capture_output=True, text=True, env=env, cwd=env["PWD"]
    )
    if done.returncode != 0:
        raise SystemExit(f"sentinel {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    print(f"sentinel {' '.join(args)}: {time.monotonic() - started:.1f} s", file=sys.stderr)
    return json.loads(done.stdout.strip().splitlines()[-1])


def write_jsonl(path: Path, name: str) -> list[dict[str, Any]]:
    records = [record for record, _ in iter_sample_records(name)]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--judge-base-url", default="http://127.0.0.1:8089/v1")
    parser.add_argument("--judge-model", default="qwen2.5-coder-1.5b-instruct-q4_k_m")
    parser.add_argument("--exact-budget", type=int, default=24, help="labels")
    parser.add_argument("--judge-budget", type=float, default=0.01, help="USD")
    parser.add_argument("--price-in", type=float, default=0.15, help="USD per M prompt tokens")
    parser.add_argument("--price-out", type=float, default=0.60, help="USD per M output tokens")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "campaign-example.md")
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="sentinel-campaign-"))
    env = {
        **os.environ,
        "PWD": str(home),
        "SENTINEL_HOME": str(home / ".sentinel"),
        "SENTINEL_KEEP_PROMPT_TEXT": "true",
        "SENTINEL_JUDGE_BASE_URL": args.judge_base_url,
        "SENTINEL_JUDGE_MODEL": args.judge_model,
        "SENTINEL_JUDGE_MAX_TOKENS": "128",
        "SENTINEL_JUDGE_PRICE_INPUT_PER_MTOK": str(args.price_in),
        "SENTINEL_JUDGE_PRICE_OUTPUT_PER_MTOK": str(args.price_out),
    }
    write_jsonl(home / "dev.jsonl", "corpus-dev")
    production = write_jsonl(home / "production.jsonl", "corpus-collected")
    dev_db = f"sqlite:///{home / 'dev.db'}"
    prod = ("--db", f"sqlite:///{home / 'production.db'}")
    cli(env, "ingest", str(home / "dev.jsonl"), "--db", dev_db)
    cli(env, "verify", "--db", dev_db)
    subprocess.run(
        [SENTINEL, "train", "--db", dev_db], env=env, cwd=home, check=True, capture_output=True
    )
    cli(env, "ingest", str(home / "production.jsonl"), *prod)

    truth: dict[str, list[int]] = {}
    truth_by_id: dict[str, int] = {}
    for record in production:
        verdict = verify_record(
            {
                "metadata": record["metadata"],
                "response_text": record["response"]["choices"][0]["message"]["content"],
                "finish_reason": record["response"]["choices"][0]["finish_reason"],
            }
        )
        truth.setdefault(record["metadata"]["benchmark"], []).append(int(verdict.correct))
        truth_by_id[str(record["id"])] = int(verdict.correct)

    def production_estimates() -> dict[str, dict[str, Any]]:
        rows = cli(env, "estimate", "--by", "benchmark", *prod)
        return {r["slice"]: r for r in rows}

    stages: list[tuple[str, dict[str, dict[str, Any]]]] = []
    stages.append(("before (label-free)", production_estimates()))
    exact_plan = cli(
        env, "campaign", "plan", "--budget", str(args.exact_budget), "--by", "benchmark",
        "--labeler", "exact", "--id", "exact-1", "--min-per-slice", "4", "--max-slices", "4",
        *prod,
    )  # fmt: skip
    exact_run = cli(env, "campaign", "run", "exact-1", "--labeler", "exact", *prod)
    exact_status = cli(env, "campaign", "status", "exact-1", *prod)
    stages.append(("after exact campaign", production_estimates()))
    judge_plan = cli(
        env, "campaign", "plan", "--budget", str(args.judge_budget), "--unit", "usd", "--by",
        "benchmark", "--labeler", "judge", "--id", "judge-1", "--min-per-slice", "4",
        "--max-slices", "4", *prod,
    )  # fmt: skip
    started = time.monotonic()
    judge_run = cli(env, "campaign", "run", "judge-1", "--labeler", "judge", *prod)
    judge_s = time.monotonic() - started
    judge_status = cli(env, "campaign", "status", "judge-1", *prod)
    stages.append(("after judge campaign", production_estimates()))
    judged = judge_verdicts(home / "production.db")
    agree = sum(int(ok) == truth_by_id[tid] for tid, ok in judged.items())
    print(f"judge agrees with the exact verifier on {agree} of {len(judged)}", file=sys.stderr)

    lines = report_lines(
        args, truth, stages, exact_plan, exact_run, exact_status, judge_plan, judge_run,
        judge_status, judge_s,
    )  # fmt: skip
    lines.insert(
        lines.index("Labelled per slice:"),
        f"The judge's verdicts agree with the exact verifier on {agree} of {len(judged)} "
        "judged responses.\n",
    )
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


def judge_verdicts(path: Path) -> dict[str, bool]:
    """The judge's stored verdicts in the production store, by trace id."""
    import sqlite3

    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT trace_id, correct FROM labels WHERE labeler = 'judge'")
        return {str(t): bool(c) for t, c in rows}


def report_lines(
    args: argparse.Namespace,
    truth: dict[str, list[int]],
    stages: list[tuple[str, dict[str, dict[str, Any]]]],
    exact_plan: dict[str, Any],
    exact_run: dict[str, Any],
    exact_status: dict[str, Any],
    judge_plan: dict[str, Any],
    judge_run: dict[str, Any],
    judge_status: dict[str, Any],
    judge_s: float,
) -> list[str]:
    lines = [
        "# An example labeling campaign on the real traces",
        "",
        "Made by `scripts/campaign_example.py` (rerun it to reproduce; figures below are from",
        "the last run). Training store: corpus-dev (134 responses, exact-verifier labels),",
        "on which the default estimator (ATC on H_max) is trained and served as champion.",
        f"Production store: corpus-collected ({sum(len(v) for v in truth.values())} "
        "responses of the same model on other prompts of",
        "the same benchmarks), unlabelled until a campaign labels them. Truth below is the",
        "exact verifier on every production trace, computed for this report and never stored.",
        "",
        "## Campaigns",
        "",
        f"- exact verifier: budget {args.exact_budget} labels; planned "
        f"{exact_plan['n_labels']} on {', '.join(s['slice'] for s in exact_plan['slices'])}; "
        f"labelled {exact_run['labelled']}, spent {exact_status['budget']['spent']:g} labels.",
        f"- LLM judge ({args.judge_model} on the project's llama-server, priced at "
        f"${args.price_in}/M prompt and ${args.price_out}/M output tokens): budget "
        f"${args.judge_budget:g}; planned {judge_plan['n_labels']} on "
        f"{', '.join(s['slice'] for s in judge_plan['slices'])}; labelled "
        f"{judge_run['labelled']}, failed {judge_run['failed']}, spent "
        f"${judge_status['budget']['spent']:.5f} (reserved left "
        f"{judge_status['budget']['reserved']:g}); {judge_s:.0f} s on 2 CPU cores"
        + (f"; stopped: {judge_run['stopped']}" if judge_run["stopped"] else "")
        + ".",
        "",
        "Labelled per slice:",
        "",
        "| campaign | slice | labelled | correct | failed | spent |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for name, status in (("exact-1", exact_status), ("judge-1", judge_status)):
        for slice_name, c in status["slices"].items():
            lines.append(
                f"| {name} | {slice_name} | {int(c['labelled'])} | {int(c['correct'])} | "
                f"{int(c['failed'])} | {c['spent']:.5g} |"
            )
    lines += [
        "",
        "## Slice estimates before and after (estimate [low, high], labels used)",
        "",
        "| slice | production n | true accuracy (production) | "
        + " | ".join(name for name, _ in stages)
        + " |",
        "| --- | ---: | ---: | " + " | ".join("---" for _ in stages) + " |",
    ]
    for slice_name in sorted(truth):
        cells = []
        for _, rows in stages:
            r = rows.get(slice_name)
            cells.append(
                "" if r is None else
                f"{r['accuracy']:.2f} [{r['low']:.2f}, {r['high']:.2f}] ({r['method']}, "
                f"{r['n_observed']})"
            )  # fmt: skip
        t = truth[slice_name]
        lines.append(
            f"| {slice_name} | {len(t)} | {sum(t) / len(t):.2f} | " + " | ".join(cells) + " |"
        )
    return lines


if __name__ == "__main__":
    main()
