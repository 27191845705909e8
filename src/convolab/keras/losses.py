"""keras.losses: the two cross-entropies the course uses. convolab always computes cross-entropy from logits (the
output softmax is applied inside the loss, never twice), which equals Keras's loss on softmax outputs."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from convolab.errors import ArgumentError
from convolab.keras.surface import check_arguments, unsupported

KERAS_ONLY = ("label_smoothing", "axis", "reduction", "name", "ignore_class", "dtype")


@dataclass(frozen=True)
class Loss:
    """categorical: labels are one-hot rows; from_logits: the last layer has no softmax."""

    name: str
    categorical: bool
    from_logits: bool = False


def _from_logits(loss: str, value) -> bool:
    """from_logits as a real bool: the string "False" is true, and would train a softmax model as if it had none."""
    if not isinstance(value, (bool, np.bool_)):
        raise ArgumentError(f"keras.losses.{loss}: expected from_logits to be True or False, received "
                            f"{str(value)[:40]!r} ({type(value).__name__})", fix="from_logits=True (no quotes)")
    return bool(value)


def SparseCategoricalCrossentropy(from_logits: bool = False, **keras_arguments) -> Loss:
    check_arguments("keras.losses.SparseCategoricalCrossentropy", keras_arguments, ["from_logits"], KERAS_ONLY)
    return Loss("sparse_categorical_crossentropy", categorical=False,
                from_logits=_from_logits("SparseCategoricalCrossentropy", from_logits))


def CategoricalCrossentropy(from_logits: bool = False, **keras_arguments) -> Loss:
    check_arguments("keras.losses.CategoricalCrossentropy", keras_arguments, ["from_logits"], KERAS_ONLY)
    return Loss("categorical_crossentropy", categorical=True,
                from_logits=_from_logits("CategoricalCrossentropy", from_logits))


LOSSES = {"SparseCategoricalCrossentropy": SparseCategoricalCrossentropy,
          "CategoricalCrossentropy": CategoricalCrossentropy}
BY_STRING = {"sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
             "categorical_crossentropy": CategoricalCrossentropy}


def get(identifier) -> Loss:
    """compile's loss=: a name or a Loss."""
    if isinstance(identifier, Loss):
        return identifier
    if isinstance(identifier, str) and identifier in BY_STRING:
        return BY_STRING[identifier]()
    uncalled = [name for name, factory in LOSSES.items() if identifier is factory]
    if uncalled:
        raise ArgumentError(f"compile: loss=keras.losses.{uncalled[0]}, the loss itself rather than one made by "
                            "calling it", fix=f"loss=keras.losses.{uncalled[0]}() (from_logits=True inside the "
                                              "parentheses for a model without softmax)")
    raise unsupported(f"loss {identifier!r}", list(BY_STRING) + [f"keras.losses.{name}()" for name in LOSSES],
                      "convolab trains classifiers with cross-entropy")


def __getattr__(name: str):
    raise unsupported(f"keras.losses.{name}", LOSSES)
