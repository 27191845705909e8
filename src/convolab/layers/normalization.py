"""BatchNormalization: normalizes each channel (or unit) by batch statistics while training, moving averages after."""
from __future__ import annotations

import dataclasses
import math
import re
from typing import ClassVar

from torch import nn

from convolab.errors import SpecError
from convolab.layers.arguments import input_shape, is_number, short, store
from convolab.layers.arithmetic import Explained, count
from convolab.layers.base import Analysis, Block, LayerKind, TokenError, number_text
from convolab.layers.conv import set_tensor

_OPTION = re.compile(r"(m|eps)(\d*\.?\d+)")


def batchnorm_params(channels: int) -> tuple[int, int, str]:
    """(trainable, non-trainable, why): γ and β learn, the moving mean and variance are only tracked."""
    text = (f"{channels} channels × 4 = {count(4 * channels)}: γ and β learn ({count(2 * channels)} trainable), "
            f"moving mean and variance are tracked ({count(2 * channels)} non-trainable)")
    return 2 * channels, 2 * channels, text


class BatchNormalizationBlock(Block):
    """Keras BatchNormalization over channels (images) or units (vectors).

    Keras's moving = momentum · moving + (1 − momentum) · batch; PyTorch weights the batch by its `momentum`, so
    PyTorch's momentum is 1 − Keras's. (PyTorch tracks the unbiased batch variance, Keras the biased one; the
    difference is n/(n−1) on the moving variance only.)
    """

    def __init__(self, layer: "BatchNormalization", input_shape):
        super().__init__()
        norm_type = nn.BatchNorm2d if len(input_shape) == 3 else nn.BatchNorm1d
        # round: 1 − 0.99 is 0.010000000000000009 in floating point; PyTorch's repr should read 0.01
        self.norm = norm_type(input_shape[-1], eps=layer.epsilon, momentum=round(1.0 - layer.momentum, 12))

    def forward(self, x):
        return self.norm(x)


@dataclasses.dataclass(frozen=True)
class BatchNormalization(LayerKind):
    """Normalizes each channel; Keras's momentum/epsilon (PyTorch's momentum is 1 - Keras's).

    momentum is in [0, 1): Keras also accepts 1, which freezes the moving mean and variance at 0 and 1, so predictions
    would use statistics never learned; convolab refuses it and says so. epsilon is a positive finite number (an
    infinite one would make every output β).
    """

    momentum: float = 0.99
    epsilon: float = 1e-3
    input_shape: tuple[int, ...] | None = None

    keras_name: ClassVar[str] = "batch_normalization"
    # convolab normalizes the last axis (channels); Keras 2 files name it by position: 3 of an image, 1 of a vector
    keras_fixed: ClassVar[dict[str, tuple]] = {"axis": (-1, (-1,), 3, (3,), 1, (1,)), "center": (True,),
                                               "scale": (True,)}
    token_words: ClassVar[tuple[str, ...]] = ("bn",)
    token_forms: ClassVar[dict[str, str]] = {"bn": "bn[-m<momentum>][-eps<epsilon>], e.g. bn"}
    grammar: ClassVar[str] = "  bn                  BatchNormalization (bn-m0.9-eps0.00001: momentum 0.9, epsilon 1e-5)"
    colors: ClassVar[tuple[str, str]] = ("#fbf3c8", "#a8901c")

    def __post_init__(self) -> None:
        for argument, value, valid, expected in (
            ("momentum", self.momentum, lambda v: 0 <= v < 1, "a number in [0, 1)"),
            ("epsilon", self.epsilon, lambda v: 0 < v < math.inf, "a positive finite number"),
        ):
            if not is_number(value) or not valid(value):
                keras = (" (Keras accepts 1, but it freezes the moving mean and variance at 0 and 1, so predictions "
                         "would use statistics never learned)" if argument == "momentum" and value == 1 else "")
                raise SpecError(
                    f"BatchNormalization: expected {argument} to be {expected}, received: {argument}={short(value)}"
                    f"{keras}",
                    fix="Keras's defaults are momentum=0.99, epsilon=0.001",
                )
        store(self, momentum=float(self.momentum), epsilon=float(self.epsilon),
              input_shape=input_shape("BatchNormalization", self.input_shape))

    @classmethod
    def from_token(cls, word, body, options, last):
        form = cls.token_forms[word]
        if body:
            raise TokenError(form, fix="write 'bn', options after dashes: bn-m0.9-eps0.001")
        arguments: dict[str, float] = {}
        for option in options:
            match = _OPTION.fullmatch(option)
            if match is None:
                raise TokenError(form, fix="options are -m<momentum> and -eps<epsilon>, e.g. bn-m0.9")
            arguments["momentum" if match.group(1) == "m" else "epsilon"] = float(match.group(2))
        return cls(**arguments)

    def token(self, last):
        return ("bn" + ("" if self.momentum == 0.99 else f"-m{number_text(self.momentum)}")
                + ("" if self.epsilon == 1e-3 else f"-eps{number_text(self.epsilon)}"))

    def analyze(self, shape, field, position):
        trainable, non_trainable, why = batchnorm_params(shape[-1])
        values = math.prod(shape)
        return Analysis(shape, ["keeps the shape; normalizes each channel" if len(shape) == 3 else
                                "keeps the shape; normalizes each unit", why],
                        trainable=trainable, non_trainable=non_trainable,
                        macs=Explained(values, f"one scale-and-shift per value = {count(values)} multiply-adds"))

    def block(self, input_shape, activation=None):
        return BatchNormalizationBlock(self, input_shape)

    def keras_weights(self, block):
        norm = block.norm
        return [tensor.detach().cpu().numpy() for tensor in (norm.weight, norm.bias, norm.running_mean,
                                                             norm.running_var)]

    def set_keras_weights(self, block, weights):
        norm = block.norm
        for target, value in zip((norm.weight, norm.bias, norm.running_mean, norm.running_var), weights):
            set_tensor(target, value, "BatchNormalization")
