"""Commands around the estimator: ``train`` (the nightly retrain flow), ``estimate``
and ``evaluate``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
import typer
from rich.table import Table

from flows.cli.base import (
    DbOption,
    JsonFlag,
    TrainMethod,
    app,
    check_by,
    check_out,
    console,
    engine_of,
    labelled_frame,
    out,
    progress_bar,
    settings_of,
)
from sentinel_core.errors import SentinelError
from sentinel_core.settings import Settings


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
            help="default (anchored_H_max: a calibrated lr_11d shifted per slice onto ATC "
            "on H_max's share, so as accurate per slice as ATC with a calibrated spread of "
            "P(correct); docs/estimator.md), lr_11d (the paper's), rf_11d, mlp_11d, "
            "atc_H_max, atc_H_mean, atc_H_sea, soft_atc_H_max, soft_atc_H_sea or anchored_H_max."
        ),
    ] = "default",
    calibration: Annotated[
        Literal["auto", "isotonic", "sigmoid"], typer.Option(help="Calibration of lr/rf/mlp.")
    ] = "auto",
    balanced: Annotated[bool, typer.Option(help="Balance the classes.")] = False,
    force: Annotated[
        bool,
        typer.Option(
            help="Make the new model champion even where the promotion rule keeps the one "
            "in service, or where its held-out error cannot be measured (labels in one "
            "slice); the registry records that it was forced."
        ),
    ] = False,
) -> None:
    """Train a challenger on the labels and promote it by the nightly retrain's rule."""
    from sentinel_core.store import load_metadata

    settings = settings_of(ctx, db)
    check_by(load_metadata(engine_of(settings, create=False)), by)  # before Prefect starts
    run_train(
        settings, by=by, method=method, calibration=calibration, balanced=balanced, force=force
    )


def run_train(
    settings: Settings,
    *,
    by: str,
    method: str,
    calibration: Literal["auto", "isotonic", "sigmoid"] = "auto",
    balanced: bool = False,
    force: bool = False,
) -> dict[str, Any]:
    """The ``retrain`` flow (the nightly one) on ``settings``; prints what it decided."""
    from flows.retrain import retrain

    with console.status(f"training a {method} challenger (Prefect flow 'retrain')"):
        report = retrain(
            by=by,
            method=method,
            calibration=calibration,
            balanced=balanced,
            force=force,
            settings=settings,
        )
    trained = report["supervision"]
    scores = report["challenger"]
    held_out = (
        "held-out error not measured (one slice)"
        if scores is None
        else f"median held-out slice error {scores['median_abs_error']:.3f}"
    )
    out.print(
        f"trained {report['recipe']} on {trained['n_trained']} of {trained['n_labelled']} "
        f"labels ({trained['strategy']}); {held_out}",
        highlight=False,
        markup=False,
        soft_wrap=True,
    )
    made = "registered as new version" if report["new_version"] else "already registered as"
    out.print(
        f"{made} {report['version']}: {report['verdict']}: {report['reason']}",
        highlight=False,
        markup=False,
        soft_wrap=True,
    )
    champion = report["version"] if report["verdict"] != "kept-challenger" else None
    out.print(
        f"champion: version {champion or report['champion_before']}",
        highlight=False,
        markup=False,
    )
    return report


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
    since: Annotated[
        datetime | None,
        typer.Option(help="Estimate only traffic created at or after this time (UTC)."),
    ] = None,
    until: Annotated[
        datetime | None, typer.Option(help="Estimate only traffic created before this time (UTC).")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Estimate every slice's accuracy with an interval (PPI where the slice has labels).

    Only the labels of the traces estimated are used: with --since/--until, the labels
    of traffic outside that window are left out, never mixed in.
    """
    print_estimates(
        settings_of(ctx, db),
        by=by,
        output=output,
        use_labels=use_labels,
        as_json=as_json,
        window=Window(since, until),
    )


@dataclass(frozen=True)
class Window:
    """The traffic an estimate covers: traces created in ``[since, until)`` (UTC)."""

    since: datetime | None = None
    until: datetime | None = None

    def select(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The rows of ``frame`` (a ``created`` column) inside the window."""
        created = pd.to_datetime(frame["created"], utc=True)
        keep = np.ones(len(frame), dtype=bool)
        if self.since is not None:
            keep &= (created >= _utc(self.since)).to_numpy()
        if self.until is not None:
            keep &= (created < _utc(self.until)).to_numpy()
        return frame[keep].reset_index(drop=True)

    def describe(self) -> str:
        """The window in words, for the line under the table."""
        if self.since is None and self.until is None:
            return "every stored trace"
        since = "the first" if self.since is None else _utc(self.since).isoformat()
        until = "now" if self.until is None else _utc(self.until).isoformat()
        return f"traces created from {since} until {until}"


def _utc(moment: datetime) -> pd.Timestamp:
    stamp = pd.Timestamp(moment)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def scored_slices(
    settings: Settings, *, by: str, use_labels: bool, window: Window | None = None
) -> tuple[Any, ...]:
    """Every trace's P(correct) from the champion, and every slice's estimate
    (``sentinel_core.monitoring.estimate_scored``, as in the nightly monitor), over the
    traces of ``window`` (default: all) and only their labels.

    Returns ``(frame, probs, estimates, served)``.
    """
    from sentinel_core.estimator import pinned_for, score_parts
    from sentinel_core.ledger import inclusion_of
    from sentinel_core.monitoring import Scored, estimate_scored
    from tasks.registry import load_champion

    frame = labelled_frame(settings, by)
    if frame.empty:
        raise SentinelError("expected traces in the store, got none: run `sentinel ingest` first")
    if window is not None:
        stored = len(frame)
        frame = window.select(frame)
        if frame.empty:
            raise SentinelError(
                f"expected traces in the window ({window.describe()}), got none of the "
                f"{stored} stored"
            )
    with console.status("loading the champion estimator"):
        served = load_champion(settings)
    probs, votes = score_parts(served.estimator, frame[list(served.feature_names)])
    inclusion, population = inclusion_of(
        engine_of(settings, create=False), frame["trace_id"].tolist()
    )
    scored = Scored(
        probs,
        frame["slice"].to_numpy(dtype=str),
        frame["label"].to_numpy(dtype=np.float64),
        inclusion,
        population,
        votes,
        pinned_for(served.estimator, frame["cut"].to_numpy()),
    ).anchored()
    probs = scored.p
    estimates = estimate_scored(
        scored if use_labels else scored.without_labels(),
        calibration_error=served.calibration_error,
        settings=settings,
    )
    return frame, probs, estimates, served


def print_estimates(
    settings: Settings,
    *,
    by: str,
    output: Path | None,
    use_labels: bool,
    as_json: bool,
    window: Window | None = None,
) -> None:
    check_out(output, (".csv", ".json"))
    window = window or Window()
    frame, _probs, estimates, served = scored_slices(
        settings, by=by, use_labels=use_labels, window=window
    )
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
    n_labels = int(frame["label"].notna().sum())
    out.print(
        f"{len(frame)} traces estimated ({window.describe()}); "
        + (
            f"{n_labels} of them labelled, and only those labels used"
            if use_labels
            else "labels not used (--no-use-labels)"
        )
        + f"; intervals at confidence {settings.monitor.confidence:g}.\n"
        "method: bootstrap = label-free (widened by the estimator's held-out error); "
        "ppi = prediction-powered with the slice's labels; active = the same, weighted by "
        "an active campaign's inclusion probabilities; wilson = every trace labelled; "
        "ppi_recent = label-free corrected by the slice's recent labels. labels: "
        "labelled traces in the slice; observed: their accuracy; too few: fewer than "
        f"{settings.monitor.min_slice_n} traces.",
        highlight=False,
        soft_wrap=True,
    )
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
    check_out(output, (".csv",))
    settings = settings_of(ctx, db)
    frame = labelled_frame(settings, by)
    labelled = frame[frame["label"].notna()]
    n_slices = labelled["slice"].nunique()
    if n_slices < 2:
        raise SentinelError(
            f"expected labelled traces in at least 2 slices of {by!r}, got {n_slices}"
        )
    total = sum(comb(n_slices, g) for g in range(1, min(max_g, n_slices - 1) + 1))
    with progress_bar("protocol groups", total) as advance:
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
