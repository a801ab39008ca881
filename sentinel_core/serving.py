"""The estimator as MLflow's ``python_function`` loads it: ``predict`` gives P(correct).

Each logged model names this module as its pyfunc ``loader_module`` and carries it, with
the modules the estimator needs, in its ``code/`` folder (``tasks/registry.py``), so

    mlflow.pyfunc.load_model("models:/entropy-sentinel-estimator@champion").predict(df)

returns P(correct) per row of 11 entropy features (for the default estimator, the pooled
one: a row alone has no slice to anchor on; ``get_raw_model().predict_correct_proba(df,
slices=keys)`` anchors rows whose slices are all there), in any environment that has the
model's declared requirements, this project not installed. Nothing here imports MLflow:
MLflow imports this module. The model file is skops (no pickle); only types from
``TRUSTED_PREFIXES`` modules are rebuilt, anything else is refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from sentinel_core.errors import InvalidInputError

#: Modules whose types skops may rebuild when loading the estimator.
TRUSTED_PREFIXES = ("sentinel_core.", "sklearn.", "numpy.", "scipy.", "builtins.", "collections.")


def vetted_types(untrusted: list[str]) -> list[str]:
    """``untrusted`` (skops' list of the types a file needs), if every one is trusted."""
    refused = [name for name in untrusted if not name.startswith(TRUSTED_PREFIXES)]
    if refused:
        raise InvalidInputError(
            f"expected only scikit-learn, numpy and sentinel_core types in the model, got {refused}"
        )
    return untrusted


class PCorrectModel:
    """The pyfunc face of an estimator: ``predict`` is ``predict_correct_proba``."""

    def __init__(self, estimator: Any) -> None:
        self.estimator = estimator

    def predict(self, model_input: Any, params: dict[str, Any] | None = None) -> npt.NDArray[Any]:
        """P(correct) per row of ``model_input`` (the 11 features by name), shape ``(n,)``."""
        return np.asarray(self.estimator.predict_correct_proba(model_input))

    def get_raw_model(self) -> Any:
        """The estimator itself (MLflow's ``unwrap_python_model`` convention)."""
        return self.estimator


def _load_pyfunc(path: str) -> PCorrectModel:
    """MLflow's loader entry point: ``path`` is the model's skops file."""
    import skops.io

    file = Path(path)
    trusted = vetted_types(skops.io.get_untrusted_types(file=file))
    return PCorrectModel(skops.io.load(file, trusted=trusted))
