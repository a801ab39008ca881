"""The LLM judge against the REAL model server (``llm_server_url``, ``tests/conftest.py``).

Qwen2.5-Coder-1.5B-Instruct Q4_K_M under llama.cpp's ``llama-server`` judges
six real corpus-dev responses (three the exact verifier labelled correct, three
incorrect; the shortest of each, since a CPU server reads a few hundred and
writes about 20 tokens per second). The assertions are about the mechanics:
the constrained verdict parses into ``JudgeVerdict``, it is costed from the
server's usage, and ``max_cost`` bounds that cost. How often the small judge
agrees with the exact verifier is printed, not asserted (see docs/labeling.md).
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from labeling.base import LabelRequest
from labeling.judge import JudgeLabeler
from sentinel_core.corpus import iter_sample_records

pytestmark = pytest.mark.llm_server

ALIAS = "qwen2.5-coder-1.5b-instruct-q4_k_m"
PRICE_IN, PRICE_OUT = 0.10, 0.40  # USD per million tokens: nonzero, to exercise the costing
PER_LABEL = 3


def shortest_by_label(per_label: int) -> list[tuple[LabelRequest, bool]]:
    """The ``per_label`` shortest corpus-dev responses labelled correct, then incorrect."""
    chosen: list[tuple[LabelRequest, bool]] = []
    records = list(iter_sample_records("corpus-dev"))
    for wanted in (1, 0):
        rows: list[tuple[dict[str, Any], int]] = [r for r in records if r[1] == wanted]
        rows.sort(key=lambda r: len(r[0]["prompt"]) + len(_text(r[0])))
        chosen += [(_request(record), bool(label)) for record, label in rows[:per_label]]
    return chosen


def _text(record: dict[str, Any]) -> str:
    return str(record["response"]["choices"][0]["message"]["content"])


def _request(record: dict[str, Any]) -> LabelRequest:
    meta = record["metadata"]
    return LabelRequest(
        trace_id=record["id"],
        response_text=_text(record),
        question=record["prompt"],
        reference=meta["gold"],
        kind=meta["kind"],
        finish_reason=record["response"]["choices"][0]["finish_reason"],
        metadata=meta,
    )


def test_the_real_judge_gives_parsed_verdicts_costed_from_usage(llm_server_url: str) -> None:
    cases = shortest_by_label(PER_LABEL)
    judge = JudgeLabeler(
        base_url=llm_server_url,
        model=ALIAS,
        max_tokens=128,
        timeout_s=600,
        price_input_per_mtok=PRICE_IN,
        price_output_per_mtok=PRICE_OUT,
    )
    outcomes, seconds = [], []
    with judge:
        for request, _ in cases:
            started = time.perf_counter()
            outcomes.append(judge.label(request))
            seconds.append(time.perf_counter() - started)
    agree = sum(o.correct == exact for o, (_, exact) in zip(outcomes, cases, strict=True))
    print(
        f"\njudge {ALIAS}: agreement with the exact verifier {agree}/{len(cases)}; "
        f"{sum(seconds) / len(seconds):.1f} s per verdict (min {min(seconds):.1f}, "
        f"max {max(seconds):.1f})"
    )
    for outcome, (request, exact) in zip(outcomes, cases, strict=True):
        d = outcome.detail
        print(
            f"  {request.trace_id}: exact={exact} judge={outcome.correct} "
            f"tokens={d['prompt_tokens']}+{d['completion_tokens']} reason={d['reason']!r}"
        )
        assert d["model"] == ALIAS
        assert d["prompt_tokens"] > 0
        assert 0 < d["completion_tokens"] <= 128
        assert outcome.cost == pytest.approx(
            d["prompt_tokens"] * PRICE_IN / 1e6 + d["completion_tokens"] * PRICE_OUT / 1e6
        )
        assert 0 < outcome.cost <= judge.max_cost(request)
        assert d["reason"].strip()
