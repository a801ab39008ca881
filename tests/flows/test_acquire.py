"""The acquire flow labels the traffic the last monitor run described, not the whole store."""

from __future__ import annotations

from collections import Counter

from flows.acquire import acquire
from flows.monitor import monitor
from sentinel_core import ledger
from sentinel_core.ingest import ingest_records
from sentinel_core.runs import last_run_trace_ids
from sentinel_core.store import open_store
from tests.flows.conftest import Env, corpus_records, seed_store


def test_acquire_labels_only_the_traffic_the_last_monitor_run_covered(env: Env) -> None:
    dev, collected = corpus_records()[:134], corpus_records()[134:]
    seed_store(env.db_url, dev, source="labelled")
    engine = open_store(env.db_url)
    assert last_run_trace_ids(engine, slice_key="benchmark") is None
    monitor(**env.kwargs())
    assert set(last_run_trace_ids(engine, slice_key="benchmark") or []) == {r["id"] for r, _ in dev}
    ingest_records(engine, (r for r, _ in collected), source="new")
    report = monitor(**env.kwargs())
    new_ids = {r["id"] for r, _ in collected}
    assert set(last_run_trace_ids(engine, slice_key="benchmark") or []) == new_ids

    options = {"labeler": "exact", "budget": 12, "min_per_slice": 4, **env.kwargs()}
    latest = acquire(report["slices"], key="night-2", **options)
    bought = ledger.items(engine, latest["campaign_id"])
    assert len(bought) == 12
    assert {item.trace_id for item in bought} <= new_ids
    benchmark = {r["id"]: r["metadata"]["benchmark"] for r, _ in corpus_records()}
    n_new = Counter(benchmark[i] for i in new_ids)
    n_dev = Counter(r["metadata"]["benchmark"] for r, _ in dev)
    assert latest["plan"]["slices"]
    for s in latest["plan"]["slices"]:
        assert s["available"] == n_new[s["slice"]]

    # The whole store, on request: the dev traces (labelled by import, not by the exact
    # verifier) are candidates too, the ones the verifier just labelled are not.
    every = acquire(report["slices"], key="night-2-all", traffic="all", **options)
    done = Counter(benchmark[item.trace_id] for item in bought)
    for s in every["plan"]["slices"]:
        assert s["available"] == n_dev[s["slice"]] + n_new[s["slice"]] - done[s["slice"]]
    engine.dispose()


def test_an_active_campaign_labels_every_slice_and_its_labels_are_weighted_in_the_estimate(
    env: Env,
) -> None:
    from datetime import datetime

    from flows.cli.model import Window, scored_slices

    dev, collected = corpus_records()[:134], corpus_records()[134:]
    seed_store(env.db_url, dev, source="labelled")
    monitor(**env.kwargs())
    engine = open_store(env.db_url)
    ingest_records(engine, (r for r, _ in collected), source="new")
    report = monitor(**env.kwargs())
    # 4 labels a slice on average: the audit gives every slice 2, the allocation the rest.
    latest = acquire(report["slices"], key="night-2", labeler="exact", budget=56, **env.kwargs())
    assert latest["plan"]["design"] == "active"
    assert {s["slice"] for s in latest["plan"]["slices"]} == {
        r["metadata"]["benchmark"] for r, _ in collected
    }
    assert all(s["labels"] >= 2 for s in latest["plan"]["slices"])
    assert all(0.0 < item["pi"] <= 1.0 for item in latest["plan"]["items"])
    assert len(ledger.items(engine, latest["campaign_id"])) == 56

    # The new traffic's own estimate (created after the dev traces) weights each label by
    # the probability the plan gave it: method "active" in every slice.
    settings = env.settings()
    _frame, _probs, estimates, _served = scored_slices(
        settings, by="benchmark", use_labels=True, window=Window(datetime(2026, 11, 23, 19))
    )
    assert {e.method for e in estimates} == {"active"}
    assert sum(e.n_labelled for e in estimates) == 56
    assert sum(e.n for e in estimates) == len(collected)
    engine.dispose()
