"""NumPy arrays in Keras's layout <-> the tensors convolab trains on.

Keras takes images as (N, H, W, C) floats (the course divides uint8 pixels by 255 first) and labels as class indices
(sparse) or one-hot rows (categorical). convolab keeps images at rest as (N, C, H, W) and scales them by 1/255 batch by
batch (data.iterate_batches), so `stored_images` hands it uint8 whenever the floats are exactly pixels/255 (the
course's case: 4x less memory, the fast path), and otherwise float32 values times 255, so that the model sees exactly
the values Keras would (un-normalised 0..255 pixels included: the course's "what if you don't normalise" exercise).
"""
from __future__ import annotations

import numpy as np
import torch

from convolab.errors import DataError

# The largest gap between x * 255 and the nearest integer still read as "a pixel divided by 255" (float32 rounding).
PIXEL_TOLERANCE = 1e-3


def as_numpy(values, what: str) -> np.ndarray:
    """A NumPy array from an array, a tensor or nested lists; a DataError for anything not numeric."""
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    array = np.asarray(values)
    if array.dtype == object or not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise DataError(f"{what}: expected a numeric array, received {type(values).__name__} of {array.dtype}",
                        fix="pass NumPy arrays, as keras.datasets.fashion_mnist.load_data() returns them")
    return array


def images_nhwc(x, what: str, input_shape: tuple[int, int, int] | None = None) -> np.ndarray:
    """Images as (N, H, W, C). (N, H, W) gains the channel axis when the model takes one channel, as Keras 3 does
    (the course's data is (60000, 28, 28) and its model takes (28, 28, 1))."""
    array = as_numpy(x, what)
    if array.ndim == 3 and (input_shape is None or input_shape[2] == 1):
        array = array[..., np.newaxis]
    if array.ndim != 4:
        raise DataError(f"{what}: expected images of shape (N, height, width, channels), received shape {array.shape}",
                        fix="reshape them, e.g. images.reshape(-1, 28, 28, 1)")
    if input_shape is not None and tuple(array.shape[1:]) != tuple(input_shape):
        raise DataError(f"{what}: the model takes images of shape {tuple(input_shape)}, received {tuple(array.shape[1:])}",
                        fix=f"reshape them to (N, {', '.join(map(str, input_shape))})")
    return array


def stored_images(images_nhwc_array: np.ndarray) -> torch.Tensor:
    """(N, H, W, C) values -> (N, C, H, W) as convolab stores images: uint8 when they are pixels/255, else float32 x 255."""
    array = images_nhwc_array
    if np.issubdtype(array.dtype, np.floating) and array.size and array.min() >= 0 and array.max() <= 1:
        scaled = array * 255.0
        pixels = np.rint(scaled)
        if np.abs(scaled - pixels).max() <= PIXEL_TOLERANCE:
            return torch.from_numpy(np.ascontiguousarray(pixels.astype(np.uint8).transpose(0, 3, 1, 2)))
    values = torch.from_numpy(np.ascontiguousarray(array.transpose(0, 3, 1, 2)).astype(np.float32))
    return values * 255.0   # iterate_batches divides by 255: the model then sees `array` itself


def model_floats(images_nhwc_array: np.ndarray) -> torch.Tensor:
    """(N, H, W, C) values -> the (N, C, H, W) float32 tensor the network sees."""
    return torch.from_numpy(np.ascontiguousarray(images_nhwc_array.transpose(0, 3, 1, 2)).astype(np.float32))


def class_indices(y, count: int, num_classes: int | None, categorical: bool, what: str) -> torch.Tensor:
    """Labels -> int64 class indices (N,): sparse labels (N,) or (N, 1) as they are; one-hot rows (categorical loss)
    by their 1. Anything else (soft labels, out of range, a count that differs from the images') is a DataError."""
    array = as_numpy(y, what)
    if categorical:
        if array.ndim != 2 or (num_classes is not None and array.shape[1] != num_classes):
            raise DataError(f"{what}: categorical_crossentropy expects one-hot rows (N, {num_classes or 'classes'}), "
                            f"received shape {array.shape}",
                            fix="use loss='sparse_categorical_crossentropy' for class numbers, "
                                "or keras.utils.to_categorical(labels)")
        if not np.all((array == 0) | (array == 1)) or not np.all(array.sum(axis=1) == 1):
            raise DataError(f"{what}: expected one-hot rows (a single 1 per row); soft labels are not supported",
                            fix="pass one-hot labels, or class numbers with loss='sparse_categorical_crossentropy'")
        array = array.argmax(axis=1)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1:
        fix = ("these look one-hot: use loss='categorical_crossentropy'" if array.ndim == 2
               else "pass one class number per image")
        raise DataError(f"{what}: expected class numbers of shape (N,), received shape {array.shape}", fix=fix)
    if array.size and (not np.all(np.mod(array, 1) == 0) or array.min() < 0
                       or (num_classes is not None and array.max() >= num_classes)):
        raise DataError(f"{what}: expected class numbers 0 to {(num_classes or 1) - 1}, "
                        f"received values from {array.min()} to {array.max()}",
                        fix="the last Dense layer needs one unit per class")
    if len(array) != count:
        raise DataError(f"{what}: {len(array)} labels for {count} images; expected one label per image")
    return torch.from_numpy(array.astype(np.int64))


def to_keras_one_hot(labels, num_classes: int | None = None) -> np.ndarray:
    """keras.utils.to_categorical: class numbers -> float32 one-hot rows."""
    values = as_numpy(labels, "to_categorical").reshape(-1)
    array = values.astype(np.int64)
    classes = int(num_classes or (array.max() + 1 if array.size else 0))
    # numpy would put -1 in the last column, 2.7 in column 2, and fail on 7 of 5 columns with an IndexError
    if array.size and (not np.all(values == array) or array.min() < 0 or array.max() >= classes):
        raise DataError(f"to_categorical: expected class numbers 0 to {classes - 1}, received values from "
                        f"{values.min()} to {values.max()}",
                        fix="give whole class numbers from 0, and num_classes above the largest (or leave it out)")
    one_hot = np.zeros((len(array), classes), dtype=np.float32)
    one_hot[np.arange(len(array)), array] = 1.0
    return one_hot
