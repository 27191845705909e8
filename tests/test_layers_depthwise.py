"""DepthwiseConv2D (`dwconv3`, `dwconv3m2`): a window per channel, against Keras, the engine and the summary."""
from __future__ import annotations

import pytest

from kind_checks import check_against_keras, check_engine_is_exact, check_round_trip
from convolab.errors import SpecError
from convolab.layers.depthwise import DepthwiseConv2D
from convolab.spec import load_spec
from convolab.summary import summarize

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Keras's own numpy-2 copy= notices


def test_dwconv_prints_back_and_explains_its_numbers():
    check_round_trip("input9x9x2,dwconv3,dwconv3x2m2s2same-tanh-nobias,flatten,dense3")
    text = summarize(load_spec("conv64x3same,dwconv3,flatten,dense"), (8, 8, 1), 10)
    assert "depthwise_conv2d (DepthwiseConv2D)" in text
    assert "64 channels × (3×3 weights + 1 bias) = 640: one window per channel" in text
    assert "6×6 positions × 64 channels × 3×3 = 20,736 multiply-adds" in text
    assert "receptive field 3 + (3 − 1) × 1 = 5 pixels" in text
    doubled = summarize(load_spec("dwconv3m2,flatten,dense"), (8, 8, 3), 10)
    assert "3 channels × 2 × (3×3 weights + 1 bias) = 60" in doubled and "(6, 6, 6)" in doubled


@pytest.mark.parametrize("line", ["conv4x3same,dwconv3,pool2,flatten,dense",
                                  "dwconv3x2m3s2same-tanh-nobias,bn,gap,dense"])
def test_dwconv_equals_keras(line):
    check_against_keras(line, (9, 11, 2), 4)


@pytest.mark.parametrize("line", ["conv4x3,dwconv3,pool2,flatten,dense", "dwconv3m2s2same-elu,pool3s2,flatten,dense"])
def test_dwconv_is_exact_in_the_fast_engine(line):
    check_engine_is_exact(line, (19, 21, 3))


def test_dwconv_arguments_are_checked():
    with pytest.raises(SpecError, match="received: depth_multiplier=0"):
        DepthwiseConv2D(3, depth_multiplier=0)
    with pytest.raises(SpecError, match="expected dwconv<kernel>"):
        load_spec("dwconv64x3x3x3,flatten,dense")
