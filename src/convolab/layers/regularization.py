"""Dropout: zeroes a `rate` fraction of values while training (scaling the rest up); does nothing at inference."""
from __future__ import annotations

import dataclasses
import math
import re
from typing import ClassVar

import torch
from torch import nn

from convolab.errors import SpecError
from convolab.layers.arguments import input_shape, is_number, short, store
from convolab.layers.base import Analysis, Block, LayerKind, full_match, no_options, number_text

_DROPOUT = re.compile(r"(\d*\.?\d+)")


class DropoutBlock(Block, nn.Dropout):
    """Dropout as torch's (a Bernoulli(1 - rate) mask, the kept values scaled by 1 / (1 - rate)), its mask drawn as
    uniform numbers compared with 1 - rate: on the CPU that takes a quarter of the time of torch's bernoulli_, the
    largest single cost of the `best` recipe's dense layers (BENCHMARKS.md).

    The mask is drawn in the order of the input's shape, whatever its memory layout, from `generator` (a shard's own,
    shards.py) or torch's global one.
    """

    draws_random = True

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        keep = 1.0 - self.p
        mask = torch.rand(x.shape, generator=generator, device=x.device) < keep
        return x * mask.to(x.dtype).div_(keep)


@dataclasses.dataclass(frozen=True)
class Dropout(LayerKind):
    """Zeroes a `rate` fraction of values while training (scaling the rest up); does nothing at inference.

    rate is in [0, 1): Keras also accepts 1, which zeroes every value while training so that nothing before it
    learns; convolab refuses it and says so.
    """

    rate: float
    input_shape: tuple[int, ...] | None = None

    keras_name: ClassVar[str] = "dropout"
    keras_fixed: ClassVar[dict[str, tuple]] = {"noise_shape": (None,)}
    token_words: ClassVar[tuple[str, ...]] = ("dropout",)
    token_forms: ClassVar[dict[str, str]] = {"dropout": "dropout<rate>, e.g. dropout0.25"}
    grammar: ClassVar[str] = "  dropout0.25         Dropout of a quarter of the values while training"
    positional: ClassVar[tuple[str, ...]] = ("rate",)
    argument_examples: ClassVar[dict[str, str]] = {"rate": "rate: 0.25"}
    identity_at_inference: ClassVar[bool] = True
    colors: ClassVar[tuple[str, str]] = ("#f2f2f2", "#9a9a9a")

    def __post_init__(self) -> None:
        rate = self.rate
        if not is_number(rate) or math.isnan(rate) or not 0 <= rate < 1:
            keras = (" (Keras accepts 1, but it zeroes every value while training, so nothing before it would learn)"
                     if rate == 1 else "")
            raise SpecError(
                f"Dropout: expected rate to be a number in [0, 1), received: rate={short(rate)}{keras}",
                fix="for example Dropout(0.25) drops a quarter of the values while training",
            )
        store(self, rate=float(rate), input_shape=input_shape("Dropout", self.input_shape))

    @classmethod
    def from_token(cls, word, body, options, last):
        match = full_match(_DROPOUT, body, cls.token_forms[word])
        no_options(options, cls.token_forms[word])
        return cls(float(match.group(1)))

    def token(self, last):
        return "dropout" + number_text(self.rate)

    def analyze(self, shape, field, position):
        return Analysis(shape, [f"keeps the shape; zeroes {self.rate:.0%} of values while training, none at inference;"
                                " learns nothing"])

    def settings(self):
        return f"rate {self.rate}"

    def block(self, input_shape, activation=None):
        return DropoutBlock(self.rate)
