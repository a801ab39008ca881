"""The ``sentinel`` command line (typer + rich).

Every command takes ``--db URL`` (default: the SQLite file of the settings).
Errors the user can fix print one line and exit with status 2; nothing prints
a traceback for bad paths, URLs or inputs.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Literal, NoReturn

import numpy as np
import pandas as pd
import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)
from rich.table import Table
from sqlalchemy import Engine

from labeling.campaign import LabelerKind
from sentinel_core.acquisition import Unit
from sentinel_core.errors import MissingStoreError, SentinelError
from sentinel_core.settings import Settings

app = typer.Typer(
    name="sentinel",
    help="Entropy Sentinel: per-slice LLM accuracy estimates from decoding entropy.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
labels_app = typer.Typer(help="Import labels into the store.", no_args_is_help=True)
app.add_typer(labels_app, name="labels")

console = Console(stderr=True)
# Tables keep their columns when piped to a file or CI log (rich assumes 80 there).
out = Console(width=None if Console().is_terminal else 140)

DbOption = Annotated[
    str | None,
    typer.Option(
        "--db", help="SQLAlchemy URL of the trace store (default: settings' SQLite file)."
    ),
]
JsonFlag = Annotated[
    bool, typer.Option("--json", help="End the output with one JSON object on its own line.")
]
#: ``sentinel_core.estimator.SERVABLE_METHODS`` (a test keeps them equal; the CLI's
#: choices are checked before anything runs, without importing scikit-learn).
TrainMethod = Literal[
    "default",
    "lr_11d",
    "rf_11d",
    "mlp_11d",
    "atc_H_max",
    "atc_H_mean",
    "atc_H_sea",
    "soft_atc_H_max",
    "soft_atc_H_sea",
]


@app.callback()
def _root(ctx: typer.Context) -> None:
    """Build the settings once per invocation; commands read them from the context."""
    ctx.obj = Settings()


def _settings(ctx: typer.Context, db: str | None = None) -> Settings:
    settings = ctx.find_root().obj
    if not isinstance(settings, Settings):
        settings = Settings()
    return settings if db is None else settings.model_copy(update={"db_url": db})


def _engine(settings: Settings, *, create: bool = True) -> Engine:
    """The store; ``create=False`` for commands that need one to exist (nothing is made)."""
    from sentinel_core.store import open_store

    return open_store(settings.store_url, create=create)


def _check_by(metadata: Iterable[Any], by: str) -> None:
    """``--by`` must be a metadata key of the stored traces; a note on those that lack it."""
    from sentinel_core.slices import check_slice_key

    missing, n = check_slice_key(metadata, by)
    if missing:
        console.print(
            f"note: {missing} of {n} traces lack metadata key {by!r}: they fall into the "
            "slice (missing)",
            highlight=False,
            soft_wrap=True,
        )


def _check_budget(budget: float) -> None:
    if not budget > 0:
        raise SentinelError(f"expected --budget > 0, got {budget:g}: a budget buys labels")


def _check_out(output: Path | None, suffixes: tuple[str, ...]) -> None:
    """Check ``--out`` before any work: its suffix, and a folder that exists to write in."""
    if output is None:
        return
    if output.suffix not in suffixes:
        raise SentinelError(
            f"expected --out to end in {' or '.join(suffixes)}, got {str(output)!r}"
        )
    if not output.parent.is_dir():
        raise SentinelError(
            f"expected --out in an existing folder, got {str(output)!r} "
            f"(no folder {str(output.parent)!r})"
        )


@contextmanager
def _progress(
    description: str, total: float | None, *, unit_bytes: bool = False
) -> Iterator[Callable[[float], None]]:
    columns: list[Any] = [TextColumn("[bold]{task.description}"), BarColumn()]
    columns += [TransferSpeedColumn()] if unit_bytes else [MofNCompleteColumn()]
    columns += [TaskProgressColumn(), TimeElapsedColumn()]
    with Progress(
        *columns, console=console, transient=True, disable=not console.is_terminal
    ) as bar:
        task = bar.add_task(description, total=total)
        yield lambda step: bar.advance(task, step)


@app.command()
def ingest(
    ctx: typer.Context,
    files: Annotated[list[Path], typer.Argument(help="JSONL files, plain or gzip.")],
    db: DbOption = None,
    keep_prompt: Annotated[
        bool | None, typer.Option(help="Store prompt text (default from settings: only its hash).")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Parse, validate, featurise and store traces; quarantine bad lines with their reason.

    A file that breaks part way (truncated or corrupt gzip, a last line cut short) keeps
    every complete line before the damage; the other files are still ingested, and the
    command ends with one line per broken file and exit status 2.
    """
    from sentinel_core.ingest import EMPTY_REPORT, DamagedFileError, ingest_file

    settings = _settings(ctx, db)
    for path in files:
        if not path.is_file():
            raise SentinelError(f"expected a readable JSONL file, got {str(path)!r} (no such file)")
    engine = _engine(settings)
    total = EMPTY_REPORT
    broken: list[str] = []
    for path in files:
        # The bar counts decompressed bytes: a gzip file's size on disk is not its total.
        with path.open("rb") as probe:
            size = None if probe.read(2) == b"\x1f\x8b" else path.stat().st_size
        with _progress(f"ingest {path.name}", size, unit_bytes=True) as advance:
            try:
                report = ingest_file(
                    engine,
                    path,
                    batch_size=settings.ingest_batch_size,
                    keep_prompt=settings.keep_prompt_text if keep_prompt is None else keep_prompt,
                    dtype=settings.logprobs_dtype,
                    on_progress=advance,
                )
            except DamagedFileError as exc:
                report = exc.report
                broken.append(
                    f"{' '.join(str(exc).split())}; stored {report.stored} of the {report.read} "
                    "responses read before the damage (rerun once the file is whole: what is "
                    "stored counts as duplicates)"
                )
        out.print(
            f"{path}: read {report.read} = stored {report.stored} + quarantined "
            f"{report.quarantined} + duplicates {report.duplicates}",
            highlight=False,
            soft_wrap=True,
        )
        total += report
    if len(files) > 1:
        out.print(
            f"total: read {total.read} = stored {total.stored} + quarantined "
            f"{total.quarantined} + duplicates {total.duplicates}"
        )
    if as_json:
        out.print(json.dumps(total.as_dict()), soft_wrap=True)
    for line in broken:
        console.print(f"[red]error:[/red] {escape(line)}", highlight=False, soft_wrap=True)
    if broken:
        sys.exit(2)


@labels_app.command("import")
def labels_import(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(help="CSV with a trace id column and a 0/1 column.")],
    db: DbOption = None,
    id_column: Annotated[str, typer.Option(help="Column holding the trace id.")] = "id",
    label_column: Annotated[str, typer.Option(help="Column holding 1 (correct) or 0.")] = "correct",
    labeler: Annotated[
        str, typer.Option(help="Kind of labeler these labels come from.")
    ] = "import",
) -> None:
    """Store labels from a CSV file (for example a datasheet's ``labels.csv``)."""
    from sentinel_core.store import add_labels

    if not path.is_file():
        raise SentinelError(f"expected a CSV file of labels, got {str(path)!r} (no such file)")
    try:
        rows = _read_labels(path, id_column, label_column)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise SentinelError(
            f"expected a UTF-8 CSV file of labels, got {str(path)!r}: {exc}"
        ) from exc
    stored, known, unknown = add_labels(
        _engine(_settings(ctx, db), create=False), rows, labeler=labeler
    )
    out.print(
        f"labels: stored {stored}, already labelled {known}, unknown trace ids {len(unknown)}"
    )


def _read_labels(
    path: Path, id_column: str, label_column: str
) -> list[tuple[str, bool, str | None]]:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        missing = {id_column, label_column} - set(reader.fieldnames or [])
        if missing:
            raise SentinelError(
                f"expected columns {id_column!r} and {label_column!r} in {path}, "
                f"got {reader.fieldnames}"
            )
        rows: list[tuple[str, bool, str | None]] = []
        for line_no, row in enumerate(reader, start=2):
            value = (row[label_column] or "").strip().lower()
            if value not in {"0", "1", "true", "false"}:
                raise SentinelError(
                    f"expected 0/1 in column {label_column!r} at {path}:{line_no}, got {value!r}"
                )
            rows.append((row[id_column] or "", value in {"1", "true"}, f"{path.name}:{line_no}"))
    return rows


@app.command()
def verify(
    ctx: typer.Context,
    db: DbOption = None,
    by: Annotated[str, typer.Option(help="Metadata key to report true accuracy by.")] = "benchmark",
    as_json: JsonFlag = False,
) -> None:
    """Label every trace whose metadata carries gold and kind with the exact verifier."""
    settings = _settings(ctx, db)
    counts = _verify(settings, by=by)
    if as_json:
        out.print(json.dumps(counts), soft_wrap=True)


def _verify(settings: Settings, *, by: str) -> dict[str, dict[str, int]]:
    from labeling.exact import LABELER, label_store
    from sentinel_core.store import count_rows, label_counts, load_metadata

    engine = _engine(settings, create=False)
    _check_by(load_metadata(engine), by)
    with _progress("verify", count_rows(engine)["traces"]) as advance:
        report = label_store(engine, on_progress=advance)
    out.print(
        f"verified {report.labelled} new traces ({report.correct} correct); "
        f"{report.without_gold} without gold/kind left unlabelled"
    )
    counts = label_counts(engine, labeler=LABELER, key=by)
    table = Table(title=f"true accuracy by {by} (exact verifier)")
    for column in (by, "n", "correct", "accuracy"):
        table.add_column(column, justify="left" if column == by else "right")
    for name, c in counts.items():
        table.add_row(name, str(c["n"]), str(c["correct"]), f"{c['correct'] / c['n']:.3f}")
    out.print(table)
    return counts


def _labelled_frame(settings: Settings, by: str) -> pd.DataFrame:
    from sentinel_core.features import ALL_SCORE_NAMES, FEATURE_SET_VERSION
    from sentinel_core.store import load_scores, slice_values

    engine = _engine(settings, create=False)
    frame = load_scores(engine, feature_set=FEATURE_SET_VERSION, names=ALL_SCORE_NAMES)
    _check_by(frame["metadata"], by)
    frame["slice"] = slice_values(frame["metadata"], by)
    return frame


@app.command()
def train(
    ctx: typer.Context,
    db: DbOption = None,
    by: Annotated[
        str, typer.Option(help="Metadata key of the slices used for held-out error.")
    ] = "benchmark",
    method: Annotated[
        TrainMethod,
        typer.Option(
            help="default (soft ATC on H_max: as accurate per slice as ATC, with a spread "
            "of P(correct); docs/estimator.md), lr_11d (the paper's), rf_11d, mlp_11d, "
            "atc_H_max, atc_H_mean, atc_H_sea, soft_atc_H_max or soft_atc_H_sea."
        ),
    ] = "default",
    calibration: Annotated[
        Literal["auto", "isotonic", "sigmoid"], typer.Option(help="Calibration of lr/rf/mlp.")
    ] = "auto",
    balanced: Annotated[bool, typer.Option(help="Balance the classes.")] = False,
    force: Annotated[
        bool,
        typer.Option(
            help="Register the model as champion even when its held-out error cannot be "
            "measured (labels in one slice only)."
        ),
    ] = False,
) -> None:
    """Fit the estimator on every labelled trace and serve it as the registry's champion."""
    _train(
        _settings(ctx, db),
        by=by,
        method=method,
        calibration=calibration,
        balanced=balanced,
        force=force,
    )


def _train(
    settings: Settings,
    *,
    by: str,
    method: str,
    calibration: Literal["auto", "isotonic", "sigmoid"],
    balanced: bool,
    force: bool = False,
) -> None:
    from sentinel_core.estimator import (
        estimate_held_out_calibration_error,
        fit_estimator,
        make_estimator,
    )
    from sentinel_core.features import FEATURE_NAMES, FEATURE_SET_VERSION
    from sentinel_core.metrics import auroc, brier, ece
    from tasks.registry import register_estimator

    frame = _labelled_frame(settings, by)
    labelled = frame[frame["label"].notna()]
    if labelled.empty:
        raise SentinelError(
            "expected labelled traces to train on, got none: label them with "
            "`sentinel verify` or `sentinel labels import` first"
        )
    slices = sorted(labelled["slice"].unique())
    if len(slices) < 2 and not force:
        raise SentinelError(
            f"expected labelled traces in at least 2 slices of {by!r} to measure the model's "
            f"held-out error (leave-one-slice-out), got 1 ({slices[0]!r}): without it the "
            "estimates' intervals cannot be widened for new slices; label traces of another "
            "slice, train --by a key with several values, or pass --force to register it anyway"
        )
    X = labelled[list(FEATURE_NAMES)]
    y = labelled["label"].to_numpy().astype(int)
    params: dict[str, Any] = {
        "calibration": calibration,
        "class_weight": "balanced" if balanced else None,
        "random_state": settings.seed,
    }
    estimator = make_estimator(method, **params)

    def factory() -> Any:
        # Leave-one-slice-out refits use fixed defaults: a grid search inside each
        # of B refits would multiply training time by the grid size.
        return make_estimator(method, search=False, **params)

    with console.status(f"fitting {method} on {len(y)} labelled traces"):
        fit_estimator(estimator, X, y, groups=labelled["slice"].to_numpy())
        held_out = estimate_held_out_calibration_error(
            X, y, labelled["slice"].to_numpy(), estimator_factory=factory
        )
        probs = estimator.predict_proba(X)[:, 1]
    metrics = {
        "train_auroc": auroc(probs, y),
        "train_ece": ece(probs, y),
        "train_brier": brier(probs, y),
        "held_out_slice_error": held_out,
    }
    params = {"method": method, **params}
    with console.status("registering the estimator in MLflow"):
        served = register_estimator(
            settings,
            estimator,
            feature_set=FEATURE_SET_VERSION,
            feature_names=FEATURE_NAMES,
            # Unmeasured (one slice, --force): nothing bounds the error, so the label-free
            # interval is [0, 1] rather than the bare bootstrap (which covered 0.36 at g = 1).
            calibration_error=1.0 if np.isnan(held_out) else held_out,
            params={**params, "n_train": len(y), "slice_key": by},
            metrics=metrics,
            input_example=labelled[list(FEATURE_NAMES)].head(5),
        )
    out.print(
        f"trained {method} on {len(y)} labels ({int(y.sum())} correct); held-out slice error "
        f"{held_out:.3f}; registered version {served.version} as champion"
    )


@app.command()
def estimate(
    ctx: typer.Context,
    by: Annotated[str, typer.Option(help="Metadata key that defines the slices.")],
    db: DbOption = None,
    output: Annotated[
        Path | None, typer.Option("--out", help="Also write the table to this .csv or .json file.")
    ] = None,
    use_labels: Annotated[
        bool, typer.Option(help="Use stored labels (PPI); --no-use-labels gives label-free only.")
    ] = True,
    as_json: JsonFlag = False,
) -> None:
    """Estimate every slice's accuracy with an interval (PPI where the slice has labels)."""
    _estimate(_settings(ctx, db), by=by, output=output, use_labels=use_labels, as_json=as_json)


def _scored_slices(settings: Settings, *, by: str, use_labels: bool) -> tuple[Any, ...]:
    """Every trace's P(correct) from the champion, and every slice's estimate.

    Returns ``(frame, probs, estimates, served)``.
    """
    from sentinel_core.slices import estimate_slices, estimate_slices_with_labels
    from tasks.registry import load_champion

    frame = _labelled_frame(settings, by)
    if frame.empty:
        raise SentinelError("expected traces in the store, got none: run `sentinel ingest` first")
    with console.status("loading the champion estimator"):
        served = load_champion(settings)
    probs = served.estimator.predict_proba(frame[list(served.feature_names)])[:, 1]
    options = {
        "calibration_error": served.calibration_error,
        "confidence": settings.confidence,
        "n_boot": settings.n_bootstrap,
        "min_n": settings.min_slice_n,
        "seed": settings.seed,
    }
    keys, labels = frame["slice"].to_numpy(), frame["label"].to_numpy()
    estimates = (
        estimate_slices_with_labels(probs, keys, labels, **options)
        if use_labels
        else estimate_slices(probs, keys, **options)
    )
    return frame, probs, estimates, served


def _estimate(
    settings: Settings, *, by: str, output: Path | None, use_labels: bool, as_json: bool
) -> None:
    _check_out(output, (".csv", ".json"))
    frame, _probs, estimates, served = _scored_slices(settings, by=by, use_labels=use_labels)
    observed = frame.groupby("slice")["label"].agg(["mean", "count"])
    rows = []
    for e in estimates:
        row = e.to_dict()
        row["observed"] = (
            float(observed.loc[e.slice, "mean"]) if observed.loc[e.slice, "count"] else None
        )
        row["n_observed"] = int(observed.loc[e.slice, "count"])
        rows.append(row)
    _print_slices(rows, by, served.version)
    if output is not None:
        if output.suffix == ".csv":
            pd.DataFrame(rows).to_csv(output, index=False)
        else:
            output.write_text(json.dumps(rows, indent=2))
        out.print(f"wrote {output}")
    if as_json:
        out.print(json.dumps(rows), soft_wrap=True)


def _print_slices(rows: list[dict[str, Any]], by: str, version: str) -> None:
    table = Table(title=f"accuracy by {by} (estimator version {version})")
    columns = ("slice", "n", "estimate", "low", "high", "method", "labels", "observed", "flag")
    for column in columns:
        table.add_column(
            column, justify="left" if column in {"slice", "method", "flag"} else "right"
        )
    for row in rows:
        observed = "" if row["observed"] is None else f"{row['observed']:.3f}"
        table.add_row(
            row["slice"],
            str(row["n"]),
            f"{row['accuracy']:.3f}",
            f"{row['low']:.3f}",
            f"{row['high']:.3f}",
            row["method"],
            str(row["n_observed"]),
            observed,
            "too few" if row["too_few"] else "",
        )
    out.print(table)


@app.command()
def evaluate(
    ctx: typer.Context,
    by: Annotated[str, typer.Option(help="Metadata key that defines the slices.")],
    db: DbOption = None,
    max_g: Annotated[int, typer.Option(min=1, max=6, help="Largest training group size.")] = 4,
    methods: Annotated[
        str | None, typer.Option(help="Comma-separated methods (default: all).")
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--out", help="Write the tidy table as CSV.")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Run the group protocol: train on every group of g slices, evaluate on the rest."""
    from math import comb

    from sentinel_core.features import ALL_SCORE_NAMES
    from sentinel_core.protocol import check_methods, run_group_protocol, summarise_protocol

    chosen = None if methods is None else [m.strip() for m in methods.split(",") if m.strip()]
    if chosen is not None:
        check_methods(chosen, ALL_SCORE_NAMES)
    _check_out(output, (".csv",))
    settings = _settings(ctx, db)
    frame = _labelled_frame(settings, by)
    labelled = frame[frame["label"].notna()]
    n_slices = labelled["slice"].nunique()
    if n_slices < 2:
        raise SentinelError(
            f"expected labelled traces in at least 2 slices of {by!r}, got {n_slices}"
        )
    total = sum(comb(n_slices, g) for g in range(1, min(max_g, n_slices - 1) + 1))
    with _progress("protocol groups", total) as advance:
        tidy = run_group_protocol(
            labelled[list(ALL_SCORE_NAMES)].reset_index(drop=True),
            labelled["label"].to_numpy().astype(int),
            labelled["slice"].to_numpy(),
            max_g=min(max_g, n_slices - 1),
            methods=chosen,
            progress=lambda done, _total: advance(1),
        )
    summary = summarise_protocol(tidy)
    table = Table(
        title=f"group protocol by {by}: {len(labelled)} labelled traces, {n_slices} slices"
    )
    for column in ("method", "g", "groups", "median AEE", "IQR AEE", "median rho", "floor"):
        table.add_column(column, justify="left" if column == "method" else "right")
    for row in summary.itertuples(index=False):
        table.add_row(
            str(row.method),
            str(row.g),
            str(row.n_groups),
            f"{row.median_aee:.3f}",
            f"{row.iqr_aee:.3f}",
            f"{row.median_rho:.3f}",
            f"{row.floor:.3f}",
        )
    out.print(table)
    if output is not None:
        tidy.to_csv(output, index=False)
        out.print(f"wrote {output}")
    if as_json:
        keys = ["method", "g", "median_aee", "iqr_aee", "median_rho"]
        records = [
            {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in r.items()}
            for r in summary[keys].to_dict(orient="records")
        ]
        out.print(json.dumps(records, default=float), soft_wrap=True)


@app.command()
def status(ctx: typer.Context, db: DbOption = None) -> None:
    """Row counts of the store and the most common quarantine reasons."""
    from sentinel_core.store import count_rows

    counts = count_rows(_engine(_settings(ctx, db), create=False))
    out.print(", ".join(f"{name} {count}" for name, count in counts.items()))


@app.command()
def demo(ctx: typer.Context, db: DbOption = None) -> None:
    """The main job on the embedded defaults: ingest the shipped real traces, train, estimate."""
    from sentinel_core.corpus import iter_sample_records
    from sentinel_core.ingest import ingest_records

    settings = _settings(ctx, db)
    engine = _engine(settings)
    report = ingest_records(
        engine, (record for record, _ in iter_sample_records()), source="sample:corpus-dev"
    )
    out.print(
        f"sample: read {report.read} = stored {report.stored} + quarantined "
        f"{report.quarantined} + duplicates {report.duplicates}"
    )
    _verify(settings, by="benchmark")
    _train(settings, by="benchmark", method="default", calibration="auto", balanced=False)
    out.print(
        "label-free estimates (the estimator saw these labels in training: in-sample; "
        "`sentinel evaluate --by benchmark` measures held-out error)"
    )
    _estimate(settings, by="benchmark", output=None, use_labels=False, as_json=False)
    out.print(f"store: {settings.store_url}   MLflow: {settings.tracking_uri}")


@app.command()
def nightly(
    ctx: typer.Context,
    db: DbOption = None,
    by: Annotated[str, typer.Option(help="Metadata key that defines the slices.")] = "benchmark",
    labeler: Annotated[LabelerKind, typer.Option(help="The kind of labeler.")] = "exact",
    budget: Annotated[float, typer.Option(help="The night's labeling budget (> 0).")] = 20.0,
    unit: Annotated[Unit, typer.Option(help="The budget's unit.")] = "labels",
    key: Annotated[
        str | None, typer.Option(help="Idempotency key of the night (default: UTC date).")
    ] = None,
    seed_sample: Annotated[
        bool, typer.Option(help="Seed an empty store with the shipped real traces.")
    ] = True,
) -> None:
    """The whole loop once: monitor, acquire labels, retrain (Prefect, ephemeral by default)."""
    _check_budget(budget)
    settings = _settings(ctx, db)
    _check_by(_nightly_metadata(settings, seed_sample=seed_sample), by)
    engine = _engine(settings)
    if seed_sample:
        _seed_sample(settings, engine)
    from flows.nightly import nightly as nightly_flow

    result = nightly_flow(
        by=by,
        db_url=settings.store_url,
        tracking_uri=settings.tracking_uri,
        home=str(settings.home),
        acquire=True,
        labeler=labeler,
        budget=budget,
        unit=unit,
        key=key,
    )
    monitored = result["monitor"]
    acquired = result.get("acquire") or {}
    retrained = result.get("retrain") or {}
    out.print(f"monitor: {monitored.get('n_traces', 0)} new traces")
    for line in monitored.get("report", []):
        out.print(f"  {line}", highlight=False)
    run = acquired.get("run") or {}
    if run:
        out.print(
            f"acquire: campaign {acquired.get('campaign_id')}: labelled {run.get('labelled')}, "
            f"spent {run.get('budget', {}).get('spent')} {unit}"
            + (f"; stopped: {run['stopped']}" if run.get("stopped") else ""),
            highlight=False,
            soft_wrap=True,
        )
    if retrained:
        out.print(
            f"retrain: version {retrained.get('version')} ({retrained.get('verdict')}): "
            f"{retrained.get('reason')}",
            highlight=False,
            soft_wrap=True,
        )
    _estimate(settings, by=by, output=None, use_labels=True, as_json=False)
    out.print(f"store: {settings.store_url}", highlight=False, soft_wrap=True)
    out.print(
        f"MLflow: {settings.tracking_uri} "
        f"(browse: mlflow ui --backend-store-uri {settings.tracking_uri})",
        highlight=False,
        soft_wrap=True,
    )


def _nightly_metadata(settings: Settings, *, seed_sample: bool) -> list[dict[str, Any]]:
    """What the night's ``--by`` is checked against before anything is written: the
    stored traces, or the shipped sample that an empty store is seeded with."""
    from sentinel_core.corpus import iter_sample_records
    from sentinel_core.store import load_metadata

    try:
        engine = _engine(settings, create=False)
    except MissingStoreError:
        stored = []
    else:
        stored = load_metadata(engine)
        engine.dispose()
    if stored or not seed_sample:
        return stored
    return [
        dict(record.get("metadata") or {})
        for name in ("corpus-dev", "corpus-collected")
        for record, _ in iter_sample_records(name)
    ]


def _seed_sample(settings: Settings, engine: Engine) -> None:
    """An empty store gets corpus-dev, labelled, and corpus-collected as unlabelled traffic."""
    from labeling.exact import label_store
    from sentinel_core.corpus import iter_sample_records
    from sentinel_core.ingest import ingest_records
    from sentinel_core.store import count_rows

    if count_rows(engine)["traces"]:
        return
    dev = ingest_records(
        engine, (r for r, _ in iter_sample_records("corpus-dev")), source="sample:corpus-dev",
        keep_prompt=True,
    )  # fmt: skip
    labelled = label_store(engine)
    new = ingest_records(
        engine,
        (r for r, _ in iter_sample_records("corpus-collected")),
        source="sample:corpus-collected",
        keep_prompt=True,
    )
    out.print(
        f"seeded the empty store: {dev.stored} labelled traces (exact verifier: "
        f"{labelled.correct} correct) and {new.stored} unlabelled ones as new traffic"
    )


@app.command()
def collect(
    ctx: typer.Context,
    prompts: Annotated[
        Path, typer.Argument(help="Prompts JSONL: id, benchmark, question, gold, kind.")
    ],
    base_url: Annotated[
        str, typer.Option(help="OpenAI-compatible base URL, e.g. http://127.0.0.1:8089/v1.")
    ],
    model: Annotated[str, typer.Option(help="Model name sent with every request.")],
    db: DbOption = None,
    limit: Annotated[
        int | None, typer.Option(min=1, help="Send at most this many new prompts.")
    ] = None,
    benchmarks: Annotated[
        str | None, typer.Option(help="Comma-separated benchmarks to keep (default: all).")
    ] = None,
    concurrency: Annotated[int, typer.Option(min=1, max=64, help="Requests in flight.")] = 2,
    max_tokens: Annotated[
        int | None, typer.Option(min=1, help="Most tokens per response (default from settings).")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Send the prompts not yet stored to an LLM server; store responses with top-20 logprobs."""
    import time

    from tasks.collect import collect as collect_responses

    settings = _settings(ctx, db)
    chosen = None if benchmarks is None else [b.strip() for b in benchmarks.split(",") if b.strip()]
    with Progress(
        TextColumn("[bold]collect"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    ) as bar:
        task = bar.add_task("collect", total=None, rate="")
        started = time.monotonic()

        def advance(done: int, total: int, tokens: int) -> None:
            elapsed = time.monotonic() - started
            rate = f"{tokens / elapsed:.1f} tok/s" if elapsed > 0 and tokens else ""
            bar.update(task, completed=done, total=total, rate=rate)

        report = collect_responses(
            _engine(settings),
            prompts,
            base_url=base_url,
            model=model,
            max_tokens=settings.llm_max_tokens if max_tokens is None else max_tokens,
            concurrency=concurrency,
            api_key=settings.llm_api_key.get_secret_value() if settings.llm_api_key else None,
            limit=limit,
            benchmarks=chosen,
            timeout_s=settings.llm_timeout_s,
            keep_prompt=settings.keep_prompt_text,
            dtype=settings.logprobs_dtype,
            on_progress=advance,
        )
    server = "n/a" if report.server_tokens_per_s is None else f"{report.server_tokens_per_s:.1f}"
    out.print(
        f"{prompts}: sent {report.sent} = stored {report.stored} + quarantined "
        f"{report.quarantined} + duplicates {report.duplicates}; skipped {report.skipped} "
        f"already stored; {report.completion_tokens} tokens in {report.wall_s:.1f} s "
        f"({report.client_tokens_per_s:.1f} tok/s; server reports {server} tok/s)"
    )
    if as_json:
        out.print(json.dumps(report.as_dict()), soft_wrap=True)


@app.command()
def proxy(
    ctx: typer.Context,
    upstream: Annotated[
        str, typer.Option(help="OpenAI-compatible base URL to forward to, e.g. http://h:8080/v1.")
    ],
    port: Annotated[
        int | None, typer.Option(min=1, max=65535, help="Port on 127.0.0.1 (default: settings).")
    ] = None,
    db: DbOption = None,
) -> None:
    """Serve an OpenAI-compatible logging proxy: every answer is stored with top-20 logprobs.

    Point the application's base_url at http://127.0.0.1:PORT/v1; slice keys come from
    X-Sentinel-<Key> headers or the request's metadata. GET /healthz, GET /metrics.
    """
    from proxy.app import serve, spill_path

    settings = _settings(ctx, db)
    console.print(
        f"proxy on http://127.0.0.1:{port or settings.proxy_port}/v1 -> {upstream}; "
        f"spill file {spill_path(settings)}",
        highlight=False,
        soft_wrap=True,
    )
    serve(upstream, settings, port=port)


def main() -> None:
    """Console entry point: one clear line and exit status 2 on a user-fixable error.

    That includes typer's usage errors (an unknown option, a value not among an
    option's choices, a missing argument), which it would otherwise print as a panel.
    """
    try:
        # standalone_mode=False: usage errors are raised here instead of printed by typer;
        # --help and Ctrl-C come back as an exit status.
        status = app(standalone_mode=False)
    except SentinelError as exc:
        _fail(str(exc))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        _fail(f"setting {where}: {first['msg']}")
    except typer.Abort:
        console.print("Aborted.", highlight=False)
        sys.exit(1)
    except typer.TyperException as exc:  # typer's click exceptions: usage errors and the like
        if type(exc).__name__ == "NoArgsIsHelpError":
            sys.exit(2)  # typer printed the help already
        _fail(_usage_line(exc))
    if isinstance(status, int) and not isinstance(status, bool) and status:
        sys.exit(status)


def _fail(message: str) -> NoReturn:
    # One line, whatever the underlying library put in its message.
    console.print(
        f"[red]error:[/red] {escape(' '.join(message.split()))}", highlight=False, soft_wrap=True
    )
    sys.exit(2)


def _usage_line(exc: typer.TyperException) -> str:
    """A usage error as one line: what was wrong, and the command whose --help says more."""
    message = exc.format_message().replace("Value error, ", "")
    ctx = getattr(exc, "ctx", None)
    command = getattr(ctx, "command_path", None)
    return f"{message} (see `{command} --help`)" if command else message


# The campaign commands live in their own module; registered last (they use the helpers above).
from flows.campaign_cli import campaign_app  # noqa: E402

app.add_typer(campaign_app, name="campaign")
