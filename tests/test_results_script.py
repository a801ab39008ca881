"""scripts/results.py: its command line and the capped group protocol of ``--corpus all``."""

from __future__ import annotations

import importlib.util
import sys
from collections import Counter
from math import comb
from pathlib import Path
from types import ModuleType

import numpy as np
import pandas as pd
import pytest

from sentinel_core.features import ALL_SCORE_NAMES
from sentinel_core.protocol import run_group_protocol

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def results() -> ModuleType:
    spec = importlib.util.spec_from_file_location("results_script", ROOT / "scripts" / "results.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


def test_an_unknown_corpus_is_refused_with_the_names_it_knows(
    results: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        results.parse_args(["--corpus", "qwen7b"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "--corpus: invalid choice: 'qwen7b'" in err
    for name in ("qwen1.5b", "qwen0.5b", "all"):
        assert name in err


def test_each_corpus_has_its_own_document_and_the_default_keeps_results_md(
    results: ModuleType,
) -> None:
    args = results.parse_args([])
    assert args.corpus == "qwen1.5b"
    corpora = results.CORPORA
    assert corpora["qwen1.5b"].doc == ROOT / "docs" / "results.md"
    assert corpora["qwen1.5b"].out == ROOT / "docs" / "results"
    assert corpora["qwen0.5b"].doc == ROOT / "docs" / "results-qwen0.5b.md"
    assert corpora["all"].out == ROOT / "docs" / "results" / "all"
    assert corpora["all"].pooled
    assert not corpora["qwen0.5b"].pooled


@pytest.mark.parametrize("argv", [["--max-g", "0"], ["--groups-per-g", "-1"]])
def test_nonsense_sizes_are_refused(results: ModuleType, argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        results.parse_args(argv)


def test_sampled_groups_are_capped_per_g_deterministic_and_keep_the_forced_pairs(
    results: ModuleType,
) -> None:
    names = [f"s{i:02d}" for i in range(10)]
    forced = [["s09", "s00"], ["s04", "s05"]]
    groups = results.sample_groups(names, 3, 20, forced=forced)
    sizes = Counter(len(group) for group in groups)
    assert sizes[1] == comb(10, 1)  # at most the cap: every group
    assert 20 <= sizes[2] <= 22  # the cap, plus the forced pairs not drawn
    assert sizes[3] == 20
    assert {(0, 9), (4, 5)} <= set(groups)
    assert len(set(groups)) == len(groups)
    assert groups == results.sample_groups(names, 3, 20, forced=forced)


def test_a_sampled_group_gives_exactly_the_exhaustive_rows(results: ModuleType) -> None:
    rng = np.random.default_rng(3)
    n = 120
    scores = pd.DataFrame(rng.normal(size=(n, len(ALL_SCORE_NAMES))), columns=ALL_SCORE_NAMES)
    scores["mean_max_prob"] = rng.uniform(size=n)
    y = (rng.uniform(size=n) < 0.4).astype(int)
    slices = np.array([f"b{i % 5}" for i in range(n)])
    methods = ["default", "atc_H_max", "null_train_mean", "doc_mean_max_prob"]
    every = run_group_protocol(scores, y, slices, max_g=2, methods=methods, intervals=methods)
    groups = [(1,), (0, 3), (2, 4)]
    some = results.sampled_group_protocol(
        scores, y, slices, groups, methods=methods, intervals=methods
    )
    keys = {"b1", "b0+b3", "b2+b4"}
    expected = every[every["group"].isin(keys)].sort_values(["group", "method", "slice"])
    got = some.sort_values(["group", "method", "slice"])
    pd.testing.assert_frame_equal(got.reset_index(drop=True), expected.reset_index(drop=True))
