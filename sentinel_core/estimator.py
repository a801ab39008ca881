"""The estimator ``f: R^d -> [0, 1]`` of ``P(correct | h(x))`` and the ATC baseline.

Over 400 lines: the estimator, its calibration and the ATC baseline share one scikit-
learn contract (fit / predict_proba / the estimator checks), so they stay together.

:class:`EntropyEstimator` is the classifier of METHOD §5, written to the scikit-learn
contract (``__init__`` only stores parameters, ``fit`` validates and returns ``self``,
learned state ends in ``_``, ``check_is_fitted`` guards use) so that it clones,
pickles, cross-validates and sits in a ``Pipeline`` like any scikit-learn classifier.
Its model is ``StandardScaler`` followed by a logistic regression (default), a random
forest or a small MLP; hyper-parameters are chosen by ``GridSearchCV`` on log-loss and
the chosen pipeline is cross-fitted and calibrated by ``CalibratedClassifierCV``.

:class:`ATCEstimator` is average thresholded confidence (Garg et al., 2022), the simple
baseline every estimate is measured against (METHOD §7), on one score whose
confident side is given by :data:`CONFIDENT_DIRECTION`.

:func:`estimate_held_out_calibration_error` measures how far slice means of an
estimator's probabilities fall from slice accuracies on slices it was not trained on;
METHOD §6 widens label-free intervals by that amount.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from types import MappingProxyType
from typing import Any, Final, Literal, Protocol

import numpy as np
import numpy.typing as npt
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import RandomForestClassifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.class_weight import compute_sample_weight
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data
from threadpoolctl import ThreadpoolController  # type: ignore[import-untyped]

from sentinel_core.anchoring import anchor_to_slices
from sentinel_core.arrays import as_labels, as_vector, check_same_length
from sentinel_core.errors import InvalidInputError, NotFittedError
from sentinel_core.features import FEATURE_NAMES
from sentinel_core.soft_atc import SoftATC

__all__ = [
    "CONFIDENT_DIRECTION",
    "CONSTANT_PROBA_RANGE",
    "DEFAULT_METHOD",
    "ISOTONIC_MIN_LABELS",
    "MIN_CUT_LABELS",
    "PARAM_GRIDS",
    "SERVABLE_METHODS",
    "ATCClassifier",
    "ATCEstimator",
    "AnchoredEstimator",
    "Calibration",
    "EntropyEstimator",
    "Family",
    "ProbabilisticClassifier",
    "ServableEstimator",
    "cut_share",
    "estimate_held_out_calibration_error",
    "fit_estimator",
    "make_estimator",
    "pinned_for",
    "predict_in_slices",
    "score_in_slices",
    "score_parts",
]

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
Family = Literal["logistic", "forest", "mlp"]
Calibration = Literal["auto", "isotonic", "sigmoid", "none"]

#: Training sets with at least this many labels are calibrated with isotonic
#: regression under ``calibration="auto"``; smaller ones with a sigmoid (Platt), which
#: has two parameters and does not overfit a few hundred labels (scikit-learn's user
#: guide, "Probability calibration", advises against isotonic below ~1000 samples).
ISOTONIC_MIN_LABELS: Final[int] = 1000

#: The default pins responses cut at ``max_tokens`` (:mod:`sentinel_core.anchoring`)
#: only when at least this many cut responses were in its training labels: their share
#: of correct is then known to within about 0.1 (a binomial sd at 20 draws is <= 0.11).
MIN_CUT_LABELS: Final[int] = 20

#: ``P(correct)`` predicted after training on a single class: the training accuracy
#: (0 or 1) clipped to this range. A supervision set that is all correct says the
#: target is probably easy, not that every response is certainly right; the clip keeps
#: log-loss finite and leaves the estimate 0.01 from the observed rate.
CONSTANT_PROBA_RANGE: Final[tuple[float, float]] = (0.01, 0.99)

#: The grid ``search=True`` explores per family (step ``model`` of the pipeline).
#: Small on purpose: supervision sets hold hundreds to a few thousand labels, and the
#: paper finds a plain logistic regression matches flexible learners.
PARAM_GRIDS: Final[Mapping[str, Mapping[str, tuple[Any, ...]]]] = MappingProxyType(
    {
        "logistic": MappingProxyType({"model__C": (0.01, 0.1, 1.0, 10.0, 100.0)}),
        "forest": MappingProxyType(
            {"model__min_samples_leaf": (1, 5, 20), "model__max_depth": (None, 6)}
        ),
        "mlp": MappingProxyType(
            {"model__hidden_layer_sizes": ((8,), (32,)), "model__alpha": (1e-3, 1e-1, 10.0)}
        ),
    }
)

#: Score name -> True when a HIGHER value means a more confident response, for ATC.
#: Entropies (and their sum, SEA/EAS) and perplexity measure uncertainty: lower is
#: confident. Log-likelihoods, log-probs, max-probability and margin measure
#: confidence: higher is confident. The spread H_std is lower for a steady, confident
#: trajectory. H_skew and H_kurt are heuristics: a mostly near-zero entropy trajectory
#: with rare spikes is right-skewed and heavy-tailed, a uniformly uncertain one is not,
#: so higher is taken as confident; the protocol does not use ATC on these two.
CONFIDENT_DIRECTION: Final[Mapping[str, bool]] = MappingProxyType(
    {
        "H_max": False,
        "H_mean": False,
        "H_std": False,
        "H_q10": False,
        "H_q25": False,
        "H_q50": False,
        "H_q75": False,
        "H_q90": False,
        "H_skew": True,
        "H_kurt": True,
        "H_sea": False,
        "seq_loglik": True,
        "mean_logprob": True,
        "perplexity": False,
        "min_logprob": True,
        "mean_max_prob": True,
        "mean_margin": True,
        "mean_entropy": False,
        "max_entropy": False,
        "eas": False,
    }
)

_FAMILIES: Final[tuple[str, ...]] = ("logistic", "forest", "mlp")
_CALIBRATIONS: Final[tuple[str, ...]] = ("auto", "isotonic", "sigmoid", "none")


class ProbabilisticClassifier(Protocol):
    """What :func:`estimate_held_out_calibration_error` needs of an estimator."""

    def fit(self, X: Any, y: Any) -> Any: ...

    def predict_proba(self, X: Any) -> Any: ...


def _make_model(family: str, random_state: int) -> Any:
    """The unfitted final step of the pipeline, with the fixed defaults of ``search=False``.

    - logistic: L2, ``C=1``, lbfgs with ``max_iter=1000`` so standardised inputs converge.
    - forest: 100 trees, ``min_samples_leaf=5`` so leaves give smooth probabilities.
    - mlp: one hidden layer of 16 units, ``alpha=1e-2``, lbfgs (scikit-learn's advice for
      small data sets) stopping at a gradient of ``tol=1e-3`` (ample for probabilities
      that are calibrated afterwards; 1e-4 took 5-10x the iterations), capped at
      ``max_iter=200``: the cap bounds the cost and acts as early stopping; see
      :func:`_tolerating_mlp_iteration_cap`.
    """
    if family == "logistic":
        return LogisticRegression(C=1.0, max_iter=1000, random_state=random_state)
    if family == "forest":
        return RandomForestClassifier(
            n_estimators=100, min_samples_leaf=5, random_state=random_state
        )
    return MLPClassifier(
        hidden_layer_sizes=(16,),
        alpha=1e-2,
        solver="lbfgs",
        tol=1e-3,
        max_iter=200,
        random_state=random_state,
    )


@contextmanager
def _tolerating_mlp_iteration_cap(family: str) -> Iterator[None]:
    """Silence ``ConvergenceWarning`` for MLP fits only.

    Why: the MLP's ``max_iter`` is a deliberate budget (it bounds the cost of every
    protocol fit and regularises like early stopping); lbfgs reports reaching it as a
    ``ConvergenceWarning``. The capped network is a valid model and is calibrated
    afterwards. Logistic regression keeps its warnings: it must converge.
    """
    with warnings.catch_warnings():
        if family == "mlp":
            warnings.filterwarnings("ignore", category=ConvergenceWarning)
        yield


@functools.cache
def _blas_controller() -> Any:
    """The process's BLAS thread pools, inspected once (a fresh inspection costs ~5 ms)."""
    return ThreadpoolController()


@contextmanager
def _one_blas_thread() -> Iterator[None]:
    """Run the block with BLAS limited to one thread.

    Why: the estimator's matrices are tiny (hundreds to thousands of rows by 11
    columns), so BLAS threads only add synchronisation; on a busy 2-core machine they
    made an MLP fit 13x and the protocol 3x slower.
    """
    with _blas_controller().limit(limits=1, user_api="blas"):
        yield


class EntropyEstimator(ClassifierMixin, BaseEstimator):  # type: ignore[misc]
    """Calibrated binary classifier of ``P(correct | features)`` (METHOD §5).

    Parameters:
        family: ``"logistic"`` (default), ``"forest"`` or ``"mlp"``; see
            :func:`_make_model` for the fixed defaults and :data:`PARAM_GRIDS` for the
            grid searched.
        calibration: ``"isotonic"``, ``"sigmoid"``, or ``"auto"``: isotonic when the
            training set holds at least :data:`ISOTONIC_MIN_LABELS` labels, sigmoid below.
            ``"none"`` fits the pipeline on all data, uncalibrated: only for a model that
            is calibrated by construction, such as an unweighted logistic regression in
            the sigmoid regime, where Platt scaling refits the same logistic family
            (``sigmoid(a * (w.x + b) + c)``) and only adds cross-fitting noise and cost.
            It leaves class balancing uncorrected.
        class_weight: ``None`` or ``"balanced"``. Balancing reweights the base model's
            fit only; the calibrator is fitted on unweighted held-out folds, so the
            calibrated probabilities still average to the accuracy.
        cv: folds for the search and for cross-fitted calibration (at least 2).
        search: choose hyper-parameters by ``GridSearchCV`` on log-loss over the
            family's grid; ``False`` uses the fixed defaults (fast; the protocol uses it).
        random_state: seed of the fold shuffling and of the models.

    Labels: any two classes; the larger one (1 for 0/1, ``True`` for booleans) is
    "correct", and :meth:`predict_correct_proba` returns its probability.

    Small training sets, decided in :meth:`fit` and recorded in attributes:

    - one class in ``y``: no model is fitted; ``constant_`` is True and the estimator
      predicts the training accuracy (0 or 1) clipped to :data:`CONSTANT_PROBA_RANGE`.
      This needs 0/1 (or boolean) labels, so that "correct" is defined.
    - fewer members in the minority class than ``cv``: the folds are reduced to the
      minority count, so every stratified fold holds both classes.
    - a minority class of one: neither search nor calibration can be cross-fitted; the
      pipeline with fixed defaults is fitted on all data and left uncalibrated
      (``calibration_method_ == "none"``).

    Attributes:
        classes_: the two class labels, shape ``(2,)``.
        n_features_in_, feature_names_in_: as scikit-learn sets them.
        constant_: True when trained on a single class.
        constant_proba_: the constant ``P(correct)`` when ``constant_``, else NaN.
        n_folds_: folds actually used by the search and calibration (0 when neither ran).
        calibration_method_: ``"isotonic"``, ``"sigmoid"`` or ``"none"``.
        best_params_: hyper-parameters chosen by the search (empty without search).
        model_: the fitted ``CalibratedClassifierCV`` or ``Pipeline``; None when constant.
    """

    def __init__(
        self,
        family: Family = "logistic",
        calibration: Calibration = "auto",
        class_weight: Literal["balanced"] | None = None,
        cv: int = 5,
        search: bool = True,
        random_state: int = 0,
    ) -> None:
        self.family = family
        self.calibration = calibration
        self.class_weight = class_weight
        self.cv = cv
        self.search = search
        self.random_state = random_state

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = False
        return tags

    def _check_params(self) -> None:
        if self.family not in _FAMILIES:
            raise InvalidInputError(f"family must be one of {_FAMILIES}, got {self.family!r}")
        if self.calibration not in _CALIBRATIONS:
            raise InvalidInputError(
                f"calibration must be one of {_CALIBRATIONS}, got {self.calibration!r}"
            )
        if self.class_weight not in (None, "balanced"):
            raise InvalidInputError(
                f"class_weight must be None or 'balanced', got {self.class_weight!r}"
            )
        if isinstance(self.cv, bool) or not isinstance(self.cv, int) or self.cv < 2:
            raise InvalidInputError(f"cv must be an integer >= 2, got {self.cv!r}")

    def fit(self, X: Any, y: Any) -> EntropyEstimator:
        """Fit on features ``X`` of shape ``(n, d)`` and binary labels ``y`` of shape ``(n,)``."""
        with _one_blas_thread():
            return self._fit(X, y)

    def _fit(self, X: Any, y: Any) -> EntropyEstimator:
        self._check_params()
        X, y = validate_data(self, X, y)
        check_classification_targets(y)
        classes, y_index = np.unique(y, return_inverse=True)
        if classes.size > 2:
            raise InvalidInputError(
                "Only binary classification is supported. The type of the target is "
                f"multiclass: y must hold 2 classes, got {classes.size}: {classes[:5].tolist()}"
            )
        self.best_params_: dict[str, Any] = {}
        if classes.size == 1:
            return self._fit_constant(classes.tolist()[0], np.asarray(y).dtype)
        self.classes_ = classes
        self.constant_ = False
        self.constant_proba_ = float("nan")
        y01 = y_index.astype(np.int64)
        fit_params = self._fit_params(y01)
        pipeline = Pipeline(
            [("scale", StandardScaler()), ("model", _make_model(self.family, self.random_state))]
        )
        n_folds = int(min(self.cv, np.bincount(y01).min()))
        self.calibration_method_ = self._calibration_method(y01.size) if n_folds >= 2 else "none"
        cross_fitted = self.search or self.calibration_method_ != "none"
        self.n_folds_ = n_folds if n_folds >= 2 and cross_fitted else 0
        model: Any = pipeline
        if self.n_folds_:
            folds = StratifiedKFold(self.n_folds_, shuffle=True, random_state=self.random_state)
            if self.search:
                pipeline = model = self._searched(pipeline, X, y01, folds, fit_params)
            if self.calibration_method_ != "none":
                model = CalibratedClassifierCV(pipeline, method=self.calibration_method_, cv=folds)
        with _tolerating_mlp_iteration_cap(self.family):
            self.model_ = model.fit(X, y01, **fit_params)
        return self

    def _fit_constant(self, label: Any, dtype: np.dtype[Any]) -> EntropyEstimator:
        """Record the single-class fallback; see the class docstring."""
        if dtype.kind not in "biuf" or label not in (0, 1):
            raise InvalidInputError(
                f"y holds a single class {label!r}; a one-class fit needs 0/1 labels so "
                "that P(correct) is defined"
            )
        low, high = CONSTANT_PROBA_RANGE
        self.classes_ = np.array([0, 1]).astype(dtype)
        self.constant_ = True
        self.constant_proba_ = float(np.clip(float(label), low, high))
        self.n_folds_ = 0
        self.calibration_method_ = "none"
        self.model_ = None
        return self

    def _fit_params(self, y01: npt.NDArray[np.int64]) -> dict[str, Any]:
        """Balanced weights go to the model step only, never to the calibrator."""
        if self.class_weight is None:
            return {}
        return {"model__sample_weight": compute_sample_weight("balanced", y01)}

    def _calibration_method(self, n_labels: int) -> str:
        if self.calibration != "auto":
            return str(self.calibration)
        return "isotonic" if n_labels >= ISOTONIC_MIN_LABELS else "sigmoid"

    def _searched(
        self,
        pipeline: Any,
        X: Any,
        y01: npt.NDArray[np.int64],
        folds: Any,
        fit_params: dict[str, Any],
    ) -> Any:
        """Return ``pipeline`` (unfitted) set to the grid point of best CV log-loss."""
        grid = {name: list(values) for name, values in PARAM_GRIDS[self.family].items()}
        search = GridSearchCV(
            pipeline,
            grid,
            scoring="neg_log_loss",
            cv=folds,
            refit=False,
            error_score="raise",
        )
        with _tolerating_mlp_iteration_cap(self.family):
            search.fit(X, y01, **fit_params)
        self.best_params_ = dict(search.best_params_)
        return pipeline.set_params(**self.best_params_)

    def predict_proba(self, X: Any) -> FloatArray:
        """Class probabilities, shape ``(n, 2)``, columns in ``classes_`` order."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False)
        if self.constant_:
            p_correct = np.full(X.shape[0], self.constant_proba_, dtype=np.float64)
        else:
            with _one_blas_thread():
                p_correct = np.asarray(self.model_.predict_proba(X)[:, 1], dtype=np.float64)
        return np.column_stack([1.0 - p_correct, p_correct])

    def predict_correct_proba(self, X: Any) -> FloatArray:
        """``P(correct)`` per row, shape ``(n,)``: the probability of ``classes_[1]``."""
        return self.predict_proba(X)[:, 1]

    def predict(self, X: Any) -> npt.NDArray[Any]:
        """The more probable class per row, shape ``(n,)`` (ties go to ``classes_[0]``)."""
        proba = self.predict_proba(X)
        return np.asarray(self.classes_[np.argmax(proba, axis=1)])


class ATCEstimator:
    """Average thresholded confidence (Garg et al., 2022) on a single score.

    ``fit`` picks a threshold ``t`` on source (training) responses so that the share on
    the confident side equals the source accuracy; ``estimate`` is the share of target
    responses on the confident side. The confident side is ``score > t`` when
    ``higher_is_confident`` else ``score < t`` (strict in both cases).

    Threshold rule: ``t`` is the source score value whose confident share is closest to
    the source accuracy (the ``1 - acc`` empirical quantile when scores are distinct;
    with tied scores the exact share may be out of reach and the closest one is taken,
    the larger share on a draw). When the source accuracy is 1 (or 0) every source
    response is (or none is) confident whatever ``t``; the threshold is then ``-inf``
    (or ``+inf``) in the confident direction, so every target estimate equals that
    accuracy: the source says nothing about where failures begin.

    Attributes:
        threshold_: ``t`` in the score's own units.
        source_accuracy_: accuracy of the source responses.
    """

    def __init__(self, higher_is_confident: bool) -> None:
        self.higher_is_confident = higher_is_confident

    @classmethod
    def for_score(cls, name: str) -> ATCEstimator:
        """An unfitted ATC for a score named in :data:`CONFIDENT_DIRECTION`."""
        if name not in CONFIDENT_DIRECTION:
            raise InvalidInputError(
                f"score must be one of {sorted(CONFIDENT_DIRECTION)}, got {name!r}"
            )
        return cls(higher_is_confident=CONFIDENT_DIRECTION[name])

    def _oriented(self, scores: FloatArray) -> FloatArray:
        """Scores turned so that higher is always more confident."""
        return scores if self.higher_is_confident else -scores

    def fit(self, scores: npt.ArrayLike, y: npt.ArrayLike) -> ATCEstimator:
        """Fit on source scores and 0/1 correctness, both of shape ``(n,)``."""
        s = as_vector("scores", scores)
        labels = as_labels("y", y)
        check_same_length("scores", s.size, "y", labels.size)
        accuracy = float(labels.mean())
        self.source_accuracy_ = accuracy
        if accuracy in (0.0, 1.0):
            oriented_t = np.inf if accuracy == 0.0 else -np.inf
        else:
            values, counts = np.unique(self._oriented(s), return_counts=True)
            share_above = (s.size - np.cumsum(counts)) / s.size  # share with value > values[j]
            oriented_t = float(values[np.argmin(np.abs(share_above - accuracy))])
        self.threshold_ = oriented_t if self.higher_is_confident else -oriented_t
        return self

    def confident(self, scores: npt.ArrayLike) -> BoolArray:
        """Whether each response is on the confident side, shape ``(n,)``."""
        if not hasattr(self, "threshold_"):
            raise NotFittedError("ATCEstimator must be fitted before use; call fit(scores, y)")
        s = as_vector("scores", scores)
        if self.higher_is_confident:
            return np.asarray(s > self.threshold_)
        return np.asarray(s < self.threshold_)

    def estimate(self, scores: npt.ArrayLike) -> float:
        """Estimated accuracy of the target responses: their confident share."""
        return float(np.mean(self.confident(scores)))


def estimate_held_out_calibration_error(
    X: npt.ArrayLike,
    y: npt.ArrayLike,
    groups: npt.ArrayLike,
    *,
    estimator_factory: Callable[[], ProbabilisticClassifier],
) -> float:
    """Typical error of slice-mean ``P(correct)`` on slices left out of training.

    Leave-one-slice-out: for every group, fit a fresh estimator from
    ``estimator_factory()`` on the other groups and compare the mean predicted
    ``P(correct)`` on the held-out group with its accuracy. Returns the MEDIAN of the
    absolute errors, the typical miss that METHOD §6 adds to label-free intervals; a
    mean would let one pathological slice widen every interval. NaN with fewer than two
    groups, where nothing can be held out.

    Args:
        X: features, shape ``(n, d)`` (converted to a float array; names are dropped).
        y: 0/1 correctness, shape ``(n,)``.
        groups: slice key per row, shape ``(n,)``.
        estimator_factory: makes an unfitted estimator, e.g.
            ``lambda: EntropyEstimator(search=False)``.
    """
    features = np.asarray(X, dtype=np.float64)
    keys = np.asarray(groups)
    if features.ndim != 2:
        raise InvalidInputError(f"X must be 2-D of shape (n, d), got shape {features.shape}")
    labels = as_labels("y", y)
    check_same_length("X", features.shape[0], "y", labels.size)
    if keys.shape != (features.shape[0],):
        raise InvalidInputError(
            f"X and groups must be the same length, but X has {features.shape[0]} rows "
            f"and groups has shape {keys.shape}"
        )
    unique = np.unique(keys)
    if unique.size < 2:
        return float("nan")
    errors = np.empty(unique.size)
    for i, key in enumerate(unique):
        held_out = keys == key
        model = estimator_factory()
        if isinstance(model, ATCClassifier):  # soft ATC chooses its width by the slices too
            model.fit(features[~held_out], labels[~held_out], groups=keys[~held_out])
        else:
            model.fit(features[~held_out], labels[~held_out])
        p_correct = predict_in_slices(model, features[held_out], keys[held_out])
        errors[i] = abs(float(p_correct.mean()) - float(labels[held_out].mean()))
    return float(np.median(errors))


def _score_column(score: str, feature_names: tuple[str, ...] | None) -> int:
    """The index of ``score`` among ``feature_names`` (METHOD order by default)."""
    names = FEATURE_NAMES if feature_names is None else tuple(feature_names)
    if score not in names:
        raise InvalidInputError(f"score must be one of {list(names)}, got {score!r}")
    return names.index(score)


class ATCClassifier(ClassifierMixin, BaseEstimator):  # type: ignore[misc]
    """ATC on one column of the feature matrix, served like any scikit-learn classifier.

    With ``soft=False`` the instance-level output of ATC is a hard decision:
    ``predict_proba`` gives 1 for a response on the confident side of the threshold, 0
    otherwise, so the slice mean of ``P(correct)`` is exactly ATC's estimate. With
    ``soft=True`` (``soft_atc_H_max``, the default before ``anchored_H_max``) it is soft ATC
    (:mod:`sentinel_core.soft_atc`): the same equation with a logistic ramp whose width
    the training slices choose (``fit(X, y, groups=slices)``), so ``P(correct)`` has a
    spread and its slice mean is still the slice estimate. Prediction-powered inference
    corrects either with labels like any other predictor. ``score`` names the column
    among ``feature_names`` (the columns the matrix holds, METHOD order by default).

    The default estimator is :class:`AnchoredEstimator`: ATC's slice estimate with a
    calibrated classifier's per-response spread; the paper's calibrated classifier is
    :class:`EntropyEstimator`, selectable by method name.
    """

    def __init__(
        self,
        score: str = "H_max",
        feature_names: tuple[str, ...] | None = None,
        soft: bool = False,
    ) -> None:
        self.score = score
        self.feature_names = feature_names
        self.soft = soft

    def _column(self) -> int:
        return _score_column(self.score, self.feature_names)

    def fit(self, X: Any, y: Any, groups: Any = None) -> ATCClassifier:
        """Fit on the ``score`` column of ``X`` ``(n, d)`` and 0/1 ``y`` ``(n,)``.

        ``groups`` (each response's slice) lets soft ATC choose its ramp width by
        leave-one-slice-out error; hard ATC ignores it.
        """
        X, y = validate_data(self, X, y)
        check_classification_targets(y)
        self.classes_ = np.array([0, 1])
        column = X[:, self._column()]
        self.atc_ = ATCEstimator.for_score(self.score).fit(column, y)
        if self.soft:
            self.soft_atc_ = SoftATC(CONFIDENT_DIRECTION[self.score]).fit(column, y, groups)
        return self

    def predict_proba(self, X: Any) -> FloatArray:
        """``(n, 2)``: column 1 is ``P(correct)`` (0/1 for hard ATC)."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False)
        column = X[:, self._column()]
        if self.soft:
            correct = self.soft_atc_.predict(column)
        else:
            correct = self.atc_.confident(column).astype(np.float64)
        return np.column_stack([1.0 - correct, correct])

    def predict_correct_proba(self, X: Any) -> FloatArray:
        """``P(correct)`` per row, shape ``(n,)``."""
        return self.predict_proba(X)[:, 1]

    def predict(self, X: Any) -> npt.NDArray[Any]:
        """1 where ``P(correct) > 0.5``, 0 otherwise, shape ``(n,)``."""
        return (self.predict_correct_proba(X) > 0.5).astype(np.int64)


class AnchoredEstimator(ClassifierMixin, BaseEstimator):  # type: ignore[misc]
    """The default: a calibrated classifier anchored, per slice, on ATC's share.

    ``fit`` trains the calibrated logistic regression over the 11-d profile
    (:class:`EntropyEstimator`, ``lr_11d``) and ATC on the ``score`` column
    (:class:`ATCEstimator`) on the same responses. ``predict_proba(X, slices=keys)``
    gives each response the classifier's ``P(correct)`` shifted on the log-odds scale,
    one shift per slice, so that the slice's mean is ATC's share of confident responses
    (:mod:`sentinel_core.anchoring`): the slice estimate is ATC's, and the responses
    keep the classifier's order and spread within it. Without ``slices`` it gives the
    classifier's pooled ``P(correct)``. :meth:`predict_parts` returns both parts, for
    callers that score in chunks and anchor once every chunk of a slice is in.

    Responses cut at ``max_tokens``: ``fit(..., cut=)`` measures the share of correct
    among the training responses that were cut (``cut_p_``, add-half smoothed; NaN with
    fewer than :data:`MIN_CUT_LABELS` of them or without ``cut``), and
    :func:`score_in_slices` pins the cut responses it is given there, anchoring the
    others around them (the slice estimate stays ATC's).

    Parameters:
        score: the ATC column among ``feature_names`` (default ``H_max``).
        feature_names: the columns ``X`` holds (METHOD order by default).
        calibration, search, random_state: passed to the classifier.
    """

    def __init__(
        self,
        score: str = "H_max",
        feature_names: tuple[str, ...] | None = None,
        calibration: Calibration = "auto",
        search: bool = True,
        random_state: int = 0,
    ) -> None:
        self.score = score
        self.feature_names = feature_names
        self.calibration = calibration
        self.search = search
        self.random_state = random_state

    def _column(self) -> int:
        return _score_column(self.score, self.feature_names)

    def fit(self, X: Any, y: Any, groups: Any = None, cut: Any = None) -> AnchoredEstimator:
        """Fit both parts on ``X`` ``(n, d)`` and 0/1 ``y`` ``(n,)`` (``groups`` unused);
        ``cut`` ``(n,)`` bool: which responses were cut at ``max_tokens`` (``cut_p_``)."""
        X, y = validate_data(self, X, y)
        check_classification_targets(y)
        labels = as_labels("y", y)
        self.cut_p_ = float("nan")
        if cut is not None:
            was_cut = np.asarray(cut, dtype=bool).ravel()
            check_same_length("y", labels.size, "cut", was_cut.size)
            if was_cut.sum() >= MIN_CUT_LABELS:
                self.cut_p_ = float((labels[was_cut].sum() + 0.5) / (was_cut.sum() + 1.0))
        self.classes_ = np.array([0, 1])
        self.classifier_ = EntropyEstimator(
            family="logistic",
            calibration=self.calibration,
            search=self.search,
            random_state=self.random_state,
        ).fit(X, labels.astype(np.int64))
        self.atc_ = ATCEstimator.for_score(self.score).fit(X[:, self._column()], labels)
        return self

    def predict_parts(self, X: Any) -> tuple[FloatArray, FloatArray]:
        """``(p, votes)``, both ``(n,)``: the pooled ``P(correct)`` and ATC's 0/1 vote."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False)
        p = np.asarray(self.classifier_.predict_correct_proba(X), dtype=np.float64)
        votes = self.atc_.confident(X[:, self._column()]).astype(np.float64)
        return p, votes

    def predict_proba(self, X: Any, slices: Any = None) -> FloatArray:
        """``(n, 2)``: column 1 is ``P(correct)``, anchored per slice when ``slices``
        (each row's slice key, ``(n,)``) is given, pooled otherwise."""
        p, votes = self.predict_parts(X)
        correct = p if slices is None else anchor_to_slices(p, votes, slices)
        return np.column_stack([1.0 - correct, correct])

    def predict_correct_proba(self, X: Any, slices: Any = None) -> FloatArray:
        """``P(correct)`` per row, shape ``(n,)`` (``slices``: see :meth:`predict_proba`)."""
        return self.predict_proba(X, slices)[:, 1]

    def predict(self, X: Any) -> npt.NDArray[Any]:
        """1 where the pooled ``P(correct) > 0.5``, 0 otherwise, shape ``(n,)``."""
        return (self.predict_correct_proba(X) > 0.5).astype(np.int64)


def score_parts(estimator: Any, X: Any) -> tuple[FloatArray, FloatArray | None]:
    """``(p, votes)`` of any fitted estimator: votes for an :class:`AnchoredEstimator`
    (anchor them with :func:`sentinel_core.anchoring.anchor_to_slices` once the slices
    are whole), None for the others, whose ``p`` is final."""
    if isinstance(estimator, AnchoredEstimator):
        p, votes = estimator.predict_parts(X)
        return np.asarray(p, dtype=np.float64), np.asarray(votes, dtype=np.float64)
    return np.asarray(estimator.predict_proba(X), dtype=np.float64)[:, 1], None


def cut_share(estimator: Any) -> float:
    """The default's ``cut_p_`` (share of correct among its cut training responses);
    NaN for other estimators and for models registered before it existed."""
    if not isinstance(estimator, AnchoredEstimator):
        return float("nan")
    return float(getattr(estimator, "cut_p_", float("nan")))


def pinned_for(estimator: Any, cut: npt.ArrayLike | None) -> FloatArray | None:
    """Each response's pinned ``P(correct)`` (NaN: free) for the default whose training
    measured ``cut_p_``, given ``cut`` ``(n,)`` (cut at ``max_tokens``); None when nothing
    is pinned (another estimator, an older model without ``cut_p_``, or no cut)."""
    cut_p = cut_share(estimator)
    if cut is None or np.isnan(cut_p):
        return None
    was_cut = np.asarray(cut, dtype=bool).ravel()
    if not was_cut.any():
        return None
    return np.where(was_cut, cut_p, np.nan)


def score_in_slices(
    estimator: Any, X: Any, slices: npt.ArrayLike, cut: npt.ArrayLike | None = None
) -> tuple[FloatArray, FloatArray | None]:
    """``(P(correct), votes)`` per row of ``X`` for rows whose slices are all there
    (``slices``: each row's key, ``(n,)``): P anchored and ATC's votes for the default
    (its label-free intervals resample them), P as predicted and None for the others.
    ``cut`` ``(n,)``: responses cut at ``max_tokens``, pinned by the default
    (:func:`pinned_for`)."""
    p, votes = score_parts(estimator, X)
    if votes is None:
        return p, None
    return anchor_to_slices(p, votes, slices, pinned_for(estimator, cut)), votes


def predict_in_slices(
    estimator: Any, X: Any, slices: npt.ArrayLike, cut: npt.ArrayLike | None = None
) -> FloatArray:
    """``P(correct)`` of :func:`score_in_slices`, without the votes."""
    return score_in_slices(estimator, X, slices, cut)[0]


#: Any estimator :func:`make_estimator` makes.
ServableEstimator = EntropyEstimator | ATCClassifier | AnchoredEstimator

#: The method ``sentinel train`` and ``sentinel estimate`` use unless told otherwise,
#: chosen by the group protocol on the real traces (docs/results.md).
DEFAULT_METHOD: Final[str] = "anchored_H_max"
#: Methods that can be trained and served over the 11-d profile.
SERVABLE_METHODS: Final[tuple[str, ...]] = (
    "default",
    "lr_11d",
    "rf_11d",
    "mlp_11d",
    "atc_H_max",
    "atc_H_mean",
    "atc_H_sea",
    "soft_atc_H_max",
    "soft_atc_H_sea",
    "anchored_H_max",
)


def make_estimator(
    method: str,
    *,
    calibration: Calibration = "auto",
    class_weight: Literal["balanced"] | None = None,
    search: bool = True,
    random_state: int = 0,
) -> ServableEstimator:
    """An unfitted estimator over the 11-d profile for a servable method name."""
    name = DEFAULT_METHOD if method == "default" else method
    families: dict[str, Family] = {"lr_11d": "logistic", "rf_11d": "forest", "mlp_11d": "mlp"}
    if name in families:
        return EntropyEstimator(
            family=families[name],
            calibration=calibration,
            class_weight=class_weight,
            search=search,
            random_state=random_state,
        )
    if name.startswith("anchored_") and name in SERVABLE_METHODS:
        return AnchoredEstimator(
            score=name.removeprefix("anchored_"),
            calibration=calibration,
            search=search,
            random_state=random_state,
        )
    if name.startswith("soft_atc_") and name in SERVABLE_METHODS:
        return ATCClassifier(score=name.removeprefix("soft_atc_"), soft=True)
    if name.startswith("atc_") and name in SERVABLE_METHODS:
        return ATCClassifier(score=name.removeprefix("atc_"))
    raise InvalidInputError(f"method must be one of {list(SERVABLE_METHODS)}, got {method!r}")


def fit_estimator(
    estimator: ServableEstimator,
    X: Any,
    y: Any,
    groups: Any = None,
    cut: Any = None,
) -> ServableEstimator:
    """Fit any servable estimator; ``groups`` (each row's slice) and ``cut`` (cut at
    ``max_tokens``) go where they are used."""
    if isinstance(estimator, AnchoredEstimator):
        return estimator.fit(X, y, groups=groups, cut=cut)
    if isinstance(estimator, ATCClassifier):
        return estimator.fit(X, y, groups=groups)
    return estimator.fit(X, y)
