"""The ``sentinel`` command line (typer + rich): a package of thin commands.

``base`` holds the app, the consoles and the checks every command shares; ``data``,
``model``, ``jobs`` and ``campaign`` hold the commands, each a few lines over the
flows and the domain code. ``main`` is the console entry point.
"""

from __future__ import annotations

import sys

import typer
from pydantic import ValidationError

from flows.cli import data, jobs, model  # noqa: F401  (their commands register on ``app``)
from flows.cli.base import TrainMethod, app, console, fail, usage_line
from flows.cli.campaign import campaign_app
from sentinel_core.errors import SentinelError

__all__ = ["TrainMethod", "app", "main"]

app.add_typer(campaign_app, name="campaign")


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
        fail(str(exc))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        fail(f"setting {where}: {first['msg']}")
    except typer.Abort:
        console.print("Aborted.", highlight=False)
        sys.exit(1)
    except typer.TyperException as exc:  # typer's click exceptions: usage errors and the like
        if type(exc).__name__ == "NoArgsIsHelpError":
            sys.exit(2)  # typer printed the help already
        fail(usage_line(exc))
    if isinstance(status, int) and not isinstance(status, bool) and status:
        sys.exit(status)
