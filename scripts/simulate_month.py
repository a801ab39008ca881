"""A simulated month of nightly runs over the real traces, with a drift (run by hand).

    .venv/bin/python scripts/simulate_month.py [--nights 30] [--drift-night 10]
        [--per-route 32] [--budget 12] [--drift-to olympiadbench]
        [--out docs/simulated-month.md]

Production traffic is the shipped real corpus (corpus-dev + corpus-collected)
replayed: four routes, each served by one benchmark's responses (resampled with
replacement, new ids every night, metadata ``route``); from ``--drift-night`` on,
route ``r1``'s traffic switches from an easy benchmark (gsm8k) to a harder one
(``--drift-to``, default olympiadbench). Night 0 seeds a labelled history (the rest
of the corpus, route ``history``). Every night runs the ``nightly`` flow by route:
monitor, acquire (exact verifier, ``--budget`` labels, key = the night), retrain.
The report shows, per night, the alerts, the labels bought per route, and r1's
estimate against its true accuracy that night (from the datasheet labels, never
shown to the flows), then r1's mean error before and after the drift.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sentinel_core.corpus import iter_sample_records  # noqa: E402
from sentinel_core.ingest import ingest_records  # noqa: E402
from sentinel_core.settings import Settings  # noqa: E402
from sentinel_core.store import add_labels, open_store  # noqa: E402

CORPORA = ("corpus-dev", "corpus-collected")
ROUTES = {"r1": "gsm8k", "r2": "svamp", "r3": "theoremqa", "r4": "mathqa"}
DRIFT_TO = "olympiadbench"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nights", type=int, default=30)
    parser.add_argument("--drift-night", type=int, default=10)
    # At least min_slice_n (30): drift alerts skip slices flagged too few.
    parser.add_argument("--per-route", type=int, default=32)
    parser.add_argument("--budget", type=float, default=12)
    parser.add_argument("--drift-to", default=DRIFT_TO, help="benchmark r1 serves after the drift")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "simulated-month.md")
    args = parser.parse_args()
    from flows.nightly import nightly

    pairs = [pair for name in CORPORA for pair in iter_sample_records(name)]
    by_benchmark: dict[str, list[tuple[dict[str, Any], int]]] = {}
    for record, label in pairs:
        by_benchmark.setdefault(record["metadata"]["benchmark"], []).append((record, label))
    served = set(ROUTES.values()) | {args.drift_to}
    home = Path(tempfile.mkdtemp(prefix="sentinel-month-"))
    url = f"sqlite:///{home / 'sentinel.db'}"
    settings = Settings(db_url=url, tracking_uri=f"sqlite:///{home / 'mlflow.db'}", home=str(home))
    engine = open_store(url)
    history = [
        (r | {"metadata": {**r["metadata"], "route": f"history-{b}"}}, y)
        for b, items in by_benchmark.items()
        if b not in served
        for r, y in items
    ]
    ingest_records(engine, (r for r, _ in history), source="history")
    add_labels(engine, ((r["id"], bool(y), None) for r, y in history), labeler="import")
    rng = np.random.default_rng(0)
    rows = []
    for night in range(1, args.nights + 1):
        truth: dict[str, list[int]] = {}
        batch = []
        for route, benchmark in ROUTES.items():
            source = args.drift_to if route == "r1" and night >= args.drift_night else benchmark
            items = by_benchmark[source]
            for i in rng.integers(0, len(items), size=args.per_route):
                record, label = items[int(i)]
                copy = dict(record)
                copy["id"] = f"n{night:02d}-{route}-{len(batch)}-{record['id']}"
                copy["metadata"] = {**record["metadata"], "route": route}
                batch.append(copy)
                truth.setdefault(route, []).append(label)
        ingest_records(engine, batch, source=f"night-{night:02d}")
        result = nightly(
            by="route", budget=args.budget, key=f"night-{night:02d}", settings=settings
        )
        slices = {s["slice"]: s for s in result["monitor"]["slices"]}
        r1 = slices.get("r1", {})
        per_slice = ((result.get("acquire") or {}).get("run") or {}).get("per_slice", {})
        bought = {k: int(v["labelled"]) for k, v in per_slice.items() if v["labelled"]}
        retrain = result.get("retrain") or {}
        rows.append(
            {
                "night": night,
                "r1_source": args.drift_to if night >= args.drift_night else ROUTES["r1"],
                "r1_truth": float(np.mean(truth["r1"])),
                "r1_estimate": r1.get("accuracy"),
                "r1_low": r1.get("low"),
                "r1_high": r1.get("high"),
                "alerts": [a["slice"] for a in result["monitor"]["alerts"]],
                "bought": bought,
                "version": retrain.get("version"),
                "verdict": retrain.get("verdict"),
            }
        )
        print(rows[-1], file=sys.stderr)
    write_report(args, rows)


def write_report(args: argparse.Namespace, rows: list[dict[str, Any]]) -> None:
    lines = [
        "# A simulated month of nightly runs",
        "",
        "Made by `scripts/simulate_month.py` (figures from its last run). Four routes "
        f"({', '.join(f'{k}: {v}' for k, v in ROUTES.items())}), {args.per_route} responses "
        f"each per night, resampled from the real corpus; from night {args.drift_night} "
        f"r1 serves {args.drift_to}. Budget {args.budget:g} labels a night, exact verifier.",
        "",
        "| night | r1 serves | r1 true | r1 estimate [low, high] | alerts | labels bought | "
        "champion |",
        "| ---: | --- | ---: | --- | --- | --- | --- |",
    ]
    for r in rows:
        est = (
            ""
            if r["r1_estimate"] is None
            else f"{r['r1_estimate']:.2f} [{r['r1_low']:.2f}, {r['r1_high']:.2f}]"
        )
        bought = ", ".join(f"{k} {v}" for k, v in sorted(r["bought"].items()))
        lines.append(
            f"| {r['night']} | {r['r1_source']} | {r['r1_truth']:.2f} | {est} | "
            f"{', '.join(r['alerts'])} | {bought} | v{r['version']} ({r['verdict']}) |"
        )
    lines += ["", *summary(args, rows)]
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


def summary(args: argparse.Namespace, rows: list[dict[str, Any]]) -> list[str]:
    """r1's mean absolute estimate error before the drift, just after it, and at the end."""

    def error(part: list[dict[str, Any]]) -> str:
        errors = [
            abs(r["r1_estimate"] - r["r1_truth"]) for r in part if r["r1_estimate"] is not None
        ]
        return f"{np.mean(errors):.2f} (nights {part[0]['night']}-{part[-1]['night']})"

    drift = args.drift_night - 1
    alerts = [f"{r['night']} ({', '.join(r['alerts'])})" for r in rows if r["alerts"]]
    return [
        f"r1 mean |estimate - truth|: before the drift {error(rows[:drift])}; first three "
        f"drift nights {error(rows[drift : drift + 3])}; last five nights {error(rows[-5:])}.",
        f"Nights with alerts: {'; '.join(alerts) or 'none'}.",
    ]


if __name__ == "__main__":
    main()
