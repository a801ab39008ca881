"""scripts/simulate_month.py runs end to end: two nights, the drift on the second."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_two_nights_write_the_report(tmp_path: Path) -> None:
    out = tmp_path / "month.md"
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect")}
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "simulate_month.py"), "--nights", "2",
         "--drift-night", "2", "--drift-to", "college_math", "--out", str(out)],
        capture_output=True, text=True, timeout=600, cwd=tmp_path, env=env, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    report = out.read_text()
    assert "| 1 | gsm8k |" in report
    assert "| 2 | college_math |" in report
    assert "r1 mean |estimate - truth|" in report
