"""The exhaustive group protocol of METHOD §7.

Over 400 lines: the protocol's method registry (every method of the results table) lives
beside the loop that runs it.

With ``B`` slices (benchmarks), for every group size ``g`` in ``1..max_g`` and every one
of the ``C(B, g)`` groups of ``g`` slices, each method is trained on the group's
responses and estimates the accuracy of every OTHER slice. :func:`run_group_protocol`
returns one tidy row per (method, group, held-out slice); :func:`summarise_protocol`
reduces it to the distribution of AEE and Spearman rho over groups per (method, g),
beside the AEE floor a perfect estimator would show on those slices.

Methods (names exactly as below; :func:`default_methods` lists them all):

- ``lr_11d``, ``rf_11d``, ``mlp_11d``: :class:`~sentinel_core.estimator.EntropyEstimator`
  on the 11-d entropy profile (logistic, forest, MLP);
- ``lr_<score>``: the logistic estimator on one column, for every profile statistic
  and every baseline score;
- ``atc_H_max``, ``atc_seq_loglik``, ``atc_H_sea``: ATC on one score (any
  ``atc_<score>`` with a known confident direction is accepted);
- ``soft_atc_<score>``: soft ATC (:mod:`sentinel_core.soft_atc`), ATC with a logistic
  ramp whose width is chosen by leave-one-slice-out error on the training slices, so
  ``P(correct)`` has a spread (not in the default list: pass it by name);
- ``anchored_<score>``: the calibrated ``lr_11d`` shifted per held-out slice onto ATC
  on ``<score>``'s share (:mod:`sentinel_core.anchoring`); ``anchored_H_max`` is the
  default (``default``), so its slice estimate is ATC's up to the ``1/(2n)`` margin;
- the honest nulls every method must beat: ``null_train_mean`` predicts the training
  slices' mean accuracy for every slice (AEBench, Sanyal et al. 2024, found this null
  within 0.01 of ATC), and ``doc_mean_max_prob``, difference of confidences (Guillory
  et al. 2021): the training accuracy shifted by how much the mean confidence (here the
  mean top-token probability; any ``doc_<score>`` in [0, 1] is accepted) moved between
  the training slices and the slice. :func:`summarise_protocol` adds each method's gap
  to both nulls and to the sampling floor.

A slice's estimate is the mean predicted ``P(correct)`` of its responses (the ATC
share for ATC). To keep the protocol fast, every estimator runs with ``search=False``
(fixed hyper-parameters) and :data:`PROTOCOL_CV` calibration folds, each method is
fitted once per group, and its predictions for all held-out rows come from one call.
The 20 one-column logistic models run with ``calibration="none"``: Platt scaling of a
logistic regression on one score is another logistic regression on that score, so the
cross-fitted calibration would only add noise, and it cost ~4x their fitting time.
The 11-d models keep the estimator's full calibration, as it is served.
Tiny or single-class training sets are handled by the estimator's documented
fallbacks, not by catching errors here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from itertools import combinations
from typing import Final

import numpy as np
import numpy.typing as npt
import pandas as pd

from sentinel_core.errors import InvalidInputError
from sentinel_core.estimator import (
    CONFIDENT_DIRECTION,
    DEFAULT_METHOD,
    AnchoredEstimator,
    ATCEstimator,
    Calibration,
    EntropyEstimator,
    Family,
    score_in_slices,
)
from sentinel_core.features import BASELINE_NAMES, FEATURE_NAMES
from sentinel_core.intervals import (
    INTERVAL_RULES,
    interval_widening,
    loso_residuals,
    resampled_interval,
    widen,
)
from sentinel_core.metrics import accuracy_floor
from sentinel_core.soft_atc import SoftATC

__all__ = [
    "INTERVAL_COLUMNS",
    "PROTOCOL_CV",
    "SUMMARY_COLUMNS",
    "TIDY_COLUMNS",
    "check_methods",
    "default_methods",
    "run_group_protocol",
    "summarise_protocol",
]

FloatArray = npt.NDArray[np.float64]

#: Calibration folds in the protocol: 2, the fewest that still cross-fit. Measured on
#: 14 slices x 134 traces, all 26 methods, max_g=2 (105 groups) on one core: 68-75 s
#: with 2 folds, 102 s with 3; the 100-tree forest, refitted per fold, is ~2/3 of it.
#: Pass ``cv=`` to :func:`run_group_protocol` for more folds in a final run.
PROTOCOL_CV: Final[int] = 2

TIDY_COLUMNS: Final[tuple[str, ...]] = (
    "method",
    "g",
    "group",
    "slice",
    "estimate",
    "truth",
    "n",
)
#: Label-free interval bounds per held-out slice, one pair per rule of
#: :data:`~sentinel_core.intervals.INTERVAL_RULES` (NaN for methods run without them).
INTERVAL_COLUMNS: Final[tuple[str, ...]] = tuple(
    f"{side}_{rule}" for rule in INTERVAL_RULES for side in ("low", "high")
)
SUMMARY_COLUMNS: Final[tuple[str, ...]] = (
    "method",
    "g",
    "median_aee",
    "iqr_aee",
    "median_rho",
    "n_groups",
    "floor",
    "gap_floor",
    "gap_null_mean",
    "gap_doc",
    *(f"{stat}_{rule}" for rule in INTERVAL_RULES for stat in ("coverage", "width")),
)

_MULTI_FEATURE: Final[dict[str, Family]] = {
    "lr_11d": "logistic",
    "rf_11d": "forest",
    "mlp_11d": "mlp",
}


def default_methods() -> tuple[str, ...]:
    """Every method of the protocol in report order (29: "default" first, the nulls last)."""
    singles = tuple(f"lr_{name}" for name in (*FEATURE_NAMES, *BASELINE_NAMES))
    return (
        "default",
        "lr_11d",
        "rf_11d",
        "mlp_11d",
        *singles,
        "atc_H_max",
        "atc_seq_loglik",
        "atc_H_sea",
        *NULL_METHODS,
    )


#: The nulls of :func:`summarise_protocol`'s gap columns, in that order.
NULL_METHODS: Final[tuple[str, ...]] = ("null_train_mean", "doc_mean_max_prob")
#: Scores that are probabilities, so a difference of their means is a difference of
#: confidences (DoC).
_DOC_SCORES: Final[frozenset[str]] = frozenset({"mean_max_prob"})


@dataclass(frozen=True)
class _Method:
    """A parsed method name: the columns it reads and how it predicts."""

    name: str
    columns: tuple[str, ...]
    family: Family | None  # EntropyEstimator family, or None for ATC and the nulls
    calibration: Calibration
    cv: int  # calibration folds of the EntropyEstimator
    null: str | None = None  # "train_mean" or "doc" for the nulls
    soft: bool = False  # soft ATC (sentinel_core.soft_atc), chooses its width by slice
    anchored: str | None = None  # the ATC score of the anchored classifier (the default)

    def predict(
        self,
        X_train: FloatArray,
        y_train: FloatArray,
        X_test: FloatArray,
        groups: npt.NDArray[np.str_] | None = None,
        test_groups: npt.NDArray[np.str_] | None = None,
    ) -> FloatArray:
        """Fit on ``(n_train, d)`` and return per-row ``P(correct)`` for ``(n_test, d)``.

        For DoC the per-row value is ``acc_train - mean(conf_train) + conf_row``, so its
        slice mean is exactly DoC's estimate ``acc_train - (mean conf_train - mean
        conf_slice)``. The anchored classifier anchors each test slice of
        ``test_groups`` (None: the test rows are one slice) on ATC's share.
        """
        return self.predict_with_votes(X_train, y_train, X_test, groups, test_groups)[0]

    def predict_with_votes(
        self,
        X_train: FloatArray,
        y_train: FloatArray,
        X_test: FloatArray,
        groups: npt.NDArray[np.str_] | None = None,
        test_groups: npt.NDArray[np.str_] | None = None,
    ) -> tuple[FloatArray, FloatArray | None]:
        """:meth:`predict` and, for the anchored classifier, ATC's 0/1 votes on
        ``X_test`` (its intervals resample them, as the served estimate does); None for
        every other method."""
        if self.anchored is not None:
            model = AnchoredEstimator(
                score=self.anchored, feature_names=self.columns, search=False
            ).fit(X_train, y_train.astype(np.int64))
            keys = np.zeros(X_test.shape[0], dtype=str) if test_groups is None else test_groups
            return score_in_slices(model, X_test, keys)
        return self._predict_plain(X_train, y_train, X_test, groups), None

    def _predict_plain(
        self,
        X_train: FloatArray,
        y_train: FloatArray,
        X_test: FloatArray,
        groups: npt.NDArray[np.str_] | None,
    ) -> FloatArray:
        if self.soft:
            soft = SoftATC(CONFIDENT_DIRECTION[self.columns[0]])
            return soft.fit(X_train[:, 0], y_train, groups=groups).predict(X_test[:, 0])
        if self.null == "train_mean":
            return np.full(X_test.shape[0], float(np.mean(y_train)))
        if self.null == "doc":
            shift = float(np.mean(y_train)) - float(np.mean(X_train[:, 0]))
            return X_test[:, 0] + shift
        if self.family is None:
            atc = ATCEstimator.for_score(self.columns[0]).fit(X_train[:, 0], y_train)
            return atc.confident(X_test[:, 0]).astype(np.float64)
        estimator = EntropyEstimator(
            family=self.family,
            calibration=self.calibration,
            search=False,
            cv=self.cv,
            random_state=0,
        )
        return estimator.fit(X_train, y_train).predict_correct_proba(X_test)


def _parse_method(name: str, available: Sequence[str], cv: int) -> _Method:
    if name == "default":
        # The estimator `sentinel estimate` serves, reported under its own name too.
        return replace(_parse_method(DEFAULT_METHOD, available, cv), name="default")
    if name == "null_train_mean":
        # Reads no score; one column keeps the matrices uniform.
        method = _Method(name, (FEATURE_NAMES[0],), None, "none", cv, null="train_mean")
    elif name.startswith("doc_") and name.removeprefix("doc_") in _DOC_SCORES:
        method = _Method(name, (name.removeprefix("doc_"),), None, "none", cv, null="doc")
    elif (
        name.startswith("anchored_")
        and name.removeprefix("anchored_") in FEATURE_NAMES
        and name.removeprefix("anchored_") in CONFIDENT_DIRECTION
    ):
        method = _Method(
            name, FEATURE_NAMES, None, "none", cv, anchored=name.removeprefix("anchored_")
        )
    elif name in _MULTI_FEATURE:
        method = _Method(name, FEATURE_NAMES, _MULTI_FEATURE[name], "auto", cv)
    elif name.startswith("lr_"):
        method = _Method(name, (name.removeprefix("lr_"),), "logistic", "none", cv)
    elif name.startswith("soft_atc_") and name.removeprefix("soft_atc_") in CONFIDENT_DIRECTION:
        method = _Method(name, (name.removeprefix("soft_atc_"),), None, "none", cv, soft=True)
    elif name.startswith("atc_") and name.removeprefix("atc_") in CONFIDENT_DIRECTION:
        method = _Method(name, (name.removeprefix("atc_"),), None, "none", cv)
    else:
        raise InvalidInputError(
            "method must be lr_11d, rf_11d, mlp_11d, lr_<score>, atc_<score>, "
            "soft_atc_<score> or anchored_<feature> with a known confident direction, "
            "null_train_mean or "
            f"doc_<probability score> "
            f"({', '.join(sorted(_DOC_SCORES))}), got {name!r}"
        )
    missing = [column for column in method.columns if column not in available]
    if missing:
        raise InvalidInputError(f"method {name!r} needs columns {missing} absent from scores")
    return method


def check_methods(methods: Sequence[str], available: Sequence[str]) -> None:
    """Raise :class:`InvalidInputError` for the first name of ``methods`` that is not a
    protocol method over the score columns ``available`` (before any work starts)."""
    if not methods:
        raise InvalidInputError(f"expected at least one method, e.g. {DEFAULT_METHOD!r}, got none")
    for name in methods:
        _parse_method(name, available, PROTOCOL_CV)


def _groups(n_slices: int, max_g: int) -> Iterator[tuple[int, ...]]:
    for g in range(1, max_g + 1):
        yield from combinations(range(n_slices), g)


def _validated(
    scores: pd.DataFrame, y: npt.ArrayLike, slices: npt.ArrayLike, max_g: int
) -> tuple[FloatArray, npt.NDArray[np.str_]]:
    labels = np.asarray(y, dtype=np.float64)
    keys = np.asarray(slices).astype(str)
    n = len(scores)
    if labels.shape != (n,) or keys.shape != (n,):
        raise InvalidInputError(
            f"scores, y and slices must be the same length, but scores has {n} rows, "
            f"y has shape {labels.shape} and slices has shape {keys.shape}"
        )
    bad = ~np.isin(labels, (0.0, 1.0))
    if np.any(bad):
        raise InvalidInputError(f"y must hold 0/1 labels, got values {np.unique(labels[bad])[:5]}")
    if isinstance(max_g, bool) or not isinstance(max_g, int) or max_g < 1:
        raise InvalidInputError(f"max_g must be a positive integer, got {max_g!r}")
    return labels, keys


@dataclass(frozen=True)
class _Intervals:
    """What the interval columns need: nominal coverage, resamples, the seed.

    Each (group, method) resamples from a generator seeded by ``(seed, *group)``, so a
    method's intervals do not depend on which other methods run beside it.
    """

    confidence: float
    n_boot: int
    seed: int


@dataclass(frozen=True)
class _SliceTable:
    """Slices of the protocol's traces: sorted names and per-slice counts and truths."""

    names: npt.NDArray[np.str_]  # (B,)
    inverse: npt.NDArray[np.intp]  # (n,) slice index per trace
    counts: npt.NDArray[np.int64]  # (B,) traces per slice
    truths: FloatArray  # (B,) observed accuracy per slice
    labels: FloatArray  # (n,) 0/1 correctness per trace

    @classmethod
    def build(cls, keys: npt.NDArray[np.str_], labels: FloatArray) -> _SliceTable:
        names, inverse = np.unique(keys, return_inverse=True)
        if names.size < 2:
            raise InvalidInputError(f"the protocol needs at least 2 slices, got {names.size}")
        counts = np.bincount(inverse, minlength=names.size)
        truths = np.bincount(inverse, weights=labels, minlength=names.size) / counts
        return cls(names, inverse.astype(np.intp), counts, truths, labels)

    def evaluate(
        self,
        method: _Method,
        X: FloatArray,
        group: tuple[int, ...],
        rows: dict[str, list[object]],
        intervals: _Intervals | None = None,
    ) -> None:
        """Train ``method`` on ``group``'s slices; append one row per held-out slice.

        With ``intervals``, the row also gets each rule's label-free interval
        (:mod:`sentinel_core.intervals`); otherwise those columns are NaN.
        """
        train = np.isin(self.inverse, group)
        held_out = np.setdiff1d(np.arange(self.names.size), group)
        train_groups = self.names[self.inverse[train]]
        p, votes = method.predict_with_votes(
            X[train],
            self.labels[train],
            X[~train],
            groups=train_groups,
            test_groups=self.names[self.inverse[~train]],
        )
        sums = np.bincount(self.inverse[~train], weights=p, minlength=self.names.size)
        bounds: dict[str, list[float]] = {column: [] for column in INTERVAL_COLUMNS}
        if intervals is None:
            for column in INTERVAL_COLUMNS:
                bounds[column] = [float("nan")] * held_out.size
        else:
            residuals = loso_residuals(method.predict, X[train], self.labels[train], train_groups)
            widths = {
                r: interval_widening(r, residuals, intervals.confidence) for r in INTERVAL_RULES
            }
            held_p = np.full(self.labels.size, np.nan)
            held_p[~train] = p
            held_v = None if votes is None else np.full(self.labels.size, np.nan)
            if held_v is not None:
                held_v[~train] = votes
            rng = np.random.default_rng([intervals.seed, *group])
            for s in held_out:
                in_slice = self.inverse == s
                boot = resampled_interval(
                    held_p[in_slice],
                    None if held_v is None else held_v[in_slice],
                    intervals.confidence,
                    intervals.n_boot,
                    rng,
                )
                for rule in INTERVAL_RULES:
                    low, high = widen(boot, widths[rule])
                    bounds[f"low_{rule}"].append(low)
                    bounds[f"high_{rule}"].append(high)
        rows["method"].extend([method.name] * held_out.size)
        rows["g"].extend([len(group)] * held_out.size)
        rows["group"].extend(["+".join(self.names[list(group)])] * held_out.size)
        rows["slice"].extend(self.names[held_out].tolist())
        rows["estimate"].extend((sums[held_out] / self.counts[held_out]).tolist())
        rows["truth"].extend(self.truths[held_out].tolist())
        rows["n"].extend(self.counts[held_out].tolist())
        for column, values in bounds.items():
            rows[column].extend(values)


def run_group_protocol(
    scores: pd.DataFrame,
    y: npt.ArrayLike,
    slices: npt.ArrayLike,
    *,
    max_g: int = 4,
    methods: Sequence[str] | None = None,
    progress: Callable[[int, int], None] | None = None,
    cv: int = PROTOCOL_CV,
    intervals: Sequence[str] | None = None,
    confidence: float = 0.9,
    n_boot: int = 1000,
    seed: int = 0,
    groups: Sequence[tuple[int, ...]] | None = None,
) -> pd.DataFrame:
    """Train on every group of ``g <= max_g`` slices, estimate every other slice.

    Args:
        scores: one row per trace, shape ``(n, >= 20)``; holds the columns the methods
            read (``FEATURE_NAMES`` and ``BASELINE_NAMES`` for the defaults).
        y: 0/1 correctness per trace, shape ``(n,)``.
        slices: slice key per trace, shape ``(n,)``; keys are compared as strings.
        max_g: largest group size; sizes that would leave no slice to evaluate
            (``g >= B``) are skipped.
        methods: names to run (see the module docstring); default
            :func:`default_methods`.
        progress: called as ``progress(groups_done, groups_total)`` after each group.
        cv: calibration folds of every estimator (the estimator reduces them further
            when a training group has fewer minority labels).
        intervals: methods (among ``methods``) that also get each rule's label-free
            interval at ``confidence`` (:mod:`sentinel_core.intervals`); each costs one
            leave-one-slice-out refit per training slice per group. ``None``: the
            cheap ones, every method that is not an ``EntropyEstimator`` (ATC, soft ATC,
            the nulls, ``default``); ``()``: none.
        confidence, n_boot, seed: the intervals' nominal coverage, bootstrap
            resamples per held-out slice, and the seed of the resampling.
        groups: run only these training groups (each a tuple of indices into the
            sorted slice names), e.g. a sample of them when ``C(B, g)`` is too many;
            a group's rows are exactly those the exhaustive run gives for it.
            Default: every group of ``g <= max_g``.

    Returns:
        A tidy frame with columns :data:`TIDY_COLUMNS`: ``method``, ``g``, ``group``
        (the training slices joined by ``"+"``, sorted), ``slice`` (held out),
        ``estimate``, ``truth`` (its observed accuracy) and ``n`` (its traces);
        ``sum_g C(B, g) * (B - g)`` rows per method; then :data:`INTERVAL_COLUMNS`
        (``low_served``, ``high_served``, ``low_conformal``, ``high_conformal``), NaN
        for methods not in ``intervals``.
    """
    labels, keys = _validated(scores, y, slices, max_g)
    parsed = [_parse_method(m, list(scores.columns), cv) for m in (methods or default_methods())]
    if intervals is None:
        with_intervals = {m.name for m in parsed if m.family is None}
    else:
        unknown = sorted(set(intervals) - {m.name for m in parsed})
        if unknown:
            raise InvalidInputError(f"intervals must name methods being run, got {unknown}")
        with_intervals = set(intervals)
    if not 0.0 < confidence < 1.0:
        raise InvalidInputError(f"confidence must lie in (0, 1), got {confidence!r}")
    settings = _Intervals(confidence, n_boot, seed)
    table = _SliceTable.build(keys, labels)
    matrices = {m.name: scores.loc[:, list(m.columns)].to_numpy(np.float64) for m in parsed}
    if groups is None:
        groups = list(_groups(table.names.size, min(max_g, table.names.size - 1)))
    else:
        groups = [tuple(int(i) for i in group) for group in groups]
        bad = [g for g in groups if not g or len(g) >= table.names.size or len(set(g)) != len(g)
               or min(g) < 0 or max(g) >= table.names.size]  # fmt: skip
        if bad:
            raise InvalidInputError(
                f"groups must hold distinct indices into the {table.names.size} slices and "
                f"leave one out, got {bad[:3]}"
            )
    columns = [*TIDY_COLUMNS, *INTERVAL_COLUMNS]
    rows: dict[str, list[object]] = {column: [] for column in columns}
    for done, group in enumerate(groups, start=1):
        for method in parsed:
            chosen = settings if method.name in with_intervals else None
            table.evaluate(method, matrices[method.name], group, rows, chosen)
        if progress is not None:
            progress(done, len(groups))
    return pd.DataFrame(rows, columns=columns)


_GROUP_KEYS: Final[list[str]] = ["method", "g", "group"]


def _spearman_by_group(frame: pd.DataFrame) -> pd.Series:
    """Spearman rho of estimate vs truth within each (method, g, group), vectorised.

    The same statistic as :func:`~sentinel_core.metrics.spearman_rho`: Pearson
    correlation of average ranks, NaN when a group has fewer than two rows or constant
    estimates or truths (a zero sum of squared centred ranks covers all three). One
    pass of grouped ranks and sums instead of one call per group: with ``max_g=4`` on
    14 slices there are ~38,000 groups.
    """
    keys = [frame[key] for key in _GROUP_KEYS]
    ranks = frame.groupby(keys, sort=True)[["estimate", "truth"]].rank()
    centred = ranks - ranks.groupby(keys).transform("mean")
    products = pd.DataFrame(
        {
            "cross": centred["estimate"] * centred["truth"],
            "ss_estimate": centred["estimate"] ** 2,
            "ss_truth": centred["truth"] ** 2,
        }
    )
    sums = products.groupby(keys, sort=True).sum()
    denominator = np.sqrt(sums["ss_estimate"].to_numpy() * sums["ss_truth"].to_numpy())
    rho = np.full(denominator.shape, np.nan)
    np.divide(sums["cross"].to_numpy(), denominator, out=rho, where=denominator > 0)
    return pd.Series(np.clip(rho, -1.0, 1.0), index=sums.index)


def summarise_protocol(tidy: pd.DataFrame) -> pd.DataFrame:
    """Distribution over groups of AEE and Spearman rho, per (method, g).

    Per group, AEE is the mean over held-out slices of ``|estimate - truth|`` and rho
    the Spearman correlation over held-out slices (NaN when undefined, e.g. one
    held-out slice or constant estimates; such groups are left out of the median).

    Returns:
        One row per (method, g), sorted, with columns :data:`SUMMARY_COLUMNS`:
        ``median_aee``, ``iqr_aee`` (75th minus 25th percentile over groups),
        ``median_rho``, ``n_groups``, and ``floor``: the mean over held-out rows of
        :func:`~sentinel_core.metrics.accuracy_floor` at the slice's ``n`` and observed
        accuracy, the AEE a perfect estimator would still show; ``gap_floor``,
        ``gap_null_mean`` and ``gap_doc``: ``median_aee`` minus the floor, minus the
        median AEE of ``null_train_mean`` and of ``doc_mean_max_prob`` at the same ``g``
        (NaN when that null was not run). A method that does not beat the nulls shows a
        gap at or above 0. Per interval rule (``served``, ``conformal``),
        ``coverage_<rule>``: the share of held-out rows (all groups pooled) whose truth
        lies in ``[low_<rule>, high_<rule>]``, and ``width_<rule>``: their mean
        ``high - low``; NaN where the tidy frame has no such interval.
    """
    missing = sorted(set(TIDY_COLUMNS) - set(tidy.columns))
    if missing:
        raise InvalidInputError(f"tidy must have columns {list(TIDY_COLUMNS)}, missing {missing}")
    pairs = tidy.loc[:, ["n", "truth"]].drop_duplicates()
    pairs["floor"] = [
        accuracy_floor(int(n), float(t)) for n, t in zip(pairs["n"], pairs["truth"], strict=True)
    ]
    frame = tidy.merge(pairs, on=["n", "truth"], how="left")
    frame["abs_error"] = (frame["estimate"] - frame["truth"]).abs()
    interval_stats: dict[str, pd.Series] = {}
    for rule in INTERVAL_RULES:
        low_col, high_col = f"low_{rule}", f"high_{rule}"
        if {low_col, high_col} <= set(frame.columns):
            low, high = frame[low_col], frame[high_col]
            tol = 1e-12  # a truth on a bound is inside, whatever the rounding
            inside = (low - tol <= frame["truth"]) & (frame["truth"] <= high + tol)
            part = pd.DataFrame(
                {"covered": inside.where(low.notna()).astype(float), "width": high - low}
            )
        else:
            part = pd.DataFrame({"covered": np.nan, "width": np.nan}, index=frame.index)
        by = part.groupby([frame["method"], frame["g"]], sort=True)
        interval_stats[f"coverage_{rule}"] = by["covered"].mean()
        interval_stats[f"width_{rule}"] = by["width"].mean()
    per_group = frame.groupby(_GROUP_KEYS, sort=True).agg(
        aee=("abs_error", "mean"), floor=("floor", "mean")
    )
    per_group["rho"] = _spearman_by_group(frame)
    by_g = per_group.groupby(level=["method", "g"], sort=True)
    summary = pd.DataFrame(
        {
            "median_aee": by_g["aee"].median(),
            "iqr_aee": by_g["aee"].quantile(0.75) - by_g["aee"].quantile(0.25),
            "median_rho": by_g["rho"].median(),
            "n_groups": by_g["aee"].size(),
            "floor": by_g["floor"].mean(),
        }
    ).reset_index()
    summary = summary.join(pd.DataFrame(interval_stats), on=["method", "g"])
    summary["gap_floor"] = summary["median_aee"] - summary["floor"]
    for null, column in zip(NULL_METHODS, ("gap_null_mean", "gap_doc"), strict=True):
        # NaN where the null was not run: a gap to nothing is not a zero gap.
        reference = summary.loc[summary["method"] == null].set_index("g")["median_aee"]
        summary[column] = summary["median_aee"] - summary["g"].map(reference)
    return summary.loc[:, list(SUMMARY_COLUMNS)]
