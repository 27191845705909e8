"""Shape arithmetic in Keras's terms, as pure functions that return their explanation with their number.

Everything here is integers and strings: output sizes ('valid' and 'same' padding, strides, floor division),
parameter counts (bias terms, BatchNormalization's non-trainable half), multiply-adds and activation memory per image,
and the receptive field on the input. `analyze(spec, input_shape, num_classes)` walks a spec with them and raises a
SpecError naming the layer, what it received, what it expected and the fix, before anything is built.

Shapes are Keras's: (height, width, channels) for images, (units,) for vectors, batch left out.
"""
from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

from convolab.errors import SpecError
from convolab.spec import (
    AveragePooling2D, BatchNormalization, Conv2D, Dense, Dropout, Flatten, GlobalAveragePooling2D, Layer,
    MaxPooling2D, ModelSpec, resolve_spec,
)

BYTES_PER_VALUE = 4  # float32, what both Keras and PyTorch train in by default

Shape = tuple[int, ...]


class Explained(NamedTuple):
    """A number and the arithmetic that gives it, in words."""

    value: int
    text: str


def count(value: int) -> str:
    """Keras's way of printing a parameter count: 204,928."""
    return f"{value:,}"


def shape_text(shape: Shape) -> str:
    """(26, 26, 64) for images, (1600) for vectors: Keras's output shape without the batch's None."""
    return "(" + ", ".join(str(size) for size in shape) + ")"


def readable_bytes(size: float) -> str:
    """Keras's readable_memory_size: 952.29 KB (powers of 1024, two decimals)."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size / 1024 < 1:
            return f"{size:.2f} {unit}"
        size /= 1024
    return f"{size:.2f} PB"


# --- output sizes ----------------------------------------------------------------------------------------------------

def same_padding(size: int, window: int, stride: int) -> tuple[int, int]:
    """Keras/TensorFlow 'same' padding (before, after) on one axis: the odd pixel goes after (bottom/right)."""
    output = math.ceil(size / stride)
    total = max((output - 1) * stride + window - size, 0)
    return total // 2, total - total // 2


def output_length(size: int, window: int, stride: int, padding: str, pooling: bool = False) -> Explained:
    """One axis's output size: 'valid' ⌊(n − k) / s⌋ + 1, 'same' ⌈n / s⌉ (Keras's formulas)."""
    if padding == "same":
        output = math.ceil(size / stride)
        before, after = same_padding(size, window, stride)
        pads = f" (pads {before} before, {after} after)" if before or after else ""
        if stride == 1:
            return Explained(output, f"keeps {size}{pads}")
        return Explained(output, f"⌈{size} / {stride}⌉ = {output}{pads}")
    output = (size - window) // stride + 1
    if stride == 1:
        return Explained(output, f"{size} − {window} + 1 = {output}")
    if pooling and window == stride:
        return Explained(output, f"⌊{size} / {stride}⌋ = {output}")
    return Explained(output, f"⌊({size} − {window}) / {stride}⌋ + 1 = {output}")


def window_output_shape(input_shape: Shape, window: tuple[int, int], strides: tuple[int, int], padding: str,
                        channels: int, pooling: bool = False) -> tuple[Shape, str]:
    """(height, width, channels) after a sliding window, and why: '3×3 window, no padding: 28 − 3 + 1 = 26'."""
    height = output_length(input_shape[0], window[0], strides[0], padding, pooling)
    width = output_length(input_shape[1], window[1], strides[1], padding, pooling)
    how = f"{window[0]}×{window[1]} window"
    if strides != (1, 1):
        how += f", stride {strides[0]}" if strides[0] == strides[1] else f", strides {strides[0]}×{strides[1]}"
    how += ", 'same' padding" if padding == "same" else (", no padding" if not pooling or window != strides else "")
    if height.text == width.text:
        arithmetic = height.text
    else:
        arithmetic = f"height {height.text}; width {width.text}"
    return (height.value, width.value, channels), f"{how}: {arithmetic}"


# --- parameters ------------------------------------------------------------------------------------------------------

def conv_params(filters: int, kernel: tuple[int, int], in_channels: int, use_bias: bool) -> Explained:
    """Keras: filters × (kh·kw·cin + 1)."""
    weights = kernel[0] * kernel[1] * in_channels
    total = filters * (weights + (1 if use_bias else 0))
    per_filter = f"{kernel[0]}×{kernel[1]}×{in_channels} weights"
    if use_bias:
        return Explained(total, f"{filters} filters × ({per_filter} + 1 bias) = {count(total)}")
    return Explained(total, f"{filters} filters × {per_filter}, no bias = {count(total)}")


def dense_params(units: int, inputs: int, use_bias: bool) -> Explained:
    """Keras: units × (inputs + 1)."""
    if use_bias:
        total = units * (inputs + 1)
        return Explained(total, f"{units} × ({inputs} + 1) = {count(total)}: a weight per input and a bias, per unit")
    total = units * inputs
    return Explained(total, f"{units} × {inputs} = {count(total)}: a weight per input, per unit, no bias")


def batchnorm_params(channels: int) -> tuple[int, int, str]:
    """(trainable, non-trainable, why): γ and β learn, the moving mean and variance are only tracked."""
    text = (f"{channels} channels × 4 = {count(4 * channels)}: γ and β learn ({count(2 * channels)} trainable), "
            f"moving mean and variance are tracked ({count(2 * channels)} non-trainable)")
    return 2 * channels, 2 * channels, text


# --- cost per image --------------------------------------------------------------------------------------------------

def conv_macs(output_shape: Shape, kernel: tuple[int, int], in_channels: int) -> Explained:
    """Multiply-adds per image: every output value is a kh·kw·cin dot product."""
    height, width, filters = output_shape
    total = height * width * filters * kernel[0] * kernel[1] * in_channels
    return Explained(total, f"{height}×{width} positions × {filters} filters × {kernel[0]}×{kernel[1]}×{in_channels}"
                            f" = {count(total)} multiply-adds")


def dense_macs(units: int, inputs: int) -> Explained:
    """Multiply-adds per image: one per weight."""
    total = units * inputs
    return Explained(total, f"{units} × {inputs} = {count(total)} multiply-adds")


def activation_memory(shape: Shape) -> Explained:
    """Bytes of one image's output of a layer (float32), which training keeps for the backward pass."""
    values = math.prod(shape)
    total = values * BYTES_PER_VALUE
    factors = " × ".join(str(size) for size in shape)
    product = f"{factors} = {count(values)} values" if len(shape) > 1 else f"{count(values)} values"
    return Explained(total, f"{product} × {BYTES_PER_VALUE} bytes = {readable_bytes(total)}")


# --- receptive field -------------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class ReceptiveField:
    """How many input pixels one output value sees (size), and how far apart neighbours' fields start (jump)."""

    size: tuple[int, int] = (1, 1)
    jump: tuple[int, int] = (1, 1)
    whole_input: bool = False  # after Flatten, Dense or global pooling every value may see every pixel

    def text(self) -> str:
        if self.whole_input:
            return "whole input"
        return f"{_pair(self.size)}, jump {_jump_text(self.jump)}"


def _pair(pair: tuple[int, int]) -> str:
    return f"{pair[0]}×{pair[1]}"


def grow_receptive_field(field: ReceptiveField, window: tuple[int, int], strides: tuple[int, int]) -> Explained:
    """After a window: size + (k − 1) × jump, jump × stride; the value is the new field, the text says why."""
    size = tuple(field.size[axis] + (window[axis] - 1) * field.jump[axis] for axis in range(2))
    jump = tuple(field.jump[axis] * strides[axis] for axis in range(2))
    new_field = ReceptiveField(size, jump)
    if field.size[0] == field.size[1] and window[0] == window[1] and field.jump[0] == field.jump[1]:
        why = f"{field.size[0]} + ({window[0]} − 1) × {field.jump[0]} = {size[0]}"
    else:
        why = f"height {field.size[0]} + ({window[0]} − 1) × {field.jump[0]} = {size[0]}; " \
              f"width {field.size[1]} + ({window[1]} − 1) × {field.jump[1]} = {size[1]}"
    return Explained(new_field, f"receptive field {why} pixels, jump {_jump_text(jump)}")  # type: ignore[arg-type]


def _jump_text(jump: tuple[int, int]) -> str:
    return str(jump[0]) if jump[0] == jump[1] else f"{jump[0]}×{jump[1]}"


# --- a whole spec ----------------------------------------------------------------------------------------------------

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
        report = _analyze_layer(index, name, layer, shape, field)
        reports.append(report)
        shape, field = report.output_shape, report.receptive_field
    _check_output(reports, num_classes)
    return reports


def _where(index: int, layer: Layer) -> str:
    return f"{type(layer).__name__} #{index}"


def _analyze_layer(index: int, name: str, layer: Layer, shape: Shape, field: ReceptiveField) -> LayerReport:
    """The report of one layer on its input `shape`; the shape checks come first."""
    kind = type(layer).__name__
    trainable = non_trainable = macs = 0
    explanations: list[str] = []
    macs_text = ""
    if isinstance(layer, (Conv2D, MaxPooling2D, AveragePooling2D)):
        _require_image(index, layer, shape)
        window = layer.kernel_size if isinstance(layer, Conv2D) else layer.pool_size
        _require_fit(index, layer, shape, window)
        pooling = not isinstance(layer, Conv2D)
        channels = layer.filters if isinstance(layer, Conv2D) else shape[2]
        output, shape_why = window_output_shape(shape, window, layer.strides, layer.padding, channels, pooling)
        grown = grow_receptive_field(field, window, layer.strides)
        new_field, field_why = grown.value, grown.text
        if isinstance(layer, Conv2D):
            explanations.append(shape_why)
            params = conv_params(layer.filters, window, shape[2], layer.use_bias)
            trainable = params.value
            explanations.append(params.text)
            cost = conv_macs(output, window, shape[2])
            macs, macs_text = cost.value, cost.text
        else:
            explanations.append(f"{shape_why}; pooling learns nothing")
    elif isinstance(layer, GlobalAveragePooling2D):
        _require_image(index, layer, shape)
        output = (shape[2],)
        explanations.append(f"the mean of each {shape[0]}×{shape[1]} map: {shape[2]} values; pooling learns nothing")
        new_field, field_why = ReceptiveField(whole_input=True), "every value averages the whole input"
    elif isinstance(layer, Flatten):
        output = (math.prod(shape),)
        factors = " × ".join(str(size) for size in shape)
        explanations.append(f"{factors} = {output[0]} values" if len(shape) > 1 else f"already flat: {output[0]} values")
        new_field = ReceptiveField(field.size, field.jump, field.whole_input)
        field_why = "unchanged: flattening moves values, it mixes none"
    elif isinstance(layer, Dense):
        if len(shape) != 1:
            raise SpecError(
                f"{_where(index, layer)}: received a {len(shape)}-D input {shape_text(shape)}; expected a vector "
                "(Dense comes after Flatten or global pooling; convolab never flattens silently)",
                fix=f"add flatten (or gap) before layer {index}",
            )
        output = (layer.units,)
        explanations.append(f"{layer.units} units")
        params = dense_params(layer.units, shape[0], layer.use_bias)
        trainable = params.value
        explanations.append(params.text)
        cost = dense_macs(layer.units, shape[0])
        macs, macs_text = cost.value, cost.text
        new_field, field_why = ReceptiveField(whole_input=True), "every unit sees the whole input"
    elif isinstance(layer, Dropout):
        output = shape
        explanations.append(f"keeps the shape; zeroes {layer.rate:.0%} of values while training, none at inference;"
                            " learns nothing")
        new_field, field_why = field, "unchanged"
    elif isinstance(layer, BatchNormalization):
        output = shape
        channels = shape[-1]
        trainable, non_trainable, params_why = batchnorm_params(channels)
        explanations.append("keeps the shape; normalizes each channel" if len(shape) == 3 else
                            "keeps the shape; normalizes each unit")
        explanations.append(params_why)
        macs = math.prod(shape)
        macs_text = f"one scale-and-shift per value = {count(macs)} multiply-adds"
        new_field, field_why = field, "unchanged"
    else:  # ModelSpec admits only the classes above; this guards a future layer added without its arithmetic
        raise SpecError(f"layer {index}: no shape arithmetic for {kind}", fix="report this as a convolab bug")
    memory = activation_memory(output)
    return LayerReport(
        index=index, name=name, kind=kind, layer=layer, input_shape=shape, output_shape=output,
        params=trainable + non_trainable, trainable_params=trainable, non_trainable_params=non_trainable,
        macs=macs, output_values=math.prod(output), memory_bytes=memory.value, receptive_field=new_field,
        explanations=explanations, macs_explanation=macs_text, memory_explanation=memory.text,
        receptive_field_explanation=field_why,
    )


def _require_image(index: int, layer: Layer, shape: Shape) -> None:
    if len(shape) != 3:
        raise SpecError(
            f"{_where(index, layer)}: received a vector input {shape_text(shape)}; expected an image "
            "(height, width, channels)",
            fix=f"move layer {index} before flatten/gap/dense, or remove it",
        )


def _require_fit(index: int, layer: Layer, shape: Shape, window: tuple[int, int]) -> None:
    """A 'valid' window larger than its input leaves no output at all."""
    if layer.padding == "valid" and (window[0] > shape[0] or window[1] > shape[1]):
        raise SpecError(
            f"{_where(index, layer)}: {window[0]}×{window[1]} window on a {shape[0]}×{shape[1]} input; "
            "use padding='same' or remove a pooling layer",
            fix="add 'same' to the token (conv64x3same, pool2same) or padding='same', or remove a pooling layer",
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
