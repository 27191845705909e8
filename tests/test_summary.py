"""summary.py: printed summaries against golden files (CONVOLAB_UPDATE_GOLDEN=1 rewrites them after a deliberate
change), the Keras totals, the three forms giving the same summary, markdown and json."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from convolab import AveragePooling2D, BatchNormalization, Conv2D, Dense, Dropout, Flatten, MaxPooling2D, Sequential
from convolab.errors import SpecError
from convolab.spec import load_spec
from convolab.summary import summarize

GOLDEN = Path(__file__).parent / "golden"

# (golden file, model, input shape, classes, format)
CASES = [
    ("summary_dnn.txt", "dnn", (28, 28, 1), 10, "text"),
    ("summary_cnn.txt", "cnn", (28, 28, 1), 10, "text"),
    ("summary_cnn.md", "cnn", (28, 28, 1), 10, "markdown"),
    ("summary_cnn.json", "cnn", (28, 28, 1), 10, "json"),
    ("summary_strides_same.txt", "conv32x5s2same,pool3s2same,conv64x3same-tanh,avgpool2,flatten,dense64,dense",
     (28, 28, 1), 10, "text"),
    ("summary_bn_dropout.txt", "conv32x3-nobias,bn,pool2,dropout0.25,conv64x3,bn,gap,dropout0.5,dense",
     (32, 32, 3), 10, "text"),
    ("summary_cnn3conv_odd.txt", "cnn3conv", (31, 27, 1), 10, "text"),
]


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("CONVOLAB_UPDATE_GOLDEN") == "1":
        path.parent.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8"), f"output differs from {path}; CONVOLAB_UPDATE_GOLDEN=1 rewrites it"


@pytest.mark.parametrize("golden, model, input_shape, classes, format", CASES, ids=[case[0] for case in CASES])
def test_golden_summaries(golden, model, input_shape, classes, format):
    check_golden(golden, summarize(load_spec(model), input_shape, classes, format=format))


def test_cnn_summary_has_every_row_and_its_explanation():
    text = summarize(load_spec("cnn"), (28, 28, 1), 10)
    rows = [
        ("conv2d (Conv2D)", "(26, 26, 64)", "640", "3×3 window, no padding: 28 − 3 + 1 = 26"),
        ("max_pooling2d (MaxPooling2D)", "(13, 13, 64)", "0", "⌊26 / 2⌋ = 13; pooling learns nothing"),
        ("conv2d_1 (Conv2D)", "(11, 11, 64)", "36,928", "64 filters × (3×3×64 weights + 1 bias) = 36,928"),
        ("max_pooling2d_1 (MaxPooling2D)", "(5, 5, 64)", "0", "⌊11 / 2⌋ = 5; pooling learns nothing"),
        ("flatten (Flatten)", "(1600)", "0", "5 × 5 × 64 = 1600 values"),
        ("dense (Dense)", "(128)", "204,928", "128 × (1600 + 1) = 204,928"),
        ("dense_1 (Dense)", "(10)", "1,290", "10 × (128 + 1) = 1,290"),
    ]
    lines = text.splitlines()
    for title, shape, params, why in rows:
        row = next(line for line in lines if line.startswith(f" {title} "))
        assert row.split()[len(title.split()):][:len(shape.split()) + 1] == shape.split() + [params]
        following = lines[lines.index(row) + 1]
        assert following.startswith("     ") and why in text
    assert " Total params: 243,786 (952.29 KB)" in lines
    assert " Trainable params: 243,786 (952.29 KB)" in lines
    assert " Non-trainable params: 0 (0.00 B)" in lines
    assert "\x1b" not in text  # plain text, no colour codes


def test_dnn_summary_totals():
    text = summarize(load_spec("dnn"), (28, 28, 1), 10)
    assert " Total params: 101,770 (397.54 KB)" in text.splitlines()
    assert "128 × (784 + 1) = 100,480" in text


def test_batch_normalization_non_trainable_params_in_the_totals():
    text = summarize(load_spec("conv32x3,bn,flatten,dense"), (8, 8, 1), 10)
    # conv 32 × (9 + 1) = 320, bn 128 of which 64 non-trainable, dense 10 × (6·6·32 + 1) = 11,530
    assert " Total params: 11,978 (46.79 KB)" in text
    assert " Trainable params: 11,914 (46.54 KB)" in text
    assert " Non-trainable params: 64 (256.00 B)" in text


def test_the_three_forms_give_identical_summaries(tmp_path):
    line = "conv32x3s2same,bn,pool2,dropout0.25,avgpool2same,flatten,dense64,dense10"
    model = Sequential([
        Conv2D(32, (3, 3), strides=(2, 2), padding="same", activation="relu", input_shape=(28, 28, 1)),
        BatchNormalization(), MaxPooling2D(2, 2), Dropout(0.25), AveragePooling2D(2, padding="same"), Flatten(),
        Dense(64, activation="relu"), Dense(10, activation="softmax"),
    ], name="mine")
    path = tmp_path / "mine.yaml"
    path.write_text(
        "input_shape: [28, 28, 1]\nlayers:\n"
        "  - {type: Conv2D, filters: 32, kernel_size: 3, strides: 2, padding: same, activation: relu}\n"
        "  - {type: BatchNormalization}\n  - {type: MaxPooling2D}\n  - {type: Dropout, rate: 0.25}\n"
        "  - {type: AveragePooling2D, pool_size: [2, 2], padding: same}\n  - {type: Flatten}\n"
        "  - {type: Dense, units: 64, activation: relu}\n  - {type: Dense, units: 10, activation: softmax}\n")
    printed: list[str] = []
    model.summary(print_fn=printed.append)
    from_python = "\n".join(printed) + "\n"
    from_line = summarize(load_spec(line), (28, 28, 1), 10).replace('"sequential"', '"mine"')
    from_file = summarize(load_spec(str(path)), None, 10)
    assert from_python == from_file == from_line
    assert from_python.startswith('Model: "mine" on input (28, 28, 1)')


def test_json_summary_holds_every_number():
    data = json.loads(summarize(load_spec("cnn"), (28, 28, 1), 10, format="json"))
    assert data["totals"]["params"] == 243_786 and data["input_shape"] == [28, 28, 1]
    assert [layer["params"] for layer in data["layers"]] == [640, 0, 36_928, 0, 0, 204_928, 1_290]
    assert data["layers"][0]["receptive_field"] == {"size": [3, 3], "jump": [1, 1], "start": [0, 0], "whole_input": False}


def test_markdown_summary_is_a_table():
    text = summarize(load_spec("cnn"), (28, 28, 1), 10, format="markdown")
    table = [line for line in text.splitlines() if line.startswith("|")]
    assert len(table) == 2 + 7 and all(line.count(" | ") == 7 for line in table[2:])


def test_unknown_format_is_refused():
    with pytest.raises(SpecError, match="expected a summary format among text, markdown, json, html"):
        summarize(load_spec("cnn"), (28, 28, 1), 10, format="yaml")


def test_sequential_summary_defaults_to_the_labs_input():
    printed: list[str] = []
    Sequential([Flatten(), Dense(128, activation="relu"), Dense(10, activation="softmax")]).summary(printed.append)
    assert printed[0] == 'Model: "sequential" on input (28, 28, 1)'
    assert " Total params: 101,770 (397.54 KB)" in printed


def test_sequential_rejects_a_bad_layer_where_it_is_added():
    model = Sequential([Flatten(input_shape=(28, 28))])
    with pytest.raises(SpecError, match="layer 2: expected a convolab layer"):
        model.add("dense")
    with pytest.raises(SpecError, match="input_shape belongs on the first layer only"):
        Sequential([Flatten(), Dense(3, input_shape=(28, 28, 1))])


@pytest.mark.parametrize("value", ["10", 0, -3, 2.5, True])
def test_a_class_count_that_is_no_count_is_named_not_turned_into_a_layer(value):
    from convolab import Dense, Flatten, Sequential

    model = Sequential([Flatten(input_shape=(28, 28, 1)), Dense(10)])
    with pytest.raises(SpecError, match=r"num_classes=.*expected a whole number of classes"):
        model.summary(num_classes=value)
