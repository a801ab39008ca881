"""The deployments of ``prefect.yaml`` on a real Prefect server, run by a process worker.

``scripts/prefect-server start`` starts ``prefect server`` on 127.0.0.1 (a free port,
its own PREFECT_HOME under the test's temporary folder) and a process worker on the
``sentinel-process`` pool; ``scripts/prefect-server deploy`` runs ``prefect deploy
--all`` from the repository root. The test then runs the ``monitor`` deployment with
``prefect deployment run --watch`` and reads the result back: the flow run's final
state from the API, the monitor run it stored in the trace store, the champion it
registered in the MLflow store. Everything goes through subprocesses with an explicit
environment, so nothing here touches the Prefect test harness of ``tests/flows``.
This directory is apart from ``tests/flows`` for that reason.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from sentinel_core.corpus import iter_sample_records
from sentinel_core.ingest import ingest_records
from sentinel_core.runs import last_run
from sentinel_core.store import add_labels, open_store

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = str(ROOT / "scripts" / "prefect-server")
PREFECT = str(Path(sys.executable).with_name("prefect"))
MODEL = "entropy-sentinel-estimator"


def prefect(env: dict[str, str], *args: str, timeout: float = 300) -> str:
    done = subprocess.run(
        [PREFECT, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, (
        f"prefect {' '.join(args)}: {done.stdout[-2000:]}{done.stderr[-2000:]}"
    )
    return done.stdout


def test_the_monitor_deployment_runs_through_the_process_worker(
    server_env: dict[str, str], tmp_path: Path
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    store_url = f"sqlite:///{home / 'sentinel.db'}"
    tracking_uri = f"sqlite:///{home / 'mlflow.db'}"
    records = list(iter_sample_records())
    engine = open_store(store_url)
    ingest_records(engine, (r for r, _ in records), source="sample")
    add_labels(engine, ((r["id"], bool(y), None) for r, y in records), labeler="import")

    deployed = subprocess.run(
        [SCRIPT, "deploy"], env=server_env, capture_output=True, text=True, timeout=300
    )
    assert deployed.returncode == 0, deployed.stdout[-2000:] + deployed.stderr[-2000:]
    nightly = json.loads(
        prefect(server_env, "deployment", "inspect", "nightly/nightly", "-o", "json")
    )
    assert [s["schedule"]["cron"] for s in nightly["schedules"]] == ["0 2 * * *"]
    assert nightly["work_pool_name"] == "sentinel-process"
    # Deployed runs retry once, five minutes on (direct calls do not: flows/settings.py).
    env = nightly["job_variables"]["env"]
    assert env["PREFECT_FLOWS_DEFAULT_RETRIES"] == "1"
    assert env["PREFECT_FLOWS_DEFAULT_RETRY_DELAY_SECONDS"] == "300"

    # One settings object, as the Prefect UI's form for the deployment builds it.
    params = {
        "by": "benchmark",
        "settings": {
            "home": str(home),
            "store": {"db_url": store_url},
            "tracking": {"mlflow_tracking_uri": tracking_uri},
        },
    }
    out = prefect(
        server_env,
        "deployment", "run", "monitor/monitor", "--params", json.dumps(params),
        "--watch", "--watch-timeout", "280",
    )  # fmt: skip
    run_id = next(line.split()[-1] for line in out.splitlines() if "UUID:" in line)
    flow_run = json.loads(prefect(server_env, "flow-run", "inspect", run_id, "-o", "json"))
    assert flow_run["state"]["type"] == "COMPLETED", flow_run["state"]
    assert flow_run["work_pool_name"] == "sentinel-process"
    assert flow_run["infrastructure_pid"]  # a process the worker started

    # What the run did, read back from the stores it was pointed at.
    recorded = last_run(engine, slice_key="benchmark")
    assert recorded is not None
    assert recorded.flow_run_id == run_id
    assert recorded.n_traces == len(records)
    from mlflow import MlflowClient

    champion = MlflowClient(tracking_uri).get_model_version_by_alias(MODEL, "champion")
    assert str(champion.version) == "1"
    engine.dispose()
