"""Commands that bring data in: ``ingest``, ``labels import``, ``verify``, ``collect``,
``proxy``, and ``status`` of the store."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from flows.cli.base import (
    DbOption,
    JsonFlag,
    app,
    check_by,
    console,
    engine_of,
    labels_app,
    out,
    progress_bar,
    settings_of,
)
from sentinel_core.errors import SentinelError, require_extra
from sentinel_core.settings import Settings


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

    settings = settings_of(ctx, db)
    for path in files:
        if not path.is_file():
            raise SentinelError(f"expected a readable JSONL file, got {str(path)!r} (no such file)")
    engine = engine_of(settings)
    total = EMPTY_REPORT
    broken: list[str] = []
    for path in files:
        # The bar counts decompressed bytes: a gzip file's size on disk is not its total.
        with path.open("rb") as probe:
            size = None if probe.read(2) == b"\x1f\x8b" else path.stat().st_size
        with progress_bar(f"ingest {path.name}", size, unit_bytes=True) as advance:
            try:
                report = ingest_file(
                    engine,
                    path,
                    batch_size=settings.store.ingest_batch_size,
                    keep_prompt=settings.store.keep_prompt_text
                    if keep_prompt is None
                    else keep_prompt,
                    dtype=settings.store.logprobs_dtype,
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
        engine_of(settings_of(ctx, db), create=False), rows, labeler=labeler
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
    settings = settings_of(ctx, db)
    counts = run_verify(settings, by=by)
    if as_json:
        out.print(json.dumps(counts), soft_wrap=True)


def run_verify(settings: Settings, *, by: str) -> dict[str, dict[str, int]]:
    from labeling.exact import LABELER, label_store
    from sentinel_core.store import count_rows, label_counts, load_metadata

    engine = engine_of(settings, create=False)
    check_by(load_metadata(engine), by)
    with progress_bar("verify", count_rows(engine)["traces"]) as advance:
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


@app.command()
def status(ctx: typer.Context, db: DbOption = None) -> None:
    """Row counts of the store and the most common quarantine reasons."""
    from sentinel_core.store import count_rows

    counts = count_rows(engine_of(settings_of(ctx, db), create=False))
    out.print(", ".join(f"{name} {count}" for name, count in counts.items()))


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

    require_extra("llm")
    from tasks.collect import collect as collect_responses

    settings = settings_of(ctx, db)
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
            engine_of(settings),
            prompts,
            base_url=base_url,
            model=model,
            max_tokens=settings.llm.max_tokens if max_tokens is None else max_tokens,
            concurrency=concurrency,
            api_key=settings.llm.api_key.get_secret_value() if settings.llm.api_key else None,
            limit=limit,
            benchmarks=chosen,
            timeout_s=settings.llm.timeout_s,
            max_retries=settings.llm.max_retries,
            keep_prompt=settings.store.keep_prompt_text,
            dtype=settings.store.logprobs_dtype,
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

    settings = settings_of(ctx, db)
    console.print(
        f"proxy on http://127.0.0.1:{port or settings.proxy.port}/v1 -> {upstream}; "
        f"spill file {spill_path(settings)}",
        highlight=False,
        soft_wrap=True,
    )
    serve(upstream, settings, port=port)
