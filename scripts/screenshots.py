"""Screenshot the Prefect UI, the nightly HTML report and Label Studio for the docs.

    apt-get install chromium                  # Debian's browser, /usr/bin/chromium
    python3 -m venv /tmp/shotenv && /tmp/shotenv/bin/pip install playwright
    /tmp/shotenv/bin/python scripts/screenshots.py [--out docs/img]

Playwright drives Debian's chromium (``executable_path``); it is NOT a project dependency
and needs no ``playwright install`` (no browser download). Run the script with the Python
of that separate virtualenv; the project's own commands run from .venv/ (scripts/bootstrap).

From scratch, in a temporary folder (SENTINEL_HOME, PREFECT_HOME, Label Studio's data dir;
removed at the end unless --keep):

1. ``scripts/prefect-server start`` with the UI on (127.0.0.1:4277), then
   ``sentinel nightly --sample`` against it (PREFECT_API_URL); saves the page of the
   monitor's markdown artifact (``monitor-benchmark``, published by the nightly run's
   monitor subflow): prefect-nightly-artifact.png. Stops the server.
2. The night's self-contained HTML report, <SENTINEL_HOME>/reports/*.html, opened with
   file:// (whole page): nightly-report.png.
3. ``scripts/label-studio start`` (127.0.0.1:8097), then ``sentinel campaign plan`` and
   ``campaign run`` with the label-studio labeler (SENTINEL_LABEL_STUDIO_SHOW_P_CORRECT=exact):
   12 tasks, each with its prediction. Creates a Data Manager tab ordered by prediction score
   (POST /api/dm/views), logs in as the admin scripts/label-studio created, and saves the
   tab (label-studio-data-manager.png) and the labeling stream on the task with the shortest
   response, its whole form in view (label-studio-labeling.png). Stops the server.

Takes about 1.5 minutes on 2 cores once Label Studio is installed (its first start: about 20 s;
``scripts/label-studio install`` the first time takes longer).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import subprocess
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

try:
    from playwright.sync_api import Page, sync_playwright
except ImportError:  # pragma: no cover - a message, not a dependency
    raise SystemExit(
        "expected playwright: python3 -m venv /tmp/shotenv && /tmp/shotenv/bin/pip install "
        "playwright, then run this script with /tmp/shotenv/bin/python (no playwright install: "
        "it drives Debian's chromium)"
    ) from None

ROOT = Path(__file__).resolve().parents[1]
SENTINEL = str(ROOT / ".venv" / "bin" / "sentinel")
#: Settings of the caller kept; other SENTINEL_* and PREFECT_* variables are dropped.
KEEP_ENV = {"SENTINEL_CACHE", "SENTINEL_PYTHON", "SENTINEL_TELEMETRY"}
VIEWPORT = {"width": 1400, "height": 1000}
LS_USER = "admin@example.com"
#: Data Manager columns hidden in the tab (the rest: id, annotations, prediction score, data).
LS_HIDDEN = [
    "inner_id", "completed_at", "cancelled_annotations", "total_predictions", "annotators",
    "annotations_results", "annotations_ids", "predictions_model_versions",
    "predictions_results", "file_upload", "storage_filename", "created_at", "updated_at",
    "updated_by", "avg_lead_time", "draft_exists",
]  # fmt: skip


def run(cmd: list[str], env: dict[str, str], **kwargs: Any) -> str:
    """Run a command from the repository root; its stdout, or exit with its output."""
    print("$", " ".join(cmd), flush=True)
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, **kwargs)
    if done.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done.stdout


def api(url: str, *, token: str | None = None, body: object = None, method: str = "GET") -> Any:
    headers = {"content-type": "application/json"}
    if token:
        headers["Authorization"] = f"Token {token}"
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def save(page: Page, path: Path, *, full_page: bool = False) -> None:
    page.wait_for_timeout(1500)  # fonts, late layout
    page.screenshot(path=str(path), full_page=full_page)
    print(f"wrote {path} ({path.stat().st_size // 1024} KB) from {page.url}", flush=True)


def prefect_shots(page: Page, env: dict[str, str], out: Path, port: int) -> None:
    server = [str(ROOT / "scripts" / "prefect-server")]
    api_url = run([*server, "start"], env).strip()
    try:
        run([SENTINEL, "nightly", "--sample"], {**env, "PREFECT_API_URL": api_url})
        artifacts = api(f"{api_url}/artifacts/filter", body={"limit": 50}, method="POST")
        monitor = [a for a in artifacts if (a["key"] or "").startswith("monitor-")]
        if not monitor:
            raise SystemExit(f"expected a monitor-* artifact on {api_url}, got {artifacts}")
        page.goto(f"http://127.0.0.1:{port}/artifacts/artifact/{monitor[0]['id']}")
        page.locator("table").first.wait_for(timeout=60_000)  # the rendered markdown table
        save(page, out / "prefect-nightly-artifact.png")
    finally:
        run([*server, "stop"], env)


def report_shot(page: Page, home: Path, out: Path) -> None:
    reports = sorted(glob.glob(str(home / "reports" / "*.html")))
    if not reports:
        raise SystemExit(f"expected a night report in {home / 'reports'}, got none")
    page.goto(Path(reports[-1]).as_uri(), wait_until="load")
    save(page, out / "nightly-report.png", full_page=True)


def label_studio_shots(page: Page, env: dict[str, str], data: Path, out: Path) -> None:
    script = str(ROOT / "scripts" / "label-studio")
    base = run([script, "start"], env).strip()
    try:
        token = run([script, "token"], env).strip()
        env = {
            **env,
            "SENTINEL_LABEL_STUDIO_URL": base,
            "SENTINEL_LABEL_STUDIO_API_KEY": token,
            "SENTINEL_LABEL_STUDIO_PROJECT": "entropy-sentinel",
            "SENTINEL_LABEL_STUDIO_SHOW_P_CORRECT": "exact",
        }
        plan = ["campaign", "plan", "--budget", "12", "--by", "benchmark"]
        run([SENTINEL, *plan, "--labeler", "label-studio", "--id", "shots"], env)
        run([SENTINEL, "campaign", "run", "shots", "--labeler", "label-studio"], env)
        projects = api(f"{base}/api/projects?page_size=100", token=token)["results"]
        project = next(p["id"] for p in projects if p["title"] == "entropy-sentinel")
        tasks = api(f"{base}/api/tasks?project={project}&page_size=100&fields=all", token=token)
        task = min(tasks["tasks"], key=lambda t: len(t["data"].get("response", "")))["id"]
        hidden = [f"tasks:{column}" for column in LS_HIDDEN]
        by_score = {
            "title": "by P(correct)",
            "ordering": ["tasks:predictions_score"],  # lowest first; "-tasks:..." reverses
            "hiddenColumns": {"explore": hidden, "labeling": hidden},
        }
        view = api(
            f"{base}/api/dm/views", token=token, method="POST",
            body={"project": project, "data": by_score},
        )["id"]  # fmt: skip
        page.goto(f"{base}/user/login/")
        page.fill("input[name=email]", LS_USER)
        page.fill("input[name=password]", (data / "admin-password").read_text().strip())
        page.click("button[type=submit]")
        page.wait_for_load_state("networkidle")
        if "/user/login" in page.url:
            raise SystemExit(f"expected to log in to {base} as {LS_USER}, stayed on the login page")
        page.goto(f"{base}/projects/{project}/data?tab={view}")
        page.get_by_text("Prediction score").first.wait_for(timeout=60_000)
        save(page, out / "label-studio-data-manager.png")
        # The labeling stream ("Label All Tasks"), what an annotator works in, on a tab holding
        # only that task. (Opening a task from the Data Manager's list instead pre-fills the
        # verdict from the prediction, whatever show_collab_predictions says.)
        one = {
            "title": f"task {task}",
            "filters": {
                "conjunction": "and",
                "items": [
                    {"filter": "filter:tasks:id", "operator": "equal", "type": "Number",
                     "value": task},
                ],
            },
        }  # fmt: skip
        view = api(
            f"{base}/api/dm/views", token=token, method="POST",
            body={"project": project, "data": one},
        )["id"]  # fmt: skip
        page.set_viewport_size({"width": 1400, "height": 1250})  # down to the verdict choices
        page.goto(f"{base}/projects/{project}/data?tab={view}&labeling=1")
        page.get_by_text("Reference answer").first.wait_for(timeout=60_000)
        page.wait_for_timeout(1000)
        page.keyboard.press("Escape")  # the instructions pop-up (shown on top of the task too)
        save(page, out / "label-studio-labeling.png")
    finally:
        run([script, "stop"], env)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img")
    parser.add_argument("--prefect-port", type=int, default=4277)
    parser.add_argument("--label-studio-port", type=int, default=8097)
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise SystemExit("expected Debian's chromium on PATH (apt-get install chromium)")
    if not Path(SENTINEL).exists():
        raise SystemExit(f"expected the project's virtualenv ({SENTINEL}): run scripts/bootstrap")
    args.out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="sentinel-shots-"))
    home, ls_data = tmp / "home", tmp / "label-studio"
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("SENTINEL_", "PREFECT_")) or key in KEEP_ENV
    }
    env |= {
        "SENTINEL_HOME": str(home),
        "PREFECT_HOME": str(tmp / "prefect"),
        "SENTINEL_PREFECT_HOME": str(tmp / "prefect"),
        "SENTINEL_PREFECT_PORT": str(args.prefect_port),
        "PREFECT_UI_ENABLED": "true",
        "SENTINEL_LS_DATA": str(ls_data),
        "SENTINEL_LS_PORT": str(args.label_studio_port),
        "SENTINEL_LS_USERNAME": LS_USER,
    }
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            page = browser.new_page(viewport=VIEWPORT)
            prefect_shots(page, env, args.out, args.prefect_port)
            report_shot(page, home, args.out)
            label_studio_shots(page, env, ls_data, args.out)
            browser.close()
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
