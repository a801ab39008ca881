"""User errors on the command line: one line, exit status 2, nothing created or changed.

Each test runs the console entry point (``flows.cli.main``) in process, as the
``sentinel`` script does, on a real SQLite store (an empty home, or a copy of the
labelled corpus) and checks the one line on stderr, the exit status, and that the
files under the home and the rows of every table are as they were.
"""

from __future__ import annotations

import copy
import hashlib
import subprocess
import sys
from pathlib import Path
from typing import Any, get_args

import pytest
from sqlalchemy import Engine, func, select
from sqlmodel import Session, SQLModel

from flows.cli import TrainMethod, main
from labeling.base import LabelOutcome, LabelRequest
from labeling.campaign import LABELERS, run_campaign
from labeling.exact import ExactLabeler
from sentinel_core import ledger
from sentinel_core.corpus import iter_sample_records
from sentinel_core.errors import InvalidInputError, MissingStoreError
from sentinel_core.estimator import SERVABLE_METHODS
from sentinel_core.ingest import ingest_records
from sentinel_core.slices import check_slice_key
from sentinel_core.store import open_store
from tests.flows.conftest import Env, corpus_records, seed_store
from tests.labeling.planning import plan_stored

SENTINEL = str(Path(sys.executable).with_name("sentinel"))
TYPO = "benchmarkk"


@pytest.fixture
def home(env: Env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Env:
    """The ``env`` stores as the CLI's settings (an empty home: no store, no MLflow yet)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SENTINEL_HOME", str(env.home))
    monkeypatch.setenv("SENTINEL_DB_URL", env.db_url)
    monkeypatch.setenv("SENTINEL_MLFLOW_TRACKING_URI", env.tracking_uri)
    return env


@pytest.fixture
def corpus_home(home: Env, corpus_env: Env) -> Env:
    """``home`` with the labelled corpus in its store (no champion, no MLflow store)."""
    return home


def sentinel(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, str, str]:
    """Run ``sentinel ARGS`` in process; ``(exit status, stdout, stderr)``."""
    monkeypatch.setattr(sys, "argv", ["sentinel", *args])
    code: Any = 0
    try:
        main()
    except SystemExit as exited:
        code = exited.code
    captured = capsys.readouterr()
    return (code if isinstance(code, int) else 1), captured.out, captured.err


def one_line_error(result: tuple[int, str, str], *needles: str) -> str:
    """Assert exit status 2 and exactly one ``error:`` line on stderr holding ``needles``."""
    code, _out, err = result
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), err
    assert "Traceback" not in err
    assert "╭" not in err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def snapshot(home: Env) -> dict[str, Any]:
    """Every file under the home (but SQLite's -wal/-shm) with its bytes' hash, and the
    row count of every table of the store when there is one (read through a new
    connection, so rows still in the write-ahead log count too)."""
    files = {
        str(p.relative_to(home.home)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(home.home.rglob("*"))
        if p.is_file() and not p.name.endswith(("-wal", "-shm"))
    }
    rows: dict[str, int] = {}
    if (home.home / "sentinel.db").is_file():
        engine = open_store(home.db_url, create=False)
        with Session(engine) as session:
            for table in SQLModel.metadata.sorted_tables:
                rows[table.name] = int(
                    session.execute(select(func.count()).select_from(table)).scalar_one()
                )
        engine.dispose()
    return {"files": files, "rows": rows}


# 8: every option is checked before any work ------------------------------------------


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["--labeler", "bogus"], ["'--labeler'", "'exact', 'judge', 'label-studio'"]),
        (["--unit", "bogus"], ["'--unit'", "'labels', 'usd'"]),
        (["--budget", "0"], ["--budget > 0"]),
        (["--by", TYPO], [repr(TYPO), "benchmark (242)"]),
    ],
)
def test_nightly_checks_every_option_before_seeding_anything(
    home: Env,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    needles: list[str],
) -> None:
    one_line_error(
        sentinel(monkeypatch, capsys, "nightly", "--key", "n1", "--sample", *args), *needles
    )
    # Not seeded, no MLflow run or model: the home holds nothing at all.
    assert list(home.home.iterdir()) == []


def test_nightly_on_an_empty_store_seeds_nothing_unless_asked(
    home: Env, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    one_line_error(
        sentinel(monkeypatch, capsys, "nightly", "--key", "n1"),
        "expected traces in the store",
        "got none",
        "--sample",
    )
    assert list(home.home.iterdir()) == []


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["nightly", "--labeler", "bogus"], ["'exact', 'judge', 'label-studio'"]),
        (["campaign", "plan", "--budget", "5", "--by", "benchmark", "--labeler", "bogus"],
         ["'exact', 'judge', 'label-studio'", "sentinel campaign plan --help"]),
        (["campaign", "plan", "--budget", "5", "--by", "benchmark", "--unit", "eur"],
         ["'labels', 'usd'"]),
        (["campaign", "plan", "--budget", "0", "--by", "benchmark"], ["--budget > 0"]),
        (["campaign", "plan", "--budget", "-3", "--by", "benchmark"], ["--budget > 0"]),
        (["campaign", "run", "c", "--labeler", "human"], ["'exact', 'judge', 'label-studio'"]),
        (["train", "--method", "bogus"], ["'default', 'lr_11d'", "'atc_H_sea'"]),
        (["train", "--calibration", "bogus"], ["'auto', 'isotonic', 'sigmoid'"]),
        (["evaluate", "--by", "benchmark", "--methods", "lr_11d,bogus"], ["'bogus'"]),
        (["status", "--bogus"], ["No such option: --bogus", "sentinel status --help"]),
        (["estimate"], ["Missing option '--by'"]),
        (["frobnicate"], ["No such command 'frobnicate'"]),
    ],
)  # fmt: skip
def test_a_bad_option_is_one_line_before_any_work_on_the_store(
    corpus_home: Env,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    needles: list[str],
) -> None:
    before = snapshot(corpus_home)
    one_line_error(sentinel(monkeypatch, capsys, *args), *needles)
    assert snapshot(corpus_home) == before


def test_the_cli_choices_are_the_library_names() -> None:
    assert get_args(TrainMethod) == SERVABLE_METHODS
    assert LABELERS == ("exact", "judge", "label-studio")


def test_the_installed_script_prints_a_usage_error_as_one_line_not_a_panel(
    tmp_path: Path,
) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "SENTINEL_HOME": str(tmp_path / "h")}
    done = subprocess.run(
        [SENTINEL, "nightly", "--labeler", "bogus"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "error: Invalid value for '--labeler': 'bogus' is not one of 'exact', 'judge', "
        "'label-studio'. (see `sentinel nightly --help`)"
    ]
    assert not (tmp_path / "h").exists()


# 9: read-only commands do not create a store -------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["status"],
        ["estimate", "--by", "benchmark"],
        ["evaluate", "--by", "benchmark"],
        ["train"],
        ["verify"],
        ["labels", "import", "labels.csv"],
        ["campaign", "status", "c"],
        ["campaign", "run", "c"],
        ["campaign", "plan", "--budget", "5", "--by", "benchmark"],
    ],
)
def test_a_command_on_a_store_that_does_not_exist_says_so_and_creates_nothing(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SENTINEL_HOME", str(tmp_path / "home"))
    (tmp_path / "labels.csv").write_text("id,correct\nx,1\n")
    missing = tmp_path / "no" / "such" / "dir" / "x.db"
    line = one_line_error(
        sentinel(monkeypatch, capsys, *args, "--db", f"sqlite:///{missing}"),
        f"no store at sqlite:///{missing}",
        "run `sentinel ingest` first",
    )
    assert line.startswith("error: no store at")
    assert not (tmp_path / "no").exists()
    assert not (tmp_path / "home").exists()


def test_open_store_without_create_refuses_a_store_that_does_not_exist(store_url: str) -> None:
    """SQLite: no file (nor folder) is made; a server: a database without the traces table."""
    with pytest.raises(MissingStoreError, match="no store at"):
        open_store(store_url, create=False)
    if store_url.startswith("sqlite"):
        assert not Path(store_url.removeprefix("sqlite:///")).parent.exists()
    engine = open_store(store_url)  # a command that ingests creates it
    engine.dispose()
    open_store(store_url, create=False).dispose()


# 10: no traceback for bad paths, URLs and files ----------------------------------------


def test_estimate_to_a_folder_that_does_not_exist_is_refused_before_any_work(
    corpus_home: Env,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    before = snapshot(corpus_home)
    target = tmp_path / "no" / "such" / "dir" / "t.csv"
    for command in (["estimate", "--by", "benchmark"], ["evaluate", "--by", "benchmark"]):
        one_line_error(
            sentinel(monkeypatch, capsys, *command, "--out", str(target)),
            "expected --out in an existing folder",
            str(target.parent),
        )
    assert not (tmp_path / "no").exists()
    assert snapshot(corpus_home) == before


def test_a_store_url_whose_driver_is_not_installed_names_the_driver(
    home: Env, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    line = one_line_error(
        sentinel(monkeypatch, capsys, "status", "--db", "mysql://user:secret@db.example/x"),
        "cannot use store URL mysql://user:***@db.example/x",
        "'mysql'",
        "'MySQLdb'",
        "not installed",
    )
    assert "secret" not in line


@pytest.mark.parametrize("args", [["status"], ["ingest", "traces.jsonl"], ["verify"]])
def test_a_file_that_is_not_a_database_is_one_line_and_stays_as_it_was(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SENTINEL_HOME", str(tmp_path / "home"))
    (tmp_path / "traces.jsonl").write_text("{}\n")
    not_a_db = tmp_path / "notes.db"
    content = b"these are notes, not a database\n" * 100
    not_a_db.write_bytes(content)
    one_line_error(
        sentinel(monkeypatch, capsys, *args, "--db", f"sqlite:///{not_a_db}"),
        "cannot open the store at",
        "file is not a database",
    )
    assert not_a_db.read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.db", "traces.jsonl"]


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xd8\xff" * 20, "can't decode byte"),
        (b"id,correct\n" + b"\x01" * 200_000 + b",1\n", "field larger than field limit"),
    ],
)
def test_labels_import_of_a_binary_file_is_one_line_and_stores_nothing(
    corpus_home: Env,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    content: bytes,
    needle: str,
) -> None:
    before = snapshot(corpus_home)
    path = tmp_path / "labels.csv"
    path.write_bytes(content)
    one_line_error(
        sentinel(monkeypatch, capsys, "labels", "import", str(path)),
        "expected a UTF-8 CSV file of labels",
        needle,
    )
    assert snapshot(corpus_home) == before


def test_labels_import_of_a_short_row_is_one_line(
    corpus_home: Env,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    before = snapshot(corpus_home)
    path = tmp_path / "labels.csv"
    path.write_text("id,correct\nsome-id\n")
    one_line_error(
        sentinel(monkeypatch, capsys, "labels", "import", str(path)),
        "expected 0/1 in column 'correct'",
    )
    assert snapshot(corpus_home) == before


# 11: a --by that no trace carries ------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["estimate", "--by", TYPO],
        ["verify", "--by", TYPO],
        ["campaign", "plan", "--budget", "5", "--by", TYPO],
        ["evaluate", "--by", TYPO],
        ["train", "--by", TYPO],
        ["nightly", "--by", TYPO, "--key", "n1"],
    ],
)
def test_a_slice_key_no_trace_carries_lists_the_keys_and_changes_nothing(
    corpus_home: Env,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
) -> None:
    before = snapshot(corpus_home)
    one_line_error(
        sentinel(monkeypatch, capsys, *args),
        f"got {TYPO!r}",
        "none of the 242 traces has it",
        "benchmark (242)",
        "kind (242)",
    )
    assert snapshot(corpus_home) == before


def test_a_slice_key_some_traces_lack_says_how_many_fall_into_missing(
    home: Env, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    records = copy.deepcopy(list(iter_sample_records("corpus-dev")))
    for record, _ in records[:20]:
        record["metadata"]["team"] = "red"
    engine = open_store(home.db_url)
    ingest_records(engine, (r for r, _ in records), source="test")
    engine.dispose()
    code, out, err = sentinel(monkeypatch, capsys, "verify", "--by", "team", "--json")
    assert code == 0, err
    assert f"note: {len(records) - 20} of {len(records)} traces lack metadata key 'team'" in err
    assert "(missing)" in out


def test_check_slice_key_counts_the_traces_without_the_key() -> None:
    metadata = [{"benchmark": "a", "team": None}, {"benchmark": "b", "team": "x"}, {}, None]
    assert check_slice_key(metadata, "benchmark") == (2, 4)
    assert check_slice_key(metadata, "team") == (3, 4)
    assert check_slice_key([], "anything") == (0, 0)
    with pytest.raises(InvalidInputError, match=r"keys they carry \(traces\): benchmark \(1\)$"):
        check_slice_key(metadata[:1] + metadata[2:], "team")


# 12: no champion whose held-out error cannot be measured -------------------------------


def test_train_on_one_slice_refuses_to_register_unless_forced(
    home: Env, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    one_slice = [(r, y) for r, y in corpus_records() if r["metadata"]["benchmark"] == "aqua"]
    seed_store(home.db_url, one_slice, source="test")
    before = snapshot(home)
    one_line_error(
        sentinel(monkeypatch, capsys, "train"),
        "at least 2 slices of 'benchmark'",
        "got 1 ('aqua')",
        "leave-one-slice-out",
        "--force",
    )
    assert snapshot(home) == before
    assert not (home.home / "mlflow.db").exists()

    code, out, err = sentinel(monkeypatch, capsys, "train", "--force")
    assert code == 0, err
    assert "registered as new version 1: promoted: forced by the operator (--force)" in out
    assert "cannot be measured (labels in one slice)" in out


# 13: a concurrent run that finds an item taken -----------------------------------------


class GrabbingLabeler(ExactLabeler):
    """The exact verifier, while another worker reserves the next planned item."""

    def __init__(self, engine: Engine, campaign_id: str) -> None:
        super().__init__()
        self.engine = engine
        self.campaign_id = campaign_id
        self.grabbed: list[str] = []

    def label(self, request: LabelRequest) -> LabelOutcome:
        if not self.grabbed:
            planned = ledger.items(self.engine, self.campaign_id, states=("planned",))
            assert planned[0].id is not None
            assert ledger.reserve(self.engine, planned[0].id, 1.0, labeler="exact")
            self.grabbed.append(planned[0].trace_id)
        return super().label(request)


def test_a_run_skips_an_item_another_run_reserved_instead_of_saying_budget_exhausted(
    engine: Engine,
) -> None:
    ingest_records(engine, (r for r, _ in iter_sample_records("corpus-dev")), source="dev")
    cid, _plan = plan_stored(
        engine, "c", labeler="exact", budget=10, unit="labels", cost_per_label=0.0,
        max_slices=2, min_per_slice=5,
    )  # fmt: skip
    labeler = GrabbingLabeler(engine, cid)
    report = run_campaign(engine, cid, labeler)
    assert report.stopped is None
    assert (report.labelled, report.taken) == (9, 1)
    left = ledger.items(engine, cid, states=("reserved",))
    assert [r.trace_id for r in left] == labeler.grabbed  # the other run's, to label
    budget = ledger.budget_state(engine, cid)
    assert (budget.committed, budget.reserved) == (9, 1)


def test_an_estimate_window_without_traffic_is_one_line_naming_the_window(
    corpus_home: Env, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    one_line_error(
        sentinel(monkeypatch, capsys, "estimate", "--by", "benchmark", "--since", "2030-01-01"),
        "expected traces in the window (traces created from 2030-01-01T00:00:00+00:00",
        "got none of the 242 stored",
    )
    one_line_error(
        sentinel(monkeypatch, capsys, "estimate", "--by", "benchmark", "--since", "yesterday"),
        "'--since'",
    )
