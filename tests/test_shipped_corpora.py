"""The shipped prompt subset and the second model's corpora load and agree with each other."""

from __future__ import annotations

import json
from collections import Counter
from importlib import resources

import pytest

from sentinel_core.corpus import iter_sample_records

DATA = resources.files("sentinel_core") / "data"
PER_BENCHMARK = 60


def _subset() -> dict[str, dict[str, str]]:
    lines = (DATA / "prompts-first60.jsonl").read_text(encoding="utf-8").splitlines()
    return {row["id"]: row for row in map(json.loads, lines)}


QWEN = ("corpus-dev", "corpus-collected")


def test_the_subset_holds_the_first_60_of_each_benchmark_with_the_shipped_qwen_prompts() -> None:
    subset = _subset()
    counts = Counter(row["benchmark"] for row in subset.values())
    assert len(counts) == 14
    assert set(counts.values()) == {PER_BENCHMARK}
    shipped = {r["metadata"]["prompt_id"] for name in QWEN for r, _ in iter_sample_records(name)}
    assert shipped <= set(subset)


@pytest.mark.parametrize(
    ("name", "model", "prefix"),
    [
        ("corpus-gemma3-270m", "gemma-3-270m-q4_k_m", "gemma3-270m:"),
        ("corpus-qwen2.5-coder-0.5b", "qwen2.5-coder-0.5b-instruct-q4_k_m", "qwen2.5-coder-0.5b:"),
    ],
)
def test_a_second_model_corpus_loads_with_20_top_logprobs_and_subset_prompts(
    name: str, model: str, prefix: str
) -> None:
    subset = _subset()
    pairs = list(iter_sample_records(name))
    qwen_ids = {record["id"] for corpus in QWEN for record, _ in iter_sample_records(corpus)}
    assert pairs
    for record, label in pairs:
        meta = record["metadata"]
        steps = record["response"]["choices"][0]["logprobs"]["content"]
        assert record["model"] == model
        assert label in (0, 1)
        # Ids are the model's prefix and the prompt id: one store can hold every model.
        assert record["id"] == prefix + meta["prompt_id"]
        assert record["id"] not in qwen_ids
        assert subset[meta["prompt_id"]]["gold"] == meta["gold"]
        assert record["prompt"].startswith(subset[meta["prompt_id"]]["question"])
        assert steps
        assert {len(step["top_logprobs"]) for step in steps} == {20}


def test_the_first_models_extra_responses_are_new_prompts_of_the_subset() -> None:
    # corpus-qwen2.5-coder-1.5b-extra: more responses of the first model (the other 42-43
    # of each benchmark's first 60), ids = prompt ids as in corpus-dev.
    subset = _subset()
    pairs = list(iter_sample_records("corpus-qwen2.5-coder-1.5b-extra"))
    earlier = {record["id"] for corpus in QWEN for record, _ in iter_sample_records(corpus)}
    assert len(pairs) == 598
    per_benchmark = Counter(r["metadata"]["benchmark"] for r, _ in pairs)
    assert set(per_benchmark) == {row["benchmark"] for row in subset.values()}
    assert set(per_benchmark.values()) == {42, 43}
    assert len({r["id"] for r, _ in pairs}) == 598
    # with corpus-dev and corpus-collected: every prompt of the subset, once (60 each)
    assert earlier.isdisjoint(r["id"] for r, _ in pairs)
    assert earlier | {r["id"] for r, _ in pairs} == set(subset)
    for record, label in pairs:
        assert record["model"] == "qwen2.5-coder-1.5b-instruct-q4_k_m"
        assert record["id"] == record["metadata"]["prompt_id"]
        assert record["id"] in subset
        assert record["id"] not in earlier
        assert label in (0, 1)
        steps = record["response"]["choices"][0]["logprobs"]["content"]
        assert {len(step["top_logprobs"]) for step in steps} == {20}
