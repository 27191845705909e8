"""Conv2D: `filters` windows of `kernel_size` slid with `strides` over an image; and what its relatives
(DepthwiseConv2D, SeparableConv2D) share with it: the token's window syntax, 'same' padding, Keras's initializer."""
from __future__ import annotations

import dataclasses
import math
import re
from typing import ClassVar, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from convolab.layers.activation_functions import activation_argument, make_activation
from convolab.layers.arguments import PADDINGS, boolean, choice, input_shape, positive_int, positive_pair, store
from convolab.layers.arithmetic import (
    Explained, ReceptiveField, Shape, count, grow_receptive_field, padding_before, same_padding,
    window_output_shape,
)
from convolab.layers.base import (
    CHANNELS_LAST, Analysis, Block, LayerKind, Position, activation_and_bias, activation_suffix, full_match, pair_words,
    require_fit, require_image, size_text,
)



def window_token(filters: bool, multiplier: bool) -> re.Pattern:
    """A convolution token's body: [<filters>x]<kernel>[x<kernel width>][m<multiplier>][s<stride>[x<across>]][same|valid]."""
    return re.compile((r"(?P<filters>\d+)x" if filters else "") + r"(?P<kh>\d+)(?:x(?P<kw>\d+))?"
                      + (r"(?:m(?P<multiplier>\d+))?" if multiplier else "")
                      + r"(?:s(?P<sh>\d+)(?:x(?P<sw>\d+))?)?(?P<padding>same|valid)?")


def window_suffix(strides: tuple[int, int], padding: str, default_strides: tuple[int, int] = (1, 1)) -> str:
    """The token's 's2' and 'same' parts, only where they differ from the defaults."""
    return ("" if strides == default_strides else f"s{size_text(strides)}") + ("same" if padding == "same" else "")


def window_settings(kernel: tuple[int, int], strides: tuple[int, int], padding: str) -> str:
    """The diagram's '3×3, strides 2×2, same' words for a convolution's window."""
    words = pair_words(kernel)
    if tuple(strides) != (1, 1):
        words += f", strides {pair_words(strides)}"
    return words + (f", {padding}" if padding != "valid" else "")


def same_pad(height: int, width: int, window: tuple[int, int], strides: tuple[int, int]) -> tuple[int, int, int, int]:
    """F.pad's (left, right, top, bottom) for Keras 'same' padding on a height×width input."""
    top, bottom = same_padding(height, window[0], strides[0])
    left, right = same_padding(width, window[1], strides[1])
    return left, right, top, bottom


def block_padding(input_shape: Shape, window: tuple[int, int], strides: tuple[int, int], padding: str):
    """(left, right, top, bottom) zeros to add before a window block: TensorFlow's asymmetric 'same', or none."""
    if padding != "same":
        return (0, 0, 0, 0)
    return same_pad(input_shape[0], input_shape[1], window, strides)


def glorot_uniform_(weight: torch.Tensor, fan_in: int, fan_out: int) -> None:
    """Keras's default kernel initializer: U(±sqrt(6 / (fan_in + fan_out))), with Keras's fans."""
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    with torch.no_grad():
        weight.uniform_(-limit, limit)


def window_analysis(shape: Shape, field: ReceptiveField, position: Position, kernel: tuple[int, int],
                    strides: tuple[int, int], padding: str, channels: int):
    """What every convolution computes first: the image check, the fit, the output shape and the grown field."""
    require_image(position, shape)
    require_fit(position, shape, kernel, padding)
    output, shape_why = window_output_shape(shape, kernel, strides, padding, channels)
    before = padding_before(shape, kernel, strides, padding)
    return output, shape_why, grow_receptive_field(field, kernel, strides, before)


def conv_params(filters: int, kernel: tuple[int, int], in_channels: int, use_bias: bool) -> Explained:
    """Keras: filters × (kh·kw·cin + 1)."""
    weights = kernel[0] * kernel[1] * in_channels
    total = filters * (weights + (1 if use_bias else 0))
    per_filter = f"{kernel[0]}×{kernel[1]}×{in_channels} weights"
    if use_bias:
        return Explained(total, f"{filters} filters × ({per_filter} + 1 bias) = {count(total)}")
    return Explained(total, f"{filters} filters × {per_filter}, no bias = {count(total)}")


def conv_macs(output_shape: Shape, kernel: tuple[int, int], in_channels: int) -> Explained:
    """Multiply-adds per image: every output value is a kh·kw·cin dot product."""
    height, width, filters = output_shape
    total = height * width * filters * kernel[0] * kernel[1] * in_channels
    return Explained(total, f"{height}×{width} positions × {filters} filters × {kernel[0]}×{kernel[1]}×{in_channels}"
                            f" = {count(total)} multiply-adds")


def bias_of(conv: nn.Conv2d) -> list[np.ndarray]:
    return [] if conv.bias is None else [conv.bias.detach().cpu().numpy()]


def set_tensor(target: torch.Tensor, value: np.ndarray, kind: str) -> None:
    """Copy a Keras array into a parameter, refusing a shape that differs."""
    value = torch.as_tensor(np.asarray(value), dtype=target.dtype)
    if tuple(value.shape) != tuple(target.shape):
        from convolab.errors import SpecError

        raise SpecError(f"{kind}: expected weights of shape {tuple(target.shape)}, received {tuple(value.shape)}",
                        fix="give the weights of a layer with the same arguments and input")
    with torch.no_grad():
        target.copy_(value)


class WindowBlock(Block):
    """A convolution's block: optional 'same' padding (asymmetric like TensorFlow), `conv`, activation."""

    def __init__(self, padding: tuple[int, int, int, int], activation: str):
        super().__init__()
        self.padding = padding
        self.activation_name = activation
        self.activation = make_activation(activation)

    def crop_windows(self):
        if any(self.padding):
            return None
        return ((self.conv.kernel_size[0], self.conv.stride[0]), (self.conv.kernel_size[1], self.conv.stride[1]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if any(self.padding):
            x = F.pad(x, self.padding)  # (N, C, H + top + bottom, W + left + right), zeros like TensorFlow
        x = self.conv(x)  # (N, filters, H', W')
        return self.activation(x)


class Conv2DBlock(WindowBlock):
    """Keras Conv2D; the fast engine may fuse it with a following max-pool."""

    fast_role = "conv"

    def __init__(self, layer: "Conv2D", input_shape: Shape, activation: str):
        super().__init__(block_padding(input_shape, layer.kernel_size, layer.strides, layer.padding), activation)
        in_channels = input_shape[2]
        self.conv = nn.Conv2d(in_channels, layer.filters, layer.kernel_size, stride=layer.strides, bias=layer.use_bias)
        nn.init.xavier_uniform_(self.conv.weight)  # Keras's glorot_uniform: torch's fans count the window as Keras's do
        if self.conv.bias is not None:
            nn.init.zeros_(self.conv.bias)


class Convolution(LayerKind):
    """What every convolution shares, as Keras's base_conv does: validation of the window arguments, the token's
    syntax, and the flags; each kind adds its dataclass fields, arithmetic and block."""

    example: ClassVar[str]                     # the Python form of a typical layer, for messages
    token_pattern: ClassVar[re.Pattern]
    colors: ClassVar[tuple[str, str]] = ("#dbe9f8", "#3b75b5")
    windowed: ClassVar[bool] = True
    has_kernels: ClassVar[bool] = True
    keras_fixed: ClassVar[dict[str, tuple]] = {**CHANNELS_LAST, "dilation_rate": ((1, 1), 1)}

    def __post_init__(self) -> None:
        kind, example = type(self).__name__, self.example
        values = {}
        if hasattr(self, "filters"):
            values["filters"] = positive_int(kind, "filters", self.filters, example)
        values["kernel_size"] = positive_pair(kind, "kernel_size", self.kernel_size, example)
        values["strides"] = positive_pair(kind, "strides", self.strides, f"{example[:-1]}, strides=(2, 2))")
        values["padding"] = choice(kind, "padding", self.padding, PADDINGS)
        if hasattr(self, "depth_multiplier"):
            values["depth_multiplier"] = positive_int(kind, "depth_multiplier", self.depth_multiplier,
                                                      f"{example[:-1]}, depth_multiplier=2)")
        store(self, **values, activation=activation_argument(kind, self.activation),
              use_bias=boolean(kind, "use_bias", self.use_bias), input_shape=input_shape(kind, self.input_shape))

    @classmethod
    def from_token(cls, word, body, options, last):
        parts = full_match(cls.token_pattern, body, cls.token_forms[word]).groupdict()
        activation, use_bias = activation_and_bias(options, word, "relu")
        arguments = dict(kernel_size=(int(parts["kh"]), int(parts["kw"] or parts["kh"])),
                         strides=(int(parts["sh"] or 1), int(parts["sw"] or parts["sh"] or 1)),
                         padding=parts["padding"] or "valid", activation=activation, use_bias=use_bias)
        if "filters" in parts:
            arguments["filters"] = int(parts["filters"])
        if "multiplier" in parts:
            arguments["depth_multiplier"] = int(parts["multiplier"] or 1)
        return cls(**arguments)

    def token(self, last):
        multiplier = getattr(self, "depth_multiplier", 1)
        return (self.token_words[0] + (f"{self.filters}x" if hasattr(self, "filters") else "")
                + size_text(self.kernel_size) + ("" if multiplier == 1 else f"m{multiplier}")
                + window_suffix(self.strides, self.padding) + activation_suffix(self.activation, self.use_bias, "relu"))


@dataclasses.dataclass(frozen=True)
class Conv2D(Convolution):
    """A 2-D convolution: `filters` windows of `kernel_size` slid with `strides`; Keras's defaults."""

    filters: int
    kernel_size: Union[int, tuple[int, int]]
    strides: Union[int, tuple[int, int]] = (1, 1)
    padding: str = "valid"
    activation: str | None = None  # None is Keras's linear; the one-line grammar defaults to relu instead
    use_bias: bool = True
    input_shape: tuple[int, ...] | None = None

    keras_name: ClassVar[str] = "conv2d"
    keras_fixed: ClassVar[dict[str, tuple]] = {**Convolution.keras_fixed, "groups": (1,)}
    example: ClassVar[str] = "Conv2D(64, (3, 3))"
    token_pattern: ClassVar[re.Pattern] = window_token(filters=True, multiplier=False)
    token_words: ClassVar[tuple[str, ...]] = ("conv",)
    token_forms: ClassVar[dict[str, str]] = {
        "conv": "conv<filters>x<kernel>[x<kernel width>][s<stride>][same|valid][-activation], e.g. conv64x3"}
    grammar: ClassVar[str] = (
        "  conv64x3            Conv2D: 64 filters, 3×3 window (conv64x3x5: a 3×5 window)\n"
        "  conv32x5s2same-tanh   ... with strides 2 (s2x1: 2 down, 1 across), 'same' padding, tanh")
    positional: ClassVar[tuple[str, ...]] = ("filters", "kernel_size")
    argument_examples: ClassVar[dict[str, str]] = {"filters": "filters: 64", "kernel_size": "kernel_size: 3"}

    def analyze(self, shape, field, position):
        output, shape_why, grown = window_analysis(shape, field, position, self.kernel_size, self.strides,
                                                   self.padding, self.filters)
        params = conv_params(self.filters, self.kernel_size, shape[2], self.use_bias)
        return Analysis(output, [shape_why, params.text], trainable=params.value,
                        macs=conv_macs(output, self.kernel_size, shape[2]), receptive_field=grown)

    def settings(self):
        words = f"{self.filters} filters {window_settings(self.kernel_size, self.strides, self.padding)}"
        return words + (f", {self.activation}" if self.activation != "linear" else "")

    def block(self, input_shape, activation=None):
        return Conv2DBlock(self, input_shape, activation or self.activation)

    def keras_weights(self, block):
        # torch (filters, in, kh, kw) -> Keras (kh, kw, in, filters)
        return [block.conv.weight.detach().cpu().permute(2, 3, 1, 0).numpy()] + bias_of(block.conv)

    def set_keras_weights(self, block, weights):
        set_tensor(block.conv.weight, np.transpose(weights[0], (3, 2, 0, 1)), "Conv2D")
        if block.conv.bias is not None:
            set_tensor(block.conv.bias, weights[1], "Conv2D")

    def kernels(self, block):
        return block.conv.weight.detach().to("cpu", torch.float32).permute(2, 3, 1, 0).contiguous().numpy()
