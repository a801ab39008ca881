"""The house's import direction is a lint rule that fails the build, not a comment."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RUFF = Path(sys.executable).with_name("ruff")
BANNED = ["prefect", "mlflow", "openai", "label_studio_sdk", "httpx"]


def _ruff(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(RUFF), "check", "--no-cache", "--select", "TID251", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.mark.parametrize("module", BANNED)
def test_sentinel_core_importing_a_client_fails_the_lint(module: str, tmp_path: Path) -> None:
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    core = tmp_path / "sentinel_core"
    core.mkdir()
    shutil.copy(ROOT / "sentinel_core" / "ruff.toml", core / "ruff.toml")
    (core / "probe.py").write_text(f"import {module}\n")
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "probe.py").write_text(f"import {module}\n")
    result = _ruff(".", cwd=tmp_path)
    assert result.returncode == 1
    assert f"`{module}` is banned" in result.stdout
    assert "sentinel_core/probe.py" in result.stdout
    assert "tasks/probe.py" not in result.stdout


def test_the_shipped_sentinel_core_imports_no_client() -> None:
    result = _ruff("sentinel_core", cwd=ROOT)
    assert result.returncode == 0, result.stdout
