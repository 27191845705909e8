"""The pooling layers: MaxPooling2D and AveragePooling2D slide a window that learns nothing; GlobalAveragePooling2D
reduces each whole channel to its mean."""
from __future__ import annotations

import dataclasses
import math
import re
from typing import ClassVar, Union

import torch
import torch.nn.functional as F

from convolab.layers.arguments import PADDINGS, choice, input_shape, positive_pair, store
from convolab.layers.arithmetic import (ReceptiveField, Explained, grow_receptive_field, padding_before,
                                       window_output_shape)
from convolab.layers.base import (
    CHANNELS_LAST, Analysis, Block, LayerKind, TokenError, full_match, no_options, pair_words, require_fit, require_image, size_text,
)
from convolab.layers.conv import block_padding

# [<size>[x<size across>]][s<stride>[x<stride across>]][same|valid]
_POOL = re.compile(r"(\d+)?(?:x(\d+))?(?:s(\d+)(?:x(\d+))?)?(same|valid)?")
NEUTRAL = ReceptiveField()


class _Pooling2DBlock(Block):
    """What both poolings keep: window, strides, and Keras's 'same' padding as (left, right, top, bottom)."""

    def __init__(self, layer: "_WindowPooling", input_shape):
        super().__init__()
        self.padding = block_padding(input_shape, layer.pool_size, layer.strides, layer.padding)
        self.pool_size = layer.pool_size
        self.strides = layer.strides

    def crop_windows(self):
        if any(self.padding):
            return None
        return ((self.pool_size[0], self.strides[0]), (self.pool_size[1], self.strides[1]))


class MaxPooling2DBlock(_Pooling2DBlock):
    """Keras MaxPooling2D; 'same' padding pads with -inf so padding never wins, as TensorFlow ignores it."""

    fast_role = "max_pool"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if any(self.padding):
            x = F.pad(x, self.padding, value=-math.inf)
        return F.max_pool2d(x, self.pool_size, self.strides)  # floor division: Keras drops the leftover edge


class AveragePooling2DBlock(_Pooling2DBlock):
    """Keras AveragePooling2D; with 'same' padding each window averages only its real values, as TensorFlow does."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not any(self.padding):
            return F.avg_pool2d(x, self.pool_size, self.strides)
        padded = F.pad(x, self.padding)  # zeros add nothing to the sum
        ones = F.pad(torch.ones_like(x[:1, :1]), self.padding)  # 1 where a real value sits
        sums = F.avg_pool2d(padded, self.pool_size, self.strides)
        real_fraction = F.avg_pool2d(ones, self.pool_size, self.strides)
        return sums / real_fraction


class _WindowPooling(LayerKind):
    """What MaxPooling2D and AveragePooling2D share: validation, token, arithmetic; strides default to pool_size."""

    positional: ClassVar[tuple[str, ...]] = ("pool_size",)
    colors: ClassVar[tuple[str, str]] = ("#fde6cf", "#c8782b")
    windowed: ClassVar[bool] = True
    pooling: ClassVar[bool] = True
    keras_fixed: ClassVar[dict[str, tuple]] = CHANNELS_LAST

    def __post_init__(self) -> None:
        kind = type(self).__name__
        pool_size = positive_pair(kind, "pool_size", self.pool_size, f"{kind}((2, 2))")
        strides = pool_size if self.strides is None else positive_pair(
            kind, "strides", self.strides, f"{kind}((3, 3), strides=(2, 2))")
        store(self, pool_size=pool_size, strides=strides, padding=choice(kind, "padding", self.padding, PADDINGS),
              input_shape=input_shape(kind, self.input_shape))

    @classmethod
    def from_token(cls, word, body, options, last):
        form = cls.token_forms[word]
        size_h, size_w, stride_h, stride_w, padding = full_match(_POOL, body, form).groups()
        no_options(options, form)
        if size_h is None and size_w is not None:
            raise TokenError(form, fix=f"write it like {word}2")
        pool_size = (int(size_h or 2), int(size_w or size_h or 2))
        strides = None if stride_h is None else (int(stride_h), int(stride_w or stride_h))
        return cls(pool_size, strides=strides, padding=padding or "valid")

    def token(self, last):
        return (self.token_words[0] + size_text(self.pool_size)
                + ("" if self.strides == self.pool_size else f"s{size_text(self.strides)}")
                + ("same" if self.padding == "same" else ""))

    def argument_is_default(self, argument, value, default):
        if argument == "strides":
            return value == self.pool_size
        return super().argument_is_default(argument, value, default)

    def analyze(self, shape, field, position):
        require_image(position, shape)
        require_fit(position, shape, self.pool_size, self.padding)
        output, shape_why = window_output_shape(shape, self.pool_size, self.strides, self.padding, shape[2],
                                                pooling=True)
        return Analysis(output, [f"{shape_why}; pooling learns nothing"],
                        receptive_field=grow_receptive_field(field, self.pool_size, self.strides,
                                                             padding_before(shape, self.pool_size, self.strides,
                                                                            self.padding)))

    def settings(self):
        words = f"pool {pair_words(self.pool_size)}"
        if tuple(self.strides) != tuple(self.pool_size):
            words += f", strides {pair_words(self.strides)}"
        return words


@dataclasses.dataclass(frozen=True)
class MaxPooling2D(_WindowPooling):
    """The largest value in each `pool_size` window; strides default to pool_size, as in Keras."""

    pool_size: Union[int, tuple[int, int]] = (2, 2)
    strides: Union[int, tuple[int, int], None] = None
    padding: str = "valid"
    input_shape: tuple[int, ...] | None = None

    keras_name: ClassVar[str] = "max_pooling2d"
    token_words: ClassVar[tuple[str, ...]] = ("pool", "maxpool")
    token_forms: ClassVar[dict[str, str]] = {
        "pool": "pool<size>[s<stride>][same|valid], e.g. pool2",
        "maxpool": "maxpool<size>[s<stride>][same|valid], e.g. maxpool2"}
    grammar: ClassVar[str] = (
        "  pool2  maxpool2     MaxPooling2D 2×2, strides = pool size (pool3s2: 3×3 window, strides 2; pool2same)")

    def block(self, input_shape, activation=None):
        return MaxPooling2DBlock(self, input_shape)


@dataclasses.dataclass(frozen=True)
class AveragePooling2D(_WindowPooling):
    """The mean of each `pool_size` window ('same' padding averages only the real values, as Keras/TensorFlow do)."""

    pool_size: Union[int, tuple[int, int]] = (2, 2)
    strides: Union[int, tuple[int, int], None] = None
    padding: str = "valid"
    input_shape: tuple[int, ...] | None = None

    keras_name: ClassVar[str] = "average_pooling2d"
    token_words: ClassVar[tuple[str, ...]] = ("avgpool",)
    token_forms: ClassVar[dict[str, str]] = {"avgpool": "avgpool<size>[s<stride>][same|valid], e.g. avgpool2"}
    grammar: ClassVar[str] = "  avgpool2            AveragePooling2D, same options as pool"

    def block(self, input_shape, activation=None):
        return AveragePooling2DBlock(self, input_shape)


class GlobalAveragePooling2DBlock(Block):
    """Keras GlobalAveragePooling2D: (N, C, H, W) -> (N, C)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))


@dataclasses.dataclass(frozen=True)
class GlobalAveragePooling2D(LayerKind):
    """The mean of each whole channel: (h, w, c) becomes (c,)."""

    input_shape: tuple[int, ...] | None = None

    keras_name: ClassVar[str] = "global_average_pooling2d"
    token_words: ClassVar[tuple[str, ...]] = ("gap",)
    token_forms: ClassVar[dict[str, str]] = {"gap": "gap"}
    grammar: ClassVar[str] = "  gap                 GlobalAveragePooling2D: (h, w, c) -> (c)"
    colors: ClassVar[tuple[str, str]] = ("#fde6cf", "#c8782b")
    pooling: ClassVar[bool] = True
    keras_fixed: ClassVar[dict[str, tuple]] = {**CHANNELS_LAST, "keepdims": (False,)}

    def __post_init__(self) -> None:
        store(self, input_shape=input_shape("GlobalAveragePooling2D", self.input_shape))

    def analyze(self, shape, field, position):
        require_image(position, shape)
        return Analysis((shape[2],),
                        [f"the mean of each {shape[0]}×{shape[1]} map: {shape[2]} values; pooling learns nothing"],
                        receptive_field=Explained(ReceptiveField(whole_input=True),
                                                  "every value averages the whole input"))

    def block(self, input_shape, activation=None):
        return GlobalAveragePooling2DBlock()
