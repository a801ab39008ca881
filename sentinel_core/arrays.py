"""The checks every numeric input of ``sentinel_core`` goes through, written once.

Each turns what a caller passed into a float vector of shape ``(n,)`` or raises
``InvalidInputError`` naming the argument, what was expected and what came.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from sentinel_core.errors import InvalidInputError

FloatArray = npt.NDArray[np.float64]


def as_vector(name: str, values: npt.ArrayLike, *, allow_empty: bool = False) -> FloatArray:
    """``values`` as a finite float vector of shape ``(n,)``."""
    array = _as_1d(name, values, allow_empty=allow_empty)
    n_bad = int(np.sum(~np.isfinite(array)))
    if n_bad:
        raise InvalidInputError(f"{name} must be finite, got {n_bad} NaN/inf values")
    return array


def as_unit_vector(
    name: str, values: npt.ArrayLike, *, allow_nan: bool = False, allow_empty: bool = True
) -> FloatArray:
    """``values`` as a float vector of values in ``[0, 1]`` (and NaN where allowed)."""
    array = (
        _as_1d(name, values, allow_empty=allow_empty)
        if allow_nan
        else as_vector(name, values, allow_empty=allow_empty)
    )
    ok = (array >= 0.0) & (array <= 1.0)
    if allow_nan:
        ok |= np.isnan(array)
    if not np.all(ok):
        what = "values in [0, 1] or NaN" if allow_nan else "finite values in [0, 1]"
        raise InvalidInputError(f"{name} must hold {what}, got {array[~ok][:5].tolist()}")
    return array


def as_labels(name: str, values: npt.ArrayLike, *, allow_empty: bool = False) -> FloatArray:
    """``values`` as a vector of 0/1 labels (floats)."""
    array = _as_1d(name, values, allow_empty=allow_empty)
    bad = ~np.isin(array, (0.0, 1.0))
    if np.any(bad):
        raise InvalidInputError(
            f"{name} must hold 0/1 labels, got values {np.unique(array[bad])[:5].tolist()}"
        )
    return array


def check_same_length(name_a: str, n_a: int, name_b: str, n_b: int) -> None:
    """Raise unless two inputs that pair up row by row have as many rows."""
    if n_a != n_b:
        raise InvalidInputError(
            f"{name_a} and {name_b} must be the same length, "
            f"but {name_a} is length {n_a} and {name_b} is length {n_b}"
        )


def _as_1d(name: str, values: npt.ArrayLike, *, allow_empty: bool) -> FloatArray:
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"{name} must be numeric, got {values!r:.80}") from exc
    if array.ndim != 1:
        raise InvalidInputError(f"{name} must be 1-D of shape (n,), got shape {array.shape}")
    if not allow_empty and array.size == 0:
        raise InvalidInputError(
            f"{name} must be a non-empty 1-D array of shape (n,), got an empty array"
        )
    return array
