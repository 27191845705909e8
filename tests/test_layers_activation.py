"""Activation (`relu`, `tanh`, ... as a layer of its own), against Keras, the engine, the summary and the output rule."""
from __future__ import annotations

import pytest

from kind_checks import check_against_keras, check_engine_is_exact, check_round_trip
from convolab.errors import SpecError
from convolab.model import build_model
from convolab.spec import load_spec
from convolab.summary import summarize

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Keras's own numpy-2 copy= notices


def test_activation_tokens_print_back_and_explain_themselves():
    check_round_trip("input9x9x2,conv4x3-linear,bn,relu,relu6,leaky_relu,hard_sigmoid,flatten,dense8-linear,tanh,dense3")
    text = summarize(load_spec("conv8x3-linear,bn,relu,flatten,dense"), (8, 8, 1), 10)
    assert "activation (Activation)" in text and "keeps the shape; applies relu to each value; learns nothing" in text


@pytest.mark.parametrize("line", ["conv4x3-linear,bn,relu,pool2,flatten,dense", "conv4x3same-linear,gelu,gap,dense",
                                  "flatten,dense8-linear,leaky_relu,dense"])
def test_activation_equals_keras(line):
    check_against_keras(line, (9, 11, 2), 4)


def test_a_softmax_layer_at_the_end_is_the_output_as_in_keras():
    check_against_keras("flatten,dense5-linear,softmax", (4, 4, 1), 5)
    model = build_model(load_spec("flatten,dense5-linear,softmax"), (4, 4, 1), 5)
    assert model.output_activation == "softmax" and model.finish is None   # split off: forward gives logits


@pytest.mark.parametrize("line", ["conv4x3-linear,relu,pool2,flatten,dense", "conv4x3-linear,bn,tanh,pool2,flatten,dense"])
def test_activation_is_exact_in_the_fast_engine(line):
    check_engine_is_exact(line, (19, 21, 3))


def test_an_unknown_activation_token_is_a_message():
    with pytest.raises(SpecError, match="expected an activation name"):
        load_spec("flatten,relu7,dense")
