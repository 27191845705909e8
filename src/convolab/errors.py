"""The one exception family convolab raises for bad input: what was wrong, and how to fix it.

The command line prints these as a short message and exits non-zero, never with a traceback.
"""
from __future__ import annotations

import re
import signal


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


# --- quoting a library's error ---------------------------------------------------------------------------------------

ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")   # colour codes (torch's "\x1b[96mThis is step 1/3\x1b[0m")


def plain_text(text: str) -> str:
    """A library's message as quoted in ours: without terminal colour codes, which show as ^[[96m in a log."""
    return ANSI_ESCAPE.sub("", text)


class Terminated(KeyboardInterrupt):
    """SIGTERM (`kill`, `docker stop`, a scheduler) outside the training loop, raised where the program is, as Ctrl-C is.

    A KeyboardInterrupt, so that everything that cleans up after Ctrl-C (a half-written file's temporary, the messages
    that say what is complete) does the same for it; the command then ends with 143 (128 + 15), as a shell reports a
    process that SIGTERM ended. The training loop has its own handler for both signals (it saves a checkpoint first)."""

    signal_number = signal.SIGTERM


def stop_signal(interrupt: BaseException) -> int:
    """The signal behind a KeyboardInterrupt: SIGTERM for Terminated, SIGINT (Ctrl-C) for any other."""
    return getattr(interrupt, "signal_number", signal.SIGINT)


def stopped_by(signal_number: int) -> str:
    """How a message names the stop: "interrupted" for Ctrl-C, "stopped by SIGTERM" for the other."""
    return "interrupted" if signal_number == signal.SIGINT else f"stopped by {signal.Signals(signal_number).name}"


def interrupted_inside(error: BaseException) -> KeyboardInterrupt | None:
    """The Ctrl-C (or Terminated) that `error` wraps, or None: a library that catches everything (torch.onnx.export)
    re-raises KeyboardInterrupt as its own error, with the interrupt as its __cause__ or __context__."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, KeyboardInterrupt):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None
