"""The one exception family convolab raises for bad input: what was wrong, and how to fix it.

The command line prints these as a short message and exits non-zero, never with a traceback.
"""
from __future__ import annotations


class ConvolabError(Exception):
    """A user-facing error: `message` says what was received and expected, `fix` says what to do."""

    exit_code = 2

    def __init__(self, message: str, fix: str | None = None):
        super().__init__(message)
        self.message = message
        self.fix = fix

    def __str__(self) -> str:
        if self.fix:
            return f"{self.message}\n  fix: {self.fix}"
        return self.message

    def _render_traceback_(self) -> list[str]:
        """What IPython and Jupyter show for this error instead of a traceback (their protocol for exceptions that
        carry their own display): the message and the fix, not the frames inside convolab above them."""
        return [f"{type(self).__name__}: {self}"]


class SpecError(ConvolabError, ValueError):
    """A model spec that cannot be parsed or cannot be built on its input."""


class DataError(ConvolabError):
    """A dataset that is missing, corrupt or unreadable."""


class RunError(ConvolabError):
    """A run directory or checkpoint that is missing, corrupt or does not match."""


class TrainingError(ConvolabError):
    """Training that had to stop (a non-finite loss, say); the last good checkpoint is kept."""


class WriteError(ConvolabError):
    """A file that could not be written (no space, read-only, not a directory); the previous version is kept."""


class UnsupportedError(ConvolabError, AttributeError):
    """A name from Keras's API that convolab does not provide (a layer, an optimizer, a method): the message names it
    and what convolab supports instead. An AttributeError, so `hasattr` and IPython's probing still work."""


class ArgumentError(ConvolabError, TypeError):
    """An argument the Keras-style API does not take: misspelt (the nearest name is suggested) or not supported."""


class ModelFileError(ConvolabError):
    """A model file (Keras .keras or .h5, ONNX) that cannot be read or written as asked; nothing half-written is left."""
