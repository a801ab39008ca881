"""``scripts/llm-server``'s model choice, read from its ``paths`` output (nothing is started)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "llm-server"


def _paths(tmp_path: Path, *args: str, **env: str) -> dict[str, str]:
    done = subprocess.run(
        [str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
        env={**os.environ, "SENTINEL_CACHE": str(tmp_path), **env},
    )
    return dict(line.split(maxsplit=1) for line in done.stdout.splitlines())


def test_the_default_is_still_qwen_on_8089(tmp_path: Path) -> None:
    paths = _paths(tmp_path, "paths")
    assert paths["alias"] == "qwen2.5-coder-1.5b-instruct-q4_k_m"
    assert paths["url"] == "http://127.0.0.1:8089"
    assert paths["model"] == f"{tmp_path}/models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"


@pytest.mark.parametrize(
    ("args", "env", "alias", "port"),
    [
        (("--model", "gemma", "paths"), {}, "gemma-3-270m-q4_k_m", 8090),
        (("paths", "--model=qwen-0.5b"), {}, "qwen2.5-coder-0.5b-instruct-q4_k_m", 8091),
        (("paths",), {"SENTINEL_LLM_MODEL": "gemma"}, "gemma-3-270m-q4_k_m", 8090),
    ],
)
def test_each_model_has_its_own_port_pid_file_and_log(
    tmp_path: Path, args: tuple[str, ...], env: dict[str, str], alias: str, port: int
) -> None:
    paths = _paths(tmp_path, *args, **env)
    assert paths["alias"] == alias
    assert paths["url"] == f"http://127.0.0.1:{port}"
    assert paths["pid"] == f"{tmp_path}/llm-server-{port}.pid"
    assert paths["log"] == f"{tmp_path}/llm-server-{port}.log"
    assert paths["model"] == f"{tmp_path}/models/{alias}.gguf"


def test_an_unknown_model_is_refused_with_the_choices(tmp_path: Path) -> None:
    done = subprocess.run(
        [str(SCRIPT), "--model", "llama", "status"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={**os.environ, "SENTINEL_CACHE": str(tmp_path)},
    )
    assert done.returncode == 2
    assert "expected --model qwen, qwen-0.5b or gemma, got 'llama'" in done.stderr
