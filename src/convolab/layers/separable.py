"""SeparableConv2D: a depthwise window per channel, then a 1×1 convolution mixing channels into `filters`."""
from __future__ import annotations

import dataclasses
import re
from typing import ClassVar, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from convolab.layers.arithmetic import Explained, count
from convolab.layers.base import Analysis
from convolab.layers.conv import (
    Convolution, WindowBlock, block_padding, glorot_uniform_, set_tensor, window_analysis, window_settings,
    window_token,
)
from convolab.layers.depthwise import keras_depthwise_to_torch, torch_depthwise_to_keras


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
class SeparableConv2D(Convolution):
    """A depthwise `kernel_size` window per channel, then `filters` 1×1 convolutions mixing them; Keras's defaults."""

    filters: int
    kernel_size: Union[int, tuple[int, int]]
    strides: Union[int, tuple[int, int]] = (1, 1)
    padding: str = "valid"
    depth_multiplier: int = 1
    activation: str | None = None  # None is Keras's linear; the one-line grammar defaults to relu instead
    use_bias: bool = True
    input_shape: tuple[int, ...] | None = None

    example: ClassVar[str] = "SeparableConv2D(64, (3, 3))"
    token_pattern: ClassVar[re.Pattern] = window_token(filters=True, multiplier=True)
    keras_name: ClassVar[str] = "separable_conv2d"
    token_words: ClassVar[tuple[str, ...]] = ("sepconv",)
    token_forms: ClassVar[dict[str, str]] = {
        "sepconv": "sepconv<filters>x<kernel>[x<kernel width>][m<multiplier>][s<stride>][same|valid][-activation], "
                   "e.g. sepconv64x3"}
    grammar: ClassVar[str] = ("  sepconv64x3         SeparableConv2D: a 3×3 window per channel, then 64 1×1 filters; "
                              "options as conv")
    positional: ClassVar[tuple[str, ...]] = ("filters", "kernel_size")
    argument_examples: ClassVar[dict[str, str]] = {"filters": "filters: 64", "kernel_size": "kernel_size: 3"}

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
