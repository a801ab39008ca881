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


LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
PACKAGES = ("flows", "tasks", "proxy", "labeling", "sentinel_core")


def _lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), str(root / "pyproject.toml"), "--no-cache"],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
    )


def _copy_tree(tmp_path: Path) -> Path:
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    for package in PACKAGES:
        shutil.copytree(
            ROOT / package,
            tmp_path / package,
            ignore=shutil.ignore_patterns("__pycache__", "data"),
        )
    return tmp_path


def test_the_shipped_layers_keep_every_import_contract() -> None:
    result = _lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("where", "planted", "contract"),
    [
        ("sentinel_core", "import tasks.store", "Layers"),
        ("labeling", "from flows import cli", "Layers"),
        ("tasks", "import flows.nightly", "Layers"),
        ("sentinel_core", "import prefect", "Pure domain"),
        ("labeling", "import mlflow", "Labelers"),
        ("proxy", "import tasks.store", "Layers"),
        ("proxy", "import prefect", "Proxy"),
    ],
)
def test_a_planted_upward_import_breaks_a_contract(
    tmp_path: Path, where: str, planted: str, contract: str
) -> None:
    root = _copy_tree(tmp_path)
    (root / where / "planted_probe.py").write_text(f"{planted}\n")
    result = _lint_imports(root)
    assert result.returncode == 1, result.stdout + result.stderr
    broken = [line for line in result.stdout.splitlines() if line.endswith(" BROKEN")]
    # An upward import into tasks also reaches prefect, so the domain rule may break too.
    assert any(line.startswith(contract) for line in broken), result.stdout
    assert f"{where}.planted_probe" in result.stdout


def test_a_planted_cycle_between_modules_of_a_layer_breaks_the_acyclic_contract(
    tmp_path: Path,
) -> None:
    root = _copy_tree(tmp_path)
    (root / "sentinel_core" / "planted_probe.py").write_text("import sentinel_core.store\n")
    errors = root / "sentinel_core" / "errors.py"
    errors.write_text(errors.read_text() + "\nimport sentinel_core.planted_probe\n")
    result = _lint_imports(root)
    assert result.returncode == 1, result.stdout + result.stderr
    broken = [line for line in result.stdout.splitlines() if line.endswith(" BROKEN")]
    assert broken == ["No import cycle between the modules of any layer BROKEN"], result.stdout
    assert "- .planted_probe -> .store" in result.stdout
