"""A seeded generator of random valid specs, with their shapes computed from Keras's published formulas.

Keras: 'valid' output = ⌊(n − k) / s⌋ + 1, 'same' output = ⌈n / s⌉ (pooling likewise with pool size and strides);
Conv2D params = filters × (kh × kw × cin + 1); Dense params = units × (inputs + 1); BatchNormalization 4 per channel,
2 of them non-trainable. The formulas are written out here again, independently of convolab.shapes.
"""
from __future__ import annotations

import math
import random

from convolab.spec import (
    ACTIVATIONS, AveragePooling2D, BatchNormalization, Conv2D, Dense, Dropout, Flatten, GlobalAveragePooling2D,
    MaxPooling2D, ModelSpec,
)


def keras_length(size: int, window: int, stride: int, padding: str) -> int:
    if padding == "same":
        return -(-size // stride)
    return (size - window) // stride + 1


def _pair(rng: random.Random, low: int, high: int) -> tuple[int, int]:
    first = rng.randint(low, high)
    return (first, first) if rng.random() < 0.7 else (first, rng.randint(low, high))


def random_spec(rng: random.Random) -> tuple[ModelSpec, list[tuple[int, ...]], int, int]:
    """(spec, expected output shapes, expected trainable params, expected non-trainable params)."""
    shape: tuple[int, ...] = (rng.randint(4, 33), rng.randint(4, 33), rng.choice((1, 3)))
    input_shape = shape
    layers, shapes = [], []
    trainable = non_trainable = 0
    activations = [name for name in ACTIVATIONS if name != "softmax"]
    for _ in range(rng.randint(0, 5)):
        kind = rng.choice(("conv", "conv", "conv", "max", "avg", "bn", "dropout"))
        if kind in ("conv", "max", "avg"):
            window = _pair(rng, 1, 5)
            strides = _pair(rng, 1, 3) if rng.random() < 0.5 else ((1, 1) if kind == "conv" else None)
            padding = rng.choice(("valid", "same"))
            if padding == "valid" and (window[0] > shape[0] or window[1] > shape[1]):
                padding = "same"
            effective_strides = strides or window
            height = keras_length(shape[0], window[0], effective_strides[0], padding)
            width = keras_length(shape[1], window[1], effective_strides[1], padding)
            if kind == "conv":
                filters = rng.randint(1, 8)
                use_bias = rng.random() < 0.8
                layers.append(Conv2D(filters, window, strides=strides or (1, 1), padding=padding,
                                     activation=rng.choice(activations), use_bias=use_bias))
                trainable += filters * (window[0] * window[1] * shape[2] + int(use_bias))
                shape = (height, width, filters)
            else:
                pool_type = MaxPooling2D if kind == "max" else AveragePooling2D
                layers.append(pool_type(window if rng.random() < 0.5 else window[0] if window[0] == window[1]
                                        else window, strides=strides, padding=padding))
                shape = (height, width, shape[2])
        elif kind == "bn":
            layers.append(BatchNormalization(momentum=rng.choice((0.99, 0.9)), epsilon=rng.choice((1e-3, 1e-5))))
            trainable += 2 * shape[2]
            non_trainable += 2 * shape[2]
        else:
            layers.append(Dropout(rng.choice((0.0, 0.1, 0.25, 0.5))))
        shapes.append(shape)
    if rng.random() < 0.7:
        layers.append(Flatten())
        shape = (math.prod(shape),)
    else:
        layers.append(GlobalAveragePooling2D())
        shape = (shape[2],)
    shapes.append(shape)
    dense_count = rng.randint(0 if layers[-1].__class__ is GlobalAveragePooling2D else 1, 3)
    for position in range(dense_count):
        last = position == dense_count - 1
        units = rng.randint(1, 12)
        use_bias = rng.random() < 0.9
        layers.append(Dense(units, activation="softmax" if last else rng.choice(activations), use_bias=use_bias))
        trainable += units * (shape[0] + int(use_bias))
        shape = (units,)
        shapes.append(shape)
        if not last and rng.random() < 0.3:
            layers.append(rng.choice((Dropout(0.5), BatchNormalization())))
            if isinstance(layers[-1], BatchNormalization):
                trainable += 2 * units
                non_trainable += 2 * units
            shapes.append(shape)
    return ModelSpec(tuple(layers), input_shape, None), shapes, trainable, non_trainable


def random_specs(count: int, seed: int = 0) -> list[tuple[ModelSpec, list[tuple[int, ...]], int, int]]:
    rng = random.Random(seed)
    return [random_spec(rng) for _ in range(count)]
