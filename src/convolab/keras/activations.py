"""keras.activations: Keras's activation functions as objects. A layer takes one where it takes the name
(`Dense(128, activation=keras.activations.relu)` is `activation="relu"`), and each can be called on an array or a
tensor as Keras's can (`keras.activations.relu(x)`): softmax over the last axis, as Keras's default."""
from __future__ import annotations

import numpy as np
import torch

from convolab.keras.surface import unsupported
from convolab.layers.activation_functions import ACTIVATIONS, activation_argument, make_activation


class KerasActivation:
    """One of Keras's activations by name; `keras_activation` is what convolab's layers read."""

    def __init__(self, name: str):
        self.keras_activation = name
        self.__name__ = name

    def __call__(self, x):
        values = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x, dtype=torch.float32)
        if self.keras_activation == "softmax":
            result = torch.softmax(values, dim=-1)             # Keras's axis=-1 (the layers use the channel axis)
        else:
            result = make_activation(self.keras_activation)(values)
        return result if isinstance(x, torch.Tensor) else result.numpy()

    def __repr__(self) -> str:
        return f"<keras.activations.{self.keras_activation}>"


_BY_NAME = {name: KerasActivation(name) for name in ACTIVATIONS}


def get(identifier):
    """Keras's activations.get: a name (aliases too), one of these objects, or None (linear) -> the object."""
    if isinstance(identifier, KerasActivation):
        return identifier
    return _BY_NAME[activation_argument("keras.activations.get", identifier, "identifier")]


def __getattr__(name: str):
    if name in _BY_NAME:
        return _BY_NAME[name]
    raise unsupported(f"keras.activations.{name}", [*_BY_NAME, "get"])


def __dir__() -> list[str]:
    return [*_BY_NAME, "get"]
