"""Streaming ingest into a real store: counts add up, nothing is lost, nothing twice."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from sentinel_core.corpus import iter_sample_records
from sentinel_core.errors import InvalidInputError
from sentinel_core.features import ALL_SCORE_NAMES, FEATURE_SET_VERSION, entropy_profile
from sentinel_core.ingest import DamagedFileError, ingest_file, ingest_records
from sentinel_core.runs import load_rows
from sentinel_core.schema import FeatureRow, QuarantineRow, TraceRow
from sentinel_core.store import add_labels, count_rows, load_scores
from tests.factories import REAL_TRACES, chat_completion, real_lines, wrapper, write_jsonl


def _balanced(report: object) -> bool:
    r = report
    return r.read == r.stored + r.quarantined + r.duplicates  # type: ignore[attr-defined]


def test_real_wire_format_file_is_stored_once_and_reingest_stores_nothing(engine: Engine) -> None:
    first = ingest_file(engine, REAL_TRACES)
    again = ingest_file(engine, REAL_TRACES)
    assert (first.read, first.stored, first.quarantined, first.duplicates) == (14, 14, 0, 0)
    assert (again.read, again.stored, again.quarantined, again.duplicates) == (14, 0, 0, 14)
    assert count_rows(engine)["traces"] == 14


def test_stored_blob_recomputes_the_stored_features(engine: Engine) -> None:
    ingest_file(engine, REAL_TRACES)
    with Session(engine) as session:
        row = session.exec(select(TraceRow)).first()
        assert row is not None
        features = session.exec(select(FeatureRow).where(FeatureRow.trace_id == row.id)).one()
    top = np.frombuffer(row.logprobs, dtype=row.dtype).reshape(row.n_steps, row.k)
    stored = np.frombuffer(features.values, dtype=np.float64)
    assert features.feature_set == FEATURE_SET_VERSION
    assert stored.shape == (len(ALL_SCORE_NAMES),)
    np.testing.assert_allclose(stored[:11], entropy_profile(top), rtol=1e-5, atol=1e-6)


def test_bad_lines_are_quarantined_with_source_line_and_reason(
    engine: Engine, tmp_path: Path
) -> None:
    good = wrapper(chat_completion(), trace_id="good-1", benchmark="gen")
    nan_body = chat_completion(response_id="nan-1")
    nan_body["choices"][0]["logprobs"]["content"][0]["top_logprobs"][0]["logprob"] = math.nan
    lines = [
        orjson.dumps(good),
        b"{not json",
        orjson.dumps(nan_body, option=orjson.OPT_SERIALIZE_NUMPY).replace(b"null", b"NaN"),
        b"",
        orjson.dumps({"id": "x", "response": {"model": "m", "created": 1, "choices": []}}),
    ]
    path = write_jsonl(tmp_path / "mixed.jsonl", lines)
    report = ingest_file(engine, path)
    assert (report.read, report.stored, report.quarantined, report.duplicates) == (4, 1, 3, 0)
    with Session(engine) as session:
        rows = session.exec(select(QuarantineRow).order_by(QuarantineRow.line_no)).all()
    assert [r.line_no for r in rows] == [2, 3, 5]
    assert rows[0].raw == "{not json"
    assert rows[0].source == str(path.resolve())
    assert "invalid JSON" in rows[0].reason
    assert "non-empty list 'choices'" in rows[2].reason
    again = ingest_file(engine, path)
    assert (again.stored, again.quarantined, again.duplicates) == (0, 0, 4)


def test_gzip_and_plain_files_ingest_the_same_traces(tmp_path: Path) -> None:
    from sentinel_core.store import open_store

    records = [wrapper(chat_completion(seed=i), trace_id=f"g{i}", topic="t") for i in range(5)]
    plain = open_store(f"sqlite:///{tmp_path / 'a.db'}")
    packed = open_store(f"sqlite:///{tmp_path / 'b.db'}")
    ingest_file(plain, write_jsonl(tmp_path / "x.jsonl", records))
    ingest_file(packed, write_jsonl(tmp_path / "x.jsonl.gz", records, compress=True))
    a = load_scores(plain, feature_set=FEATURE_SET_VERSION, names=ALL_SCORE_NAMES)
    b = load_scores(packed, feature_set=FEATURE_SET_VERSION, names=ALL_SCORE_NAMES)
    assert list(a["trace_id"]) == list(b["trace_id"]) == [f"g{i}" for i in range(5)]
    np.testing.assert_array_equal(a[list(ALL_SCORE_NAMES)], b[list(ALL_SCORE_NAMES)])


def test_small_batches_commit_the_same_as_one_batch(engine: Engine, tmp_path: Path) -> None:
    records = [wrapper(chat_completion(seed=i), trace_id=f"b{i}") for i in range(7)]
    records.insert(3, {"broken": True})
    report = ingest_file(engine, write_jsonl(tmp_path / "b.jsonl", records), batch_size=2)
    assert (report.read, report.stored, report.quarantined) == (8, 7, 1)
    assert count_rows(engine)["features"] == 7


def test_duplicates_inside_one_file_are_counted_once(engine: Engine, tmp_path: Path) -> None:
    record = wrapper(chat_completion(), trace_id="same")
    report = ingest_file(engine, write_jsonl(tmp_path / "d.jsonl", [record, record, record]))
    assert (report.read, report.stored, report.duplicates) == (3, 1, 2)
    assert _balanced(report)


def test_python_objects_take_the_same_path_and_quarantine_as_files(engine: Engine) -> None:
    report = ingest_records(engine, [chat_completion(response_id="p1"), {"nope": 1}])
    assert (report.read, report.stored, report.quarantined) == (2, 1, 1)
    with Session(engine) as session:
        bad = session.exec(select(QuarantineRow)).one()
    assert bad.source == "python"
    assert bad.line_no == 2
    assert '"nope"' in bad.raw


def test_a_path_that_is_not_a_file_is_a_clear_error(engine: Engine, tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="expected a readable JSONL file"):
        ingest_file(engine, tmp_path / "missing.jsonl")


def test_the_shipped_sample_ingests_whole_and_takes_labels(engine: Engine) -> None:
    pairs = list(iter_sample_records())
    report = ingest_records(engine, (r for r, _ in pairs), source="sample")
    stored, known, unknown = add_labels(
        engine, [(r["id"], bool(y), None) for r, y in pairs], labeler="import"
    )
    frame = load_scores(engine, feature_set=FEATURE_SET_VERSION, names=ALL_SCORE_NAMES)
    assert (report.read, report.stored) == (134, 134)
    assert (stored, known, unknown) == (134, 0, [])
    assert int(frame["label"].sum()) == 63
    assert frame["metadata"].map(lambda m: m["benchmark"]).nunique() == 14
    # cut at max_tokens, from the stored finish_reason, in both loaders
    cut = {r["id"]: r["response"]["choices"][0]["finish_reason"] == "length" for r, _ in pairs}
    assert dict(zip(frame["trace_id"], frame["cut"].tolist(), strict=True)) == cut
    assert 0 < frame["cut"].sum() < len(frame)
    some = frame["trace_id"].tolist()[::-7]
    rows = load_rows(
        engine,
        some,
        feature_set=FEATURE_SET_VERSION,
        names=ALL_SCORE_NAMES[:2],
        slice_key="benchmark",
    )
    assert rows["cut"].tolist() == [cut[i] for i in some]


def test_the_compact_sample_matches_the_wire_format_features_to_float16_precision(
    engine: Engine,
) -> None:
    ingest_file(engine, REAL_TRACES)
    wire = load_scores(engine, feature_set=FEATURE_SET_VERSION, names=ALL_SCORE_NAMES)
    ids = set(wire["trace_id"])
    compact = [r for r, _ in iter_sample_records() if r["id"] in ids]
    assert len(compact) == 14
    for record in compact:
        steps = record["response"]["choices"][0]["logprobs"]["content"]
        top = np.array([[a["logprob"] for a in s["top_logprobs"]] for s in steps])
        row = wire[wire["trace_id"] == record["id"]].iloc[0]
        assert entropy_profile(top)[1] == pytest.approx(row["H_mean"], abs=5e-3)


def test_labels_for_unknown_traces_are_reported_not_stored(engine: Engine) -> None:
    ingest_file(engine, REAL_TRACES)
    first_id = orjson.loads(real_lines()[0])["id"]
    stored, known, unknown = add_labels(
        engine, [(first_id, True, None), ("nobody", False, None)], labeler="exact"
    )
    again = add_labels(engine, [(first_id, False, None)], labeler="exact")
    assert (stored, known, unknown) == (1, 0, ["nobody"])
    assert again == (0, 1, [])


def test_the_collected_corpus_ingests_with_twenty_alternatives_per_token(engine: Engine) -> None:
    pairs = list(iter_sample_records("corpus-collected"))
    report = ingest_records(engine, (r for r, _ in pairs), source="collected")
    steps = pairs[0][0]["response"]["choices"][0]["logprobs"]["content"]
    assert len(pairs) >= 40
    assert (report.read, report.stored, report.quarantined) == (len(pairs), len(pairs), 0)
    assert {len(s["top_logprobs"]) for s in steps} == {20}
    # Every one of the 14 benchmarks is there, with right and wrong answers overall.
    assert len({r["metadata"]["benchmark"] for r, _ in pairs}) == 14
    assert 0 < sum(label for _, label in pairs) < len(pairs)


def test_a_second_response_under_a_known_id_is_quarantined_naming_both_hashes(
    engine: Engine, tmp_path: Path
) -> None:
    first = wrapper(chat_completion(text="first answer"), trace_id="same-id", benchmark="a")
    other = wrapper(chat_completion(text="another answer"), trace_id="same-id", benchmark="b")
    path = write_jsonl(tmp_path / "conflict.jsonl", [first, first, other])
    report = ingest_file(engine, path)
    assert (report.read, report.stored, report.quarantined, report.duplicates) == (3, 1, 1, 1)
    with Session(engine) as session:
        (row,) = session.exec(select(QuarantineRow)).all()
        stored = session.exec(select(TraceRow)).one()
    assert row.line_no == 3
    assert "another response under that id" in row.reason
    assert stored.content_hash in row.reason
    assert row.reason.count("sha256") == 2
    assert '"another answer"' in row.raw  # kept whole (prompt hashed) so it can be re-id'd
    assert '"prompt":"sha256:' in row.raw
    # Against the store too, from another file: still a conflict, never a silent duplicate.
    later = ingest_records(engine, [other], source="later")
    assert (later.stored, later.quarantined, later.duplicates) == (0, 1, 0)
    again = ingest_file(engine, path)
    assert (again.stored, again.quarantined, again.duplicates) == (0, 0, 3)


def test_a_utf8_bom_on_the_first_line_is_dropped(engine: Engine, tmp_path: Path) -> None:
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + b"\n".join(real_lines()[:2]) + b"\n")
    report = ingest_file(engine, path)
    assert (report.read, report.stored, report.quarantined) == (2, 2, 0)


def test_a_plain_file_cut_inside_its_last_line_stores_the_lines_before(
    engine: Engine, tmp_path: Path
) -> None:
    lines = real_lines()[:3]
    path = tmp_path / "cut.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n" + lines[3 % len(lines)][:5000])
    with pytest.raises(DamagedFileError) as info:
        ingest_file(engine, path)
    assert "ends inside line 4" in str(info.value)
    assert (info.value.report.read, info.value.report.stored) == (3, 3)
    assert count_rows(engine)["quarantine"] == 0  # a cut line is not a bad line: rerun later


def test_a_last_line_without_newline_that_is_whole_is_stored(
    engine: Engine, tmp_path: Path
) -> None:
    path = tmp_path / "no-newline.jsonl"
    path.write_bytes(b"\n".join(real_lines()[:2]))
    assert ingest_file(engine, path).stored == 2


def test_a_trace_the_featuriser_refuses_costs_only_itself(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sentinel_core.ingest as ingest_module

    real_score = ingest_module.score_traces

    def refusing(traces: list[Any]) -> Any:
        if any(t.id == "poison" for t in traces):
            raise InvalidInputError("trace 3: top_logprobs hold -inf")
        return real_score(traces)

    monkeypatch.setattr(ingest_module, "score_traces", refusing)
    records = [
        wrapper(chat_completion(seed=i), trace_id=name, benchmark="a")
        for i, name in enumerate(["a", "b", "poison", "c"])
    ]
    path = write_jsonl(tmp_path / "poison.jsonl", records)
    report = ingest_file(engine, path)
    assert (report.read, report.stored, report.quarantined) == (4, 3, 1)
    with Session(engine) as session:
        (row,) = session.exec(select(QuarantineRow)).all()
    assert row.line_no == 3
    assert "featuriser" in row.reason
    assert '"id":"poison"' in row.raw


def test_text_the_store_cannot_hold_is_quarantined_or_made_storable(
    engine: Engine, tmp_path: Path
) -> None:
    # PostgreSQL text columns refuse NUL, and ids, models and finish reasons have widths:
    # one such line used to abort the whole batch with a traceback.
    nul_text = wrapper(chat_completion(text="an answer with \x00 inside"), trace_id="nul-text")
    nul_meta = wrapper(chat_completion(seed=1), trace_id="nul-meta", benchmark="a\x00b")
    long_id = wrapper(chat_completion(seed=2), trace_id="x" * 600)
    nul_id = wrapper(chat_completion(seed=3), trace_id="bad\x00id")
    long_model = chat_completion(seed=4, model="m" * 300, response_id="long-model")
    odd_finish = chat_completion(seed=5, response_id="odd-finish")
    odd_finish["choices"][0]["finish_reason"] = "s" * 40
    good = wrapper(chat_completion(seed=6), trace_id="good")
    path = write_jsonl(
        tmp_path / "nul.jsonl", [nul_text, nul_meta, long_id, nul_id, long_model, odd_finish, good]
    )
    report = ingest_file(engine, path)
    assert (report.read, report.stored, report.quarantined) == (7, 3, 4)
    with Session(engine) as session:
        stored = {row.id: row for row in session.exec(select(TraceRow)).all()}
        reasons = [row.reason for row in session.exec(select(QuarantineRow)).all()]
    assert stored["nul-text"].response_text == "an answer with \ufffd inside"
    assert stored["nul-meta"].meta["benchmark"] == "a\ufffdb"
    assert sum("at most 500 characters" in r for r in reasons) == 2
    assert sum("at most 255 characters" in r for r in reasons) == 1
    assert sum("finish_reason" in r for r in reasons) == 1


def test_a_parser_failure_no_check_foresaw_quarantines_that_line_only(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sentinel_core.ingest as ingest_module

    real_parse = ingest_module.parse_json_line

    def failing(line: bytes, **options: Any) -> Any:
        if b'"boom"' in line:
            raise RecursionError("maximum recursion depth exceeded")
        return real_parse(line, **options)

    monkeypatch.setattr(ingest_module, "parse_json_line", failing)
    records = [wrapper(chat_completion(seed=i), trace_id=n) for i, n in enumerate(["a", "boom"])]
    report = ingest_file(engine, write_jsonl(tmp_path / "boom.jsonl", records))
    assert (report.read, report.stored, report.quarantined) == (2, 1, 1)
    with Session(engine) as session:
        (row,) = session.exec(select(QuarantineRow)).all()
    assert "RecursionError" in row.reason
    assert "please report" in row.reason


def test_opening_a_new_store_while_another_process_creates_its_tables_retries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sqlite3

    from sqlalchemy.exc import OperationalError
    from sqlmodel import SQLModel

    from sentinel_core.store import open_store

    real_create_all = SQLModel.metadata.create_all
    calls = []

    def racing(engine: Engine, **kwargs: Any) -> None:
        calls.append(1)
        if len(calls) == 1:  # the other process created "traces" between check and create
            raise OperationalError(
                "CREATE TABLE traces", {}, sqlite3.OperationalError("table traces already exists")
            )
        real_create_all(engine, **kwargs)

    monkeypatch.setattr(SQLModel.metadata, "create_all", racing)
    engine = open_store(f"sqlite:///{tmp_path / 'new.db'}")
    assert len(calls) == 2
    assert count_rows(engine)["traces"] == 0
