"""The checks every new layer kind passes, shared by its test module: Keras's shapes, counts and outputs; the fast
engine's exactness (as tests/test_engine.py checks the others); the round trip of its three forms."""
from __future__ import annotations

import numpy as np

from keras_reference import convolab_shapes_and_counts, keras_shapes_and_counts, outputs, twin
from test_engine import assert_engine_is_exact
from convolab.spec import load_spec, parse_line, spec_from_dict


def check_against_keras(line: str, input_shape, classes: int) -> None:
    model, reference = twin(load_spec(line), input_shape, classes)
    assert convolab_shapes_and_counts(model) == keras_shapes_and_counts(reference)
    images = np.random.RandomState(0).rand(3, *input_shape).astype("float32")
    ours, theirs = outputs(model, reference, images)
    np.testing.assert_allclose(ours, theirs, atol=1e-5, rtol=0)


def check_engine_is_exact(line: str, input_shape) -> None:
    assert_engine_is_exact(line, input_shape, batch=4)


def check_round_trip(line: str) -> None:
    spec = parse_line(line)
    assert parse_line(spec.to_line()) == spec
    assert spec_from_dict(spec.to_dict()) == spec
    for layer in spec.layers:
        assert type(layer).from_keras_config(dict(layer.keras_config(), name="x", dtype="float32")) == layer
