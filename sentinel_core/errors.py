"""One exception root for the project.

Every message says what was expected and what came, in the manner of
cleanlab's ``internal/validation.py``.
"""

from __future__ import annotations


class SentinelError(Exception):
    """Root of every error raised on purpose by Entropy Sentinel."""


class InvalidTraceError(SentinelError):
    """A response cannot be turned into a trace; the message is the quarantine reason."""


class InvalidInputError(SentinelError, ValueError):
    """An argument has the wrong shape, range or type."""


class NotFittedError(SentinelError):
    """An estimator is used before it was fitted or loaded."""


class StoreError(SentinelError):
    """The trace store cannot be reached or is not in the expected state."""


class MissingStoreError(StoreError):
    """A command that needs an existing store was given one that does not exist."""


class MissingExtraError(SentinelError):
    """An optional part is used but its package is not installed (names the extra)."""


#: Optional extra of the package -> (the module it brings, what needs it).
EXTRAS = {
    "label-studio": ("label_studio_sdk", "the Label Studio labeler"),
    "llm": ("openai", "the LLM judge and `sentinel collect`"),
    "dask": ("prefect_dask", "the Dask task runner (SENTINEL_TASK_RUNNER=dask)"),
}


def require_extra(extra: str) -> None:
    """Raise ``MissingExtraError`` naming the install command unless ``extra`` is usable."""
    import importlib.util

    module, what = EXTRAS[extra]
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a module set to None in sys.modules, or broken
        found = False
    if not found:
        raise MissingExtraError(
            f"expected the optional package {module!r} for {what}, got none installed: "
            f"pip install 'entropy-sentinel[{extra}]'"
        )
