"""A spec in, a `ConvNet(torch.nn.Module)` out: one block per spec layer, each computing exactly what Keras's layer does.

This is the plain reference implementation: one readable block per layer, NCHW tensors inside, Keras's shapes,
padding, initialization and BatchNormalization semantics. Faster paths (engine.py) must match it, not replace it.

- 'same' padding with a stride pads the odd pixel at the bottom/right, as TensorFlow does; `F.pad` makes that exact.
- Weights start like Keras's: glorot_uniform kernels, zero biases, BatchNormalization γ=1, β=0.
- `forward` returns logits: a final softmax in the spec is left to `probabilities()` so training can use
  cross-entropy on logits (numerically stable). Every other activation runs inside its layer's block.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from convolab.shapes import LayerReport, analyze, same_padding
from convolab.spec import (
    AveragePooling2D, BatchNormalization, Conv2D, Dense, Dropout, Flatten, GlobalAveragePooling2D, MaxPooling2D,
    ModelSpec,
)


# --- activations -----------------------------------------------------------------------------------------------------

def make_activation(name: str) -> nn.Module:
    """Keras's activation by name as a module; softmax runs over channels (Keras's last axis, NCHW's dim 1)."""
    if name == "leaky_relu":
        return nn.LeakyReLU(0.2)  # Keras 3's default negative_slope is 0.2 (PyTorch's is 0.01)
    if name == "hard_sigmoid":
        return _HardSigmoid()
    if name == "exponential":
        return _Exponential()
    modules = {
        "linear": nn.Identity, "relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "elu": nn.ELU,
        "selu": nn.SELU, "gelu": nn.GELU, "silu": nn.SiLU, "relu6": nn.ReLU6, "softplus": nn.Softplus,
        "softsign": nn.Softsign,
    }
    if name == "softmax":
        return nn.Softmax(dim=1)
    return modules[name]()


class _HardSigmoid(nn.Module):
    """Keras 3's hard_sigmoid: relu6(x + 3) / 6 (the same as PyTorch's Hardsigmoid)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.hardsigmoid(x)


class _Exponential(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.exp(x)


# --- one block per layer ---------------------------------------------------------------------------------------------

def _same_pad(height: int, width: int, window: tuple[int, int], strides: tuple[int, int]) -> tuple[int, int, int, int]:
    """F.pad's (left, right, top, bottom) for Keras 'same' padding on a height×width input."""
    top, bottom = same_padding(height, window[0], strides[0])
    left, right = same_padding(width, window[1], strides[1])
    return left, right, top, bottom


def _glorot_uniform_(weight: torch.Tensor) -> None:
    """Keras's default kernel initializer: U(±sqrt(6 / (fan_in + fan_out))), fans counting the window."""
    nn.init.xavier_uniform_(weight)


class Conv2DBlock(nn.Module):
    """Keras Conv2D: optional 'same' padding (asymmetric like TensorFlow), convolution, activation."""

    def __init__(self, layer: Conv2D, report: LayerReport, activation: str):
        super().__init__()
        height, width, in_channels = report.input_shape
        self.padding = _same_pad(height, width, layer.kernel_size, layer.strides) if layer.padding == "same" \
            else (0, 0, 0, 0)
        self.conv = nn.Conv2d(in_channels, layer.filters, layer.kernel_size, stride=layer.strides, bias=layer.use_bias)
        self.activation = make_activation(activation)
        _glorot_uniform_(self.conv.weight)
        if self.conv.bias is not None:
            nn.init.zeros_(self.conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if any(self.padding):
            x = F.pad(x, self.padding)  # (N, C, H + top + bottom, W + left + right), zeros like TensorFlow
        x = self.conv(x)  # (N, filters, H', W')
        return self.activation(x)


class _Pooling2DBlock(nn.Module):
    """What both poolings keep: window, strides, and Keras's 'same' padding as (left, right, top, bottom)."""

    def __init__(self, layer: MaxPooling2D | AveragePooling2D, report: LayerReport):
        super().__init__()
        height, width, _ = report.input_shape
        self.padding = _same_pad(height, width, layer.pool_size, layer.strides) if layer.padding == "same" \
            else (0, 0, 0, 0)
        self.pool_size = layer.pool_size
        self.strides = layer.strides


class MaxPooling2DBlock(_Pooling2DBlock):
    """Keras MaxPooling2D; 'same' padding pads with -inf so padding never wins, as TensorFlow ignores it."""

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


class GlobalAveragePooling2DBlock(nn.Module):
    """Keras GlobalAveragePooling2D: (N, C, H, W) -> (N, C)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))


class FlattenBlock(nn.Module):
    """Keras Flatten, in Keras's channels-last order (row, column, channel), so weights can move between the two."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4:
            x = x.permute(0, 2, 3, 1)  # (N, H, W, C)
        return x.flatten(1)  # (N, H·W·C)


class DenseBlock(nn.Module):
    """Keras Dense: a linear map and its activation."""

    def __init__(self, layer: Dense, report: LayerReport, activation: str):
        super().__init__()
        self.linear = nn.Linear(report.input_shape[0], layer.units, bias=layer.use_bias)
        self.activation = make_activation(activation)
        _glorot_uniform_(self.linear.weight)
        if self.linear.bias is not None:
            nn.init.zeros_(self.linear.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.linear(x)  # (N, units)
        return self.activation(x)


class BatchNormalizationBlock(nn.Module):
    """Keras BatchNormalization over channels (images) or units (vectors).

    Keras's moving = momentum · moving + (1 − momentum) · batch; PyTorch weights the batch by its `momentum`, so
    PyTorch's momentum is 1 − Keras's. (PyTorch tracks the unbiased batch variance, Keras the biased one; the
    difference is n/(n−1) on the moving variance only.)
    """

    def __init__(self, layer: BatchNormalization, report: LayerReport):
        super().__init__()
        features = report.input_shape[-1]
        norm_type = nn.BatchNorm2d if len(report.input_shape) == 3 else nn.BatchNorm1d
        # round: 1 − 0.99 is 0.010000000000000009 in floating point; PyTorch's repr should read 0.01
        self.norm = norm_type(features, eps=layer.epsilon, momentum=round(1.0 - layer.momentum, 12))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x)


def make_block(layer, report: LayerReport, activation: str | None = None) -> nn.Module:
    """The block computing `layer` on the input `report` describes; `activation` overrides the layer's own."""
    if isinstance(layer, Conv2D):
        return Conv2DBlock(layer, report, activation or layer.activation)
    if isinstance(layer, MaxPooling2D):
        return MaxPooling2DBlock(layer, report)
    if isinstance(layer, AveragePooling2D):
        return AveragePooling2DBlock(layer, report)
    if isinstance(layer, GlobalAveragePooling2D):
        return GlobalAveragePooling2DBlock()
    if isinstance(layer, Flatten):
        return FlattenBlock()
    if isinstance(layer, Dense):
        return DenseBlock(layer, report, activation or layer.activation)
    if isinstance(layer, Dropout):
        return nn.Dropout(layer.rate)
    if isinstance(layer, BatchNormalization):
        return BatchNormalizationBlock(layer, report)
    raise TypeError(f"no block for {type(layer).__name__}")  # analyze() admits only the layers above


# --- the network -----------------------------------------------------------------------------------------------------

class ConvNet(nn.Module):
    """The spec's layers as blocks in order; forward gives logits, probabilities() applies the output softmax."""

    def __init__(self, spec: ModelSpec, reports: list[LayerReport], num_classes: int):
        super().__init__()
        self.spec = spec  # resolved: input shape set, every Dense sized
        self.reports = reports
        self.input_shape = spec.input_shape  # (height, width, channels), Keras's order
        self.num_classes = num_classes
        last = spec.layers[-1]
        # The output softmax stays out of forward (logits for cross-entropy); probabilities() applies it.
        self.output_activation = getattr(last, "activation", "linear")
        blocks = []
        for position, (layer, report) in enumerate(zip(spec.layers, reports)):
            is_output_softmax = position == len(spec.layers) - 1 and self.output_activation == "softmax"
            blocks.append(make_block(layer, report, activation="linear" if is_output_softmax else None))
        self.blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, C, H, W) floats -> (N, num_classes) logits."""
        for block in self.blocks:
            x = block(x)
        return x

    def probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> (N, num_classes) class probabilities: softmax of the logits."""
        return torch.softmax(self.forward(x), dim=1)

    def extra_repr(self) -> str:
        return f"spec={self.spec.to_line()!r}"


def build_model(spec: ModelSpec, input_shape=None, num_classes: int | None = None) -> ConvNet:
    """A ConvNet for `spec` on (height, width, channels) inputs; the spec is checked (analyze) before anything is built.

    input_shape: needed when the spec has none. num_classes: fills a last Dense without units and must match the
    network's output size.
    """
    reports = analyze(spec, input_shape, num_classes)
    resolved = ModelSpec(tuple(report.layer for report in reports), reports[0].input_shape, spec.name)
    return ConvNet(resolved, reports, reports[-1].output_shape[0])
