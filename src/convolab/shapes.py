"""Shape arithmetic of a whole spec in Keras's terms: each layer kind answers for itself (output shape, parameters,
multiply-adds, receptive field, each with its arithmetic in words); this module walks a spec with them.

`analyze(spec, input_shape, num_classes)` raises a SpecError naming the layer, what it received, what it expected and
the fix, before anything is built. LayerReport is the row data the summary, the diagram and the model read; it knows
no layer kinds. Shapes are Keras's: (height, width, channels) for images, (units,) for vectors, batch left out.
"""
from __future__ import annotations

import dataclasses
import math

from convolab.errors import SpecError
from convolab.layers.arithmetic import (  # noqa: F401 - the arithmetic's public home for callers of shapes
    BYTES_PER_VALUE, Explained, ReceptiveField, Shape, activation_memory, count, grow_receptive_field, output_length,
    readable_bytes, same_padding, shape_text, window_output_shape,
)
from convolab.layers.base import Position
from convolab.layers.conv import conv_macs, conv_params  # noqa: F401
from convolab.layers.dense import dense_macs, dense_params  # noqa: F401
from convolab.layers.normalization import batchnorm_params  # noqa: F401
from convolab.spec import Layer, ModelSpec, resolve_spec


@dataclasses.dataclass(frozen=True)
class LayerReport:
    """One row of the summary: a layer's shapes, counts, costs and the arithmetic behind them."""

    index: int  # 1-based position in the model
    name: str  # Keras's automatic name: conv2d, conv2d_1, max_pooling2d, ...
    kind: str  # the layer class: Conv2D, MaxPooling2D, ...
    layer: Layer
    input_shape: Shape
    output_shape: Shape
    params: int
    trainable_params: int
    non_trainable_params: int
    macs: int  # multiply-adds per image
    output_values: int
    memory_bytes: int  # activation memory per image (float32)
    receptive_field: ReceptiveField
    explanations: list[str]  # why the output shape and the parameter count are what they are
    macs_explanation: str = ""
    memory_explanation: str = ""
    receptive_field_explanation: str = ""


def keras_names(layers: tuple[Layer, ...]) -> list[str]:
    """Keras's automatic layer names: the first conv2d, then conv2d_1, conv2d_2, ..."""
    seen: dict[str, int] = {}
    names = []
    for layer in layers:
        base = type(layer).keras_name
        names.append(base if base not in seen else f"{base}_{seen[base]}")
        seen[base] = seen.get(base, 0) + 1
    return names


def analyze(spec: ModelSpec, input_shape=None, num_classes: int | None = None) -> list[LayerReport]:
    """One LayerReport per layer of `spec` on `input_shape` (h, w, c), or a SpecError naming the layer at fault.

    input_shape: needed when the spec has none. num_classes: fills a last Dense without units, and when given the
    network must end with exactly that many scores.
    """
    resolved = resolve_spec(spec, input_shape, num_classes)
    shape: Shape = resolved.input_shape
    field = ReceptiveField()
    reports = []
    for index, (layer, name) in enumerate(zip(resolved.layers, keras_names(resolved.layers)), start=1):
        after_pooling = any(earlier.pooling for earlier in resolved.layers[:index - 1])
        report = _analyze_layer(index, name, layer, shape, field, after_pooling)
        reports.append(report)
        shape, field = report.output_shape, report.receptive_field
    _check_output(reports, num_classes)
    return reports


def _analyze_layer(index: int, name: str, layer: Layer, shape: Shape, field: ReceptiveField,
                   after_pooling: bool) -> LayerReport:
    """The report of one layer on its input `shape`, from the layer's own answers."""
    kind = type(layer).__name__
    answer = layer.analyze(shape, field, Position(index, kind, after_pooling))
    new_field = field if answer.receptive_field.value is None else answer.receptive_field.value
    output = answer.output_shape
    memory = activation_memory(output)
    return LayerReport(
        index=index, name=name, kind=kind, layer=layer, input_shape=shape, output_shape=output,
        params=answer.trainable + answer.non_trainable, trainable_params=answer.trainable,
        non_trainable_params=answer.non_trainable, macs=answer.macs.value, output_values=math.prod(output),
        memory_bytes=memory.value, receptive_field=new_field, explanations=list(answer.explanations),
        macs_explanation=answer.macs.text, memory_explanation=memory.text,
        receptive_field_explanation=answer.receptive_field.text,
    )


def _check_output(reports: list[LayerReport], num_classes: int | None) -> None:
    """A classifier ends with one score per class."""
    last = reports[-1]
    if len(last.output_shape) != 1:
        raise SpecError(
            f"the model ends with {shape_text(last.output_shape)} from {last.kind} #{last.index}; expected a vector of "
            "class scores",
            fix="end with flatten,dense (or gap)",
        )
    if num_classes is not None and last.output_shape[0] != num_classes:
        raise SpecError(
            f"the model ends with {last.output_shape[0]} scores ({last.kind} #{last.index}); expected {num_classes}, "
            "one per class",
            fix=f"make the last layer dense{num_classes}, or plain 'dense' to take the class count",
        )


def totals(reports: list[LayerReport]) -> dict[str, int]:
    """Total, trainable and non-trainable parameters, multiply-adds and activation memory per image."""
    return {
        "params": sum(report.params for report in reports),
        "trainable_params": sum(report.trainable_params for report in reports),
        "non_trainable_params": sum(report.non_trainable_params for report in reports),
        "macs": sum(report.macs for report in reports),
        "memory_bytes": sum(report.memory_bytes for report in reports),
    }


# --- training memory -------------------------------------------------------------------------------------------------

def training_memory(params: int, activation_bytes_per_image: int, input_values_per_image: int, batch_size: int,
                    optimizer_slots: int) -> Explained:
    """A lower bound on the memory one training step needs, from the summary's own counts.

    Each parameter is held as a weight, a gradient, and `optimizer_slots` running averages (Adam keeps 2, RMSprop 1,
    SGD 0), 4 bytes each. Each image of a batch keeps its input and every layer's output for the backward pass. The
    real peak is higher (the gradients of the outputs, the kernels' workspace), so what exceeds this cannot fit.
    """
    weights = params * (2 + optimizer_slots) * BYTES_PER_VALUE
    batch = batch_size * (activation_bytes_per_image + input_values_per_image * BYTES_PER_VALUE)
    total = weights + batch
    return Explained(total, f"{count(params)} parameters × {2 + optimizer_slots} copies (weight, gradient, "
                            f"{optimizer_slots} optimizer slots) × {BYTES_PER_VALUE} bytes = {readable_bytes(weights)}, "
                            f"plus {batch_size} images × {readable_bytes(activation_bytes_per_image)} of layer outputs "
                            f"and input = {readable_bytes(batch)}; at least {readable_bytes(total)} in all")


# --- what the model outputs ------------------------------------------------------------------------------------------

def output_softmax_position(layers) -> int | None:
    """The index of the softmax the model's output ends with (layers after it compute nothing at inference), or None.

    As in Keras, the model's output is whatever its last layer outputs: a softmax followed only by Dropout still
    outputs probabilities at inference.
    """
    for position in range(len(layers) - 1, -1, -1):
        layer = layers[position]
        if layer.activation_name == "softmax":
            return position
        if not layer.identity_at_inference:
            return None
    return None


def output_note(reports: list[LayerReport]) -> str:
    """One line on what the model outputs, when it is not simply its last layer's softmax ('' when it is)."""
    layers = [report.layer for report in reports]
    position = output_softmax_position(layers)
    last = reports[-1]
    if position == len(layers) - 1:
        return ""
    if position is not None:
        after = ", ".join(f"{report.kind} #{report.index}" for report in reports[position + 1:])
        return (f"Output: probabilities, the softmax of {reports[position].kind} #{position + 1} ({after} computes "
                "nothing at inference), as Keras's model outputs")
    return (f"Output: the values of {last.kind} #{last.index} (no softmax), read as logits: their softmax gives the "
            "class probabilities")
