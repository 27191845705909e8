"""Flatten: (h, w, c) becomes one vector of h·w·c values, row by row (Keras's channels-last order)."""
from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

from convolab.layers.arguments import input_shape, store
from convolab.layers.arithmetic import Explained
from convolab.layers.base import CHANNELS_LAST, Analysis, Block, LayerKind


class FlattenBlock(Block):
    """Keras Flatten, in Keras's channels-last order (row, column, channel), so weights can move between the two."""

    def forward(self, x):
        if x.dim() == 4:
            x = x.permute(0, 2, 3, 1)  # (N, H, W, C)
        return x.flatten(1)  # (N, H·W·C)


@dataclasses.dataclass(frozen=True)
class Flatten(LayerKind):
    """(h, w, c) becomes one vector of h·w·c values, row by row (Keras's channels-last order)."""

    input_shape: tuple[int, ...] | None = None

    keras_name: ClassVar[str] = "flatten"
    keras_fixed: ClassVar[dict[str, tuple]] = CHANNELS_LAST
    token_words: ClassVar[tuple[str, ...]] = ("flatten",)
    token_forms: ClassVar[dict[str, str]] = {"flatten": "flatten"}
    grammar: ClassVar[str] = "  flatten             Flatten: (h, w, c) -> (h·w·c)"
    colors: ClassVar[tuple[str, str]] = ("#ece3f5", "#7a57a8")

    def __post_init__(self) -> None:
        store(self, input_shape=input_shape("Flatten", self.input_shape))

    def analyze(self, shape, field, position):
        values = math.prod(shape)
        factors = " × ".join(str(size) for size in shape)
        why = f"{factors} = {values} values" if len(shape) > 1 else f"already flat: {values} values"
        return Analysis((values,), [why],
                        receptive_field=Explained(field, "unchanged: flattening moves values, it mixes none"))

    def block(self, input_shape, activation=None):
        return FlattenBlock()
