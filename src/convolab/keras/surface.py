"""The edges of the Keras-style API: what it does not provide fails here, naming the thing and what is supported.

Two kinds of misses, two messages:
- a Keras name convolab lacks (keras.layers.LSTM, model.train_on_batch): UnsupportedError listing what exists;
- an argument: misspelt (`epoch=5`) gets the nearest name; a real Keras argument convolab does not implement
  (`class_weight=`) says so, rather than being silently ignored.
"""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from convolab.errors import ArgumentError, ModelFileError, UnsupportedError
from convolab.layers.arguments import suggestion


def unsupported(name: str, supported: Iterable[str], why: str = "") -> UnsupportedError:
    """The error for a Keras name convolab does not provide: `name`, what is supported, and the nearest choice."""
    choices = sorted(set(supported))
    base = name.rsplit(".", 1)[-1]
    nearest = suggestion(base, choices)
    message = f"{name} is not part of convolab's Keras API{': ' + why if why else ''}"
    return UnsupportedError(message, fix=(f"{nearest} " if nearest else "") + f"convolab supports: {', '.join(choices)}")


def check_arguments(where: str, given: dict, supported: Iterable[str], keras_only: Iterable[str] = ()) -> None:
    """Raise ArgumentError for the first keyword in `given` (the **extra of a signature) that is misspelt or is a
    Keras argument convolab does not implement (`keras_only`); `supported` are the names the signature does take."""
    supported = list(supported)
    keras_only = set(keras_only)
    for key in given:
        if key in keras_only:
            raise ArgumentError(f"{where}: the Keras argument {key}= is not supported by convolab",
                                fix=f"leave it out; {where} takes: {', '.join(supported)}")
        nearest = suggestion(key, supported + sorted(keras_only))
        raise ArgumentError(f"{where}: unknown argument {key!r}; expected one of {', '.join(supported)}",
                            fix=nearest or f"use one of {', '.join(supported)}")


def check_keras_name(where: str, filepath) -> None:
    """The façade writes only Keras 3 .keras archives: refuse another name (legacy .h5, a bare name, another file's
    name) before anything is written, as Keras 3's model.save does."""
    name = str(filepath)
    if name.lower().endswith(".keras"):
        return
    if Path(name).suffix.lower() in (".h5", ".hdf5"):
        raise ModelFileError(f"{where}({name!r}): convolab writes Keras 3 .keras files, not legacy HDF5 (.h5)",
                             fix=f"{where}({str(Path(name).with_suffix('.keras'))!r})")
    raise ModelFileError(f"{where}({name!r}): the name must end in .keras (a Keras 3 archive); nothing was written",
                         fix=f"{where}({str(Path(name).with_suffix('.keras'))!r})")
