"""Dense: a fully connected layer of `units`, each unit a weighted sum of every input plus a bias."""
from __future__ import annotations

import dataclasses
import re
from typing import ClassVar

import numpy as np
from torch import nn

from convolab.errors import SpecError
from convolab.layers.activation_functions import activation_argument, make_activation
from convolab.layers.arguments import boolean, input_shape, positive_int, store
from convolab.layers.arithmetic import Explained, ReceptiveField, count, shape_text
from convolab.layers.base import Analysis, Block, LayerKind, activation_and_bias, activation_suffix, full_match
from convolab.layers.conv import set_tensor

_DENSE = re.compile(r"(\d+)?")


def dense_params(units: int, inputs: int, use_bias: bool) -> Explained:
    """Keras: units × (inputs + 1)."""
    if use_bias:
        total = units * (inputs + 1)
        return Explained(total, f"{units} × ({inputs} + 1) = {count(total)}: a weight per input and a bias, per unit")
    total = units * inputs
    return Explained(total, f"{units} × {inputs} = {count(total)}: a weight per input, per unit, no bias")


def dense_macs(units: int, inputs: int) -> Explained:
    """Multiply-adds per image: one per weight."""
    total = units * inputs
    return Explained(total, f"{units} × {inputs} = {count(total)} multiply-adds")


class DenseBlock(Block):
    """Keras Dense: a linear map and its activation."""

    def __init__(self, layer: "Dense", inputs: int, activation: str):
        super().__init__()
        self.linear = nn.Linear(inputs, layer.units, bias=layer.use_bias)
        self.activation_name = activation
        self.activation = make_activation(activation)
        nn.init.xavier_uniform_(self.linear.weight)  # Keras's glorot_uniform
        if self.linear.bias is not None:
            nn.init.zeros_(self.linear.bias)

    def forward(self, x):
        x = self.linear(x)  # (N, units)
        return self.activation(x)


@dataclasses.dataclass(frozen=True)
class Dense(LayerKind):
    """A fully connected layer of `units`; units=None means 'the dataset's class count' (filled by resolve_spec)."""

    units: int | None
    activation: str | None = None  # None is Keras's linear; the one-line grammar defaults to relu / softmax instead
    use_bias: bool = True
    input_shape: tuple[int, ...] | None = None

    keras_name: ClassVar[str] = "dense"
    token_words: ClassVar[tuple[str, ...]] = ("dense",)
    token_forms: ClassVar[dict[str, str]] = {"dense": "dense[<units>][-activation], e.g. dense128"}
    grammar: ClassVar[str] = "  dense128            Dense: 128 units; `dense` alone = the dataset's class count"
    positional: ClassVar[tuple[str, ...]] = ("units",)
    argument_examples: ClassVar[dict[str, str]] = {"units": "units: 128"}
    colors: ClassVar[tuple[str, str]] = ("#dcf1dc", "#3b8f3b")
    takes_output_activation: ClassVar[bool] = True

    def __post_init__(self) -> None:
        units = None if self.units is None else positive_int("Dense", "units", self.units, "Dense(128)")
        store(self, units=units, activation=activation_argument("Dense", self.activation),
              use_bias=boolean("Dense", "use_bias", self.use_bias), input_shape=input_shape("Dense", self.input_shape))

    @classmethod
    def from_token(cls, word, body, options, last):
        units = full_match(_DENSE, body, cls.token_forms[word]).group(1)
        activation, use_bias = activation_and_bias(options, word, "softmax" if last else "relu")
        return cls(None if units is None else int(units), activation=activation, use_bias=use_bias)

    def token(self, last):
        return ("dense" + ("" if self.units is None else str(self.units))
                + activation_suffix(self.activation, self.use_bias, "softmax" if last else "relu"))

    def analyze(self, shape, field, position):
        if len(shape) != 1:
            raise SpecError(
                f"{position.where()}: received a {len(shape)}-D input {shape_text(shape)}; expected a vector "
                "(Dense comes after Flatten or global pooling; convolab never flattens silently)",
                fix=f"add flatten (or gap) before layer {position.index}",
            )
        params = dense_params(self.units, shape[0], self.use_bias)
        return Analysis((self.units,), [f"{self.units} units", params.text], trainable=params.value,
                        macs=dense_macs(self.units, shape[0]),
                        receptive_field=Explained(ReceptiveField(whole_input=True), "every unit sees the whole input"))

    def settings(self):
        return f"{self.units} units" + (f", {self.activation}" if self.activation != "linear" else "")

    def block(self, input_shape, activation=None):
        return DenseBlock(self, input_shape[0], activation or self.activation)

    def keras_weights(self, block):
        # torch (units, inputs) -> Keras (inputs, units)
        bias = [] if block.linear.bias is None else [block.linear.bias.detach().cpu().numpy()]
        return [block.linear.weight.detach().cpu().T.numpy()] + bias

    def set_keras_weights(self, block, weights):
        set_tensor(block.linear.weight, np.transpose(weights[0]), "Dense")
        if block.linear.bias is not None:
            set_tensor(block.linear.bias, weights[1], "Dense")
