"""The two interval studies of issue 15 (scripts/interval_guard_study.py and
scripts/adaptive_interval_study.py): the guard study measures the product's interval
and not a copy that drifted from it, each study runs end to end on the shipped corpus,
and a typo in an option is refused with what was expected."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import stats

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "benchmarks"))

import interval_guard_study  # noqa: E402

from sentinel_core.active import active_mean_interval, draw_sample, sampling_probabilities  # noqa: E402


def _run(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / script), *args],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip


def test_the_studys_half_guard_is_the_products_interval() -> None:
    interval_guard_study.check_reproduces_the_product()  # raises if they differ
    rng = np.random.default_rng(7)
    f = rng.beta(0.5, 0.5, 150)
    y = (rng.random(150) < f).astype(float)
    pi = sampling_probabilities(f, 9, floor=0.2)
    take = draw_sample(pi, rng)
    mine = interval_guard_study.guarded("half")(f, pi, take, y[take])
    theirs = active_mean_interval(f, pi, take, y[take])
    assert (mine.low, mine.high, mine.se) == pytest.approx((theirs.low, theirs.high, theirs.se))
    # and the other guards really differ from it
    other = interval_guard_study.guarded("none")(f, pi, take, y[take])
    assert other.width < mine.width


def test_wilson_kg_with_a_flat_predictor_is_the_wilson_interval_of_the_labels() -> None:
    """lam = 0 and equal probabilities: no predictions, no weights; without the
    pseudo-residuals the effective size is the finite-population Wilson's, up to the
    variance's ddof (n - 1 against n)."""
    y = np.array([1, 0, 0, 1, 0, 0, 0, 1, 0, 0], dtype=float)
    big_n = 200
    f = np.full(big_n, 0.5)
    pi = np.full(big_n, y.size / big_n)
    take = np.arange(y.size)
    full_y = np.zeros(big_n)
    full_y[take] = y
    e = interval_guard_study.guarded("wilson-kg")(f, pi, take, y, lam=0.0, pseudo_residuals=False)
    n, p = y.size, y.mean()
    variance = (1 - n / big_n) * np.var(y, ddof=1) / n
    n_eff = p * (1 - p) / variance
    z = float(stats.norm.ppf(0.95))
    k = z * z / n_eff
    centre = (p + k / 2) / (1 + k)
    half = z / (1 + k) * math.sqrt(p * (1 - p) / n_eff + k / (4 * n_eff))
    assert (e.low, e.high) == pytest.approx((centre - half, centre + half), abs=1e-12)
    assert e.high - p > p - e.low  # Wilson leans towards 1/2: not symmetric around 0.3


def test_the_guard_study_runs_and_prints_its_json() -> None:
    done = _run(
        "interval_guard_study.py", "--seeds", "2", "--synthetic-seeds", "3",
        "--partitions", "1", "--guards", "half,wilson-kg",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(result) == {"half", "wilson-kg"}
    for figures in result.values():
        assert set(figures["real"]["active"]) == {"5", "10", "20", "40"}
        assert len(figures["synthetic"]) == 2 * 4 * len(interval_guard_study.POPULATIONS)
        for coverage, width in figures["synthetic"].values():
            assert 0.0 <= coverage <= 1.0
            assert 0.0 <= width <= 1.0


def test_a_typo_in_a_guard_is_refused_with_the_choices() -> None:
    done = _run("interval_guard_study.py", "--guards", "half,wilson")
    assert done.returncode == 2
    assert "expected guards among half, none" in done.stderr
    assert "got wilson" in done.stderr


def test_the_adaptive_study_runs_on_one_group_per_g() -> None:
    done = _run("adaptive_interval_study.py", "--groups", "1")
    assert done.returncode == 0, done.stderr[-2000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(result) == {"2", "3", "4"}
    for per_scale in result.values():
        assert set(per_scale) == {"one", "bernoulli", "disagreement", "both"}
        for row in per_scale.values():
            assert 0.0 < row["oracle_width"] <= 1.0
            assert 0.0 <= row["conformal_coverage"] <= 1.0


def test_the_adaptive_study_refuses_zero_groups() -> None:
    done = _run("adaptive_interval_study.py", "--groups", "0")
    assert done.returncode == 2
    assert "--groups must be at least 1, got 0" in done.stderr
