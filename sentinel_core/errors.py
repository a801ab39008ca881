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
