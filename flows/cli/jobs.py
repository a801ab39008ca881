"""The whole loop at once: ``nightly`` (the main job: the Prefect flows, ephemeral by
default; ``--sample`` seeds an empty store) and ``demo`` (the short path)."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from sqlalchemy import Engine

from flows.cli.base import DbOption, app, check_budget, check_by, engine_of, out, settings_of
from flows.cli.data import run_verify
from flows.cli.model import print_estimates, run_train
from labeling.campaign import LabelerKind
from sentinel_core.acquisition import Unit
from sentinel_core.errors import MissingStoreError, SentinelError
from sentinel_core.settings import Settings


@app.command()
def demo(ctx: typer.Context, db: DbOption = None) -> None:
    """The short path (the main job is `sentinel nightly --sample`): ingest the shipped real
    traces, verify, train, estimate."""
    from sentinel_core.corpus import iter_sample_records
    from sentinel_core.ingest import ingest_records

    settings = settings_of(ctx, db)
    engine = engine_of(settings)
    report = ingest_records(
        engine, (record for record, _ in iter_sample_records()), source="sample:corpus-dev"
    )
    out.print(
        f"sample: read {report.read} = stored {report.stored} + quarantined "
        f"{report.quarantined} + duplicates {report.duplicates}"
    )
    run_verify(settings, by="benchmark")
    run_train(settings, by="benchmark", method="default")
    out.print(
        "label-free estimates (the estimator saw these labels in training: in-sample; "
        "`sentinel evaluate --by benchmark` measures held-out error)"
    )
    print_estimates(settings, by="benchmark", output=None, use_labels=False, as_json=False)
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
        bool,
        typer.Option(
            "--sample/--no-sample",
            help="Seed an EMPTY store with the shipped real traces (a demo); never done "
            "unless asked, so a new production store stays empty.",
        ),
    ] = False,
) -> None:
    """The whole loop once: monitor, acquire labels, retrain (Prefect, ephemeral by default)."""
    check_budget(budget)
    settings = settings_of(ctx, db)
    metadata = _nightly_metadata(settings, seed_sample=seed_sample)
    if not metadata:
        raise SentinelError(
            f"expected traces in the store {settings.store_url}, got none: ingest traffic "
            "first (sentinel ingest, sentinel collect or sentinel proxy), or pass --sample "
            "to seed the shipped sample of real traces"
        )
    check_by(metadata, by)
    engine = engine_of(settings)
    if seed_sample:
        _seed_sample(settings, engine)
    from flows.nightly import nightly as nightly_flow

    result = nightly_flow(
        by=by,
        settings=settings,
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
    print_estimates(settings, by=by, output=None, use_labels=True, as_json=False)
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
        engine = engine_of(settings, create=False)
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
