"""DepthwiseConv2D: one `kernel_size` window per input channel (times `depth_multiplier`), no mixing of channels."""
from __future__ import annotations

import dataclasses
import re
from typing import ClassVar, Union

import numpy as np
import torch
from torch import nn

from convolab.layers.arithmetic import Explained, count
from convolab.layers.base import Analysis
from convolab.layers.conv import (
    Convolution, WindowBlock, bias_of, block_padding, glorot_uniform_, set_tensor, window_analysis, window_settings,
    window_token,
)


def depthwise_params(channels: int, multiplier: int, kernel: tuple[int, int], use_bias: bool) -> Explained:
    """Keras: channels × multiplier × (kh·kw + 1): one window (and bias) per channel and multiplier."""
    total = channels * multiplier * (kernel[0] * kernel[1] + (1 if use_bias else 0))
    times = f"{channels} channels" + (f" × {multiplier}" if multiplier != 1 else "")
    if use_bias:
        return Explained(total, f"{times} × ({kernel[0]}×{kernel[1]} weights + 1 bias) = {count(total)}: "
                                "one window per channel")
    return Explained(total, f"{times} × {kernel[0]}×{kernel[1]} weights, no bias = {count(total)}: one window per channel")


def depthwise_macs(output_shape, kernel: tuple[int, int]) -> Explained:
    """Multiply-adds per image: every output value is a kh·kw dot product over its own channel."""
    height, width, channels = output_shape
    total = height * width * channels * kernel[0] * kernel[1]
    return Explained(total, f"{height}×{width} positions × {channels} channels × {kernel[0]}×{kernel[1]}"
                            f" = {count(total)} multiply-adds")


def keras_depthwise_to_torch(kernel: np.ndarray) -> np.ndarray:
    """Keras (kh, kw, channels, multiplier) -> torch (channels·multiplier, 1, kh, kw), output c·m + j."""
    kh, kw, channels, multiplier = kernel.shape
    return np.transpose(np.asarray(kernel).reshape(kh, kw, channels * multiplier), (2, 0, 1))[:, None]


def torch_depthwise_to_keras(weight: torch.Tensor, channels: int) -> np.ndarray:
    """torch (channels·multiplier, 1, kh, kw) -> Keras (kh, kw, channels, multiplier)."""
    outputs, _, kh, kw = weight.shape
    return weight.detach().cpu()[:, 0].permute(1, 2, 0).reshape(kh, kw, channels, outputs // channels).numpy()


class DepthwiseConv2DBlock(WindowBlock):
    """Keras DepthwiseConv2D: a grouped convolution, one group per input channel."""

    def __init__(self, layer: "DepthwiseConv2D", input_shape, activation: str):
        super().__init__(block_padding(input_shape, layer.kernel_size, layer.strides, layer.padding), activation)
        channels = input_shape[2]
        self.conv = nn.Conv2d(channels, channels * layer.depth_multiplier, layer.kernel_size, stride=layer.strides,
                              groups=channels, bias=layer.use_bias)
        window = layer.kernel_size[0] * layer.kernel_size[1]
        glorot_uniform_(self.conv.weight, window * channels, window * layer.depth_multiplier)  # Keras's fans
        if self.conv.bias is not None:
            nn.init.zeros_(self.conv.bias)


@dataclasses.dataclass(frozen=True)
class DepthwiseConv2D(Convolution):
    """One `kernel_size` window per input channel (`depth_multiplier` of them), slid with `strides`; Keras's defaults."""

    kernel_size: Union[int, tuple[int, int]]
    strides: Union[int, tuple[int, int]] = (1, 1)
    padding: str = "valid"
    depth_multiplier: int = 1
    activation: str | None = None  # None is Keras's linear; the one-line grammar defaults to relu instead
    use_bias: bool = True
    input_shape: tuple[int, ...] | None = None

    example: ClassVar[str] = "DepthwiseConv2D((3, 3))"
    token_pattern: ClassVar[re.Pattern] = window_token(filters=False, multiplier=True)
    keras_name: ClassVar[str] = "depthwise_conv2d"
    token_words: ClassVar[tuple[str, ...]] = ("dwconv",)
    token_forms: ClassVar[dict[str, str]] = {
        "dwconv": "dwconv<kernel>[x<kernel width>][m<multiplier>][s<stride>][same|valid][-activation], e.g. dwconv3"}
    grammar: ClassVar[str] = ("  dwconv3             DepthwiseConv2D: a 3×3 window per channel (dwconv3m2: two per "
                              "channel), options as conv")
    positional: ClassVar[tuple[str, ...]] = ("kernel_size",)
    argument_examples: ClassVar[dict[str, str]] = {"kernel_size": "kernel_size: 3"}

    def analyze(self, shape, field, position):
        channels = shape[2] if len(shape) == 3 else 0
        output, shape_why, grown = window_analysis(shape, field, position, self.kernel_size, self.strides,
                                                   self.padding, channels * self.depth_multiplier)
        params = depthwise_params(channels, self.depth_multiplier, self.kernel_size, self.use_bias)
        return Analysis(output, [shape_why, params.text], trainable=params.value,
                        macs=depthwise_macs(output, self.kernel_size), receptive_field=grown)

    def settings(self):
        words = f"{window_settings(self.kernel_size, self.strides, self.padding)} per channel"
        words += f" × {self.depth_multiplier}" if self.depth_multiplier != 1 else ""
        return words + (f", {self.activation}" if self.activation != "linear" else "")

    def block(self, input_shape, activation=None):
        return DepthwiseConv2DBlock(self, input_shape, activation or self.activation)

    def keras_weights(self, block):
        return [torch_depthwise_to_keras(block.conv.weight, block.conv.groups)] + bias_of(block.conv)

    def set_keras_weights(self, block, weights):
        set_tensor(block.conv.weight, keras_depthwise_to_torch(weights[0]), "DepthwiseConv2D")
        if block.conv.bias is not None:
            set_tensor(block.conv.bias, weights[1], "DepthwiseConv2D")

    def kernels(self, block):
        # one window per output channel, each over its single input channel: (kh, kw, 1, channels·multiplier)
        return block.conv.weight.detach().to("cpu", torch.float32).permute(2, 3, 1, 0).contiguous().numpy()
