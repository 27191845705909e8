"""SeparableConv2D (`sepconv64x3`): a depthwise window per channel then 1×1 filters, against Keras, the engine and the
summary."""
from __future__ import annotations

import pytest

from kind_checks import check_against_keras, check_engine_is_exact, check_round_trip
from convolab.errors import SpecError
from convolab.spec import load_spec
from convolab.summary import summarize

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Keras's own numpy-2 copy= notices


def test_sepconv_prints_back_and_explains_its_numbers():
    check_round_trip("input9x9x2,sepconv8x3,sepconv4x3x2m2s2same-tanh-nobias,flatten,dense3")
    text = summarize(load_spec("conv64x3same,sepconv128x3,flatten,dense"), (8, 8, 1), 10)
    assert "separable_conv2d (SeparableConv2D)" in text
    # Keras: 64·3·3 depthwise + 128·(64 + 1) pointwise = 576 + 8,320
    assert "depthwise 64 channels × 3×3 = 576, then pointwise 128 filters × (64 + 1 bias) = 8,320; total 8,896" in text
    assert "6×6 positions × (64 channels × 3×3 + 128 filters × 64) = 315,648 multiply-adds" in text


@pytest.mark.parametrize("line", ["sepconv8x3,pool2,flatten,dense", "sepconv6x3x2m2s2same-tanh-nobias,bn,gap,dense"])
def test_sepconv_equals_keras(line):
    check_against_keras(line, (9, 11, 3), 4)


@pytest.mark.parametrize("line", ["sepconv8x3,pool2,flatten,dense", "conv4x3,sepconv6x3m2s2same-elu,pool2,flatten,dense"])
def test_sepconv_is_exact_in_the_fast_engine(line):
    check_engine_is_exact(line, (19, 21, 3))


def test_sepconv_needs_filters():
    with pytest.raises(SpecError, match="expected sepconv<filters>x<kernel>"):
        load_spec("sepconv3,flatten,dense")
