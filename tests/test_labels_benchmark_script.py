"""benchmarks/labels.py runs end to end on the shipped corpus and prints its JSON line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(*extra: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "labels.py"), "--seeds", "4",
         "--partitions", "1", "--methods", "default", *extra],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()
    assert lines[0].startswith("corpus qwen1.5b: 840 real traces, 14 benchmarks")
    result: dict[str, object] = json.loads(lines[-1])
    return result


def test_a_short_replay_prints_every_design_and_budget() -> None:
    result = _run()
    assert result["pin_cut"] is True
    figures = result["methods"]["default"]  # type: ignore[index]
    for design in ("random+classical", "random+ppi++", "active"):
        for budget in ("5", "10", "20", "40"):
            row = figures[design][budget]
            assert 0.0 <= row["coverage"] <= 1.0
            assert 0.0 < row["mean_width"] <= 1.0
    # the classical design is its own yardstick: it needs exactly its own labels
    assert figures["random+classical"]["20"]["classical_labels_same_width"] == 20.0
    assert isinstance(figures["target_met"], bool)


def test_without_pins_the_within_slice_signal_is_weaker() -> None:
    pinned = _run()["methods"]["default"]["within_slice_r2_median"]  # type: ignore[index]
    plain = _run("--no-pin-cut")["methods"]["default"]["within_slice_r2_median"]  # type: ignore[index]
    assert pinned > plain
