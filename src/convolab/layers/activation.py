"""Activation: a Keras activation function as a layer of its own (`conv64x3-linear,bn,relu`)."""
from __future__ import annotations

import dataclasses
from typing import ClassVar

from convolab.layers.activation_functions import ACTIVATION_ALIASES, ACTIVATIONS, activation_argument, activation_option
from convolab.layers.arguments import input_shape, store
from convolab.layers.base import Analysis, Block, LayerKind, TokenError, no_options
from convolab.layers.activation_functions import make_activation

# The one-line words: each activation's letters before any digit or underscore (relu6 = relu + 6, leaky_relu = leaky
# + _relu), so that every Keras name and alias is a token.
_WORDS = tuple(dict.fromkeys(name.split("_")[0].rstrip("0123456789") for name in ACTIVATIONS + tuple(ACTIVATION_ALIASES)))


class ActivationBlock(Block):
    """Keras Activation: the function alone, on every value (softmax over channels)."""

    def __init__(self, activation: str):
        super().__init__()
        self.activation_name = activation
        self.activation = make_activation(activation)

    def forward(self, x):
        return self.activation(x)


@dataclasses.dataclass(frozen=True)
class Activation(LayerKind):
    """An activation function applied to each value as its own layer; learns nothing."""

    activation: str
    input_shape: tuple[int, ...] | None = None

    keras_name: ClassVar[str] = "activation"
    token_words: ClassVar[tuple[str, ...]] = _WORDS
    token_forms: ClassVar[dict[str, str]] = {word: f"an activation name ({', '.join(ACTIVATIONS)}), e.g. relu"
                                             for word in _WORDS}
    grammar: ClassVar[str] = "  relu  tanh  ...     Activation: the function as a layer of its own (any activation name)"
    positional: ClassVar[tuple[str, ...]] = ("activation",)
    argument_examples: ClassVar[dict[str, str]] = {"activation": "activation: relu"}
    colors: ClassVar[tuple[str, str]] = ("#e8f4f4", "#3a8a8a")

    def __post_init__(self) -> None:
        store(self, activation=activation_argument("Activation", self.activation),
              input_shape=input_shape("Activation", self.input_shape))

    @classmethod
    def from_token(cls, word, body, options, last):
        name = activation_option(word + body)
        if name is None:
            raise TokenError(cls.token_forms[word], fix="for example relu or tanh")
        no_options(options, cls.token_forms[word])
        return cls(name)

    def token(self, last):
        return self.activation

    def argument_is_default(self, argument, value, default):
        return False  # Keras's Activation has no default: always written

    def analyze(self, shape, field, position):
        return Analysis(shape, [f"keeps the shape; applies {self.activation} to each value; learns nothing"])

    def settings(self):
        return self.activation

    def block(self, input_shape, activation=None):
        return ActivationBlock(activation or self.activation)
