"""Tests of the entropy profile and baseline scores (METHOD.md sections 2-4)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from sentinel_core.errors import InvalidInputError
from sentinel_core.features import (
    ALL_SCORE_NAMES,
    BASELINE_NAMES,
    FEATURE_NAMES,
    FEATURE_SET_VERSION,
    baseline_scores,
    baseline_scores_from_flat,
    entropy_profile,
    entropy_profiles,
    profiles_from_flat,
    scores_from_flat,
    step_entropy,
    tail_mass,
)

LN2 = math.log(2.0)
QUANTILE_COLUMNS = slice(3, 8)
FAST = settings(max_examples=50, deadline=None)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted: np.ndarray = logits - logits.max(axis=1, keepdims=True)
    result: np.ndarray = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return result


@st.composite
def proper_traces(draw: st.DrawFn, max_steps: int = 30, max_k: int = 8) -> np.ndarray:
    """(T, k) logprobs of proper distributions: each row sums to 1."""
    steps = draw(st.integers(1, max_steps))
    k = draw(st.integers(1, max_k))
    logits = draw(
        hnp.arrays(np.float64, (steps, k), elements=st.floats(-12.0, 12.0, allow_nan=False))
    )
    return log_softmax(logits)


@st.composite
def truncated_traces(
    draw: st.DrawFn, max_steps: int = 30, max_k: int = 8, k: int | None = None
) -> np.ndarray:
    """(T, k) top-k logprobs of a larger distribution, sorted: rows sum to at most 1."""
    steps = draw(st.integers(1, max_steps))
    k = draw(st.integers(1, max_k)) if k is None else k
    tail = draw(st.integers(0, 4))
    logits = draw(hnp.arrays(np.float64, (steps, k + tail), elements=st.floats(-12.0, 12.0)))
    full = log_softmax(logits)
    return -np.sort(-full, axis=1)[:, :k]


@st.composite
def batches(draw: st.DrawFn, max_traces: int = 8) -> list[np.ndarray]:
    """A list of truncated traces sharing one k."""
    k = draw(st.integers(1, 6))
    n = draw(st.integers(1, max_traces))
    return [draw(truncated_traces(k=k)) for _ in range(n)]


# ----------------------------------------------------------------------------- names


def test_score_names_follow_the_method_order() -> None:
    assert FEATURE_NAMES[:3] == ("H_max", "H_mean", "H_std")
    assert FEATURE_NAMES[-3:] == ("H_skew", "H_kurt", "H_sea")
    assert BASELINE_NAMES[-1] == "eas"
    assert ALL_SCORE_NAMES == FEATURE_NAMES + BASELINE_NAMES
    assert len(ALL_SCORE_NAMES) == len(set(ALL_SCORE_NAMES)) == 20
    assert FEATURE_SET_VERSION == "entropy-v1"


# --------------------------------------------------------------------------- entropy


def test_entropy_of_uniform_top_k_is_log_k() -> None:
    top = np.full((4, 20), -math.log(20.0))

    assert step_entropy(top) == pytest.approx(np.full(4, math.log(20.0)), rel=1e-14)


def test_entropy_of_a_certain_token_is_zero() -> None:
    top = np.array([[0.0, -1000.0, -1000.0]])

    assert step_entropy(top)[0] == 0.0


def test_entropy_leaves_the_tail_out_unless_renormalised() -> None:
    # p = (1/4, 1/4): H = 2 * (1/4) ln 4 = ln 2; renormalised p = (1/2, 1/2): ln 2 too,
    # via H / s + ln s = ln 2 / (1/2) + ln(1/2) = ln 2.
    top = np.log([[0.25, 0.25]])

    assert step_entropy(top)[0] == pytest.approx(LN2)
    assert step_entropy(top, renormalise=True)[0] == pytest.approx(LN2)


def test_renormalised_entropy_of_a_single_kept_token_is_zero() -> None:
    # Truncated: -(1/2) ln(1/2) = ln2 / 2; renormalised the one token is certain.
    top = np.log([[0.5]])

    assert step_entropy(top)[0] == pytest.approx(LN2 / 2)
    assert step_entropy(top, renormalise=True)[0] == 0.0


@FAST
@given(proper_traces())
def test_entropy_of_a_proper_distribution_lies_between_zero_and_log_k(top: np.ndarray) -> None:
    entropy = step_entropy(top)

    assert entropy.shape == (top.shape[0],)
    assert np.all(entropy >= 0.0)
    assert np.all(entropy <= math.log(top.shape[1]) + 1e-12)


@FAST
@given(truncated_traces(), st.data())
def test_entropy_and_profile_ignore_the_order_of_the_top_k_list(
    top: np.ndarray, data: st.DataObject
) -> None:
    order = data.draw(st.permutations(range(top.shape[1])))
    shuffled = top[:, order]

    assert step_entropy(shuffled) == pytest.approx(step_entropy(top), rel=1e-12, abs=1e-15)
    assert entropy_profile(shuffled) == pytest.approx(entropy_profile(top), rel=1e-9, abs=1e-9)


@FAST
@given(truncated_traces())
def test_renormalised_entropy_is_the_entropy_of_the_softmax_of_the_top_k(top: np.ndarray) -> None:
    renormalised = np.exp(log_softmax(top))
    expected = -(renormalised * np.log(renormalised)).sum(axis=1)

    assert step_entropy(top, renormalise=True) == pytest.approx(expected, rel=1e-9, abs=1e-12)


@FAST
@given(truncated_traces(), st.floats(-900.0, 0.0))
def test_renormalised_entropy_does_not_change_when_every_logprob_shifts_down(
    top: np.ndarray, shift: float
) -> None:
    # Shifts below about -69 push the top-k mass under 1e-30 and, below -745, to 0
    # in float64: the renormalised entropy must still come out right.
    assert step_entropy(top + shift, renormalise=True) == pytest.approx(
        step_entropy(top, renormalise=True), rel=1e-8, abs=1e-10
    )


def test_renormalised_float32_entropy_survives_a_top_k_mass_below_the_float32_range() -> None:
    # exp(-120) is about 8e-53: zero in float32, so H / s + ln s cannot be used.
    top = np.log([[0.5, 0.25, 0.125]])
    shifted = (top - 120.0).astype(np.float32)

    assert step_entropy(shifted, renormalise=True) == pytest.approx(
        step_entropy(top, renormalise=True), rel=1e-6
    )


@FAST
@given(truncated_traces())
def test_renormalised_entropy_never_exceeds_log_k(top: np.ndarray) -> None:
    assert np.all(step_entropy(top, renormalise=True) <= math.log(top.shape[1]) + 1e-12)


@FAST
@given(proper_traces())
def test_renormalising_a_proper_distribution_changes_nothing(top: np.ndarray) -> None:
    assert step_entropy(top, renormalise=True) == pytest.approx(
        step_entropy(top), rel=1e-9, abs=1e-12
    )


def test_float32_input_gives_the_float64_entropy_to_single_precision() -> None:
    top = log_softmax(np.random.default_rng(3).normal(size=(50, 20)) * 3)[:, :10]

    single = step_entropy(top.astype(np.float32))

    assert single.dtype == np.float64
    assert single == pytest.approx(step_entropy(top), rel=1e-5)


def test_tail_mass_is_one_minus_the_top_k_mass_clipped_at_zero() -> None:
    top = np.log([[0.5, 0.25], [0.7, 0.6]])

    assert tail_mass(top) == pytest.approx([0.25, 0.0])


# --------------------------------------------------------------------------- profile


def test_profile_of_a_hand_computed_trace() -> None:
    # Three steps with k = 3, in units of ln 2:
    #   p = (1/2, 1/4, 1/4):  H = 1/2*1 + 2 * 1/4*2          = 3/2
    #   p = (1/2, 1/4, 1/8):  H = 1/2*1 + 1/4*2 + 1/8*3      = 11/8 (tail 1/8 left out)
    #   p = (1, 0, 0):        H = 0 (exp(-1000) is exactly 0 in float64)
    top = np.log([[0.5, 0.25, 0.25], [0.5, 0.25, 0.125], [1.0, 1.0, 1.0]])
    top[2, 1:] = -1000.0
    values = np.array([1.5, 1.375, 0.0])
    # mean = 23/24; deviations = (13, 10, -23) / 24
    # m2 = (169 + 100 + 529) / 24^2 / 3 = 133/288
    # m3 = (2197 + 1000 - 12167) / 24^3 / 3;  m4 = (28561 + 10000 + 279841) / 24^4 / 3
    m2 = 133 / 288
    m3 = -8970 / 24**3 / 3
    m4 = 318402 / 24**4 / 3
    # linear quantiles of the sorted (0, 11/8, 3/2) at positions 2q:
    #   q10 -> 0.2 * 11/8; q25 -> 0.5 * 11/8; q50 -> 11/8; q75 -> 11/8 + 0.5/8; q90 -> 11/8 + 0.8/8
    expected = [
        1.5 * LN2,
        23 / 24 * LN2,
        math.sqrt(m2) * LN2,
        0.275 * LN2,
        0.6875 * LN2,
        1.375 * LN2,
        1.4375 * LN2,
        1.475 * LN2,
        m3 / m2**1.5,
        m4 / m2**2 - 3.0,
        2.875 * LN2,
    ]

    profile = entropy_profile(top)

    assert step_entropy(top) == pytest.approx(values * LN2, rel=1e-14, abs=1e-300)
    assert profile == pytest.approx(expected, rel=1e-12)
    assert profile[8] == pytest.approx(scipy.stats.skew(values, bias=True), rel=1e-12)
    assert profile[9] == pytest.approx(
        scipy.stats.kurtosis(values, fisher=True, bias=True), rel=1e-12
    )


def test_baselines_of_a_hand_computed_trace() -> None:
    # The trace of test_profile_of_a_hand_computed_trace; the chosen tokens have
    # p = 1/2, 1/4, 1, so log-likelihood = -ln2 - 2 ln2 + 0 = -3 ln2.
    top = np.log([[0.5, 0.25, 0.25], [0.5, 0.25, 0.125], [1.0, 1.0, 1.0]])
    top[2, 1:] = -1000.0
    chosen = np.log([0.5, 0.25, 1.0])
    expected = [
        -3 * LN2,  # seq_loglik
        -LN2,  # mean_logprob
        2.0,  # perplexity = exp(ln 2)
        -2 * LN2,  # min_logprob
        2 / 3,  # mean_max_prob = (1/2 + 1/2 + 1) / 3
        0.5,  # mean_margin = (1/4 + 1/4 + 1) / 3
        23 / 24 * LN2,  # mean_entropy
        1.5 * LN2,  # max_entropy
        2.875 * LN2 / math.log(3.0),  # eas = sum H / ln k
    ]

    assert baseline_scores(top, chosen) == pytest.approx(expected, rel=1e-12)


def test_baselines_with_k_of_one_use_the_top_probability_as_margin_and_zero_eas() -> None:
    top = np.log([[0.5], [0.25]])

    scores = baseline_scores(top, top[:, 0])

    assert scores[BASELINE_NAMES.index("mean_margin")] == pytest.approx(0.375)
    assert scores[BASELINE_NAMES.index("eas")] == 0.0


def test_two_step_profile_has_zero_skew_and_kurtosis_of_minus_two() -> None:
    # H = (ln 2, 0): a symmetric two-point distribution, m3 = 0 and m4 / m2^2 = 1.
    top = np.array([[-LN2, -LN2], [0.0, -1000.0]])

    profile = entropy_profile(top)

    assert profile[FEATURE_NAMES.index("H_skew")] == pytest.approx(0.0, abs=1e-12)
    assert profile[FEATURE_NAMES.index("H_kurt")] == pytest.approx(-2.0)


def test_single_step_profile_is_that_step_everywhere_with_zero_spread() -> None:
    top = np.log([[0.5, 0.25, 0.125]])
    entropy = 1.375 * LN2

    profile = entropy_profile(top)

    assert profile[[0, 1, 3, 4, 5, 6, 7, 10]] == pytest.approx([entropy] * 8, rel=1e-14)
    assert profile[[2, 8, 9]].tolist() == [0.0, 0.0, 0.0]


@FAST
@given(truncated_traces(max_steps=1), st.integers(1, 60))
def test_constant_trajectories_have_zero_std_skew_and_kurtosis(row: np.ndarray, steps: int) -> None:
    profile = entropy_profile(np.repeat(row, steps, axis=0))
    entropy = step_entropy(row)[0]

    assert profile[[2, 8, 9]].tolist() == [0.0, 0.0, 0.0]
    assert profile[[0, 1, 3, 4, 5, 6, 7]] == pytest.approx([entropy] * 7, rel=1e-14, abs=0)
    assert profile[10] == pytest.approx(steps * entropy, rel=1e-12)


@FAST
@given(truncated_traces())
def test_quantiles_are_ordered_and_within_the_range_of_the_trajectory(top: np.ndarray) -> None:
    entropy = step_entropy(top)
    quantiles = entropy_profile(top)[QUANTILE_COLUMNS]

    assert np.all(np.diff(quantiles) >= 0.0)
    assert quantiles[0] >= entropy.min()
    assert quantiles[-1] <= entropy.max()


@FAST
@given(batches())
def test_flat_profiles_match_numpy_statistics_per_trace(traces: list[np.ndarray]) -> None:
    profiles = profiles_from_flat(np.concatenate(traces), [len(t) for t in traces])

    for trace, profile in zip(traces, profiles, strict=True):
        entropy = step_entropy(trace)
        numpy_stats = [
            entropy.max(),
            entropy.mean(),
            entropy.std(),
            *np.quantile(entropy, [0.1, 0.25, 0.5, 0.75, 0.9]),
        ]
        assert profile[:8] == pytest.approx(numpy_stats, rel=1e-9, abs=1e-9)
        assert profile[10] == pytest.approx(entropy.sum(), rel=1e-12, abs=1e-12)


@FAST
@given(truncated_traces(max_steps=40).filter(lambda a: a.shape[0] >= 3))
def test_skewness_and_kurtosis_match_scipy_biased_estimators(top: np.ndarray) -> None:
    entropy = step_entropy(top)
    profile = entropy_profile(top)

    if entropy.std() > 1e-6 * entropy.mean():  # scipy itself is unreliable below
        assert profile[8] == pytest.approx(scipy.stats.skew(entropy, bias=True), rel=1e-6)
        assert profile[9] == pytest.approx(
            scipy.stats.kurtosis(entropy, fisher=True, bias=True), rel=1e-6, abs=1e-9
        )
    else:
        assert profile[[8, 9]].tolist() == [0.0, 0.0]


@FAST
@given(batches(), st.booleans())
def test_entropy_profiles_equal_the_stacked_single_trace_profiles(
    traces: list[np.ndarray], renormalise: bool
) -> None:
    stacked = np.stack([entropy_profile(t, renormalise=renormalise) for t in traces])

    assert entropy_profiles(traces, renormalise=renormalise) == pytest.approx(
        stacked, rel=1e-12, abs=1e-12
    )


def test_entropy_profiles_accept_traces_with_different_k() -> None:
    traces = [np.log([[0.5, 0.25, 0.125]]), np.log([[0.5], [0.25]]), np.log([[0.6, 0.4]])]

    for renormalise in (False, True):
        expected = np.stack([entropy_profile(t, renormalise=renormalise) for t in traces])
        assert entropy_profiles(traces, renormalise=renormalise) == pytest.approx(expected)


def test_batches_spanning_many_kernel_and_sort_blocks_match_single_traces() -> None:
    # 5000 traces (more than one sort block of 4096 traces) and 12,500 rows
    # (several kernel blocks of 4096 rows), checked against the one-trace path.
    rng = np.random.default_rng(7)
    lengths = rng.integers(1, 5, size=5000)
    flat = log_softmax(rng.normal(size=(int(lengths.sum()), 6)) * 2)[:, :4]
    flat = flat.astype(np.float32)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    picked = sorted(rng.choice(5000, size=40, replace=False))

    scores = scores_from_flat(flat, flat[:, 0], lengths)

    for j in picked:
        trace = flat[starts[j] : starts[j] + lengths[j]]
        assert scores[j, :11] == pytest.approx(entropy_profile(trace), rel=1e-12, abs=1e-12)
        assert scores[j, 11:] == pytest.approx(
            baseline_scores(trace, trace[:, 0]), rel=1e-12, abs=1e-12
        )


@FAST
@given(batches(), st.booleans())
def test_scores_from_flat_are_the_profile_then_the_baselines(
    traces: list[np.ndarray], renormalise: bool
) -> None:
    flat = np.concatenate(traces)
    chosen = flat[:, 0]
    lengths = [len(t) for t in traces]

    scores = scores_from_flat(flat, chosen, lengths, renormalise=renormalise)

    assert scores.shape == (len(traces), 20)
    assert scores[:, :11] == pytest.approx(
        profiles_from_flat(flat, lengths, renormalise=renormalise), rel=1e-15, abs=0
    )
    if not renormalise:
        assert scores[:, 11:] == pytest.approx(
            baseline_scores_from_flat(flat, chosen, lengths), rel=1e-15, abs=0
        )


@FAST
@given(batches())
def test_eas_is_the_entropy_sum_over_log_k(traces: list[np.ndarray]) -> None:
    flat = np.concatenate(traces)
    scores = scores_from_flat(flat, flat[:, 0], [len(t) for t in traces])
    k = flat.shape[1]
    eas = scores[:, ALL_SCORE_NAMES.index("eas")]
    sea = scores[:, ALL_SCORE_NAMES.index("H_sea")]

    if k > 1:
        assert eas == pytest.approx(sea / math.log(k), rel=1e-12)
    else:
        assert eas.tolist() == [0.0] * len(traces)


@FAST
@given(batches())
def test_baseline_entropy_columns_repeat_the_profile(traces: list[np.ndarray]) -> None:
    flat = np.concatenate(traces)
    scores = scores_from_flat(flat, flat[:, 0], [len(t) for t in traces])

    assert scores[:, ALL_SCORE_NAMES.index("mean_entropy")] == pytest.approx(scores[:, 1])
    assert scores[:, ALL_SCORE_NAMES.index("max_entropy")] == pytest.approx(scores[:, 0])


def test_empty_batches_give_empty_score_tables() -> None:
    flat = np.empty((0, 20), dtype=np.float32)

    assert profiles_from_flat(flat, []).shape == (0, 11)
    assert scores_from_flat(flat, [], []).shape == (0, 20)
    assert baseline_scores_from_flat(flat, [], []).shape == (0, 9)
    assert entropy_profiles([]).shape == (0, 11)


# ------------------------------------------------------------------------ validation


def test_a_one_dimensional_trace_is_rejected() -> None:
    with pytest.raises(InvalidInputError, match=r"2-d \(T, k\) array, got shape \(3,\)"):
        step_entropy(np.array([-0.1, -0.2, -0.3]))


def test_a_trace_without_tokens_is_rejected() -> None:
    message = r"a trace needs at least one generated token \(T >= 1\), got T = 0"
    with pytest.raises(InvalidInputError, match=message):
        entropy_profile(np.empty((0, 20)))


def test_a_trace_without_logprobs_per_step_is_rejected() -> None:
    with pytest.raises(InvalidInputError, match=r"k >= 1\), got k = 0"):
        step_entropy(np.empty((4, 0)))


def test_a_ragged_trace_is_rejected() -> None:
    with pytest.raises(InvalidInputError, match=r"2-d \(T, k\) array, got a ragged sequence"):
        step_entropy([[-0.1, -0.2], [-0.3]])


def test_non_numeric_logprobs_are_rejected() -> None:
    with pytest.raises(InvalidInputError, match=r"real numbers .*got dtype <U1"):
        step_entropy([["a", "b"]])


def test_a_nan_logprob_is_rejected_with_its_position() -> None:
    top = np.log([[0.5, 0.25], [0.5, 0.25]])
    top[1, 0] = np.nan
    with pytest.raises(InvalidInputError, match=r"finite logprobs, got nan at step 1, rank 0"):
        step_entropy(top)


def test_a_positive_logprob_is_rejected_with_its_value() -> None:
    top = np.array([[-0.1, 0.5]])
    with pytest.raises(InvalidInputError, match=r"<= 0, got 0\.5 at step 0, rank 1"):
        entropy_profile(top)


@pytest.mark.filterwarnings("error")
def test_a_huge_positive_logprob_is_rejected_before_exp_overflows() -> None:
    top = np.array([[1000.0, -0.1]], dtype=np.float32)
    with pytest.raises(InvalidInputError, match=r"<= 0, got 1000\.0 at step 0, rank 0"):
        step_entropy(top)


def test_a_minus_infinite_logprob_is_rejected() -> None:
    top = np.array([[-0.1, -np.inf]])
    with pytest.raises(InvalidInputError, match=r"finite logprobs, got -inf at step 0, rank 1"):
        step_entropy(top)


def test_a_plus_infinite_logprob_is_rejected() -> None:
    top = np.array([[np.inf, -0.1]])
    with pytest.raises(InvalidInputError, match=r"finite logprobs, got inf at step 0, rank 0"):
        tail_mass(top)


def test_tail_mass_rejects_a_minus_infinite_logprob() -> None:
    top = np.array([[-0.1, -np.inf]])
    with pytest.raises(InvalidInputError, match=r"got -inf at step 0, rank 1"):
        tail_mass(top)


def test_a_bad_logprob_in_a_flat_batch_names_its_trace_and_step() -> None:
    flat = np.full((5, 2), -1.0)
    flat[3, 1] = np.nan
    with pytest.raises(InvalidInputError, match=r"got nan at row 3 \(trace 1, step 1\), rank 1"):
        profiles_from_flat(flat, [2, 3])


def test_a_minus_infinite_logprob_in_a_flat_batch_names_its_trace_and_step() -> None:
    flat = np.full((5, 2), -1.0, dtype=np.float32)
    flat[4, 0] = -np.inf
    with pytest.raises(InvalidInputError, match=r"got -inf at row 4 \(trace 1, step 2\), rank 0"):
        scores_from_flat(flat, flat[:, 1], [2, 3])


def test_lengths_that_do_not_add_up_to_the_rows_are_rejected() -> None:
    message = r"sum to the number of rows of flat_top \(N = 5\), got sum 4"
    with pytest.raises(InvalidInputError, match=message):
        profiles_from_flat(np.full((5, 2), -1.0), [2, 2])


def test_a_zero_length_in_a_flat_batch_is_rejected_with_its_trace() -> None:
    message = r"at least one generated token \(T >= 1\), got T = 0 for trace 1"
    with pytest.raises(InvalidInputError, match=message):
        profiles_from_flat(np.full((5, 2), -1.0), [5, 0])


def test_fractional_lengths_are_rejected() -> None:
    with pytest.raises(InvalidInputError, match=r"lengths must be integers, got dtype float64"):
        profiles_from_flat(np.full((5, 2), -1.0), [2.5, 2.5])


def test_two_dimensional_lengths_are_rejected() -> None:
    with pytest.raises(InvalidInputError, match=r"1-d \(n,\) array .*got shape \(1, 2\)"):
        profiles_from_flat(np.full((5, 2), -1.0), [[2, 3]])


def test_a_flat_batch_must_be_two_dimensional() -> None:
    with pytest.raises(InvalidInputError, match=r"flat_top must be a 2-d \(N, k\) array"):
        profiles_from_flat(np.full(5, -1.0), [5])


def test_chosen_logprobs_must_cover_every_step() -> None:
    message = r"chosen must be a 1-d \(N,\) array .*\(N = 5\), got shape \(4,\)"
    with pytest.raises(InvalidInputError, match=message):
        scores_from_flat(np.full((5, 2), -1.0), np.full(4, -1.0), [5])


def test_a_positive_chosen_logprob_is_rejected_with_its_step() -> None:
    chosen = np.array([-1.0, -1.0, 0.25])
    with pytest.raises(InvalidInputError, match=r"chosen must hold .*<= 0, got 0\.25 at step 2"):
        baseline_scores_from_flat(np.full((3, 2), -1.0), chosen, [3])


def test_a_nan_chosen_logprob_is_rejected_with_its_step() -> None:
    chosen = np.array([-1.0, np.nan])
    with pytest.raises(
        InvalidInputError, match=r"chosen must hold finite logprobs, got nan at step 1"
    ):
        baseline_scores(np.full((2, 2), -1.0), chosen)


def test_a_bad_trace_in_a_list_is_named() -> None:
    traces = [np.full((2, 2), -1.0), np.empty((0, 2))]
    with pytest.raises(InvalidInputError, match=r"trace 1: a trace needs at least one"):
        entropy_profiles(traces)
