"""What every ``sentinel`` command shares: the typer app, the consoles, the option
types, and the checks that turn a user's mistake into one line before anything runs.

Every command takes ``--db URL`` (default: the SQLite file of the settings).
Errors the user can fix print one line and exit with status 2; nothing prints
a traceback for bad paths, URLs or inputs.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Literal, NoReturn

import pandas as pd
import typer
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
from sqlalchemy import Engine

from sentinel_core.errors import SentinelError
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
    "anchored_H_max",
]


@app.callback()
def _root(ctx: typer.Context) -> None:
    """Build the settings once per invocation; commands read them from the context."""
    ctx.obj = Settings()


def settings_of(ctx: typer.Context, db: str | None = None) -> Settings:
    settings = ctx.find_root().obj
    if not isinstance(settings, Settings):
        settings = Settings()
    return settings if db is None else settings.override(db_url=db)


def engine_of(settings: Settings, *, create: bool = True) -> Engine:
    """The store; ``create=False`` for commands that need one to exist (nothing is made)."""
    from sentinel_core.store import open_store

    return open_store(settings.store_url, create=create)


def check_by(metadata: Iterable[Any], by: str) -> None:
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


def check_budget(budget: float) -> None:
    if not budget > 0:
        raise SentinelError(f"expected --budget > 0, got {budget:g}: a budget buys labels")


def check_out(output: Path | None, suffixes: tuple[str, ...]) -> None:
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
def progress_bar(
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


def labelled_frame(settings: Settings, by: str) -> pd.DataFrame:
    from sentinel_core.features import ALL_SCORE_NAMES, FEATURE_SET_VERSION
    from sentinel_core.store import load_scores, slice_values

    engine = engine_of(settings, create=False)
    frame = load_scores(engine, feature_set=FEATURE_SET_VERSION, names=ALL_SCORE_NAMES)
    check_by(frame["metadata"], by)
    frame["slice"] = slice_values(frame["metadata"], by)
    return frame


def fail(message: str) -> NoReturn:
    # One line, whatever the underlying library put in its message.
    console.print(
        f"[red]error:[/red] {escape(' '.join(message.split()))}", highlight=False, soft_wrap=True
    )
    sys.exit(2)


def usage_line(exc: typer.TyperException) -> str:
    """A usage error as one line: what was wrong, and the command whose --help says more."""
    message = exc.format_message().replace("Value error, ", "")
    ctx = getattr(exc, "ctx", None)
    command = getattr(ctx, "command_path", None)
    return f"{message} (see `{command} --help`)" if command else message
