"""spec.py: Keras's names and defaults, validation messages, the one-line grammar, presets, files, round trips."""
from __future__ import annotations

import json

import pytest

import convolab
from convolab.errors import SpecError
from convolab.spec import (
    GRAMMAR, PRESETS, AveragePooling2D, BatchNormalization, Conv2D, Dense, Dropout, Flatten, GlobalAveragePooling2D,
    MaxPooling2D, ModelSpec, load_spec, parse_line, resolve_spec, spec_from_dict,
)
from spec_fixtures import random_specs


def python_namespace() -> dict:
    return {name: getattr(convolab, name) for name in (
        "Sequential", "Conv2D", "MaxPooling2D", "AveragePooling2D", "GlobalAveragePooling2D", "Flatten", "Dense",
        "Dropout", "BatchNormalization")}


# --- Keras's names and defaults --------------------------------------------------------------------------------------

def test_conv2d_has_keras_defaults_and_normalizes_sizes():
    layer = Conv2D(64, 3)
    assert layer.kernel_size == (3, 3) and layer.strides == (1, 1)
    assert layer.padding == "valid" and layer.activation == "linear" and layer.use_bias is True
    assert Conv2D(8, (3, 5), strides=2, padding="SAME").strides == (2, 2)
    assert Conv2D(8, [3, 5]).kernel_size == (3, 5)


def test_pooling_strides_default_to_pool_size():
    assert MaxPooling2D().pool_size == (2, 2) and MaxPooling2D().strides == (2, 2)
    assert MaxPooling2D(3).strides == (3, 3)
    assert MaxPooling2D(2, 2) == MaxPooling2D((2, 2))  # the lab writes MaxPooling2D(2, 2)
    assert AveragePooling2D((3, 3), strides=(2, 1)).strides == (2, 1)


def test_other_layers_defaults():
    assert Dense(10).activation == "linear" and Dense(10, activation=None).activation == "linear"
    assert Dense(10, activation="Swish").activation == "silu"
    assert BatchNormalization() == BatchNormalization(momentum=0.99, epsilon=0.001)
    assert Dropout(0.25).rate == 0.25
    assert Flatten() == Flatten() and GlobalAveragePooling2D() == GlobalAveragePooling2D()


@pytest.mark.parametrize("make, received", [
    (lambda: Conv2D(-3, 3), "received: filters=-3"),
    (lambda: Conv2D(0, 3), "received: filters=0"),
    (lambda: Conv2D(2.5, 3), "received: filters=2.5"),
    (lambda: Conv2D(True, 3), "received: filters=True"),
    (lambda: Conv2D(8, (3, 0)), "received: kernel_size=(3, 0)"),
    (lambda: Conv2D(8, (3, 3, 3)), "received: kernel_size=(3, 3, 3)"),
    (lambda: Conv2D(8, 3, strides=0), "received: strides=0"),
    (lambda: Conv2D(8, 3, padding="full"), "received: padding='full'"),
    (lambda: Conv2D(8, 3, activation="rleu"), "received: activation='rleu'"),
    (lambda: Conv2D(8, 3, use_bias="no"), "received: use_bias='no'"),
    (lambda: MaxPooling2D(-2), "received: pool_size=-2"),
    (lambda: MaxPooling2D(2, strides="2"), "received: strides='2'"),
    (lambda: Dense(0), "received: units=0"),
    (lambda: Dense(12.0), "received: units=12.0"),
    (lambda: Dropout(1.0), "received: rate=1.0"),
    (lambda: Dropout(-0.1), "received: rate=-0.1"),
    (lambda: BatchNormalization(momentum=1.5), "received: momentum=1.5"),
    (lambda: BatchNormalization(epsilon=0), "received: epsilon=0"),
    (lambda: Conv2D(8, 3, input_shape=(28, 0, 1)), "received: input_shape=(28, 0, 1)"),
])
def test_bad_arguments_fail_up_front_with_what_was_received(make, received):
    with pytest.raises(SpecError) as caught:
        make()
    assert isinstance(caught.value, ValueError)  # Keras raises ValueError; so do we
    assert received in str(caught.value) and "expected" in str(caught.value) and caught.value.fix


def test_activation_typo_suggests_the_nearest():
    with pytest.raises(SpecError, match="did you mean 'relu'"):
        Dense(10, activation="rleu")


# --- presets ---------------------------------------------------------------------------------------------------------

def test_dnn_and_cnn_presets_are_the_labs_networks():
    assert resolve_spec(load_spec("dnn"), (28, 28, 1), 10).layers == (
        Flatten(), Dense(128, activation="relu"), Dense(10, activation="softmax"))
    assert resolve_spec(load_spec("cnn"), (28, 28, 1), 10).layers == (
        Conv2D(64, (3, 3), activation="relu"), MaxPooling2D(2, 2), Conv2D(64, (3, 3), activation="relu"),
        MaxPooling2D(2, 2), Flatten(), Dense(128, activation="relu"), Dense(10, activation="softmax"))
    assert load_spec("cnn").name == "cnn"


def test_every_preset_is_documented_and_parses():
    for name in PRESETS:
        assert name in GRAMMAR
        assert load_spec(name).to_line() == PRESETS[name]
    assert [layer.filters for layer in load_spec("cnn16").layers if isinstance(layer, Conv2D)] == [16, 16]
    assert [layer.filters for layer in load_spec("cnn32").layers if isinstance(layer, Conv2D)] == [32, 32]
    assert sum(isinstance(layer, Conv2D) for layer in load_spec("cnn1conv").layers) == 1
    assert sum(isinstance(layer, Conv2D) for layer in load_spec("cnn3conv").layers) == 3


# --- the one-line grammar --------------------------------------------------------------------------------------------

def test_labs_line_equals_the_labs_python():
    line = parse_line("conv64x3,pool2,conv64x3,pool2,flatten,dense128,dense10")
    model = convolab.Sequential([
        Conv2D(64, (3, 3), activation="relu"), MaxPooling2D(2, 2), Conv2D(64, (3, 3), activation="relu"),
        MaxPooling2D(2, 2), Flatten(), Dense(128, activation="relu"), Dense(10, activation="softmax")])
    assert line == model.spec


@pytest.mark.parametrize("token, layer", [
    ("conv32x5s2same-tanh", Conv2D(32, 5, strides=2, padding="same", activation="tanh")),
    ("conv8x3x1", Conv2D(8, (3, 1), activation="relu")),
    ("conv8x3s2x1valid-nobias", Conv2D(8, 3, strides=(2, 1), activation="relu", use_bias=False)),
    ("CONV8X3-Linear", Conv2D(8, 3)),
    ("pool2", MaxPooling2D(2)),
    ("maxpool3s2", MaxPooling2D(3, strides=2)),
    ("pool", MaxPooling2D()),
    ("pool2same", MaxPooling2D(2, padding="same")),
    ("avgpool2", AveragePooling2D(2)),
    ("avgpool3x2s1", AveragePooling2D((3, 2), strides=1)),
    ("gap", GlobalAveragePooling2D()),
    ("dropout0.25", Dropout(0.25)),
    ("dropout.5", Dropout(0.5)),
    ("bn", BatchNormalization()),
    ("bn-m0.9-eps0.00001", BatchNormalization(momentum=0.9, epsilon=1e-5)),
])
def test_grammar_tokens(token, layer):
    assert parse_line(f"{token},flatten,dense").layers[0] == layer


def test_dense_defaults_relu_when_hidden_softmax_when_last_and_class_count_without_units():
    spec = parse_line("flatten, dense128, dropout0.5, dense")
    assert spec.layers[1] == Dense(128, activation="relu")
    assert spec.layers[3] == Dense(None, activation="softmax")
    assert resolve_spec(spec, (28, 28, 1), 7).layers[3] == Dense(7, activation="softmax")
    assert parse_line("flatten,dense10-sigmoid").layers[1].activation == "sigmoid"


def test_input_token_sets_the_input_shape():
    assert parse_line("input32x32x3,flatten,dense").input_shape == (32, 32, 3)
    assert parse_line("input28x28,flatten,dense").input_shape == (28, 28, 1)


@pytest.mark.parametrize("line, where, expected, fix", [
    ("conv64x3,pool2,conv64y3,flatten,dense", "layer 3 at column 16", "conv<filters>x<kernel>", "conv64x3"),
    ("conv64x3,convv64x3,flatten,dense", "layer 2 at column 10", "a layer name", "did you mean 'conv'"),
    ("conv64x3,,flatten,dense", "layer 2 at column 10", "received nothing", "layer name"),
    ("conv64x3, pool2, flaten, dense", "layer 3 at column 18", "not 'flaten'", "did you mean 'flatten'"),
    ("conv0x3,flatten,dense", "layer 1 (Conv2D) at column 1", "received: filters=0", "Conv2D(64, (3, 3))"),
    ("flatten,dense128-rleu,dense", "layer 2 at column 9", "an option among", "did you mean 'relu'"),
    ("pool2-relu,flatten,dense", "layer 1 at column 1", "no -options", "remove '-relu'"),
    ("flatten,dropout1.5,dense", "layer 2 (Dropout) at column 9", "received: rate=1.5", "Dropout(0.25)"),
    ("flatten2,dense", "layer 1 at column 1", "just 'flatten'", "nothing after it"),
    ("flattenx,dense", "layer 1 at column 1", "not 'flattenx'", "did you mean 'flatten'"),
    ("conv8x3,dense,dense10", "layer 2 (Dense)", "only the last Dense may leave units out", "dense128"),
    ("input28x0,flatten,dense", "the input token at column 1", "input_shape=(28, 0, 1)", "(28, 28, 1)"),
])
def test_malformed_lines_point_at_the_token(line, where, expected, fix):
    with pytest.raises(SpecError) as caught:
        parse_line(line)
    message = str(caught.value)
    assert where in message and expected in message and fix in caught.value.fix


def test_malformed_line_draws_a_caret_under_the_token():
    with pytest.raises(SpecError) as caught:
        parse_line("conv64x3,pool2,conv64y3,pool2")
    lines = caught.value.message.splitlines()
    assert lines[1] == "  conv64x3,pool2,conv64y3,pool2"
    assert lines[2] == "  " + " " * len("conv64x3,pool2,") + "^" * len("conv64y3")


# --- round trips -----------------------------------------------------------------------------------------------------

RANDOM_SPECS = [spec for spec, *_ in random_specs(200, seed=3)]


def test_random_specs_round_trip_through_every_form():
    namespace = python_namespace()
    for spec in RANDOM_SPECS:
        assert parse_line(spec.to_line()) == spec, spec.to_line()
        assert spec_from_dict(spec.to_dict()) == spec, spec.to_line()
        assert spec_from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
        assert eval(spec.to_python(), namespace).spec == spec, spec.to_python()  # noqa: S307 - our own output


def test_named_spec_keeps_its_name_through_dict_and_python():
    spec = load_spec("cnn")
    assert spec_from_dict(spec.to_dict()) == spec
    assert eval(spec.to_python(), python_namespace()).spec == spec  # noqa: S307


def test_to_python_reads_like_the_lab():
    spec = parse_line("input28x28x1,conv64x3,pool2,flatten,dense128,dense10")
    assert spec.to_python() == (
        "Sequential([\n"
        "    Conv2D(64, (3, 3), activation='relu', input_shape=(28, 28, 1)),\n"
        "    MaxPooling2D((2, 2)),\n"
        "    Flatten(),\n"
        "    Dense(128, activation='relu'),\n"
        "    Dense(10, activation='softmax'),\n"
        "])")


# --- files -----------------------------------------------------------------------------------------------------------

CNN_YAML = """\
name: lab-cnn
input_shape: [28, 28, 1]
layers:
  - {type: Conv2D, filters: 64, kernel_size: 3, activation: relu}
  - {type: MaxPooling2D, pool_size: 2}
  - {type: Conv2D, filters: 64, kernel_size: [3, 3], activation: relu}
  - {type: max_pooling2d}
  - {type: Flatten}
  - {type: Dense, units: 128, activation: relu}
  - {type: Dense, units: 10, activation: softmax}
"""


def test_yaml_and_json_files(tmp_path):
    yaml_path = tmp_path / "cnn.yaml"
    yaml_path.write_text(CNN_YAML)
    spec = load_spec(str(yaml_path))
    assert spec.name == "lab-cnn" and spec.input_shape == (28, 28, 1)
    assert spec.layers == resolve_spec(load_spec("cnn"), (28, 28, 1), 10).layers
    json_path = tmp_path / "model.json"
    json_path.write_text(json.dumps(spec.to_dict()))
    assert load_spec(json_path) == spec
    unnamed = tmp_path / "mine.yml"
    unnamed.write_text("layers:\n  - type: Flatten\n  - {type: Dense, units: 3}\n")
    assert load_spec(str(unnamed)).name == "mine"  # the file's stem names the model


@pytest.mark.parametrize("suffix, text, expected, fix", [
    (".yaml", "layers:\n  - type: Flatten\n - type: Dense\n", "not valid YAML at line", "indentation"),
    (".json", '{"layers": [{"type": "Flatten"} {"type": "Dense"}]}', "not valid JSON at line 1, column 33", "comma"),
    (".yaml", "layers:\n  - {type: Conv2d, filter: 8, kernel_size: 3}\n", "unknown argument 'filter'",
     "did you mean 'filters'"),
    (".yaml", "layers:\n  - {type: Conv3D, filters: 8}\n", "unknown layer type 'Conv3D'", "did you mean 'Conv2D'"),
    (".yaml", "layers:\n  - {type: Dense}\n", "layer 1 (Dense): missing argument 'units'", "units: 128"),
    (".yaml", "layers:\n  - {type: Flatten}\n  - {type: Dense, units: -3}\n", "layer 2 (Dense): expected units",
     "Dense(128)"),
    (".yaml", "- just a string\n", "layer 1: expected a mapping with a 'type'", "type"),
    (".yaml", "model: cnn\n", "expected a mapping with a 'layers' list", "layers"),
    (".yaml", "layers: []\nlayer: 3\n", "unknown top-level key 'layer'", "did you mean 'layers'"),
])
def test_bad_files_say_where_and_how_to_fix(tmp_path, suffix, text, expected, fix):
    path = tmp_path / f"model{suffix}"
    path.write_text(text)
    with pytest.raises(SpecError) as caught:
        load_spec(str(path))
    assert expected in str(caught.value) and fix in caught.value.fix and str(path) in str(caught.value)


def test_missing_file_is_a_spec_error(tmp_path):
    with pytest.raises(SpecError, match="cannot read the model file"):
        load_spec(str(tmp_path / "absent.yaml"))


# --- load_spec dispatch and the whole spec ---------------------------------------------------------------------------

def test_load_spec_takes_a_preset_a_file_or_a_line(tmp_path):
    assert load_spec(" CNN ") == load_spec("cnn")
    path = tmp_path / "cnn"  # a file without a suffix is still a file when it exists
    path.write_text(CNN_YAML)
    assert load_spec(str(path)).name == "lab-cnn"
    assert load_spec("flatten,dense").layers == (Flatten(), Dense(None, activation="softmax"))
    assert load_spec("gap").layers == (GlobalAveragePooling2D(),)  # a lone layer word is a line, not a preset


def test_unknown_preset_suggests_the_nearest():
    with pytest.raises(SpecError) as caught:
        load_spec("cnnn")
    assert "unknown model 'cnnn'" in str(caught.value) and caught.value.fix == "did you mean 'cnn'?"


def test_model_spec_validation():
    with pytest.raises(SpecError, match="at least one layer"):
        ModelSpec(())
    with pytest.raises(SpecError, match="layer 2: expected a convolab layer"):
        ModelSpec((Flatten(), "dense"))
    with pytest.raises(SpecError, match="input_shape belongs on the first layer only"):
        ModelSpec((Flatten(), Dense(3, input_shape=(28, 28, 1))))
    with pytest.raises(SpecError, match="first layer says input_shape"):
        ModelSpec((Flatten(input_shape=(28, 28)),), (32, 32, 1))


def test_resolve_spec():
    spec = load_spec("cnn")
    with pytest.raises(SpecError, match="input shape is unknown"):
        resolve_spec(spec, None, 10)
    with pytest.raises(SpecError, match="no class count is known"):
        resolve_spec(spec, (28, 28, 1), None)
    with pytest.raises(SpecError, match=r"written for input \(28, 28, 1\) but the input here is \(32, 32, 3\)"):
        resolve_spec(parse_line("input28x28x1,flatten,dense"), (32, 32, 3), 10)
    assert resolve_spec(parse_line("input28x28x1,flatten,dense"), (28, 28, 1), 3).layers[-1].units == 3


def test_a_misspelt_keyword_in_python_names_the_nearest_argument():
    with pytest.raises(SpecError, match="Conv2D: unknown argument 'filter'") as raised:
        Conv2D(64, 3, filter=8)
    assert raised.value.fix == "did you mean 'filters'?"
    with pytest.raises(SpecError, match="Dense: unknown argument 'unit'"):
        Dense(unit=10)


# --- issue 9: hostile and careless specs end in one message ----------------------------------------------------------

def test_a_one_line_spec_longer_than_a_file_name_is_read_as_a_line():
    """cause 3: the line was tried as a file name first, and the OS's 'File name too long' escaped."""
    line = ",".join(["conv4x3same"] * 40 + ["flatten", "dense"])
    assert len(line) > 255
    assert len(load_spec(line).layers) == 42
    with pytest.raises(SpecError, match="layer 3"):
        load_spec(",".join(["conv4x3same", "conv4x3same", "conv0x3"] + ["conv4x3same"] * 40))


def test_a_long_file_name_that_cannot_exist_is_a_message():
    with pytest.raises(SpecError, match="cannot read the model file"):
        load_spec("x" * 300 + ".yaml")


@pytest.mark.parametrize("suffix, text", [
    (".json", "[" * 100_000 + "]" * 100_000),
    (".yaml", "[" * 100_000 + "]" * 100_000),
    (".yaml", "layers:\n" + "".join("  " * depth + "- \n" for depth in range(1, 3000))),
])
def test_specs_nested_too_deep_are_refused_with_a_message(tmp_path, suffix, text):
    """cause 10: JSON or YAML nested 100,000 deep raised RecursionError."""
    path = tmp_path / f"deep{suffix}"
    path.write_text(text)
    with pytest.raises(SpecError) as caught:
        load_spec(str(path))
    assert len(caught.value.message) < 400


def test_a_yaml_alias_bomb_inside_a_layer_is_refused_without_expanding(tmp_path):
    """cause 10: the error message repr()'d the whole value (10^10 items here) before shortening it."""
    levels = ["&a0 [x, x, x, x, x, x, x, x, x, x]"]
    levels += [f"&a{n} [" + ", ".join([f"*a{n - 1}"] * 10) + "]" for n in range(1, 10)]
    bomb = "[" + ", ".join(levels) + "]"
    for argument in ("filters", "kernel_size", "padding", "activation", "use_bias", "input_shape", "type", "name"):
        if argument == "name":
            text = f"name: {bomb}\nlayers:\n  - {{type: Flatten}}\n"
        elif argument == "type":
            text = f"layers:\n  - {{type: {bomb}}}\n"
        else:
            text = f"layers:\n  - {{type: Conv2D, filters: 4, kernel_size: 3, {argument}: {bomb}}}\n"
        path = tmp_path / f"bomb_{argument}.yaml"
        path.write_text(text)
        with pytest.raises(SpecError) as caught:
            load_spec(str(path))
        assert len(caught.value.message) < 400 and "..." in caught.value.message, argument


def test_an_oversized_spec_file_is_refused_before_it_is_read(tmp_path):
    path = tmp_path / "huge.json"
    path.write_text(" " * (2 << 20) + "{}")
    with pytest.raises(SpecError, match="a model file is at most"):
        load_spec(str(path))


def test_a_path_that_is_no_model_is_named_as_a_path_not_parsed_as_layers(tmp_path):
    with pytest.raises(SpecError, match="no such file or folder"):
        load_spec(str(tmp_path / "runs" / "nonexist"))
    with pytest.raises(SpecError, match="a folder, not a run directory"):
        load_spec(str(tmp_path))


def test_a_json_spec_saved_with_a_byte_order_mark_reads(tmp_path):
    path = tmp_path / "bom.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps({"layers": [{"type": "Flatten"}, {"type": "Dense", "units": 10}]}).encode())
    assert load_spec(str(path)).to_line() == "flatten,dense10-linear"


def test_an_onnx_file_is_named_as_one_not_as_a_spec_in_the_wrong_encoding(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(b"\x08\x09\x12\x07pytorch\xff\xfe binary protobuf")
    with pytest.raises(SpecError, match="is an ONNX file; convolab reads runs, Keras files") as caught:
        load_spec(str(path))
    assert "exported from" in caught.value.fix


def test_two_activations_on_one_layer_are_refused():
    """cause 18: conv4x3-relu-tanh silently kept the last one."""
    with pytest.raises(SpecError, match="one activation, received -relu and -tanh"):
        load_spec("conv4x3-relu-tanh,flatten,dense")
    with pytest.raises(SpecError, match="one activation"):
        load_spec("flatten,dense8-sigmoid-linear,dense")
    assert load_spec("conv4x3-tanh-nobias,flatten,dense").layers[0].activation == "tanh"


def test_nobias_twice_is_refused_as_two_activations_are():
    """conv64x3-nobias-nobias was accepted (the second said nothing new, but a typo hides there)."""
    with pytest.raises(SpecError, match="-nobias once, received it twice"):
        load_spec("conv4x3-nobias-nobias,flatten,dense")
    with pytest.raises(SpecError, match="-nobias once"):
        load_spec("flatten,dense8-nobias-relu-nobias,dense")
    assert load_spec("conv4x3-nobias-relu,flatten,dense").layers[0].use_bias is False


def test_keras_edges_convolab_refuses_are_explained():
    """cause 18: Keras takes Dropout(1.0) and momentum 1; convolab refuses them and says why. epsilon must be finite."""
    with pytest.raises(SpecError, match="Keras accepts 1, but it zeroes every value"):
        load_spec("flatten,dropout1,dense")
    with pytest.raises(SpecError, match="Keras accepts 1, but it freezes the moving mean"):
        load_spec("flatten,bn-m1,dense")
    with pytest.raises(SpecError, match="expected epsilon to be a positive finite number"):
        BatchNormalization(epsilon=float("inf"))
    with pytest.raises(SpecError, match="epsilon=inf"):
        spec_from_dict({"layers": [{"type": "Flatten"}, {"type": "BatchNormalization", "epsilon": float("inf")},
                                   {"type": "Dense", "units": 3}]})


def test_a_preset_inside_a_line_of_layers_is_named_as_a_preset():
    with pytest.raises(SpecError, match="'cnn' at column 1 is a preset \\(a whole model\\), not a layer") as caught:
        load_spec("cnn,dropout0.5")
    assert caught.value.fix == f"write its layers out: {PRESETS['cnn']}"


@pytest.mark.parametrize("line", ["input28x28x1,input28x28x1,flatten,dense", "flatten,input28x28x1,dense"])
def test_an_input_token_anywhere_but_first_is_named_as_such(line):
    with pytest.raises(SpecError, match="the input shape comes once, as the first token"):
        load_spec(line)


def test_a_negative_zero_rate_prints_back_as_a_line_that_parses():
    # Dropout(-0.0) is a rate in [0, 1); printed as 'dropout-0' its dash read as an option
    from convolab.layers import BatchNormalization, Dropout, Flatten

    spec = ModelSpec((BatchNormalization(momentum=-0.0), Flatten(), Dropout(-0.0), Dense(10)))
    assert spec.to_line() == "bn-m0,flatten,dropout0,dense10-linear"
    assert parse_line(spec.to_line()) == spec
