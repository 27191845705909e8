"""What a trained ConvNet's layers make of some images: feature maps, learned kernels, filters ranked by activity.

Everything here reads a model without changing it: forward hooks are removed in `finally`, every module's train/eval
mode is put back, gradients are never recorded. Arrays come back in Keras's order, `(N, H, W, C)` for feature maps and
`(kernel_h, kernel_w, in_channels, filters)` for kernels, so that `maps[i, :, :, f]` reads like the lab's
`f1[0, :, :, CONVOLUTION_NUMBER]`. Layer numbers are the 0-based positions in the spec, the lab's `model.layers[x]`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import torch

from convolab.errors import RunError, SpecError
from convolab.shards import shard_context
from convolab.shapes import keras_names
from convolab.layers import KINDS
from convolab.model import model_device
from convolab.spec import (AveragePooling2D, Conv2D, DepthwiseConv2D, MaxPooling2D, ModelSpec,
                           SeparableConv2D)

LAB_IMAGES = (0, 23, 28)  # the lab's three ankle boots (Fashion-MNIST's test images)


def lab_images(available: int) -> list[int]:
    """The lab's test images that a test set of `available` images has (image 0 at least): the default of show and
    the report, so that a run on a folder of a few dozen images draws its grid instead of refusing its own default."""
    return [index for index in LAB_IMAGES if index < available] or [0]


# The layers whose outputs are images (H, W, C) worth drawing: the lab's "convolutions and pooling" (windowed kinds).
VISUAL_LAYER_TYPES = tuple(kind for kind in KINDS if kind.windowed)
# The layers with learned windows to draw (convolab filters).
KERNEL_LAYER_TYPES = tuple(kind for kind in KINDS if kind.has_kernels)


@dataclass(frozen=True)
class LayerMaps:
    """One layer's output for a batch of images, in Keras's (N, H, W, C) order."""

    index: int  # position in spec.layers (0-based, as in the lab's model.layers)
    kind: str  # the Keras layer class name: "Conv2D", "MaxPooling2D", ...
    values: np.ndarray  # (N, H, W, C) float32

    @property
    def num_filters(self) -> int:
        return int(self.values.shape[-1])


@dataclass(frozen=True)
class Activations:
    """Feature maps of the chosen layers and the model's own verdict, all from one forward pass."""

    layers: tuple[LayerMaps, ...]
    logits: np.ndarray  # (N, classes)

    @property
    def predictions(self) -> np.ndarray:
        return self.logits.argmax(axis=1)

    def layer(self, index: int) -> LayerMaps:
        """The maps of spec layer `index`; it must have been captured."""
        for maps in self.layers:
            if maps.index == index:
                return maps
        captured = ", ".join(str(maps.index) for maps in self.layers)
        raise SpecError(f"layer {index} was not captured; captured layers: {captured}",
                        fix="capture the layer first, or pick one of the captured layers")


def visual_layer_indices(spec: ModelSpec) -> list[int]:
    """The positions of the conv and pool layers: the columns of the lab's grid."""
    return [index for index, layer in enumerate(spec.layers) if layer.windowed]


def conv_layer_indices(spec: ModelSpec) -> list[int]:
    """The positions of the layers with kernels to look at (Conv2D and its relatives)."""
    return [index for index, layer in enumerate(spec.layers) if layer.has_kernels]


def layer_names(spec: ModelSpec) -> dict[int, str]:
    """Keras's automatic names by position: {0: 'conv2d', 1: 'max_pooling2d', 2: 'conv2d_1', ...}."""
    return dict(enumerate(keras_names(spec.layers)))


def find_layer(spec: ModelSpec, text: str, allowed: tuple[type, ...] = VISUAL_LAYER_TYPES) -> int:
    """A layer given as its position ('2', as in the lab's model.layers[2]) or Keras name ('conv2d_1') -> position.

    Raises a SpecError naming the choices unless the layer exists and is one of `allowed`.
    """
    text = str(text).strip()
    names = layer_names(spec)
    if re.fullmatch(r"-?[0-9]+", text, re.ASCII):   # not str.isdigit: '²' passes it and then fails in int()
        index = int(text)
    else:
        by_name = {name: index for index, name in names.items()}
        if text not in by_name:
            raise SpecError(f"no layer named {text!r} in this model",
                            fix=f"pick one of: {describe_layer_choices(spec, allowed)}")
        index = by_name[text]
    check_layer(spec, index, allowed)
    return index


def describe_layer_choices(spec: ModelSpec, allowed: tuple[type, ...]) -> str:
    """'0 = conv2d (Conv2D), 1 = max_pooling2d (MaxPooling2D), ...': the choices, for an error message."""
    names = layer_names(spec)
    choices = [f"{index} = {names[index]} ({type(layer).__name__})" for index, layer in enumerate(spec.layers)
               if isinstance(layer, allowed)]
    return ", ".join(choices) if choices else "none"


def check_layer(spec: ModelSpec, index: int, allowed: tuple[type, ...] = VISUAL_LAYER_TYPES) -> None:
    """Raise a SpecError unless spec layer `index` exists and is one of `allowed` (conv/pool by default)."""
    # Name the allowed kinds this model has (all of them when it has none): the choices that apply here.
    present = [kind for kind in allowed if any(type(layer) is kind for layer in spec.layers)] or allowed
    kinds = "/".join(kind.__name__ for kind in present)
    choices = describe_layer_choices(spec, allowed)
    if not 0 <= index < len(spec.layers):
        raise SpecError(f"layer {index} does not exist: the model has layers 0 to {len(spec.layers) - 1}",
                        fix=f"pick a {kinds} layer: {choices}")
    layer = spec.layers[index]
    if not isinstance(layer, allowed):
        raise SpecError(f"layer {index} is a {type(layer).__name__}, expected a {kinds} layer",
                        fix=f"pick one of: {choices}")


def check_image_indices(indices: list[int], available: int) -> None:
    """Raise a RunError naming the bad index unless every index is in 0..available-1."""
    for index in indices:
        if not 0 <= index < available:
            example = ",".join(map(str, lab_images(available)))   # in range: 23 and 28 are not in a set of 20
            raise RunError(f"image index {index} is out of range: the test set has {available} images (0 to {available - 1})",
                           fix=f"pick image indices between 0 and {available - 1}, e.g. --images {example} "
                               f"(images=[{example.replace(',', ', ')}] in Python)")


def check_filter_index(filter_index: int, maps: LayerMaps) -> None:
    """Raise a SpecError unless `filter_index` is one of the layer's channels."""
    if not 0 <= filter_index < maps.num_filters:
        raise SpecError(f"filter {filter_index} does not exist in layer {maps.index} ({maps.kind}), "
                        f"which has {maps.num_filters} filters (0 to {maps.num_filters - 1})",
                        fix=f"pick a filter between 0 and {maps.num_filters - 1}")


def to_model_input(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 (N, C, H, W) images at rest -> float32 in [0, 1] on the model's device; float images pass through."""
    if images.dtype == torch.uint8:
        return images.to(device=device, dtype=torch.float32) / 255.0
    return images.to(device=device, dtype=torch.float32)


def nchw_to_nhwc(values: torch.Tensor) -> np.ndarray:
    """A (N, C, H, W) tensor -> a (N, H, W, C) float32 numpy array: Keras's order, the one users see.
    A (N, features) tensor (Flatten, Dense) has no channel axis to move and comes back as it is."""
    values = values.detach().to("cpu", torch.float32)
    return (values.permute(0, 2, 3, 1) if values.dim() == 4 else values).contiguous().numpy()


def forward_keeping(model: torch.nn.Module, images: torch.Tensor, indices: list[int]
                    ) -> tuple[dict[int, tuple[torch.Tensor, torch.Tensor]], torch.Tensor]:
    """One eval-mode pass of `images` keeping, for each block in `indices`, its (input, output) NCHW; and the logits.

    Dropout is off and BatchNormalization uses its running statistics (as Keras predicts); every module's mode is
    restored afterwards and the hooks are removed even if the pass fails.
    """
    kept: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    handles = []
    modes = {module: module.training for module in model.modules()}
    try:
        for index in indices:
            def keep(_module, inputs, output, index=index):
                kept[index] = (inputs[0].detach(), output.detach())
            handles.append(model.blocks[index].register_forward_hook(keep))
        model.eval()
        # One shard, one thread (shards.py): a few images need no second thread, and two would spin-wait for each
        # other whenever another program holds a core. The hooks then see whole outputs, never a shard's.
        with torch.no_grad(), shard_context():
            logits = model(to_model_input(images, model_device(model)))
    finally:
        for handle in handles:
            handle.remove()
        for module, training in modes.items():
            module.train(training)
    return kept, logits.detach().to("cpu", torch.float32)


def capture(model: torch.nn.Module, spec: ModelSpec, images: torch.Tensor,
            layer_indices: list[int] | None = None, allowed: tuple[type, ...] = VISUAL_LAYER_TYPES) -> Activations:
    """Run `images` through `model` once and keep the outputs of the blocks at `layer_indices` (default: conv/pool).

    allowed: the layer kinds that may be captured (the Keras API's activation model captures every layer).
    model: a ConvNet whose `.blocks[i]` computes spec layer i. images: uint8 or float (N, C, H, W).
    The model is put in eval mode for the pass and every module's mode is restored afterwards (forward_keeping).
    """
    indices = visual_layer_indices(spec) if layer_indices is None else list(layer_indices)
    for index in indices:
        check_layer(spec, index, allowed)
    kept, logits = forward_keeping(model, images, indices)
    layers = tuple(LayerMaps(index=index, kind=type(spec.layers[index]).__name__, values=nchw_to_nhwc(kept[index][1]))
                   for index in indices)
    return Activations(layers=layers, logits=logits.numpy())


def window_products(padded: torch.Tensor, conv: torch.nn.Conv2d, filters: list[int], row: int, column: int):
    """For output channels `filters` of `conv` (grouped or not) at (row, column): the input windows each reads, its
    weights, and their products, each (channels read, kh, kw); the input channel each window came from."""
    (stride_y, stride_x), (kernel_h, kernel_w) = conv.stride, conv.kernel_size
    y, x = row * stride_y, column * stride_x
    per_group_in = conv.in_channels // conv.groups
    per_group_out = conv.out_channels // conv.groups
    windows, weights, sources = [], [], []
    for output_channel in filters:
        first = (output_channel // per_group_out) * per_group_in                  # the inputs this channel's group reads
        windows.append(padded[first:first + per_group_in, y:y + kernel_h, x:x + kernel_w])
        weights.append(conv.weight[output_channel].detach().float().cpu())       # (per_group_in, kh, kw)
        sources.extend(range(first, first + per_group_in))
    window, weight = torch.cat(windows), torch.cat(weights)
    return window, weight, window * weight, sources


def convolution_origin(layer, block: torch.nn.Module, padded: torch.Tensor, filter_index: int, row: int,
                       column: int, top: int, left: int) -> dict:
    """The numbers behind output channel `filter_index` at (row, column) of a Conv2D, DepthwiseConv2D or
    SeparableConv2D block (see value_origin); padded: the layer below's values after the block's zero padding."""
    keras = lambda values: values.permute(1, 2, 0).tolist()                     # (C, kh, kw) -> (kh, kw, C)
    extra = {}
    if isinstance(layer, SeparableConv2D):      # every depthwise channel's window, then the filter's 1×1 weights
        windowed, mixing = block.depthwise, block.pointwise
        window, weights, products, sources = window_products(padded, windowed, list(range(windowed.out_channels)),
                                                             row, column)
        depthwise_values = products.double().sum(dim=(1, 2))                      # one per depthwise channel
        pointwise_weights = mixing.weight[filter_index, :, 0, 0].detach().double().cpu()
        contributions = depthwise_values * pointwise_weights
        extra = {"depthwise_values": depthwise_values.tolist(), "pointwise_weights": pointwise_weights.tolist()}
    else:                                       # Conv2D: every input channel; DepthwiseConv2D: its one channel
        windowed = mixing = block.conv
        window, weights, products, sources = window_products(padded, windowed, [filter_index], row, column)
        contributions = products.double().sum(dim=(1, 2))
    bias = float(mixing.bias[filter_index].detach()) if mixing.bias is not None else 0.0
    total = float(contributions.sum())
    return {"top": row * windowed.stride[0] - top, "left": column * windowed.stride[1] - left,
            "size": list(windowed.kernel_size), "window": keras(window), "weights": keras(weights),
            "products": keras(products), "input_channels": sources, "channel_sums": contributions.tolist(),
            "sum": total, "bias": bias, "pre_activation": total + bias, **extra}


def value_origin(model: torch.nn.Module, spec: ModelSpec, image: torch.Tensor, layer_index: int, filter_index: int,
                 row: int, column: int) -> dict:
    """Where one value of a conv or pool map comes from, with every number (CNN Explainer's formula view).

    image: one uint8 or float (C, H, W) image. The value is output[row, column, filter_index] of spec layer
    `layer_index`. Returned (plain lists, Keras's (kernel_h, kernel_w, channels) order for windows):
      Conv2D:  window (the layer below's values under the kernel, after any 'same' zero padding), weights, products,
               channel_sums (the products summed per input channel), sum, bias, pre_activation = sum + bias,
               activation (its name) and value (what the map shows); input_channels: where each window came from.
      DepthwiseConv2D: the same for the one input channel the filter reads (filter // depth_multiplier).
      SeparableConv2D: window, weights and products per depthwise channel (its input channel's window times its
               depthwise kernel), depthwise_values (each channel's products summed), pointwise_weights (the
               filter's 1×1 weights), channel_sums = depthwise value × pointwise weight, then sum, bias, ... as Conv2D.
      MaxPooling2D / AveragePooling2D: window (one channel), the max (with its position in the window) or the mean,
               and value.
    Both: top and left, where the window starts in the layer below (negative inside 'same' padding), and its size.
    """
    check_layer(spec, layer_index)
    kept, _ = forward_keeping(model, image.unsqueeze(0), [layer_index])
    below, output = kept[layer_index][0][0].float().cpu(), kept[layer_index][1][0].float().cpu()   # (C, H, W) each
    channels, height, width = output.shape
    if not 0 <= filter_index < channels:
        raise SpecError(f"filter {filter_index} does not exist in layer {layer_index}, which has {channels} filters "
                        f"(0 to {channels - 1})", fix=f"pick a filter between 0 and {channels - 1}")
    if not (0 <= row < height and 0 <= column < width):
        raise SpecError(f"position ({row}, {column}) is outside layer {layer_index}'s {height}×{width} map",
                        fix=f"pick a row in 0..{height - 1} and a column in 0..{width - 1}")
    layer, block = spec.layers[layer_index], model.blocks[layer_index]
    if not isinstance(layer, (Conv2D, DepthwiseConv2D, SeparableConv2D, MaxPooling2D, AveragePooling2D)):
        raise SpecError(f"layer {layer_index} is a {type(layer).__name__}; where a value comes from is shown for "
                        "convolution (Conv2D, DepthwiseConv2D, SeparableConv2D) and pooling layers",
                        fix="click a map of one of those layers")
    left, _right, top, _bottom = block.padding
    kind = type(layer).__name__
    if not isinstance(layer, (MaxPooling2D, AveragePooling2D)):
        padded = torch.nn.functional.pad(below, block.padding) if any(block.padding) else below
        origin = {"kind": kind, "layer": layer_index, "filter": filter_index, "row": row, "column": column,
                  "activation": layer.activation, "value": float(output[filter_index, row, column])}
        return {**origin, **convolution_origin(layer, block, padded, filter_index, row, column, top, left)}
    (pool_h, pool_w), (stride_y, stride_x) = layer.pool_size, layer.strides
    fill = -float("inf") if isinstance(layer, MaxPooling2D) else 0.0
    padded = torch.nn.functional.pad(below, block.padding, value=fill) if any(block.padding) else below
    y, x = row * stride_y, column * stride_x
    window = padded[filter_index, y:y + pool_h, x:x + pool_w]                  # (ph, pw), one channel
    origin = {"kind": kind, "layer": layer_index, "filter": filter_index, "row": row, "column": column,
              "top": y - top, "left": x - left, "size": [pool_h, pool_w],
              "window": [[value if value != fill or fill == 0.0 else None for value in line] for line in window.tolist()],
              "value": float(output[filter_index, row, column])}
    if isinstance(layer, MaxPooling2D):
        position = int(window.flatten().argmax())
        origin.update(max=float(window.max()), argmax=[position // pool_w, position % pool_w])
    else:   # with 'same' padding TensorFlow averages only the real values, which the value shows
        origin.update(mean=float(output[filter_index, row, column]))
    return origin


def kernels(model: torch.nn.Module, spec: ModelSpec, layer_index: int) -> np.ndarray:
    """The learned kernels of layer `layer_index` in Keras's order: (kernel_h, kernel_w, in_channels, filters)."""
    check_layer(spec, layer_index, allowed=KERNEL_LAYER_TYPES)
    return spec.layers[layer_index].kernels(model.blocks[layer_index])


def variance_by_filter(values: np.ndarray) -> np.ndarray:
    """Each filter's activation variance over images and positions: (N, H, W, C) -> (C,)."""
    return values.reshape(-1, values.shape[-1]).var(axis=0)


def filters_by_variance(values: np.ndarray) -> list[int]:
    """Filter indices, most varied activation first (ties keep index order): the filters that respond to something."""
    variance = variance_by_filter(values)
    return sorted(range(len(variance)), key=lambda channel: (-float(variance[channel]), channel))
