"""Hostile files through the real `sentinel ingest` command: nothing lost, nothing leaked.

Property-based (Hypothesis): a file is built from REAL response lines (tests/data,
shortened to their first tokens so an example runs in milliseconds), each given a fresh id
and a secret prompt, mixed with every corruption issue 13 names:

* a logprob of -1e308 (passes float64, overflows the store's float32 to -inf);
* a logprob sent as a string ("-0.5"), NaN, a positive logprob;
* invalid JSON that carries a prompt, and a line cut inside its prompt;
* the same id with other content (a conflict), and a true duplicate (same content);
* a UTF-8 BOM on the first line;

then written plain or gzip, and possibly cut at a random byte (a truncated download), or
with one byte of the compressed stream flipped. For each file the command must: exit 0 for
a whole file and 2 for a damaged one, with one error line and no traceback; store every good
line before the damage; quarantine every bad one with its line number and a reason; keep
``read = stored + quarantined + duplicates``; keep no prompt text anywhere in the store.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import sqlite3
import sys
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from tests.factories import real_lines

_TOKENS = 12
BAD_KINDS = ("minus_1e308", "string_logprob", "nan", "positive", "invalid_json", "cut_prompt")
KINDS = ("good", "good", "good", *BAD_KINDS, "conflict", "duplicate")


def _short_records() -> list[dict[str, Any]]:
    records = []
    for line in real_lines():
        record = orjson.loads(line)
        choice = record["response"]["choices"][0]
        choice["logprobs"]["content"] = choice["logprobs"]["content"][:_TOKENS]
        choice["message"]["content"] = "".join(
            step["token"] for step in choice["logprobs"]["content"]
        )
        records.append(record)
    return records


SHORT = _short_records()


@dataclass
class Planned:
    kind: str
    trace_id: str
    prompt: str
    data: bytes


def _set_logprob(record: dict[str, Any], value: Any) -> None:
    record["response"]["choices"][0]["logprobs"]["content"][1]["top_logprobs"][4]["logprob"] = value


def _line(kind: str, base: int, index: int, earlier: list[Planned]) -> Planned:
    record = orjson.loads(orjson.dumps(SHORT[base % len(SHORT)]))
    prompt = f"SECRET-PROMPT-{index:03d}-{base:03d}-not-to-be-stored"
    record["prompt"] = prompt
    record["id"] = f"hostile-{index}"
    goods = [p for p in earlier if p.kind == "good"]
    if kind in ("conflict", "duplicate") and not goods:
        kind = "good"
    if kind == "minus_1e308":
        _set_logprob(record, -1e308)
    elif kind == "string_logprob":
        _set_logprob(record, "-0.5")
    elif kind == "positive":
        _set_logprob(record, 0.5)
    elif kind == "conflict":
        record["id"] = goods[base % len(goods)].trace_id
        record["response"]["choices"][0]["message"]["content"] += " (another answer)"
    data = orjson.dumps(record)
    if kind == "nan":
        _set_logprob(record, -123.25)
        data = orjson.dumps(record).replace(b"-123.25", b"NaN")
    elif kind == "invalid_json":
        data = orjson.dumps(record)[:-1] + b",,}"
    elif kind == "cut_prompt":
        data = b'{"id": "' + record["id"].encode() + b'", "prompt": "' + prompt.encode()[:20]
    elif kind == "duplicate":
        original = goods[base % len(goods)]
        return Planned("duplicate", original.trace_id, original.prompt, original.data)
    return Planned(kind, record["id"], prompt, data)


@st.composite
def hostile_files(draw: st.DrawFn) -> dict[str, Any]:
    kinds = draw(st.lists(st.sampled_from(KINDS), min_size=1, max_size=9))
    planned: list[Planned] = []
    for index, kind in enumerate(kinds):
        planned.append(_line(kind, draw(st.integers(0, 100)), index, planned))
    bom = draw(st.booleans())
    body = b"".join(p.data + b"\n" for p in planned)
    if bom:
        body = b"\xef\xbb\xbf" + body
    compress = draw(st.booleans())
    damage = draw(st.sampled_from(["none", "none", "cut", "flip"] if compress else ["none", "cut"]))
    data = gzip.compress(body, mtime=0) if compress else body
    cut_at = None
    if damage == "cut":
        # Past a possible BOM: a file cut inside its first three bytes is not a case of its own.
        cut_at = draw(st.integers(min_value=4, max_value=len(data) - 1))
        data = data[:cut_at]
    elif damage == "flip":
        at = draw(st.integers(min_value=10, max_value=len(data) - 9))
        data = data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1 :]
    return _Case(
        {
            "planned": planned,
            "body": body,
            "data": data,
            "compress": compress,
            "damage": damage,
            "cut_at": cut_at,
        }
    )


class _Case(dict[str, Any]):
    """A generated file; its repr names what matters (Hypothesis prints it on failure)."""

    def __repr__(self) -> str:
        kinds = [p.kind for p in self["planned"]]
        bom = self["body"].startswith(b"\xef")
        return (
            f"Case(kinds={kinds}, compress={self['compress']}, damage={self['damage']!r}, "
            f"cut_at={self['cut_at']}, bom={bom}, "
            f"bytes={len(self['data'])})"
        )


def _run_cli(args: list[str]) -> tuple[int, str, str]:
    from flows import cli

    stdout, stderr = io.StringIO(), io.StringIO()
    code = 0
    argv = sys.argv
    sys.argv = ["sentinel", *args]
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            cli.main()
    except SystemExit as exc:
        code = int(exc.code or 0)
    finally:
        sys.argv = argv
    return code, stdout.getvalue(), stderr.getvalue()


def _counts(stdout: str) -> dict[str, int]:
    counts: dict[str, int] = orjson.loads(stdout.strip().splitlines()[-1])
    return counts


def _whole_lines_before(body: bytes, cut_at: int | None) -> int:
    """How many lines of the plain body end (newline included) before byte ``cut_at``."""
    return body.count(b"\n") if cut_at is None else body[:cut_at].count(b"\n")


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(case=hostile_files())
def test_a_hostile_file_loses_no_good_line_and_leaks_no_prompt(case: dict[str, Any]) -> None:
    note(repr(case))
    planned: list[Planned] = case["planned"]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / ("traces.jsonl.gz" if case["compress"] else "traces.jsonl")
        path.write_bytes(case["data"])
        db = Path(folder) / "store.db"
        code, stdout, stderr = _run_cli(["ingest", str(path), "--db", f"sqlite:///{db}", "--json"])
        assert "Traceback" not in stderr + stdout
        counts = _counts(stdout)
        assert counts["read"] == counts["stored"] + counts["quarantined"] + counts["duplicates"]
        with contextlib.closing(sqlite3.connect(db)) as con:
            stored = {r[0] for r in con.execute("SELECT id FROM traces")}
            quarantine = {
                r[0]: (r[1], r[2])
                for r in con.execute("SELECT line_no, reason, raw FROM quarantine")
            }
            prompts = [r[0] for r in con.execute("SELECT prompt FROM traces")]
            text_columns = list(con.execute("SELECT raw, reason, source FROM quarantine"))
        # No prompt text anywhere: traces keep only its hash, quarantine its SHA-256.
        assert prompts == [None] * len(prompts)
        for p in planned:
            for row in text_columns:
                assert p.prompt not in "".join(row)

        if case["damage"] == "none":
            whole = len(planned)
            assert code == 0, stderr
            assert stderr.strip() == ""
        elif not case["compress"]:
            whole, partial = _plain_cut(case["body"], case["cut_at"])
            expect_damage = partial is not None and planned[whole].kind not in _INVALID_PREFIX
            if partial is not None and not expect_damage and code == 0:
                assert whole + 1 in quarantine  # a bad line cut shorter is still a bad line
            else:
                assert code == (2 if partial is not None else 0), (partial, stderr)
        elif case["damage"] == "cut":
            assert code == 2, stderr
            whole = _handled_prefix(planned, stored, quarantine)
            # Every line that zlib can still decompress whole was handled.
            recoverable = zlib.decompressobj(31).decompress(case["data"])
            assert whole >= recoverable.count(b"\n")
        else:
            # A flipped byte: zlib may decode garbage for a while before it notices, so which
            # lines survive is up to the stream; what is stored must be a line of the file.
            assert code == 2, stderr
            whole = 0
        if code == 2:
            errors = [line for line in stderr.splitlines() if line.strip()]
            assert len(errors) == 1
            assert errors[0].startswith("error: ")
            assert str(path) in errors[0]
            assert f"stored {counts['stored']} of the {counts['read']}" in errors[0]
        for number, p in enumerate(planned[:whole], start=1):
            if p.kind in ("good", "duplicate"):
                assert p.trace_id in stored, (number, p.kind)
            elif p.kind == "conflict":
                reason = quarantine[number][0]
                assert "another response under that id" in reason
                assert reason.count("sha256") == 2
            else:
                assert number in quarantine, (number, p.kind)
                assert quarantine[number][0].startswith("expected")
        expected_stored = {p.trace_id for p in planned[:whole] if p.kind in ("good", "duplicate")}
        if case["damage"] != "flip":
            # Nothing past the damage is stored.
            assert stored == expected_stored
        else:
            # A flipped byte can decode into garbage lines after the damage (quarantined),
            # never into a trace that was not in the file.
            assert stored <= {p.trace_id for p in planned if p.kind in ("good", "duplicate")}


#: Kinds whose line is invalid JSON before its end: cut short, it may read as a bad line.
_INVALID_PREFIX = ("nan", "invalid_json")


def _plain_cut(body: bytes, cut_at: int | None) -> tuple[int, bytes | None]:
    """(lines whole before the cut, the partial line after them or None)."""
    kept = body if cut_at is None else body[:cut_at]
    whole = kept.count(b"\n")
    partial = kept.rsplit(b"\n", 1)[-1] if b"\n" in kept else kept
    full_line = body.split(b"\n")[whole] if whole < body.count(b"\n") else b""
    if not partial.strip() or partial == full_line:
        # Nothing after the last newline, or the whole line without its newline.
        return (whole + 1 if partial.strip() else whole), None
    return whole, partial


def _handled_prefix(
    planned: list[Planned], stored: set[str], quarantine: dict[int, tuple[str, str]]
) -> int:
    """The number of leading lines the command handled (stored, quarantined or duplicate)."""
    seen_ids: set[str] = set()
    count = 0
    for number, p in enumerate(planned, start=1):
        handled = (
            (p.kind in ("good",) and p.trace_id in stored)
            or (p.kind == "duplicate" and p.trace_id in seen_ids)
            or number in quarantine
        )
        if not handled:
            break
        if p.kind == "good":
            seen_ids.add(p.trace_id)
        count = number
    return count


def test_a_truncated_gzip_keeps_the_lines_before_the_break(tmp_path: Path) -> None:
    body = b"".join(orjson.dumps({**r, "id": f"t-{i}"}) + b"\n" for i, r in enumerate(SHORT))
    compressed = gzip.compress(body)
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(compressed[: len(compressed) * 2 // 3])
    db = tmp_path / "store.db"
    code, stdout, stderr = _run_cli(["ingest", str(path), "--db", f"sqlite:///{db}", "--json"])
    assert code == 2
    assert "Aborted" not in stderr
    (line,) = [x for x in stderr.splitlines() if x.strip()]
    assert "the file breaks at line" in line
    assert "EOFError" in line
    counts = _counts(stdout)
    assert counts["stored"] >= 1
    assert f"stored {counts['stored']} of the {counts['read']}" in line
    with contextlib.closing(sqlite3.connect(db)) as con:
        ids = [r[0] for r in con.execute("SELECT id FROM traces ORDER BY id")]
    assert ids == sorted(f"t-{i}" for i in range(counts["stored"]))


@pytest.mark.parametrize("keep", [False, True])
def test_quarantine_keeps_the_prompt_only_when_the_operator_opted_in(
    tmp_path: Path, keep: bool
) -> None:
    record = {**SHORT[0], "id": "q-1", "prompt": "SECRET-PROMPT-keep-me-or-not"}
    _set_logprob(record, "-0.5")
    path = tmp_path / "bad.jsonl"
    path.write_bytes(orjson.dumps(record) + b"\n")
    db = tmp_path / "store.db"
    flag = "--keep-prompt" if keep else "--no-keep-prompt"
    code, _, stderr = _run_cli(["ingest", str(path), "--db", f"sqlite:///{db}", flag])
    assert code == 0, stderr
    with contextlib.closing(sqlite3.connect(db)) as con:
        (raw,) = con.execute("SELECT raw FROM quarantine").fetchone()
    assert ("SECRET-PROMPT-keep-me-or-not" in raw) is keep
    if not keep:
        import hashlib

        digest = hashlib.sha256(b"SECRET-PROMPT-keep-me-or-not").hexdigest()
        assert f'"prompt":"sha256:{digest}"' in raw
        assert '"logprob":"-0.5"' in raw  # the rest of the line is kept as it came
