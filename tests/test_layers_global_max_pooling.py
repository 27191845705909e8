"""GlobalMaxPooling2D (`gmp`): the largest value of each channel, against Keras, the engine and the summary."""
from __future__ import annotations

import pytest

from kind_checks import check_against_keras, check_engine_is_exact, check_round_trip
from convolab.errors import SpecError
from convolab.spec import load_spec
from convolab.summary import summarize

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Keras's own numpy-2 copy= notices


def test_gmp_prints_back_and_explains_its_numbers():
    check_round_trip("input9x9x2,conv4x3,gmp,dense3")
    text = summarize(load_spec("conv64x3,gmp,dense"), (28, 28, 1), 10)
    assert "global_max_pooling2d (GlobalMaxPooling2D)" in text
    assert "the largest value of each 26×26 map: 64 values; pooling learns nothing" in text


def test_gmp_equals_keras():
    check_against_keras("conv5x3same-tanh,gmp,dense", (7, 9, 3), 4)


def test_gmp_is_exact_in_the_fast_engine():
    check_engine_is_exact("conv4x3,pool2,gmp,dense", (19, 21, 3))


def test_gmp_needs_an_image():
    with pytest.raises(SpecError, match="GlobalMaxPooling2D #2: received a vector input"):
        summarize(load_spec("flatten,gmp,dense"), (4, 4, 1), 10)
