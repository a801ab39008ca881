"""The settings a flow run uses: the environment's, with the flow's explicit overrides.

Flows take plain strings (store URL, tracking URI, home folder) so their parameters
are JSON for the Prefect API and usable from the CLI; this builds the one
``Settings`` object of the run from them, at the edge, as STYLE.md asks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect.task_runners import ThreadPoolTaskRunner

from sentinel_core.settings import Settings


def flow_settings(
    *, db_url: str | None = None, tracking_uri: str | None = None, home: str | None = None
) -> Settings:
    """``Settings()`` with whichever of ``db_url``, ``tracking_uri``, ``home`` is given."""
    overrides: dict[str, Any] = {}
    if home is not None:
        overrides["home"] = Path(home)
    if db_url is not None:
        overrides["db_url"] = db_url
    if tracking_uri is not None:
        overrides["mlflow_tracking_uri"] = tracking_uri
    return Settings(**overrides)


def task_runner(settings: Settings) -> Any:
    """The task runner ``Settings.task_runner`` names, sized by the settings.

    ``"thread"``: Prefect's thread pool in the flow's process, ``thread_workers`` threads
    (Prefect's own default is unbounded, and every chunk in flight holds its rows).
    ``"dask"``: ``prefect_dask.DaskTaskRunner`` on the running cluster at
    ``dask_address``, or else on a local cluster of ``dask_workers`` processes, one
    thread each (the estimator limits BLAS to one thread anyway).
    """
    if settings.task_runner == "dask":
        from prefect_dask import DaskTaskRunner

        if settings.dask_address:
            return DaskTaskRunner(address=settings.dask_address)

        return DaskTaskRunner(
            cluster_kwargs={
                "n_workers": settings.dask_workers,
                "threads_per_worker": 1,
                "processes": True,
                "dashboard_address": None,
            }
        )
    return ThreadPoolTaskRunner(max_workers=settings.thread_workers)
