"""The ``sentinel`` command line on a real SQLite store and a real MLflow store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from flows.cli import app
from tests.factories import REAL_TRACES, chat_completion, real_lines, wrapper, write_jsonl

SENTINEL = str(Path(sys.executable).with_name("sentinel"))


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SENTINEL_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    return tmp_path / "home"


def _last_json(output: str) -> object:
    return json.loads(output.strip().splitlines()[-1])


def test_ingest_json_line_adds_up_and_a_rerun_stores_nothing(home: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    write_jsonl(bad, [wrapper(chat_completion(), trace_id="ok", topic="a"), b"{oops"])
    runner = CliRunner()
    first = runner.invoke(app, ["ingest", str(REAL_TRACES), str(bad), "--json"])
    again = runner.invoke(app, ["ingest", str(REAL_TRACES), str(bad), "--json"])
    assert first.exit_code == 0, first.output
    assert _last_json(first.output) == {"read": 16, "stored": 15, "quarantined": 1, "duplicates": 0}
    assert _last_json(again.output) == {"read": 16, "stored": 0, "quarantined": 0, "duplicates": 16}
    assert (home / "sentinel.db").is_file()


def test_a_missing_file_is_one_clear_line_and_exit_status_2(home: Path) -> None:
    done = subprocess.run(
        [SENTINEL, "ingest", "nowhere.jsonl"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "error: expected a readable JSONL file, got 'nowhere.jsonl' (no such file)"
    )
    assert "Traceback" not in done.stderr


def test_a_bad_store_url_is_one_clear_line(home: Path) -> None:
    done = subprocess.run(
        [SENTINEL, "status", "--db", "nosuchdialect://x"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("error: cannot use store URL")
    assert len(done.stderr.strip().splitlines()) == 1


def test_estimate_before_training_says_to_train_first(home: Path) -> None:
    runner = CliRunner()
    runner.invoke(app, ["ingest", str(REAL_TRACES)])
    result = runner.invoke(app, ["estimate", "--by", "benchmark"])
    assert result.exit_code != 0
    assert "run `sentinel train` first" in str(result.exception)


def test_main_job_then_estimate_and_evaluate_end_to_end(home: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    demo = runner.invoke(app, ["demo"])
    assert demo.exit_code == 0, demo.output
    assert "sample: read 134 = stored 134 + quarantined 0 + duplicates 0" in demo.output
    assert "verified 134 new traces (63 correct)" in demo.output
    assert "registered as new version 1: promoted: no champion in service" in demo.output
    assert "champion: version 1" in demo.output
    assert "olympiadbench" in demo.output

    table = tmp_path / "slices.csv"
    estimate = runner.invoke(app, ["estimate", "--by", "benchmark", "--out", str(table), "--json"])
    assert estimate.exit_code == 0, estimate.output
    rows = _last_json(estimate.output)
    assert isinstance(rows, list)
    assert len(rows) == 14
    written = pd.read_csv(table)
    assert set(written["slice"]) == {row["slice"] for row in rows}
    for row in rows:
        assert 0.0 <= row["low"] <= row["accuracy"] <= row["high"] <= 1.0
        assert row["too_few"] is True  # 9-10 responses per benchmark, min_slice_n = 30

    evaluate = runner.invoke(
        app,
        [
            "evaluate",
            "--by",
            "benchmark",
            "--max-g",
            "1",
            "--json",
            "--methods",
            "default,lr_11d,atc_H_max",
        ],
    )
    assert evaluate.exit_code == 0, evaluate.output
    summary = _last_json(evaluate.output)
    assert {row["method"] for row in summary} == {"default", "lr_11d", "atc_H_max"}
    assert all(row["g"] == 1 and 0.0 <= row["median_aee"] <= 1.0 for row in summary)

    # New unlabelled traffic (corpus-collected, created 20:24-22:27 UTC that day) beside
    # the labelled sample (16:04-18:03): a window estimates only its own traces with
    # only their labels; without one, every trace and every label.
    from sentinel_core.corpus import iter_sample_records
    from sentinel_core.ingest import ingest_records
    from sentinel_core.store import open_store

    engine = open_store(f"sqlite:///{home / 'sentinel.db'}")
    ingest_records(engine, (r for r, _ in iter_sample_records("corpus-collected")), source="new")
    engine.dispose()

    def rows_of(*window: str) -> tuple[list[dict[str, object]], str]:
        result = runner.invoke(app, ["estimate", "--by", "benchmark", "--json", *window])
        assert result.exit_code == 0, result.output
        found = _last_json(result.output)
        assert isinstance(found, list)
        return found, result.output

    everything, shown = rows_of()
    assert sum(int(r["n"]) for r in everything) == 242  # type: ignore[call-overload]
    assert "242 traces estimated (every stored trace); 134 of them labelled" in shown
    new, shown = rows_of("--since", "2026-11-23T19:00:00")
    assert sum(int(r["n"]) for r in new) == 108  # type: ignore[call-overload]
    assert {r["method"] for r in new} == {"bootstrap"}  # no label of older traffic used
    assert {r["n_labelled"] for r in new} == {0}
    assert "108 traces estimated (traces created from 2026-11-23T19:00:00+00:00" in shown
    assert "0 of them labelled" in shown
    old, _ = rows_of("--until", "2026-11-23T19:00:00")
    assert sum(int(r["n"]) for r in old) == 134  # type: ignore[call-overload]
    assert {r["method"] for r in old} == {"wilson"}  # every trace of that window labelled
    # (The installed script prints this as one line with exit status 2: test_cli_errors.)
    empty = runner.invoke(app, ["estimate", "--by", "benchmark", "--since", "2030-01-01"])
    assert empty.exit_code != 0
    assert "expected traces in the window" in str(empty.exception)
    assert "got none of the 242 stored" in str(empty.exception)


def test_train_twice_keeps_the_champion_and_force_moves_it_recording_why(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``sentinel train`` is the nightly retrain: same key, same rule, same registry."""
    from mlflow import MlflowClient

    runner = CliRunner()
    assert runner.invoke(app, ["demo"]).exit_code == 0  # version 1, promoted
    again = runner.invoke(app, ["train"])
    assert again.exit_code == 0, again.output
    assert "already registered as 1: already-champion" in again.output
    assert "champion: version 1" in again.output
    monkeypatch.setenv("SENTINEL_PROMOTE_MARGIN", "1.0")  # no challenger can win by 1.0
    kept = runner.invoke(app, ["train", "--method", "lr_11d"])
    assert kept.exit_code == 0, kept.output
    assert "registered as new version 2: kept-challenger: challenger median" in kept.output
    assert "does not beat champion's" in kept.output
    assert "champion: version 1" in kept.output
    forced = runner.invoke(app, ["train", "--method", "lr_11d", "--force"])
    assert forced.exit_code == 0, forced.output
    assert "already registered as 2: promoted: forced by the operator (--force)" in forced.output
    assert "champion: version 2" in forced.output
    client = MlflowClient(f"sqlite:///{home / 'mlflow.db'}")
    model = "entropy-sentinel-estimator"
    assert str(client.get_model_version_by_alias(model, "champion").version) == "2"
    tags = client.get_model_version(model, "2").tags
    assert tags["promotion"] == "promoted"
    assert tags["promotion_reason"].startswith("forced by the operator (--force) over the rule:")
    assert len(client.search_model_versions(f"name='{model}'")) == 2


def test_verify_labels_real_responses_once_and_reports_per_slice(home: Path) -> None:
    runner = CliRunner()
    runner.invoke(app, ["ingest", str(REAL_TRACES)])
    first = runner.invoke(app, ["verify", "--by", "benchmark", "--json"])
    again = runner.invoke(app, ["verify", "--json"])
    assert first.exit_code == 0, first.output
    counts = _last_json(first.output)
    assert isinstance(counts, dict)
    assert len(counts) == 14
    assert all(c["n"] == 1 and c["correct"] in (0, 1) for c in counts.values())
    assert "verified 0 new traces" in again.output
    assert _last_json(again.output) == counts


def test_labels_import_reads_a_csv_and_reports_unknown_ids(home: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    runner.invoke(app, ["ingest", str(REAL_TRACES)])
    first_id = json.loads(real_lines()[0])["id"]
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text(f"id,correct\n{first_id},1\nunknown-id,0\n")
    result = runner.invoke(app, ["labels", "import", str(csv_path)])
    assert result.exit_code == 0, result.output
    assert "labels: stored 1, already labelled 0, unknown trace ids 1" in result.output


def test_labels_import_rejects_a_value_that_is_not_0_or_1(home: Path, tmp_path: Path) -> None:
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text("id,correct\nx,maybe\n")
    result = CliRunner().invoke(app, ["labels", "import", str(csv_path)])
    assert result.exit_code != 0
    assert "expected 0/1 in column 'correct'" in str(result.exception)


def test_the_papers_classifier_can_be_trained_and_served_instead_of_the_default(
    home: Path,
) -> None:
    runner = CliRunner()
    runner.invoke(app, ["ingest", str(REAL_TRACES)])
    runner.invoke(app, ["verify"])
    trained = runner.invoke(app, ["train", "--method", "lr_11d", "--calibration", "sigmoid"])
    estimate = runner.invoke(app, ["estimate", "--by", "benchmark", "--no-use-labels", "--json"])
    assert trained.exit_code == 0, trained.output
    # 1 label per benchmark: no slice can be placed in a difficulty tier yet, so all pool.
    assert "trained lr_11d[calibration=sigmoid] on 14 of 14 labels (pooled" in trained.output
    rows = _last_json(estimate.output)
    assert isinstance(rows, list)
    assert {row["method"] for row in rows} == {"bootstrap"}
    # A calibrated classifier gives graded probabilities, not ATC's 0/1 decisions.
    assert any(0.0 < row["accuracy"] < 1.0 for row in rows)


def test_sentinel_nightly_runs_the_whole_loop_on_the_embedded_defaults(tmp_path: Path) -> None:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "SENTINEL_HOME": str(tmp_path / ".sentinel"),
        "SENTINEL_N_BOOTSTRAP": "200",
    }
    done = subprocess.run(
        [SENTINEL, "nightly", "--sample", "--budget", "12", "--key", "night-1"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "seeded the empty store: 134 labelled traces" in done.stdout
    assert "acquire: campaign acquire-night-1-benchmark-exact: labelled 12" in done.stdout
    assert "accuracy by benchmark" in done.stdout
    assert f"MLflow: sqlite:///{tmp_path / '.sentinel' / 'mlflow.db'}" in done.stdout
    again = subprocess.run(
        [SENTINEL, "nightly", "--sample", "--budget", "12", "--key", "night-1"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=900,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr[-3000:]
    assert "seeded" not in again.stdout
    assert "monitor: 0 new traces" in again.stdout
    assert "labelled 0, spent 12.0 labels" in again.stdout


@pytest.mark.parametrize(("given", "expected"), [(None, "120"), ("45", "45")])
def test_the_ephemeral_server_gets_time_to_start_unless_told_otherwise(
    given: str | None, expected: str
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    if given is not None:
        env["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = given
    code = (
        "import flows.cli\n"
        "from prefect.settings import PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS as s\n"
        "print(s.value())"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-1] == expected
