"""shapes.py against Keras's published formulas and hand-computed cases, with their explanations and errors."""
from __future__ import annotations

import pytest

from convolab.errors import SpecError
from convolab.shapes import (
    ReceptiveField, activation_memory, analyze, batchnorm_params, conv_macs, conv_params, dense_params,
    grow_receptive_field, keras_names, output_length, readable_bytes, same_padding, totals, window_output_shape,
)
from convolab.spec import load_spec
from spec_fixtures import keras_length, random_specs


# --- Keras's formulas, hand-computed ---------------------------------------------------------------------------------

@pytest.mark.parametrize("size, window, stride, padding, expected", [
    (28, 3, 1, "valid", 26), (13, 3, 1, "valid", 11), (26, 2, 2, "valid", 13), (11, 2, 2, "valid", 5),
    (28, 5, 2, "valid", 12), (7, 3, 2, "valid", 3), (3, 3, 1, "valid", 1), (28, 3, 1, "same", 28),
    (28, 5, 2, "same", 14), (27, 3, 2, "same", 14), (5, 7, 3, "same", 2), (1, 3, 1, "same", 1),
])
def test_output_length_is_keras(size, window, stride, padding, expected):
    assert output_length(size, window, stride, padding).value == expected
    assert keras_length(size, window, stride, padding) == expected  # the formulas the random tests use


def test_output_length_explanations():
    assert output_length(28, 3, 1, "valid").text == "28 − 3 + 1 = 26"
    assert output_length(26, 2, 2, "valid", pooling=True).text == "⌊26 / 2⌋ = 13"
    assert output_length(7, 3, 2, "valid", pooling=True).text == "⌊(7 − 3) / 2⌋ + 1 = 3"
    assert output_length(28, 5, 2, "same").text == "⌈28 / 2⌉ = 14 (pads 1 before, 2 after)"
    assert output_length(28, 3, 1, "same").text == "keeps 28 (pads 1 before, 1 after)"


@pytest.mark.parametrize("size, window, stride, expected", [
    (28, 3, 1, (1, 1)), (28, 5, 2, (1, 2)), (28, 2, 2, (0, 0)), (27, 2, 2, (0, 1)), (3, 2, 2, (0, 1)),
    (5, 4, 1, (1, 2)), (4, 1, 3, (0, 0)),
])
def test_same_padding_puts_the_odd_pixel_after(size, window, stride, expected):
    assert same_padding(size, window, stride) == expected


def test_window_output_shape_explains_both_axes():
    shape, why = window_output_shape((28, 28, 1), (3, 3), (1, 1), "valid", 64)
    assert shape == (26, 26, 64) and why == "3×3 window, no padding: 28 − 3 + 1 = 26"
    shape, why = window_output_shape((26, 26, 64), (2, 2), (2, 2), "valid", 64, pooling=True)
    assert shape == (13, 13, 64) and why == "2×2 window, stride 2: ⌊26 / 2⌋ = 13"
    shape, why = window_output_shape((28, 20, 3), (5, 3), (2, 1), "same", 8)
    assert shape == (14, 20, 8)
    assert why == "5×3 window, strides 2×1, 'same' padding: height ⌈28 / 2⌉ = 14 (pads 1 before, 2 after); " \
                  "width keeps 20 (pads 1 before, 1 after)"


def test_parameter_counts_are_keras():
    assert conv_params(64, (3, 3), 1, True) == (640, "64 filters × (3×3×1 weights + 1 bias) = 640")
    assert conv_params(64, (3, 3), 64, True).value == 36_928
    assert conv_params(32, (5, 3), 3, False).value == 32 * 5 * 3 * 3
    assert dense_params(128, 1600, True).value == 204_928
    assert dense_params(128, 1600, True).text.startswith("128 × (1600 + 1) = 204,928")
    assert dense_params(10, 128, False).value == 1_280
    trainable, non_trainable, why = batchnorm_params(64)
    assert (trainable, non_trainable) == (128, 128) and "64 channels × 4 = 256" in why


def test_costs_per_image():
    assert conv_macs((26, 26, 64), (3, 3), 1).value == 26 * 26 * 64 * 9
    memory = activation_memory((26, 26, 64))
    assert memory.value == 26 * 26 * 64 * 4
    assert memory.text == "26 × 26 × 64 = 43,264 values × 4 bytes = 169.00 KB"


def test_readable_bytes_is_keras():
    assert readable_bytes(243_786 * 4) == "952.29 KB"
    assert readable_bytes(101_770 * 4) == "397.54 KB"
    assert readable_bytes(0) == "0.00 B"
    assert readable_bytes(5 * 1024 ** 2) == "5.00 MB"


def test_receptive_field_growth():
    field = grow_receptive_field(ReceptiveField(), (3, 3), (1, 1))
    assert field.value == ReceptiveField((3, 3), (1, 1))
    assert field.text == "receptive field 1 + (3 − 1) × 1 = 3 pixels, jump 1"
    pooled = grow_receptive_field(field.value, (2, 2), (2, 2)).value
    assert pooled == ReceptiveField((4, 4), (2, 2)) and pooled.text() == "4×4, jump 2"


def test_keras_automatic_names():
    spec = load_spec("conv8x3,pool2,conv8x3,pool2,bn,dropout0.5,avgpool2,flatten,dense8,bn,dense")
    assert keras_names(spec.layers) == [
        "conv2d", "max_pooling2d", "conv2d_1", "max_pooling2d_1", "batch_normalization", "dropout",
        "average_pooling2d", "flatten", "dense", "batch_normalization_1", "dense_1"]


# --- whole models ----------------------------------------------------------------------------------------------------

def test_lab_cnn():
    reports = analyze(load_spec("cnn"), (28, 28, 1), 10)
    assert [(r.output_shape, r.params) for r in reports] == [
        ((26, 26, 64), 640), ((13, 13, 64), 0), ((11, 11, 64), 36_928), ((5, 5, 64), 0), ((1600,), 0),
        ((128,), 204_928), ((10,), 1_290)]
    assert totals(reports)["params"] == 243_786
    assert reports[0].explanations == ["3×3 window, no padding: 28 − 3 + 1 = 26",
                                       "64 filters × (3×3×1 weights + 1 bias) = 640"]
    assert reports[1].explanations == ["2×2 window, stride 2: ⌊26 / 2⌋ = 13; pooling learns nothing"]
    assert reports[4].explanations == ["5 × 5 × 64 = 1600 values"]
    assert reports[5].explanations[1].startswith("128 × (1600 + 1) = 204,928")
    assert [r.receptive_field for r in reports[:4]] == [
        ReceptiveField((3, 3), (1, 1)), ReceptiveField((4, 4), (2, 2)), ReceptiveField((8, 8), (2, 2)),
        ReceptiveField((10, 10), (4, 4))]
    assert reports[5].receptive_field.whole_input
    assert [r.macs for r in reports] == [389_376, 0, 4_460_544, 0, 0, 204_800, 1_280]


def test_lab_dnn():
    reports = analyze(load_spec("dnn"), (28, 28, 1), 10)
    assert [(r.output_shape, r.params) for r in reports] == [((784,), 0), ((128,), 100_480), ((10,), 1_290)]
    assert totals(reports)["params"] == 101_770
    assert reports[0].explanations == ["28 × 28 × 1 = 784 values"]


def test_batch_normalization_half_is_non_trainable():
    reports = analyze(load_spec("conv32x3,bn,flatten,dense16,bn,dense"), (8, 8, 1), 10)
    summed = totals(reports)
    assert (reports[1].trainable_params, reports[1].non_trainable_params) == (64, 64)
    assert (reports[4].trainable_params, reports[4].non_trainable_params) == (32, 32)
    assert summed["non_trainable_params"] == 96 and summed["params"] == summed["trainable_params"] + 96


def test_analyze_agrees_with_keras_formulas_on_random_specs():
    for spec, shapes, trainable, non_trainable in random_specs(300, seed=4):
        reports = analyze(spec)
        assert [report.output_shape for report in reports] == shapes, spec.to_line()
        assert (totals(reports)["trainable_params"], totals(reports)["non_trainable_params"]) == \
            (trainable, non_trainable)


# --- every bad input, with its message -------------------------------------------------------------------------------

@pytest.mark.parametrize("line, input_shape, classes, message, fix", [
    ("conv8x3,pool2,pool2,conv8x3,flatten,dense", (10, 10, 1), 10,
     "Conv2D #4: 3×3 window on a 2×2 input; use padding='same' or remove a pooling layer", "same"),
    ("pool5,flatten,dense", (4, 4, 1), 10, "MaxPooling2D #1: 5×5 window on a 4×4 input", "padding='same'"),
    ("conv8x3,dense", (28, 28, 1), 10, "Dense #2: received a 3-D input (26, 26, 8); expected a vector",
     "add flatten (or gap) before layer 2"),
    ("flatten,conv8x3,flatten,dense", (28, 28, 1), 10,
     "Conv2D #2: received a vector input (784); expected an image", "before flatten"),
    ("flatten,gap,dense", (28, 28, 1), 10, "GlobalAveragePooling2D #2: received a vector input", "remove it"),
    ("conv8x3,pool2", (28, 28, 1), 10, "the model ends with (13, 13, 8) from MaxPooling2D #2", "flatten,dense"),
    ("flatten,dense128,dense5", (28, 28, 1), 10, "ends with 5 scores (Dense #3); expected 10", "dense10"),
    ("flatten,dense", None, 10, "input shape is unknown", "--input-shape"),
    ("flatten,dense", (28, 28, 1), None, "Dense #2: units left out means 'the class count'", "--classes"),
])
def test_bad_specs_name_the_layer_and_the_fix(line, input_shape, classes, message, fix):
    with pytest.raises(SpecError) as caught:
        analyze(load_spec(line), input_shape, classes)
    assert message in str(caught.value) and fix in caught.value.fix


def test_same_padding_lets_a_window_exceed_its_input_as_keras_does():
    reports = analyze(load_spec("conv4x5same,pool3same,flatten,dense"), (2, 2, 1), 3)
    assert [r.output_shape for r in reports[:2]] == [(2, 2, 4), (1, 1, 4)]


def test_the_receptive_field_starts_where_same_padding_puts_the_first_window():
    """Output (0, 0) of a 'same' 3x3 conv reads rows and columns -1..1: its field starts at -1, in the padding. After a
    2x2 pool (jump 2) and another 'same' 3x3 conv, output (0, 0)'s field starts at -1 - 1 x 2 = -3 and is 8 wide;
    'valid' layers keep the start at 0 (the lab's CNN), and a 'same' pool on an even input pads nothing before."""
    from convolab.shapes import analyze
    from convolab.spec import load_spec

    fields = [report.receptive_field for report in analyze(load_spec("conv8x3same,pool2,conv8x3same,flatten,dense"),
                                                            (28, 28, 1), 10)]
    assert [(field.size, field.jump, field.start) for field in fields[:3]] == [
        ((3, 3), (1, 1), (-1, -1)), ((4, 4), (2, 2), (-1, -1)), ((8, 8), (2, 2), (-3, -3))]
    lab = [report.receptive_field.start for report in analyze(load_spec("cnn"), (28, 28, 1), 10)[:4]]
    assert lab == [(0, 0)] * 4
    pooled = analyze(load_spec("pool2same,flatten,dense"), (28, 28, 1), 10)[0].receptive_field
    assert pooled.start == (0, 0) and pooled.size == (2, 2)
