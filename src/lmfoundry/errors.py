"""User-facing errors.

The CLI prints `LmfError` as one line and exits non-zero; anything else is a bug and keeps its
traceback. Raise these for bad input (unknown model, missing file, invalid value), naming the
problem and, where there is one, the fix.
"""

from __future__ import annotations


class LmfError(Exception):
    """An error caused by the user's input or environment, shown without a traceback."""


class ModelNotFoundError(LmfError):
    """The name matches no store entry, profile, packaged model, directory or file."""


class MissingDependencyError(LmfError):
    """An optional dependency is not installed; the message names the extra to install."""


class InvalidInputError(LmfError):
    """A value (sampling parameter, config key, file content) is out of range or malformed."""
