"""What a flow run derives from its one ``Settings`` object: the task runner.

Every flow takes ``settings: Settings | None`` (``None``: from the environment, as a
deployment's run gets them) and hands that same object to its tasks and subflows.
"""

from __future__ import annotations

from typing import Any

from prefect.task_runners import ThreadPoolTaskRunner

from sentinel_core.errors import require_extra
from sentinel_core.settings import Settings

#: Seconds after which a flow run is failed: far above a normal night's work, so only a
#: hung call trips it. Flow retries are set where the flows are deployed (prefect.yaml:
#: PREFECT_FLOWS_DEFAULT_RETRIES in the worker's job environment), not here, so a direct
#: call (the CLI, a test) fails at once instead of waiting to try again.
TIMEOUT_S = {"monitor": 3 * 3600, "retrain": 2 * 3600, "acquire": 12 * 3600, "nightly": 18 * 3600}


def task_runner(settings: Settings) -> Any:
    """The task runner ``Settings.task_runner`` names, sized by the settings.

    ``"thread"``: Prefect's thread pool in the flow's process, ``thread_workers`` threads
    (Prefect's own default is unbounded, and every chunk in flight holds its rows).
    ``"dask"``: ``prefect_dask.DaskTaskRunner`` on the running cluster at
    ``dask_address``, or else on a local cluster of ``dask_workers`` processes, one
    thread each (the estimator limits BLAS to one thread anyway).
    """
    if settings.runner.task_runner == "dask":
        require_extra("dask")
        from prefect_dask import DaskTaskRunner

        if settings.runner.dask_address:
            return DaskTaskRunner(address=settings.runner.dask_address)

        return DaskTaskRunner(
            cluster_kwargs={
                "n_workers": settings.runner.dask_workers,
                "threads_per_worker": 1,
                "processes": True,
                "dashboard_address": None,
            }
        )
    return ThreadPoolTaskRunner(max_workers=settings.runner.thread_workers)
