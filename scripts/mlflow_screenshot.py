"""Screenshot MLflow's UI for the docs: a real `mlflow server` and headless Chromium.

    .venv/bin/python scripts/mlflow_screenshot.py TRACKING_URI [--out docs/img] [--port 5077]

Starts `mlflow server` on 127.0.0.1 over the given tracking store (e.g.
sqlite:///.sentinel/mlflow.db, with its artifacts where the runs put them), finds
the latest nightly-loop runs with MlflowClient, and saves PNGs of the experiment's
run list and of the latest run's artifacts with Debian's `chromium --headless`
(install: apt-get install chromium). Stops the server at the end.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def wait_for(url: str, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(1.0)
    raise SystemExit(f"mlflow server did not answer {url} within {timeout_s:.0f} s")


def shoot(chromium: str, url: str, path: Path, *, height: int = 1100) -> None:
    subprocess.run(
        [
            chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
            f"--window-size=1920,{height}", "--virtual-time-budget=25000",
            f"--screenshot={path}", url,
        ],
        check=True, capture_output=True, timeout=180,
    )  # fmt: skip
    print(f"wrote {path} ({url})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tracking_uri")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img")
    parser.add_argument("--port", type=int, default=5077)
    args = parser.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("expected Debian's chromium on PATH (apt-get install chromium)")
    sys.path.insert(0, str(ROOT))
    import tasks

    tasks.switch_telemetry_off()  # done on import; here for mlflow below and its server (README)
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=args.tracking_uri)
    runs = [
        run
        for exp in client.search_experiments()
        for run in client.search_runs([exp.experiment_id], order_by=["start_time DESC"])
    ]
    if not runs:
        raise SystemExit(f"expected MLflow runs in {args.tracking_uri}, got none")
    latest = runs[0]
    server = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("mlflow")), "server", "--host", "127.0.0.1",
            "--port", str(args.port), "--backend-store-uri", args.tracking_uri,
            "--workers", "1",
        ],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        base = f"http://127.0.0.1:{args.port}"
        wait_for(f"{base}/health")
        args.out.mkdir(parents=True, exist_ok=True)
        exp = latest.info.experiment_id
        shoot(chromium, f"{base}/#/experiments/{exp}/runs", args.out / "mlflow-runs.png")
        # The latest run of each kind, opened on the chart people look at.
        wanted = {
            "monitor": "charts/slices.png",
            "acquire": "labelled.csv",
            "retrain": "charts/held_out.png",
        }
        for kind, artifact in wanted.items():
            run = next((r for r in runs if (r.info.run_name or "").startswith(kind)), None)
            if run is None:
                continue
            shoot(
                chromium,
                f"{base}/#/experiments/{exp}/runs/{run.info.run_id}/artifacts/{artifact}",
                args.out / f"mlflow-{kind}.png",
                height=1300,
            )
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
