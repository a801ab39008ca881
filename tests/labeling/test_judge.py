"""The LLM judge against a small OpenAI-compatible server started by the test itself.

The server (``tests/labeling/judge_server.py``) speaks the chat.completions wire
format with ``usage``; its verdicts are GENERATED (the reference string found
in the response or not) and its faults (429, 5xx, garbage, slowness, no usage)
are scripted per request.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from labeling.base import LabelingError, LabelRequest, SyncLabeler
from labeling.judge import (
    JUDGE_SYSTEM_PROMPT,
    NO_QUESTION,
    TEMPLATE_TOKENS,
    VERDICT_SCHEMA,
    JudgeLabeler,
    JudgeVerdict,
    parse_verdict,
)
from sentinel_core.corpus import iter_sample_records
from sentinel_core.settings import Settings
from tests.labeling.judge_server import JudgeServer, Step, running_judge_server

MODEL = "generated-judge"
PRICE_IN, PRICE_OUT = 3.0, 15.0  # USD per million tokens
KEY = "sk-test-DO-NOT-LEAK-4f1c2a"

REQUEST = LabelRequest(
    trace_id="gsm8k-7",
    question="Tom has 3 apples and buys 4 more. How many apples does he have?",
    response_text="3 + 4 = 7, so the answer is \\boxed{7}.",
    reference="7",
    kind="number",
)


@pytest.fixture
def server() -> Iterator[JudgeServer]:
    with running_judge_server() as fake:
        yield fake


def make_judge(url: str, **options: Any) -> JudgeLabeler:
    settings: dict[str, Any] = {
        "base_url": url,
        "model": MODEL,
        "api_key": KEY,
        "max_tokens": 64,
        "timeout_s": 5.0,
        "price_input_per_mtok": PRICE_IN,
        "price_output_per_mtok": PRICE_OUT,
        **options,
    }
    return JudgeLabeler(**settings)


@pytest.fixture
def judge(server: JudgeServer) -> Iterator[JudgeLabeler]:
    with make_judge(server.base_url) as labeler:
        yield labeler


def user_message(server: JudgeServer, i: int = 0) -> str:
    return str(server.requests[i]["messages"][-1]["content"])


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def corpus() -> list[dict[str, Any]]:
    """The shipped real responses (wrapper records) of corpus-dev."""
    return [record for record, _ in iter_sample_records("corpus-dev")]


def corpus_request(record: dict[str, Any]) -> LabelRequest:
    return LabelRequest(
        trace_id=record["id"],
        response_text=record["response"]["choices"][0]["message"]["content"],
        question=record["prompt"],
        reference=record["metadata"]["gold"],
        kind=record["metadata"]["kind"],
    )


def test_the_judge_is_a_sync_labeler_named_judge(judge: JudgeLabeler) -> None:
    assert isinstance(judge, SyncLabeler)
    assert judge.name == "judge"


def test_a_verdict_is_parsed_and_costed_from_the_usage_the_server_returns(
    server: JudgeServer, judge: JudgeLabeler
) -> None:
    right = judge.label(REQUEST)
    wrong = judge.label(LabelRequest("t2", "the answer is \\boxed{8}", "q?", "7", "number"))
    # The server's generated usage: a prompt token per 3 bytes of message text, plus 12.
    prompt_bytes = sum(len(m["content"].encode()) for m in server.requests[0]["messages"])
    expected_prompt = prompt_bytes // 3 + 12
    assert (right.correct, wrong.correct) == (True, False)
    assert right.detail["prompt_tokens"] == expected_prompt
    assert right.cost == pytest.approx(
        expected_prompt * PRICE_IN / 1e6 + right.detail["completion_tokens"] * PRICE_OUT / 1e6
    )
    assert right.detail["reason"] == "reference found"
    assert right.detail["model"] == MODEL
    assert json.loads(right.detail["verdict_raw"]) == {
        "correct": True,
        "reason": "reference found",
    }
    assert right.trace_id == "gsm8k-7"


def test_the_prompt_shows_the_question_the_response_and_the_reference_with_its_kind(
    server: JudgeServer, judge: JudgeLabeler
) -> None:
    judge.label(REQUEST)
    messages = server.requests[0]["messages"]
    assert messages[0] == {"role": "system", "content": JUDGE_SYSTEM_PROMPT}
    assert messages[1]["role"] == "user"
    assert messages[1]["content"] == (
        f"QUESTION:\n{REQUEST.question}\n\nRESPONSE:\n{REQUEST.response_text}"
        "\n\nREFERENCE ANSWER (number): 7"
    )


def test_without_question_or_reference_the_prompt_says_the_question_is_not_available(
    server: JudgeServer, judge: JudgeLabeler
) -> None:
    outcome = judge.label(LabelRequest("t", "It is 7."))
    assert user_message(server) == f"QUESTION:\n{NO_QUESTION}\n\nRESPONSE:\nIt is 7."
    assert outcome.correct is False


def test_the_request_is_greedy_and_constrained_to_the_strict_verdict_schema(
    server: JudgeServer, judge: JudgeLabeler
) -> None:
    judge.label(REQUEST)
    sent = server.requests[0]
    assert (sent["model"], sent["temperature"], sent["max_tokens"]) == (MODEL, 0, 64)
    assert sent["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "judge_verdict", "strict": True, "schema": VERDICT_SCHEMA},
    }
    assert VERDICT_SCHEMA["required"] == ["correct", "reason"]


def test_a_429_then_success_is_labelled_after_one_retry_that_waits_as_asked(
    server: JudgeServer,
) -> None:
    server.script = [Step.error(429, "slow down", headers={"Retry-After": "2"})]
    with make_judge(server.base_url) as judge:
        outcome = judge.label(REQUEST)
    assert (outcome.correct, len(server.requests)) == (True, 2)
    assert server.times[1] - server.times[0] >= 2.0


def test_a_500_that_persists_is_a_retryable_error_with_the_url_status_and_body(
    server: JudgeServer, judge: JudgeLabeler
) -> None:
    server.script = [Step.error(500, "slot unavailable")] * 4
    with pytest.raises(LabelingError) as caught:
        judge.label(REQUEST)
    message = str(caught.value)
    assert f"from {server.base_url}/chat/completions, got HTTP 500 (after retries)" in message
    assert "slot unavailable" in message
    assert (caught.value.retryable, caught.value.cost, len(server.requests)) == (True, 0.0, 4)


def test_a_400_is_not_retried_and_not_retryable(server: JudgeServer, judge: JudgeLabeler) -> None:
    server.script = [Step.error(400, "context length exceeded")]
    with pytest.raises(LabelingError, match=r"got HTTP 400: .*context length exceeded") as caught:
        judge.label(REQUEST)
    assert (caught.value.retryable, caught.value.cost, len(server.requests)) == (False, 0.0, 1)


def test_a_garbage_verdict_is_a_paid_error_that_is_not_retried(
    server: JudgeServer, judge: JudgeLabeler
) -> None:
    garbage = "The response looks right to me. " * 20
    server.script = [Step.text(garbage)]
    with pytest.raises(LabelingError) as caught:
        judge.label(REQUEST)
    message = str(caught.value)
    assert 'expected a JSON verdict {"correct": true|false, "reason": "..."}' in message
    assert repr(" ".join(garbage.split())[:200] + "...") in message
    assert caught.value.retryable is False
    assert caught.value.cost > 0
    assert caught.value.cost < judge.max_cost(REQUEST)
    assert len(server.requests) == 1


def test_a_verdict_missing_a_field_is_a_paid_error_naming_the_field(
    server: JudgeServer, judge: JudgeLabeler
) -> None:
    server.script = [Step.text('{"correct": true}')]
    with pytest.raises(LabelingError, match=r"reason: Field required") as caught:
        judge.label(REQUEST)
    assert (caught.value.retryable, caught.value.cost > 0) == (False, True)


def test_a_verdict_in_a_json_fence_is_accepted(server: JudgeServer, judge: JudgeLabeler) -> None:
    server.script = [Step.text('```json\n{"correct": false, "reason": "wrong unit"}\n```')]
    outcome = judge.label(REQUEST)
    assert (outcome.correct, outcome.detail["reason"]) == (False, "wrong unit")


@pytest.mark.parametrize(
    "text",
    [
        '{"correct": "yes", "reason": "x"}',
        '{"correct": 1, "reason": "x"}',
        '{"correct": true, "reason": "x", "score": 3}',
        '[{"correct": true, "reason": "x"}]',
        "",
        '```\n{"correct": true, "reason": "x"}',
    ],
)
def test_a_verdict_that_is_not_exactly_the_schema_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"expected a JSON verdict"):
        parse_verdict(text)


def test_a_plain_and_a_fenced_verdict_parse_into_the_same_model() -> None:
    plain = parse_verdict(' {"correct": true, "reason": "same"} ')
    assert plain == parse_verdict('```\n{"correct": true, "reason": "same"}\n```')
    assert plain == JudgeVerdict(correct=True, reason="same")


def test_a_timeout_is_retried_then_a_retryable_error(server: JudgeServer) -> None:
    server.script = [Step.slow(1.0)] * 2
    with (
        make_judge(server.base_url, timeout_s=0.2, max_retries=1) as judge,
        pytest.raises(LabelingError, match=r"got no answer within 0.2 s") as caught,
    ):
        judge.label(REQUEST)
    assert (caught.value.retryable, caught.value.cost, len(server.requests)) == (True, 0.0, 2)


def test_a_server_that_is_down_is_a_clear_error_naming_the_url() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    with make_judge(url) as judge, pytest.raises(LabelingError) as caught:
        judge.label(REQUEST)
    assert f"expected a judge verdict from {url}/chat/completions, got no connection" in str(
        caught.value
    )
    assert caught.value.retryable is True


def test_a_body_without_usage_is_charged_max_cost_and_says_so(
    server: JudgeServer, judge: JudgeLabeler
) -> None:
    server.script = [Step.no_usage()]
    outcome = judge.label(REQUEST)
    assert outcome.cost == judge.max_cost(REQUEST)
    assert outcome.detail["cost_note"] == "the server returned no usage; charged max_cost"
    assert outcome.detail["prompt_tokens"] is None


def test_a_body_that_is_not_a_chat_completion_is_a_paid_error_showing_it(
    server: JudgeServer, judge: JudgeLabeler
) -> None:
    server.script = [Step(body={"status": "loading model"})]
    with pytest.raises(LabelingError, match=r"got .*loading model") as caught:
        judge.label(REQUEST)
    assert caught.value.cost == judge.max_cost(REQUEST)


def test_max_cost_bounds_the_cost_of_judging_corpus_responses(
    server: JudgeServer, judge: JudgeLabeler, corpus: list[dict[str, Any]]
) -> None:
    requests = [corpus_request(record) for record in corpus[::5]]  # one per benchmark or so
    outcomes = [judge.label(request) for request in requests]
    assert len(outcomes) == 27
    assert all(judge.max_cost(r) >= o.cost > 0 for r, o in zip(requests, outcomes, strict=True))


def test_real_token_counts_of_the_corpus_never_exceed_the_bytes_of_their_text(
    corpus: list[dict[str, Any]],
) -> None:
    # The max_cost rule on real data: the Qwen tokenizer's own usage of every shipped response.
    assert len(corpus) == 134
    for record in corpus:
        usage = record["response"]["usage"]
        text = record["response"]["choices"][0]["message"]["content"]
        assert usage["prompt_tokens"] <= len(record["prompt"].encode()) + TEMPLATE_TOKENS
        assert usage["completion_tokens"] <= len(text.encode()) + 1  # + the end-of-turn token


def test_the_api_key_is_sent_but_never_appears_in_an_error_or_a_repr(
    server: JudgeServer, judge: JudgeLabeler
) -> None:
    server.script = [
        Step.error(500, "boom"),
        Step.error(500, "boom"),
        Step.error(500, "boom"),
        Step.error(500, "boom"),
        Step.error(401, "invalid api key"),
        Step.text("nonsense"),
    ]
    errors = []
    for _ in range(3):
        with pytest.raises(LabelingError) as caught:
            judge.label(REQUEST)
        errors.append(caught.value)
    with (
        make_judge(f"http://127.0.0.1:{free_port()}/v1") as down,
        pytest.raises(LabelingError) as caught,
    ):
        down.label(REQUEST)
    errors.append(caught.value)
    shown = [repr(judge), str(judge), *(f"{e} {e!r} {e.__cause__}" for e in errors)]
    assert server.headers[0]["authorization"] == f"Bearer {KEY}"
    assert all(KEY not in text for text in shown)


def test_from_settings_without_url_or_model_names_the_env_vars() -> None:
    settings = Settings(_env_file=None, judge_base_url=None, judge_model=None)
    with pytest.raises(
        LabelingError, match=r"got SENTINEL_JUDGE_BASE_URL and SENTINEL_JUDGE_MODEL unset"
    ):
        JudgeLabeler.from_settings(settings)


def test_from_settings_builds_a_judge_with_the_key_prices_and_limits(server: JudgeServer) -> None:
    settings = Settings(
        _env_file=None,
        judge_base_url=server.base_url,
        judge_model=MODEL,
        judge_api_key=KEY,
        judge_max_tokens=32,
        judge_price_input_per_mtok=1.0,
        judge_price_output_per_mtok=2.0,
    )
    with JudgeLabeler.from_settings(settings) as judge:
        outcome = judge.label(REQUEST)
    tokens = (outcome.detail["prompt_tokens"], outcome.detail["completion_tokens"])
    assert outcome.cost == pytest.approx(tokens[0] * 1e-6 + tokens[1] * 2e-6)
    assert (server.requests[0]["max_tokens"], server.headers[0]["authorization"]) == (
        32,
        f"Bearer {KEY}",
    )
