"""keras.layers: every layer kind convolab has, under Keras's names, plus Input.

The classes are convolab's own (spec.py), looked up by name in its registry, so a kind added there appears here with no
change. A Keras layer convolab lacks (LSTM, say) fails with a message listing the kinds it has.
"""
from __future__ import annotations

from convolab.errors import ArgumentError
from convolab.keras.surface import check_arguments, unsupported
from convolab.layers.arguments import input_shape as checked_input_shape
from convolab.spec import LAYER_TYPES


class Input:
    """keras.Input(shape=(28, 28, 1)): the images' shape, (height, width, channels); the batch axis is left out."""

    def __init__(self, shape=None, batch_size=None, name=None, batch_shape=None, **keras_arguments):
        check_arguments("keras.Input", keras_arguments, ["shape", "batch_size", "name", "batch_shape"],
                        ("dtype", "sparse", "tensor", "optional", "ragged"))
        if shape is None and batch_shape is not None:
            shape = tuple(batch_shape)[1:]
        if shape is None:
            raise ArgumentError("keras.Input: expected shape=(height, width, channels), received none",
                                fix="keras.Input(shape=(28, 28, 1))")
        self.image_shape = checked_input_shape("Input", shape)   # (h, w) becomes (h, w, 1), as convolab's layers do
        self.name = name or "input_layer"

    @property
    def shape(self) -> tuple:
        return (None, *self.image_shape)

    def __repr__(self) -> str:
        return f"<Input shape={self.shape}>"


InputLayer = Input


def kinds() -> list[str]:
    """The layer names this module provides."""
    return sorted(LAYER_TYPES) + ["Input", "InputLayer"]


def __getattr__(name: str):
    if name in LAYER_TYPES:
        return LAYER_TYPES[name]
    raise unsupported(f"keras.layers.{name}", kinds())


def __dir__() -> list[str]:
    return kinds()
