"""The checks every new layer kind passes, shared by its test module: Keras's shapes, counts and outputs; the fast
engine's exactness (as tests/test_engine.py checks the others); the round trip of its three forms."""
from __future__ import annotations

import numpy as np
import torch

from keras_reference import convolab_shapes_and_counts, keras_shapes_and_counts, outputs, twin
from test_engine import outputs_and_gradients, pair
from convolab.spec import load_spec, parse_line, spec_from_dict


def check_against_keras(line: str, input_shape, classes: int) -> None:
    model, reference = twin(load_spec(line), input_shape, classes)
    assert convolab_shapes_and_counts(model) == keras_shapes_and_counts(reference)
    images = np.random.RandomState(0).rand(3, *input_shape).astype("float32")
    ours, theirs = outputs(model, reference, images)
    np.testing.assert_allclose(ours, theirs, atol=1e-5, rtol=0)


def check_engine_is_exact(line: str, input_shape) -> None:
    reference, fast = pair(line, input_shape)
    images = torch.randn(4, input_shape[2], input_shape[0], input_shape[1], dtype=torch.float64)
    for mode in (True, False):
        reference.train(mode)
        expected, expected_gradients = outputs_and_gradients(reference, images)
        got, got_gradients = outputs_and_gradients(fast, images)
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
        for got_gradient, expected_gradient in zip(got_gradients, expected_gradients, strict=True):
            torch.testing.assert_close(got_gradient, expected_gradient, rtol=1e-10, atol=1e-12)


def check_round_trip(line: str) -> None:
    spec = parse_line(line)
    assert parse_line(spec.to_line()) == spec
    assert spec_from_dict(spec.to_dict()) == spec
    for layer in spec.layers:
        assert type(layer).from_keras_config(dict(layer.keras_config(), name="x", dtype="float32")) == layer
