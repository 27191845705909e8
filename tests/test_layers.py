"""The layer registry and the contract every kind keeps: its token, its file entry and its Keras config print back to
the same layer; the spec, shapes, summary, diagram and model only ask the kind."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from convolab.errors import SpecError
from convolab.layers import KINDS
from convolab.layers.registry import Registry
from convolab.model import build_model
from convolab.shapes import analyze
from convolab.spec import ModelSpec, load_spec, parse_line, spec_from_dict

# Every registered kind in a small model on 8×8×2 inputs that ends in three class scores (a new kind adds a line).
EXAMPLES = {
    "Conv2D": "input8x8x2,conv4x3s2same-tanh,flatten,dense3",
    "MaxPooling2D": "input8x8x2,pool3s2same,flatten,dense3",
    "AveragePooling2D": "input8x8x2,avgpool2,flatten,dense3",
    "GlobalAveragePooling2D": "input8x8x2,gap,dense3",
    "Flatten": "input8x8x2,flatten,dense3",
    "Dense": "input8x8x2,flatten,dense7-nobias,dense3",
    "Dropout": "input8x8x2,dropout0.25,flatten,dense3",
    "BatchNormalization": "input8x8x2,bn-m0.9-eps0.00001,flatten,dense3",
    "GlobalMaxPooling2D": "input8x8x2,conv4x3,gmp,dense3",
    "DepthwiseConv2D": "input8x8x2,dwconv3m2s2same,flatten,dense3",
    "SeparableConv2D": "input8x8x2,sepconv5x3m2-nobias,flatten,dense3",
    "Activation": "input8x8x2,conv4x3-linear,selu,flatten,dense3",
}


def example_line(kind_name: str) -> str:
    return EXAMPLES[kind_name]


def test_every_registered_kind_has_an_example():
    assert set(EXAMPLES) == set(KINDS.kinds)


@pytest.mark.parametrize("kind_name", list(EXAMPLES))
def test_each_kind_prints_back_through_line_file_and_keras_config(kind_name):
    spec = parse_line(example_line(kind_name))
    assert parse_line(spec.to_line()) == spec
    assert spec_from_dict(spec.to_dict()) == spec
    for layer in spec.layers:
        kind = type(layer)
        assert kind.from_keras_config(dict(layer.keras_config(), name="x", trainable=True, dtype="float32")) == layer


@pytest.mark.parametrize("kind_name", list(EXAMPLES))
def test_each_kind_runs_forward_and_backward_with_the_shapes_it_announces(kind_name):
    spec = parse_line(example_line(kind_name))
    model = build_model(spec)
    x = torch.rand(2, 2, 8, 8, requires_grad=True)
    logits = model(x)
    logits.sum().backward()
    assert logits.shape == (2, 3) and x.grad is not None
    reports = analyze(spec)
    assert sum(p.numel() for p in model.parameters()) == sum(r.trainable_params for r in reports)


def test_the_registry_refuses_a_word_or_name_twice():
    registry = Registry(*KINDS)
    with pytest.raises(ValueError, match="registered already"):
        registry.add(next(iter(KINDS)))
    assert registry.named("max_pooling2d").__name__ == "MaxPooling2D"
    assert registry.for_word("maxpool").__name__ == "MaxPooling2D"


def test_keras_config_refuses_what_convolab_cannot_compute():
    conv = KINDS.kinds["Conv2D"]
    with pytest.raises(SpecError, match="dilation_rate"):
        conv.from_keras_config({"filters": 4, "kernel_size": [3, 3], "dilation_rate": [2, 2]})
    assert conv.from_keras_config({"filters": 4, "kernel_size": [3, 3], "dilation_rate": [1, 1],
                                   "data_format": "channels_last", "groups": 1}) == conv(4, 3)


def test_a_layer_that_is_not_a_registered_kind_is_refused():
    @dataclasses.dataclass(frozen=True)
    class Stranger:
        input_shape: tuple | None = None

    with pytest.raises(SpecError, match="expected a convolab layer"):
        ModelSpec((Stranger(),), (8, 8, 1))


def test_window_errors_suggest_removing_a_pooling_layer_only_after_one():
    """issue 9, cause 18: with no pooling before, 'remove a pooling layer' is no fix."""
    with pytest.raises(SpecError) as caught:
        analyze(load_spec("conv4x5,flatten,dense"), (4, 4, 1), 10)
    assert "pooling" not in caught.value.message and "pooling" not in caught.value.fix
    assert "padding='same'" in caught.value.message
    with pytest.raises(SpecError, match="remove a pooling layer"):
        analyze(load_spec("pool2,conv4x3,flatten,dense"), (4, 4, 1), 10)
