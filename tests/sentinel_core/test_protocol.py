"""Tests of sentinel_core.protocol.

The protocol runs on synthetic traces GENERATED with a fixed seed: five slices of
different difficulty, every feature and baseline a noisy function of a latent
"confidence" that also drives correctness. The summary is checked on a tiny
hand-written tidy table whose medians, IQR, rho and floors are computed by hand.
"""

from __future__ import annotations

import math
from math import comb

import numpy as np
import numpy.typing as npt
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from sentinel_core.errors import InvalidInputError
from sentinel_core.estimator import DEFAULT_METHOD, ATCEstimator
from sentinel_core.features import BASELINE_NAMES, FEATURE_NAMES
from sentinel_core.metrics import accuracy_floor, spearman_rho
from sentinel_core.protocol import (
    INTERVAL_COLUMNS,
    SUMMARY_COLUMNS,
    TIDY_COLUMNS,
    default_methods,
    run_group_protocol,
    summarise_protocol,
)

FAST_METHODS = ["lr_11d", "lr_H_max", "atc_H_max", "atc_seq_loglik", "atc_H_sea"]


def make_traces(
    n_slices: int = 5, per_slice: int = 30, *, seed: int = 0
) -> tuple[pd.DataFrame, npt.NDArray[np.int64], npt.NDArray[np.str_]]:
    """Generated scores, 0/1 correctness and slice keys for ``n_slices * per_slice`` traces."""
    rng = np.random.default_rng(seed)
    n = n_slices * per_slice
    slices = np.repeat([f"bench{i}" for i in range(n_slices)], per_slice)
    confidence = rng.normal(size=n) + np.repeat(np.linspace(-1.5, 1.5, n_slices), per_slice)
    y = (confidence + 0.7 * rng.normal(size=n) > 0).astype(np.int64)
    columns = {}
    for name in (*FEATURE_NAMES, *BASELINE_NAMES):
        sign = -1.0 if name.startswith(("H_", "mean_entropy", "max_entropy", "eas", "perp")) else 1
        columns[name] = sign * confidence + rng.normal(scale=0.8, size=n)
    return pd.DataFrame(columns), y, slices


def expected_rows_per_method(n_slices: int, max_g: int) -> int:
    return sum(comb(n_slices, g) * (n_slices - g) for g in range(1, max_g + 1))


def test_default_methods_are_default_three_profiles_every_single_score_three_atcs_two_nulls() -> (
    None
):
    methods = default_methods()
    assert methods[:4] == ("default", "lr_11d", "rf_11d", "mlp_11d")
    assert methods[-5:] == (
        "atc_H_max",
        "atc_seq_loglik",
        "atc_H_sea",
        "null_train_mean",
        "doc_mean_max_prob",
    )
    assert set(methods[4:-5]) == {f"lr_{name}" for name in (*FEATURE_NAMES, *BASELINE_NAMES)}
    assert len(methods) == 1 + 3 + 20 + 3 + 2


def test_the_train_mean_null_gives_every_held_out_slice_the_training_accuracy() -> None:
    scores, y, slices = make_traces()
    tidy = run_group_protocol(scores, y, slices, max_g=1, methods=["null_train_mean"])
    keys = np.asarray(slices).astype(str)
    for row in tidy.itertuples(index=False):
        train = keys == row.group
        assert row.estimate == pytest.approx(np.asarray(y, dtype=float)[train].mean())


def test_doc_shifts_the_training_accuracy_by_the_change_in_mean_confidence() -> None:
    scores, y, slices = make_traces()
    tidy = run_group_protocol(scores, y, slices, max_g=1, methods=["doc_mean_max_prob"])
    keys, labels = np.asarray(slices).astype(str), np.asarray(y, dtype=float)
    confidence = scores["mean_max_prob"].to_numpy()
    for row in tidy.itertuples(index=False):
        train, test = keys == row.group, keys == row.slice
        expected = labels[train].mean() - (confidence[train].mean() - confidence[test].mean())
        assert row.estimate == pytest.approx(expected)


def test_the_summary_gives_every_method_its_gap_to_both_nulls_and_the_floor() -> None:
    scores, y, slices = make_traces()
    methods = ["lr_H_max", "null_train_mean", "doc_mean_max_prob"]
    summary = summarise_protocol(run_group_protocol(scores, y, slices, max_g=2, methods=methods))
    for row in summary.itertuples(index=False):
        null = summary[(summary["method"] == "null_train_mean") & (summary["g"] == row.g)]
        doc = summary[(summary["method"] == "doc_mean_max_prob") & (summary["g"] == row.g)]
        assert row.gap_null_mean == pytest.approx(row.median_aee - null["median_aee"].item())
        assert row.gap_doc == pytest.approx(row.median_aee - doc["median_aee"].item())
        assert row.gap_floor == pytest.approx(row.median_aee - row.floor)
    alone = summarise_protocol(run_group_protocol(scores, y, slices, max_g=1, methods=["lr_H_max"]))
    assert alone["gap_null_mean"].isna().all()  # no null run: no gap, not a zero gap


def test_an_unknown_doc_score_is_refused_naming_the_accepted_ones() -> None:
    scores, y, slices = make_traces()
    with pytest.raises(InvalidInputError, match="doc_<probability score> \\(mean_max_prob\\)"):
        run_group_protocol(scores, y, slices, max_g=1, methods=["doc_H_max"])


def test_the_default_method_reports_exactly_what_its_underlying_method_does() -> None:
    scores, y, slices = make_traces()
    tidy = run_group_protocol(scores, y, slices, max_g=1, methods=["default", DEFAULT_METHOD])
    default = tidy[tidy["method"] == "default"].drop(columns="method").reset_index(drop=True)
    named = tidy[tidy["method"] == DEFAULT_METHOD].drop(columns="method").reset_index(drop=True)
    assert len(default) > 0
    pd.testing.assert_frame_equal(default, named)


def test_the_tidy_table_has_every_group_times_every_held_out_slice_per_method() -> None:
    scores, y, slices = make_traces()
    tidy = run_group_protocol(scores, y, slices, max_g=4, methods=FAST_METHODS)
    assert list(tidy.columns) == [*TIDY_COLUMNS, *INTERVAL_COLUMNS]
    # 5 * 4 + 10 * 3 + 10 * 2 + 5 * 1 = 75 rows per method, from 5 + 10 + 10 + 5 groups.
    assert expected_rows_per_method(5, 4) == 75
    assert tidy.groupby("method").size().to_dict() == dict.fromkeys(FAST_METHODS, 75)
    groups = tidy.loc[tidy["method"] == "lr_11d"].groupby("g")["group"].nunique()
    assert groups.to_dict() == {1: 5, 2: 10, 3: 10, 4: 5}


def test_groups_are_sorted_names_and_never_contain_their_held_out_slice() -> None:
    scores, y, slices = make_traces()
    tidy = run_group_protocol(scores, y, slices, max_g=2, methods=["atc_H_max"])
    members = tidy["group"].str.split("+")
    assert all(names == sorted(names) for names in members)
    assert not any(s in names for s, names in zip(tidy["slice"], members, strict=True))
    assert (members.str.len() == tidy["g"]).all()


def test_truth_and_n_are_the_held_out_slices_accuracy_and_size() -> None:
    scores, y, slices = make_traces()
    tidy = run_group_protocol(scores, y, slices, max_g=1, methods=["lr_H_max"])
    accuracy = pd.Series(y).groupby(slices).mean()
    for row in tidy.itertuples():
        assert row.truth == pytest.approx(accuracy[row.slice])
        assert row.n == 30


def test_an_atc_estimate_is_the_confident_share_of_the_held_out_slice() -> None:
    scores, y, slices = make_traces()
    tidy = run_group_protocol(scores, y, slices, max_g=1, methods=["atc_H_max"])
    train, target = slices == "bench0", slices == "bench3"
    atc = ATCEstimator(higher_is_confident=False).fit(scores["H_max"][train], y[train])
    row = tidy.loc[(tidy["group"] == "bench0") & (tidy["slice"] == "bench3")].iloc[0]
    assert row["estimate"] == pytest.approx(atc.estimate(scores["H_max"][target]))


def test_a_single_score_method_is_a_plain_logistic_regression_on_that_score() -> None:
    # lr_<score> runs uncalibrated (Platt scaling of a 1-D logistic model is again a 1-D
    # logistic model), so it must equal scikit-learn's pipeline fitted on the group.
    scores, y, slices = make_traces()
    tidy = run_group_protocol(scores, y, slices, max_g=1, methods=["lr_seq_loglik"])
    train, target = slices == "bench1", slices == "bench4"
    X = scores[["seq_loglik"]].to_numpy()
    plain = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    expected = plain.fit(X[train], y[train]).predict_proba(X[target])[:, 1].mean()
    row = tidy.loc[(tidy["group"] == "bench1") & (tidy["slice"] == "bench4")].iloc[0]
    assert row["estimate"] == pytest.approx(expected, rel=1e-6)


def test_classifier_estimates_are_probabilities_that_track_slice_difficulty() -> None:
    scores, y, slices = make_traces()
    tidy = run_group_protocol(scores, y, slices, max_g=2, methods=["lr_11d"])
    assert tidy["estimate"].between(0, 1).all()
    pairs = tidy.loc[tidy["g"] == 2, ["estimate", "truth"]]
    # Slices span accuracies ~0.1 to ~0.9 and the profile carries the signal.
    assert pairs["estimate"].corr(pairs["truth"], method="spearman") > 0.8


def test_flexible_families_and_single_class_training_slices_run_through_fallbacks() -> None:
    # bench_easy is all correct, bench_hard all wrong: training on either alone is
    # single-class and must take the estimator's constant fallback, not raise.
    scores, y, slices = make_traces(n_slices=3, per_slice=24, seed=1)
    y = y.copy()
    slices = slices.astype("<U16")  # room for the longer names
    slices[slices == "bench0"] = "bench_hard"
    y[slices == "bench_hard"] = 0
    slices[slices == "bench2"] = "bench_easy"
    y[slices == "bench_easy"] = 1
    tidy = run_group_protocol(scores, y, slices, max_g=1, methods=["rf_11d", "mlp_11d"])
    from_easy = tidy.loc[tidy["group"] == "bench_easy", "estimate"]
    from_hard = tidy.loc[tidy["group"] == "bench_hard", "estimate"]
    assert np.allclose(from_easy, 0.99)
    assert np.allclose(from_hard, 0.01)
    assert len(tidy) == 2 * expected_rows_per_method(3, 1)


def test_progress_is_reported_after_every_group() -> None:
    scores, y, slices = make_traces(n_slices=4)
    calls: list[tuple[int, int]] = []
    run_group_protocol(
        scores,
        y,
        slices,
        max_g=2,
        methods=["atc_H_sea"],
        progress=lambda done, total: calls.append((done, total)),
    )
    assert calls == [(i, 10) for i in range(1, 11)]


def test_group_sizes_that_leave_nothing_to_evaluate_are_skipped() -> None:
    scores, y, slices = make_traces(n_slices=3)
    tidy = run_group_protocol(scores, y, slices, max_g=4, methods=["atc_H_max"])
    assert sorted(tidy["g"].unique()) == [1, 2]
    assert len(tidy) == expected_rows_per_method(3, 2)


def test_an_unknown_method_is_rejected() -> None:
    scores, y, slices = make_traces()
    with pytest.raises(InvalidInputError, match="got 'svm_11d'"):
        run_group_protocol(scores, y, slices, methods=["svm_11d"])


def test_a_method_whose_column_is_missing_is_rejected() -> None:
    scores, y, slices = make_traces()
    with pytest.raises(InvalidInputError, match=r"needs columns \['H_max'\]"):
        run_group_protocol(scores.drop(columns="H_max"), y, slices, methods=["lr_H_max"])


def test_labels_that_are_not_zero_or_one_are_rejected() -> None:
    scores, y, slices = make_traces()
    with pytest.raises(InvalidInputError, match="y must hold 0/1 labels"):
        run_group_protocol(scores, y * 2, slices, methods=["atc_H_max"])


def test_a_single_slice_is_rejected() -> None:
    scores, y, _ = make_traces()
    with pytest.raises(InvalidInputError, match="at least 2 slices, got 1"):
        run_group_protocol(scores, y, np.zeros(len(y)), methods=["atc_H_max"])


def hand_tidy() -> pd.DataFrame:
    """Slices a (n=2, accuracy 0.5), b (n=1, 1.0), c (n=1, 0.0); method m."""
    rows = [
        ("m", 1, "a", "b", 0.8, 1.0, 1),
        ("m", 1, "a", "c", 0.1, 0.0, 1),
        ("m", 1, "b", "a", 0.4, 0.5, 2),
        ("m", 1, "b", "c", 0.3, 0.0, 1),
        ("m", 1, "c", "a", 0.9, 0.5, 2),
        ("m", 1, "c", "b", 0.6, 1.0, 1),
        ("m", 2, "a+b", "c", 0.2, 0.0, 1),
    ]
    return pd.DataFrame(rows, columns=list(TIDY_COLUMNS))


def test_summary_values_match_a_hand_computed_table() -> None:
    summary = summarise_protocol(hand_tidy())
    assert list(summary.columns) == list(SUMMARY_COLUMNS)
    g1, g2 = summary.iloc[0], summary.iloc[1]
    # g = 1 per-group AEE: a (0.2 + 0.1) / 2 = 0.15, b (0.1 + 0.3) / 2 = 0.2,
    # c (0.4 + 0.4) / 2 = 0.4. Median 0.2; quartiles 0.175 and 0.3, IQR 0.125.
    assert (g1["method"], g1["g"], g1["n_groups"]) == ("m", 1, 3)
    assert g1["median_aee"] == pytest.approx(0.2)
    assert g1["iqr_aee"] == pytest.approx(0.125)
    # rho per group over two held-out slices: a +1, b +1, c -1; median +1.
    assert g1["median_rho"] == pytest.approx(1.0)
    # Floors: slice a (n=2, p=0.5) 0.25, b and c (p in {0, 1}) 0. Mean over the six rows.
    assert accuracy_floor(2, 0.5) == pytest.approx(0.25)
    assert g1["floor"] == pytest.approx(0.5 / 6)
    # g = 2: one group, one held-out slice; rho is undefined.
    assert (g2["g"], g2["n_groups"]) == (2, 1)
    assert g2["median_aee"] == pytest.approx(0.2)
    assert g2["iqr_aee"] == pytest.approx(0.0)
    assert math.isnan(g2["median_rho"])
    assert g2["floor"] == pytest.approx(0.0)


def test_summary_has_one_row_per_method_and_group_size() -> None:
    scores, y, slices = make_traces()
    tidy = run_group_protocol(scores, y, slices, max_g=3, methods=FAST_METHODS)
    summary = summarise_protocol(tidy)
    assert len(summary) == len(FAST_METHODS) * 3
    assert summary.set_index(["method", "g"])["n_groups"].to_dict() == {
        (m, g): comb(5, g) for m in FAST_METHODS for g in (1, 2, 3)
    }
    assert (summary["median_aee"] >= 0).all()


def test_summary_rho_is_the_metrics_spearman_rho_of_each_group() -> None:
    # Generated tidy table with tied and constant estimates, so NaN groups occur too.
    rng = np.random.default_rng(3)
    rows = [
        ("m", g, f"grp{i}", f"s{j}", rng.integers(0, 3) / 2 if i % 4 else 0.5, rng.random(), 10)
        for g in (1, 2)
        for i in range(12)
        for j in range(5 - g)
    ]
    tidy = pd.DataFrame(rows, columns=list(TIDY_COLUMNS))
    summary = summarise_protocol(tidy).set_index("g")
    for g, part in tidy.groupby("g"):
        rhos = [
            spearman_rho(grp["estimate"].to_numpy(), grp["truth"].to_numpy())
            for _, grp in part.groupby("group")
        ]
        assert summary.loc[g, "median_rho"] == pytest.approx(np.nanmedian(rhos))


def test_summary_of_a_table_without_the_tidy_columns_is_rejected() -> None:
    with pytest.raises(InvalidInputError, match="missing"):
        summarise_protocol(hand_tidy().drop(columns="truth"))


def test_intervals_by_default_go_to_the_cheap_methods_only_and_lie_in_the_unit_range() -> None:
    scores, y, slices = make_traces()
    tidy = run_group_protocol(
        scores, y, slices, max_g=3, methods=["default", "lr_H_max", "null_train_mean"]
    )
    assert INTERVAL_COLUMNS == ("low_served", "high_served", "low_conformal", "high_conformal")
    bounds = tidy[list(INTERVAL_COLUMNS)]
    costly = (tidy["method"] == "lr_H_max").to_numpy()
    assert bounds[costly].isna().all().all()
    assert bounds[~costly].notna().all().all()
    cheap = bounds[~costly]
    for rule in ("served", "conformal"):
        assert (cheap[f"low_{rule}"] >= 0).all()
        assert (cheap[f"high_{rule}"] <= 1).all()
        assert (cheap[f"low_{rule}"] <= cheap[f"high_{rule}"]).all()
    # Conformal widens by at least the served median, and one training slice leaves
    # nothing to hold out: conformal is [0, 1], served is the bare bootstrap.
    assert (cheap["low_conformal"] <= cheap["low_served"] + 1e-12).all()
    assert (cheap["high_conformal"] >= cheap["high_served"] - 1e-12).all()
    one = tidy[(tidy["g"] == 1) & ~costly]
    assert (one["low_conformal"] == 0).all()
    assert (one["high_conformal"] == 1).all()


def test_intervals_are_computed_only_for_the_methods_named() -> None:
    scores, y, slices = make_traces()
    tidy = run_group_protocol(
        scores, y, slices, max_g=2, methods=["atc_H_max", "lr_H_max"], intervals=["lr_H_max"]
    )
    named = (tidy["method"] == "lr_H_max").to_numpy()
    assert tidy.loc[named, "low_served"].notna().all()
    assert tidy.loc[~named, "low_served"].isna().all()
    none = run_group_protocol(scores, y, slices, max_g=1, methods=["atc_H_max"], intervals=())
    assert none[list(INTERVAL_COLUMNS)].isna().all().all()
    with pytest.raises(InvalidInputError, match="intervals must name methods"):
        run_group_protocol(scores, y, slices, max_g=1, methods=["atc_H_max"], intervals=["x"])


def test_summary_coverage_and_width_match_a_hand_computed_table() -> None:
    tidy = hand_tidy()
    # Truths: 1.0, 0.0, 0.5, 0.0, 0.5, 1.0 (g = 1), 0.0 (g = 2). A bound equal to the
    # truth counts as covered.
    tidy["low_served"] = [0.9, 0.1, 0.5, 0.0, 0.6, 0.2, 0.0]
    tidy["high_served"] = [1.0, 0.3, 0.7, 0.4, 1.0, 0.9, 0.1]
    tidy["low_conformal"] = 0.0
    tidy["high_conformal"] = 1.0
    summary = summarise_protocol(tidy).set_index("g")
    # g = 1: covered rows 1, 3, 4 of 6; widths 0.1, 0.2, 0.2, 0.4, 0.4, 0.7.
    assert summary.loc[1, "coverage_served"] == pytest.approx(3 / 6)
    assert summary.loc[1, "width_served"] == pytest.approx(2.0 / 6)
    assert summary.loc[2, "coverage_served"] == pytest.approx(1.0)
    assert summary.loc[2, "width_served"] == pytest.approx(0.1)
    assert (summary["coverage_conformal"] == 1.0).all()
    assert (summary["width_conformal"] == 1.0).all()
    # Without interval columns the statistics are NaN, not zero.
    bare = summarise_protocol(hand_tidy())
    assert bare["coverage_served"].isna().all()
    assert bare["width_conformal"].isna().all()


def test_chosen_groups_give_exactly_the_rows_of_the_exhaustive_run() -> None:
    scores, y, slices = make_traces(n_slices=4)
    full = run_group_protocol(scores, y, slices, max_g=2, methods=["atc_H_max"])
    some = run_group_protocol(scores, y, slices, methods=["atc_H_max"], groups=[(0,), (1, 3)])
    assert some["group"].nunique() == 2
    assert set(some["g"]) == {1, 2}
    merged = some.merge(full, on=["method", "g", "group", "slice"], suffixes=("", "_full"))
    assert len(merged) == len(some) == 3 + 2
    assert np.allclose(merged["estimate"], merged["estimate_full"])
    with pytest.raises(InvalidInputError, match="distinct indices into the 4 slices"):
        run_group_protocol(scores, y, slices, methods=["atc_H_max"], groups=[(0, 1, 2, 3)])
