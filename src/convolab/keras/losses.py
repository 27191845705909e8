"""keras.losses: the two cross-entropies the course uses. convolab always computes cross-entropy from logits (the
output softmax is applied inside the loss, never twice), which equals Keras's loss on softmax outputs."""
from __future__ import annotations

from dataclasses import dataclass

from convolab.keras.surface import check_arguments, unsupported

KERAS_ONLY = ("label_smoothing", "axis", "reduction", "name", "ignore_class", "dtype")


@dataclass(frozen=True)
class Loss:
    """categorical: labels are one-hot rows; from_logits: the last layer has no softmax."""

    name: str
    categorical: bool
    from_logits: bool = False


def SparseCategoricalCrossentropy(from_logits: bool = False, **keras_arguments) -> Loss:
    check_arguments("keras.losses.SparseCategoricalCrossentropy", keras_arguments, ["from_logits"], KERAS_ONLY)
    return Loss("sparse_categorical_crossentropy", categorical=False, from_logits=bool(from_logits))


def CategoricalCrossentropy(from_logits: bool = False, **keras_arguments) -> Loss:
    check_arguments("keras.losses.CategoricalCrossentropy", keras_arguments, ["from_logits"], KERAS_ONLY)
    return Loss("categorical_crossentropy", categorical=True, from_logits=bool(from_logits))


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
    raise unsupported(f"loss {identifier!r}", list(BY_STRING) + [f"keras.losses.{name}()" for name in LOSSES],
                      "convolab trains classifiers with cross-entropy")


def __getattr__(name: str):
    raise unsupported(f"keras.losses.{name}", LOSSES)
