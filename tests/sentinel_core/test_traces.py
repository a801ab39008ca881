"""Parsing responses into typed traces, and every quarantine reason."""

from __future__ import annotations

import math

import numpy as np
import orjson
import pytest

from sentinel_core.errors import InvalidTraceError
from sentinel_core.traces import parse_json_line, parse_record
from tests.factories import (
    chat_completion,
    generated_top_logprobs,
    legacy_completion,
    real_lines,
    wrapper,
)


def test_real_llama_cpp_responses_parse_with_twenty_alternatives_per_token() -> None:
    for line in real_lines():
        (trace,) = parse_json_line(line)
        raw = orjson.loads(line)
        content = raw["response"]["choices"][0]["logprobs"]["content"]
        assert trace.id == raw["id"]
        assert trace.k == 20
        assert trace.n_steps == len(content)
        assert trace.metadata["benchmark"] == raw["metadata"]["benchmark"]
        assert trace.model == "qwen2.5-coder-1.5b-instruct-q4_k_m"
        assert trace.top_logprobs[0, 0] == pytest.approx(content[0]["top_logprobs"][0]["logprob"])
        assert trace.chosen_logprobs[-1] == pytest.approx(content[-1]["logprob"])
        assert trace.response_text == raw["response"]["choices"][0]["message"]["content"]


def test_prompt_is_hashed_and_its_text_kept_only_on_request() -> None:
    line = real_lines()[0]
    (hidden,) = parse_json_line(line)
    (kept,) = parse_json_line(line, keep_prompt=True)
    assert hidden.prompt is None
    assert hidden.prompt_hash is not None
    assert len(hidden.prompt_hash) == 64
    assert kept.prompt == orjson.loads(line)["prompt"]
    assert kept.prompt_hash == hidden.prompt_hash


def test_legacy_completion_and_chat_completion_give_the_same_arrays() -> None:
    top = generated_top_logprobs(7, k=5, seed=3)
    (chat,) = parse_record(chat_completion(top))
    (legacy,) = parse_record(legacy_completion(top))
    np.testing.assert_allclose(chat.top_logprobs, legacy.top_logprobs)
    np.testing.assert_allclose(chat.chosen_logprobs, legacy.chosen_logprobs)


def test_wrapper_metadata_and_id_travel_with_the_response() -> None:
    record = wrapper(chat_completion(), trace_id="req-1", customer="acme", topic="billing")
    (trace,) = parse_record(record)
    assert trace.id == "req-1"
    assert trace.metadata == {"customer": "acme", "topic": "billing"}


def test_each_choice_becomes_its_own_trace_with_a_suffixed_id() -> None:
    traces = parse_record(chat_completion(n_choices=3, response_id="chatcmpl-x"))
    assert [t.id for t in traces] == ["chatcmpl-x/0", "chatcmpl-x/1", "chatcmpl-x/2"]


def test_a_response_without_id_is_keyed_by_its_content_hash() -> None:
    first = parse_record(chat_completion(response_id=None, seed=1))[0]
    again = parse_record(chat_completion(response_id=None, seed=1))[0]
    other = parse_record(chat_completion(response_id=None, seed=2))[0]
    assert first.id.startswith("sha256:")
    assert first.id == again.id
    assert first.id != other.id


def test_a_shuffled_top_k_list_is_sorted_and_flagged() -> None:
    top = generated_top_logprobs(4, k=6, seed=5)
    shuffled = top[:, ::-1].copy()
    (trace,) = parse_record(chat_completion(shuffled))
    assert trace.resorted
    np.testing.assert_allclose(trace.top_logprobs, top, rtol=1e-6)


def test_iso_8601_created_is_accepted() -> None:
    record = wrapper(chat_completion(), trace_id="iso")
    record["created"] = "2026-11-20T03:00:00+00:00"
    (trace,) = parse_record(record)
    assert trace.created.year == 2026
    assert trace.created.tzinfo is not None


def _with_step(field: str, value: object) -> dict[str, object]:
    body = chat_completion(generated_top_logprobs(3, k=4, seed=1))
    body["choices"][0]["logprobs"]["content"][1]["top_logprobs"][2][field] = value
    return body


def _reason(record: object) -> str:
    with pytest.raises(InvalidTraceError) as caught:
        parse_record(record)
    return str(caught.value)


def test_bad_json_is_rejected_with_the_parser_message() -> None:
    with pytest.raises(InvalidTraceError, match="expected one JSON object per line, got invalid"):
        parse_json_line(b'{"id": "x", ')


def test_a_response_without_logprobs_is_rejected() -> None:
    body = chat_completion()
    del body["choices"][0]["logprobs"]
    assert "expected choices[0].logprobs (request with logprobs=true" in _reason(body)


def test_a_response_with_zero_tokens_is_rejected() -> None:
    body = chat_completion()
    body["choices"][0]["logprobs"]["content"] = []
    assert "(T = 0)" in _reason(body)


def test_a_nan_logprob_is_rejected() -> None:
    assert "got NaN or null" in _reason(_with_step("logprob", math.nan))


def test_a_null_logprob_is_rejected() -> None:
    assert "got NaN or null" in _reason(_with_step("logprob", None))


def test_an_infinite_logprob_is_rejected() -> None:
    assert "got infinite" in _reason(_with_step("logprob", -math.inf))


def test_a_positive_logprob_is_rejected_with_its_value() -> None:
    assert "expected log-probabilities <= 0" in _reason(_with_step("logprob", 0.5))


def test_float_noise_just_above_zero_is_clipped_not_rejected() -> None:
    top = np.tile([1e-8, -30.0, -31.0, -32.0], (3, 1))
    (trace,) = parse_record(chat_completion(top))
    assert trace.top_logprobs.max() == 0.0
    assert trace.chosen_logprobs.max() == 0.0


def test_k_that_changes_between_steps_is_rejected_naming_both_values() -> None:
    body = chat_completion(generated_top_logprobs(3, k=4, seed=1))
    body["choices"][0]["logprobs"]["content"][2]["top_logprobs"].pop()
    assert "got k = 4 at step 0 and k = 3 at step 2" in _reason(body)


def test_a_top_k_list_that_cannot_be_sorted_is_rejected() -> None:
    assert "got string 'high'" in _reason(_with_step("logprob", "high"))


@pytest.mark.parametrize("value", ["-0.5", "high", [-0.5], {"v": -0.5}])
def test_a_logprob_that_is_not_a_json_number_is_rejected_even_when_it_reads_as_one(
    value: object,
) -> None:
    reason = _reason(_with_step("logprob", value))
    assert reason.startswith("expected JSON numbers as log-probabilities")
    assert "at step 1" in reason


@pytest.mark.parametrize(
    ("value", "dtype", "lowest"),
    [(-1e308, "float32", "-3.40282e+38"), (-70000.0, "float16", "-65504"), (-1e39, "float32", "")],
)
def test_a_logprob_the_stored_dtype_would_turn_into_minus_infinity_is_rejected(
    value: float, dtype: str, lowest: str
) -> None:
    body = chat_completion(generated_top_logprobs(3, k=4, seed=2))
    body["choices"][0]["logprobs"]["content"][1]["top_logprobs"][3]["logprob"] = value
    with pytest.raises(InvalidTraceError) as info:
        parse_record(body, dtype=dtype)
    assert f"the lowest the store's {dtype} can hold" in str(info.value)
    assert lowest in str(info.value)
    assert "would be stored as -inf" in str(info.value)


def test_the_same_value_is_accepted_when_the_stored_dtype_holds_it() -> None:
    body = chat_completion(generated_top_logprobs(3, k=4, seed=2))
    body["choices"][0]["logprobs"]["content"][1]["top_logprobs"][3]["logprob"] = -70000.0
    (trace,) = parse_record(body, dtype="float32")
    assert trace.top_logprobs[1, 3] == np.float32(-70000.0)


def test_a_trace_carries_its_logprobs_as_the_store_keeps_them() -> None:
    top = generated_top_logprobs(5, k=4, seed=3)
    (as16,) = parse_record(chat_completion(top), dtype="float16")
    np.testing.assert_array_equal(as16.top_logprobs, top.astype(np.float16).astype(np.float32))


def test_a_tiny_logprob_that_underflows_to_zero_keeps_a_proper_distribution() -> None:
    # -1e-9 is p = 1 - 1e-9; stored as float16 it is exactly 0 (p = 1): the entropy of the step
    # moves by about 2e-8 nats, so the trace is kept, as stored.
    top = np.log(np.array([[1.0 - 1e-9, 1e-12, 1e-13, 1e-14]]))
    (trace,) = parse_record(chat_completion(top), dtype="float16")
    assert trace.top_logprobs[0, 0] == 0.0


def test_probabilities_summing_above_one_are_rejected() -> None:
    body = chat_completion(np.log(np.full((2, 4), 0.4)))
    assert "sum to at most 1, got 1.6000" in _reason(body)


def test_a_missing_model_is_rejected() -> None:
    body = chat_completion()
    del body["model"]
    assert "expected a non-empty string 'model'" in _reason(body)


def test_a_missing_created_is_rejected() -> None:
    body = chat_completion()
    del body["created"]
    assert "expected 'created'" in _reason(body)


def test_missing_choices_are_rejected() -> None:
    body = chat_completion()
    body["choices"] = []
    assert "expected a non-empty list 'choices'" in _reason(body)


def test_a_step_without_top_logprobs_is_rejected() -> None:
    body = chat_completion()
    del body["choices"][0]["logprobs"]["content"][0]["top_logprobs"]
    assert "missing or malformed" in _reason(body)


def test_zero_alternatives_per_step_is_rejected() -> None:
    body = chat_completion(np.zeros((2, 0)))
    assert "got k = 0" in _reason(body)


def test_an_object_that_is_not_a_response_is_rejected() -> None:
    assert "expected a chat.completion / completion object" in _reason({"hello": 1})


def test_a_json_array_line_is_rejected() -> None:
    assert "expected a JSON object, got list" in _reason([1, 2])


@pytest.mark.parametrize("created", [1e12, 1e20, 10**30])
def test_a_created_time_beyond_year_9999_is_a_reason_not_a_crash(created: float) -> None:
    body = chat_completion()
    body["created"] = created
    with pytest.raises(InvalidTraceError, match="up to year 9999"):
        parse_record(body)
