"""Optional parts: a missing extra is one line naming the install command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sentinel_core.errors import EXTRAS, MissingExtraError, require_extra
from sentinel_core.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("extra", sorted(EXTRAS))
def test_a_missing_extra_names_its_install_command(
    extra: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    module, _ = EXTRAS[extra]
    require_extra(extra)  # installed here: the development environment has every extra
    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(MissingExtraError, match=rf"pip install 'entropy-sentinel\[{extra}\]'"):
        require_extra(extra)


def test_the_labelers_and_the_dask_runner_check_their_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from flows.settings import task_runner
    from labeling.campaign import make_labeler

    monkeypatch.setitem(sys.modules, "label_studio_sdk", None)
    monkeypatch.setitem(sys.modules, "openai", None)
    monkeypatch.setitem(sys.modules, "prefect_dask", None)
    with pytest.raises(MissingExtraError, match=r"\[label-studio\]"):
        make_labeler(Settings(), "label-studio")
    with pytest.raises(MissingExtraError, match=r"\[llm\]"):
        make_labeler(Settings(), "judge")
    with pytest.raises(MissingExtraError, match=r"\[dask\]"):
        task_runner(Settings(task_runner="dask"))
    assert make_labeler(Settings(), "exact").name == "exact"


def test_the_cli_says_which_extra_collect_needs(tmp_path: Path) -> None:
    """In a child process whose openai import is blocked: exit 2, one line, no traceback."""
    code = (
        "import sys; sys.modules['openai'] = None\n"
        "from flows.cli import main\n"
        "sys.argv = ['sentinel', 'collect', 'prompts.jsonl', '--base-url', 'http://127.0.0.1:9/v1',"
        " '--model', 'm']\n"
        "main()\n"
    )
    (tmp_path / "prompts.jsonl").write_text("")
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "SENTINEL_HOME": str(tmp_path)},
    )  # fmt: skip
    assert done.returncode == 2, done.stderr[-2000:]
    assert "pip install 'entropy-sentinel[llm]'" in done.stderr
    assert "Traceback" not in done.stderr
