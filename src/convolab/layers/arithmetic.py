"""Shape arithmetic every layer kind shares, as pure functions that return their explanation with their number:
output sizes of sliding windows ('valid' and 'same' padding, strides, floor division), activation memory per image,
and the receptive field on the input. Shapes are Keras's: (height, width, channels) for images, (units,) for vectors.
"""
from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

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


def padding_before(shape: tuple[int, ...], window: tuple[int, int], strides: tuple[int, int],
                   padding: str) -> tuple[int, int]:
    """Rows and columns of zeros a window layer adds before (above, left of) its input: 'same' pads, 'valid' none."""
    if padding != "same":
        return (0, 0)
    return tuple(same_padding(shape[axis], window[axis], strides[axis])[0] for axis in range(2))  # type: ignore


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


# --- cost per image --------------------------------------------------------------------------------------------------

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
    """How many input pixels one output value sees (size), how far apart neighbours' fields start (jump), and where
    the field of output (0, 0) starts in input rows and columns (start: negative where 'same' padding reaches before
    the image, so the field of output (i, j) begins at start + (i, j) × jump and may hang over the edge)."""

    size: tuple[int, int] = (1, 1)
    jump: tuple[int, int] = (1, 1)
    start: tuple[int, int] = (0, 0)
    whole_input: bool = False  # after Flatten, Dense or global pooling every value may see every pixel

    def text(self) -> str:
        if self.whole_input:
            return "whole input"
        return f"{_pair(self.size)}, jump {_jump_text(self.jump)}"


def _pair(pair: tuple[int, int]) -> str:
    return f"{pair[0]}×{pair[1]}"


def grow_receptive_field(field: ReceptiveField, window: tuple[int, int], strides: tuple[int, int],
                         pad_before: tuple[int, int] = (0, 0)) -> Explained:
    """After a window: size + (k − 1) × jump, jump × stride, start − pad_before × jump (the padding's zeros come
    before the window's first input); the value is the new field, the text says why."""
    size = tuple(field.size[axis] + (window[axis] - 1) * field.jump[axis] for axis in range(2))
    jump = tuple(field.jump[axis] * strides[axis] for axis in range(2))
    start = tuple(field.start[axis] - pad_before[axis] * field.jump[axis] for axis in range(2))
    new_field = ReceptiveField(size, jump, start)
    if field.size[0] == field.size[1] and window[0] == window[1] and field.jump[0] == field.jump[1]:
        why = f"{field.size[0]} + ({window[0]} − 1) × {field.jump[0]} = {size[0]}"
    else:
        why = f"height {field.size[0]} + ({window[0]} − 1) × {field.jump[0]} = {size[0]}; " \
              f"width {field.size[1]} + ({window[1]} − 1) × {field.jump[1]} = {size[1]}"
    return Explained(new_field, f"receptive field {why} pixels, jump {_jump_text(jump)}")  # type: ignore[arg-type]


def _jump_text(jump: tuple[int, int]) -> str:
    return str(jump[0]) if jump[0] == jump[1] else f"{jump[0]}×{jump[1]}"
