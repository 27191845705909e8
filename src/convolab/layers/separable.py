"""SeparableConv2D: a depthwise window per channel, then a 1×1 convolution mixing channels into `filters`."""
from __future__ import annotations

import dataclasses
import re
from typing import ClassVar, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from convolab.layers.activation_functions import activation_argument
from convolab.layers.arguments import PADDINGS, boolean, choice, input_shape, positive_int, positive_pair, store
from convolab.layers.arithmetic import Explained, count
from convolab.layers.base import Analysis, LayerKind, activation_and_bias, activation_suffix, full_match, size_text
from convolab.layers.conv import (
    WindowBlock, block_padding, glorot_uniform_, set_tensor, window_analysis, window_settings, window_suffix,
)
from convolab.layers.depthwise import keras_depthwise_to_torch, torch_depthwise_to_keras

# <filters>x<kernel>[x<kernel width>][m<depth multiplier>][s<stride>[x<stride across>]][same|valid]
_SEPCONV = re.compile(r"(\d+)x(\d+)(?:x(\d+))?(?:m(\d+))?(?:s(\d+)(?:x(\d+))?)?(same|valid)?")


def separable_params(channels: int, multiplier: int, kernel: tuple[int, int], filters: int,
                     use_bias: bool) -> Explained:
    """Keras: depthwise channels·m·kh·kw, then pointwise filters × (channels·m + 1)."""
    depthwise = channels * multiplier * kernel[0] * kernel[1]
    mixed = channels * multiplier
    pointwise = filters * (mixed + (1 if use_bias else 0))
    times = f"{channels} channels" + (f" × {multiplier}" if multiplier != 1 else "")
    bias = f"({mixed} + 1 bias)" if use_bias else f"{mixed}, no bias"
    return Explained(depthwise + pointwise,
                     f"depthwise {times} × {kernel[0]}×{kernel[1]} = {count(depthwise)}, then pointwise {filters} "
                     f"filters × {bias} = {count(pointwise)}; total {count(depthwise + pointwise)}")


def separable_macs(output_shape, kernel: tuple[int, int], mixed: int) -> Explained:
    """Multiply-adds per image: the depthwise windows, then a 1×1 dot product over the mixed channels."""
    height, width, filters = output_shape
    depthwise = height * width * mixed * kernel[0] * kernel[1]
    pointwise = height * width * filters * mixed
    return Explained(depthwise + pointwise,
                     f"{height}×{width} positions × ({mixed} channels × {kernel[0]}×{kernel[1]} + {filters} filters × "
                     f"{mixed}) = {count(depthwise + pointwise)} multiply-adds")


class SeparableConv2DBlock(WindowBlock):
    """Keras SeparableConv2D: 'same' padding, a grouped (depthwise) convolution, a 1×1 convolution, the activation."""

    def __init__(self, layer: "SeparableConv2D", input_shape, activation: str):
        super().__init__(block_padding(input_shape, layer.kernel_size, layer.strides, layer.padding), activation)
        channels = input_shape[2]
        mixed = channels * layer.depth_multiplier
        self.depthwise = nn.Conv2d(channels, mixed, layer.kernel_size, stride=layer.strides, groups=channels,
                                   bias=False)
        self.pointwise = nn.Conv2d(mixed, layer.filters, 1, bias=layer.use_bias)
        window = layer.kernel_size[0] * layer.kernel_size[1]
        glorot_uniform_(self.depthwise.weight, window * channels, window * layer.depth_multiplier)  # Keras's fans
        glorot_uniform_(self.pointwise.weight, mixed, layer.filters)
        if self.pointwise.bias is not None:
            nn.init.zeros_(self.pointwise.bias)

    def crop_windows(self):
        if any(self.padding):
            return None
        conv = self.depthwise
        return ((conv.kernel_size[0], conv.stride[0]), (conv.kernel_size[1], conv.stride[1]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if any(self.padding):
            x = F.pad(x, self.padding)
        return self.activation(self.pointwise(self.depthwise(x)))


@dataclasses.dataclass(frozen=True)
class SeparableConv2D(LayerKind):
    """A depthwise `kernel_size` window per channel, then `filters` 1×1 convolutions mixing them; Keras's defaults."""

    filters: int
    kernel_size: Union[int, tuple[int, int]]
    strides: Union[int, tuple[int, int]] = (1, 1)
    padding: str = "valid"
    depth_multiplier: int = 1
    activation: str | None = None  # None is Keras's linear; the one-line grammar defaults to relu instead
    use_bias: bool = True
    input_shape: tuple[int, ...] | None = None

    keras_name: ClassVar[str] = "separable_conv2d"
    token_words: ClassVar[tuple[str, ...]] = ("sepconv",)
    token_forms: ClassVar[dict[str, str]] = {
        "sepconv": "sepconv<filters>x<kernel>[x<kernel width>][m<multiplier>][s<stride>][same|valid][-activation], "
                   "e.g. sepconv64x3"}
    grammar: ClassVar[str] = ("  sepconv64x3         SeparableConv2D: a 3×3 window per channel, then 64 1×1 filters; "
                              "options as conv")
    positional: ClassVar[tuple[str, ...]] = ("filters", "kernel_size")
    argument_examples: ClassVar[dict[str, str]] = {"filters": "filters: 64", "kernel_size": "kernel_size: 3"}
    colors: ClassVar[tuple[str, str]] = ("#dbe9f8", "#3b75b5")
    windowed: ClassVar[bool] = True
    has_kernels: ClassVar[bool] = True

    def __post_init__(self) -> None:
        example = "SeparableConv2D(64, (3, 3))"
        store(
            self,
            filters=positive_int("SeparableConv2D", "filters", self.filters, example),
            kernel_size=positive_pair("SeparableConv2D", "kernel_size", self.kernel_size, example),
            strides=positive_pair("SeparableConv2D", "strides", self.strides, "SeparableConv2D(64, 3, strides=2)"),
            padding=choice("SeparableConv2D", "padding", self.padding, PADDINGS),
            depth_multiplier=positive_int("SeparableConv2D", "depth_multiplier", self.depth_multiplier,
                                          "SeparableConv2D(64, 3, depth_multiplier=2)"),
            activation=activation_argument("SeparableConv2D", self.activation),
            use_bias=boolean("SeparableConv2D", "use_bias", self.use_bias),
            input_shape=input_shape("SeparableConv2D", self.input_shape),
        )

    @classmethod
    def from_token(cls, word, body, options, last):
        filters, kernel_h, kernel_w, multiplier, stride_h, stride_w, padding = full_match(
            _SEPCONV, body, cls.token_forms[word]).groups()
        activation, use_bias = activation_and_bias(options, word, "relu")
        return cls(int(filters), (int(kernel_h), int(kernel_w or kernel_h)),
                   strides=(int(stride_h or 1), int(stride_w or stride_h or 1)), padding=padding or "valid",
                   depth_multiplier=int(multiplier or 1), activation=activation, use_bias=use_bias)

    def token(self, last):
        return (f"sepconv{self.filters}x{size_text(self.kernel_size)}"
                + ("" if self.depth_multiplier == 1 else f"m{self.depth_multiplier}")
                + window_suffix(self.strides, self.padding) + activation_suffix(self.activation, self.use_bias, "relu"))

    def analyze(self, shape, field, position):
        output, shape_why, grown = window_analysis(shape, field, position, self.kernel_size, self.strides,
                                                   self.padding, self.filters)
        params = separable_params(shape[2], self.depth_multiplier, self.kernel_size, self.filters, self.use_bias)
        return Analysis(output, [shape_why, params.text], trainable=params.value,
                        macs=separable_macs(output, self.kernel_size, shape[2] * self.depth_multiplier),
                        receptive_field=grown)

    def settings(self):
        words = f"{self.filters} filters {window_settings(self.kernel_size, self.strides, self.padding)}, separable"
        return words + (f", {self.activation}" if self.activation != "linear" else "")

    def block(self, input_shape, activation=None):
        return SeparableConv2DBlock(self, input_shape, activation or self.activation)

    def keras_weights(self, block):
        # Keras: depthwise (kh, kw, channels, m), pointwise (1, 1, channels·m, filters), bias (filters,)
        pointwise = block.pointwise.weight.detach().cpu().permute(2, 3, 1, 0).numpy()
        bias = [] if block.pointwise.bias is None else [block.pointwise.bias.detach().cpu().numpy()]
        return [torch_depthwise_to_keras(block.depthwise.weight, block.depthwise.groups), pointwise] + bias

    def set_keras_weights(self, block, weights):
        set_tensor(block.depthwise.weight, keras_depthwise_to_torch(weights[0]), "SeparableConv2D")
        set_tensor(block.pointwise.weight, np.transpose(weights[1], (3, 2, 0, 1)), "SeparableConv2D")
        if block.pointwise.bias is not None:
            set_tensor(block.pointwise.bias, weights[2], "SeparableConv2D")

    def kernels(self, block):
        # the learned windows are the depthwise ones: (kh, kw, 1, channels·multiplier)
        return block.depthwise.weight.detach().to("cpu", torch.float32).permute(2, 3, 1, 0).contiguous().numpy()
