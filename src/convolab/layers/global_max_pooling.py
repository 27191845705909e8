"""GlobalMaxPooling2D: the largest value of each whole channel, (h, w, c) -> (c,)."""
from __future__ import annotations

import dataclasses
from typing import ClassVar

import torch

from convolab.layers.arguments import input_shape, store
from convolab.layers.arithmetic import Explained, ReceptiveField
from convolab.layers.base import CHANNELS_LAST, Analysis, Block, LayerKind, require_image


class GlobalMaxPooling2DBlock(Block):
    """Keras GlobalMaxPooling2D: (N, C, H, W) -> (N, C)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.amax(dim=(2, 3))


@dataclasses.dataclass(frozen=True)
class GlobalMaxPooling2D(LayerKind):
    """The largest value of each whole channel: (h, w, c) becomes (c,)."""

    input_shape: tuple[int, ...] | None = None

    keras_fixed: ClassVar[dict[str, tuple]] = {**CHANNELS_LAST, "keepdims": (False,)}
    keras_name: ClassVar[str] = "global_max_pooling2d"
    token_words: ClassVar[tuple[str, ...]] = ("gmp",)
    token_forms: ClassVar[dict[str, str]] = {"gmp": "gmp"}
    grammar: ClassVar[str] = "  gmp                 GlobalMaxPooling2D: (h, w, c) -> (c), the largest value of each map"
    colors: ClassVar[tuple[str, str]] = ("#fde6cf", "#c8782b")
    pooling: ClassVar[bool] = True

    def __post_init__(self) -> None:
        store(self, input_shape=input_shape("GlobalMaxPooling2D", self.input_shape))

    def analyze(self, shape, field, position):
        require_image(position, shape)
        return Analysis((shape[2],),
                        [f"the largest value of each {shape[0]}×{shape[1]} map: {shape[2]} values; "
                         "pooling learns nothing"],
                        receptive_field=Explained(ReceptiveField(whole_input=True),
                                                  "every value may come from anywhere in the input"))

    def block(self, input_shape, activation=None):
        return GlobalMaxPooling2DBlock()
