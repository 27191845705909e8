"""A spec in, a `ConvNet(torch.nn.Module)` out: one block per spec layer, each computing exactly what Keras's layer does.

This is the plain reference implementation: each layer kind builds its own readable block (convolab/layers/), NCHW
tensors inside, Keras's shapes, padding, initialization and BatchNormalization semantics. Faster paths (engine.py) must
match it, not replace it.

The model's output, as in Keras, is whatever its last layer outputs; `forward` returns it as logits (scores whose
softmax is the class probabilities), so training's cross-entropy, predict, evaluate and the report read it one way:
- the last layer's softmax is left to `probabilities()` (cross-entropy on logits is numerically stable);
- a softmax followed only by layers that compute nothing at inference (Dropout) makes the output probabilities:
  forward ends with their logarithm, normalized and clipped as Keras's crossentropy reads probabilities, so training
  minimizes Keras's loss and probabilities() returns Keras's output;
- any other output (a linear last layer, a BatchNormalization after the softmax) is read as logits.
"""
from __future__ import annotations

import torch
from torch import nn

from convolab.layers.activation_functions import make_activation  # noqa: F401 - the table's home, re-exported
from convolab.layers.conv import Conv2DBlock  # noqa: F401 - blocks live with their kinds; imported for callers
from convolab.layers.dense import DenseBlock  # noqa: F401
from convolab.layers.normalization import BatchNormalizationBlock  # noqa: F401
from convolab.layers.pooling import (  # noqa: F401
    AveragePooling2DBlock, GlobalAveragePooling2DBlock, MaxPooling2DBlock,
)
from convolab.layers.reshape import FlattenBlock  # noqa: F401
from convolab.shapes import LayerReport, analyze, output_softmax_position
from convolab.spec import ModelSpec

KERAS_EPSILON = 1e-7  # keras.config.epsilon(): how far Keras's crossentropy clips probabilities from 0 and 1


def model_device(model: nn.Module) -> torch.device:
    """Where the model's weights (or, without any, its buffers) live; the CPU for a model that has neither."""
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def make_block(layer, report: LayerReport, activation: str | None = None) -> nn.Module:
    """The block computing `layer` on the input `report` describes; `activation` overrides the layer's own."""
    return layer.block(report.input_shape, activation)


class ProbabilitiesAsLogits(nn.Module):
    """Probabilities -> their logarithm, normalized and clipped as Keras's crossentropy reads probabilities."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x / x.sum(dim=1, keepdim=True)
        return torch.log(torch.clamp(x, KERAS_EPSILON, 1.0 - KERAS_EPSILON))


# --- the network -----------------------------------------------------------------------------------------------------

class ConvNet(nn.Module):
    """The spec's layers as blocks in order; forward gives logits, probabilities() gives the model's output."""

    def __init__(self, spec: ModelSpec, reports: list[LayerReport], num_classes: int):
        super().__init__()
        self.spec = spec  # resolved: input shape set, every Dense sized
        self.reports = reports
        self.input_shape = spec.input_shape  # (height, width, channels), Keras's order
        self.num_classes = num_classes
        softmax_at = output_softmax_position(spec.layers)
        last = len(spec.layers) - 1
        # "softmax": the model outputs probabilities (forward: their logits); otherwise its output is read as logits.
        self.output_activation = "softmax" if softmax_at is not None else spec.layers[-1].activation_name
        blocks = []
        for position, (layer, report) in enumerate(zip(spec.layers, reports)):
            split_off = position == last and softmax_at == last  # the output softmax: left to probabilities()
            blocks.append(make_block(layer, report, activation="linear" if split_off else None))
        self.blocks = nn.ModuleList(blocks)
        self.finish = ProbabilitiesAsLogits() if softmax_at is not None and softmax_at != last else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, C, H, W) floats -> (N, num_classes) logits."""
        for block in self.blocks:
            x = block(x)
        return x if self.finish is None else self.finish(x)

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
