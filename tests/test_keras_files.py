"""keras_files: real Keras 3 models saved as .keras and legacy .h5 read into convolab (same outputs, same summary
table), convolab's .keras files read by real Keras (same outputs, weights back bit for bit), and bad files refused."""
from __future__ import annotations

import io
import json
import zipfile

import h5py
import numpy as np
import pytest
import torch

from keras_reference import randomized_model
from keras_fixtures import (every_kind_models, keras, keras_outputs, keras_table, lab_cnn, lab_dnn, layers,
                            randomize_batch_norm, save_both)

from convolab.cli import main
from convolab.errors import ModelFileError
from convolab.keras_files import (MAX_EXPANSION_RATIO, keras_file_bytes, read_keras_file, read_keras_spec,
                                  supported_layers)
from convolab.shapes import analyze
from convolab.spec import load_spec

TOLERANCE = 1e-5
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")   # Keras's torch backend and NumPy 2's copy=


def convolab_outputs(model_file, images_nhwc: np.ndarray) -> np.ndarray:
    """What convolab computes for a file read: probabilities when the model ends in softmax (as Keras's output)."""
    network = model_file.network
    with torch.no_grad():
        # the lab's DNN takes (28, 28) images in Keras; convolab's spec gives them their channel axis
        inputs = torch.from_numpy(images_nhwc).reshape(len(images_nhwc), *model_file.spec.input_shape)
        inputs = inputs.permute(0, 3, 1, 2)
        return (network.probabilities(inputs) if network.output_activation == "softmax" else network(inputs)).numpy()


def images_for(model, count: int = 5) -> np.ndarray:
    shape = tuple(model.input_shape[1:])
    return np.random.default_rng(0).random((count, *shape), dtype=np.float32)


@pytest.fixture(scope="module")
def saved_models(tmp_path_factory):
    """Every-kind models and the lab's two, with Keras-initialized (and BN-randomized) weights, saved both ways."""
    directory = tmp_path_factory.mktemp("keras-models")
    models = {**every_kind_models(), "cnn": lab_cnn(), "dnn": lab_dnn()}
    saved = {}
    for name, model in models.items():
        randomize_batch_norm(model)
        saved[name] = (model, *save_both(model, directory, name))
    return saved


@pytest.mark.parametrize("name", ["even-same-strides", "pool-gap", "new-kinds", "vector-activations", "cnn", "dnn"])
@pytest.mark.parametrize("form", [".keras", ".h5"])
def test_a_keras_model_reads_with_its_outputs_and_summary_table(saved_models, name, form):
    model, keras_path, h5_path = saved_models[name]
    model_file = read_keras_file(keras_path if form == ".keras" else h5_path)
    images = images_for(model)
    difference = np.abs(convolab_outputs(model_file, images) - keras_outputs(model, images)).max()
    assert difference <= TOLERANCE, difference
    reports = analyze(model_file.spec)
    ours = [(report.kind, report.output_shape, report.params) for report in reports]
    theirs = [(kind, tuple(shape) if len(shape) > 1 else tuple(shape), params)
              for kind, shape, params in keras_table(model)]
    assert ours == theirs
    assert model_file.layer_names == [layer.name for layer in model.layers]


def test_the_dnn_without_a_channel_axis_reads_as_one_channel(saved_models):
    _, keras_path, _ = saved_models["dnn"]
    assert read_keras_spec(keras_path).input_shape == (28, 28, 1)
    assert load_spec(str(keras_path)).to_line() == "input28x28x1,flatten,dense128,dense10"


def test_a_functional_model_that_is_one_chain_reads(tmp_path):
    inputs = keras.Input((9, 9, 2))
    hidden = layers.Conv2D(3, 3, padding="same", activation="relu")(inputs)
    outputs = layers.Dense(4, activation="softmax")(layers.Flatten()(hidden))
    model = keras.Model(inputs, outputs)
    model.save(tmp_path / "chain.keras")
    model_file = read_keras_file(tmp_path / "chain.keras")
    images = images_for(model)
    assert np.abs(convolab_outputs(model_file, images) - keras_outputs(model, images)).max() <= TOLERANCE


def random_network(line: str):
    """A convolab network with random weights, BatchNormalization statistics included."""
    return randomized_model(load_spec(line), seed=1)


ROUND_TRIP_SPECS = [
    "input28x28x1,conv64x3,pool2,conv64x3,pool2,flatten,dense128,dense10",
    "input17x15x3,conv6x4s2same-tanh,bn-m0.9-eps0.00001,conv5x2x3s3same-elu-nobias,pool3s2same,flatten,dropout0.3,"
    "dense12-gelu,bn,dense4",
    "input20x20x2,conv7x3s1x2-silu,avgpool2,conv8x3same-leaky_relu,pool2s1,gap,dense9-sigmoid-nobias,dense3-relu6,"
    "dense5-linear",
    "input12x11x2,dwconv4s2same-relu,sepconv5x3s3same-tanh,gelu,sepconv3x2x1-nobias,gmp,dense4-linear,softmax",
]


@pytest.mark.parametrize("line", ROUND_TRIP_SPECS)
def test_convolab_to_keras_and_back_keeps_outputs_and_every_weight_bit_for_bit(tmp_path, line):
    network = random_network(line)
    first = tmp_path / "convolab.keras"
    first.write_bytes(keras_file_bytes(network))
    model = keras.models.load_model(first)
    images = images_for(model)
    with torch.no_grad():
        inputs = torch.from_numpy(images).permute(0, 3, 1, 2)
        ours = network.probabilities(inputs) if network.output_activation == "softmax" else network(inputs)
    assert np.abs(ours.numpy() - keras_outputs(model, images)).max() <= TOLERANCE
    second = tmp_path / "keras.keras"
    model.save(second)   # Keras writes its own file: convolab reads it back
    back = read_keras_file(second)
    assert back.spec.to_line() == network.spec.to_line()
    original = network.state_dict()
    for key, value in back.state_dict.items():
        if not key.endswith("num_batches_tracked"):
            assert torch.equal(value, original[key]), key
    assert set(back.state_dict) == set(original)


# --- bad files: a message, exit status 2 -----------------------------------------------------------------------------

def refused(path, *fragments: str) -> str:
    with pytest.raises(ModelFileError) as caught:
        read_keras_file(path)
    message = str(caught.value)
    for fragment in fragments:
        assert fragment in message, message
    return message


def cli_refuses(path, capsys, *fragments: str) -> None:
    assert main(["summary", str(path)]) == 2
    error = capsys.readouterr().err
    for fragment in fragments:
        assert fragment in error, error


def zip_file(path, members: dict[str, bytes]):
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def test_a_keras_file_that_is_not_a_zip(tmp_path, capsys):
    path = tmp_path / "model.keras"
    path.write_text("not a model")
    refused(path, "not a .keras file")
    cli_refuses(path, capsys, "convolab summary: error:", "not a .keras file", "fix:")


def test_a_zip_without_config(tmp_path, capsys):
    path = zip_file(tmp_path / "model.keras", {"metadata.json": b"{}", "model.weights.h5": b""})
    refused(path, "no config.json", "metadata.json")
    cli_refuses(path, capsys, "no config.json")


def test_a_branching_functional_model_and_a_subclassed_one(tmp_path, capsys):
    inputs = keras.Input((8, 8, 1))
    branch = layers.Conv2D(1, 3, padding="same")(inputs)
    joined = layers.Add()([branch, inputs])
    keras.Model(inputs, layers.Dense(2)(layers.Flatten()(joined))).save(tmp_path / "branch.keras")
    refused(tmp_path / "branch.keras", "convolab reads Sequential stacks; this file has a branching graph at layer")
    cli_refuses(tmp_path / "branch.keras", capsys, "branching graph")

    class Subclassed(keras.Model):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.dense = layers.Dense(3)

        def call(self, x):
            return self.dense(x)

    model = Subclassed()
    model(np.zeros((1, 4), dtype="float32"))
    model.save(tmp_path / "subclassed.keras")
    refused(tmp_path / "subclassed.keras", "convolab reads Sequential stacks", "subclassed model ('Subclassed')")


def with_config(source, path, change):
    """A copy of the .keras archive `source` at `path` whose config.json went through change(config)."""
    with zipfile.ZipFile(source) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    config = json.loads(members["config.json"])
    change(config)
    members["config.json"] = json.dumps(config).encode()
    return zip_file(path, members)


def first_layer(config: dict) -> dict:
    return config["config"]["layers"][1]          # [0] is the InputLayer


@pytest.mark.parametrize("change", [
    lambda config: first_layer(config).update(class_name=["Conv2D"]),         # a list where Keras writes a name
    lambda config: config["config"]["layers"].__setitem__(1, "Conv2D"),       # a layer that is a string
    lambda config: first_layer(config).update(config="relu"),                 # a layer config that is a string
    lambda config: config["config"]["layers"][0]["config"].update(batch_shape=28),   # a shape that is a number
], ids=["class-list", "layer-string", "config-string", "shape-number"])
def test_a_config_not_laid_out_as_keras_writes_it_is_a_message(saved_models, tmp_path, capsys, change):
    _, keras_path, _ = saved_models["cnn"]
    path = with_config(keras_path, tmp_path / "edited.keras", change)
    refused(path, "edited.keras", "not laid out as Keras writes them")
    cli_refuses(path, capsys, "not laid out as Keras writes them", "fix:")
    assert main(["evaluate", str(path)]) == 2 and "internal error" not in capsys.readouterr().err


def test_an_unsupported_layer_is_named_and_the_supported_ones_listed(tmp_path, capsys):
    model = keras.Sequential([keras.Input((8, 8, 1)), layers.Rescaling(1 / 255), layers.Flatten(), layers.Dense(2)])
    model.save(tmp_path / "rescaling.keras")
    message = refused(tmp_path / "rescaling.keras", "'rescaling' (Rescaling)", supported_layers())
    assert "Conv2D" in message and "BatchNormalization" in message
    cli_refuses(tmp_path / "rescaling.keras", capsys, "Rescaling")


def test_an_activation_without_a_name_is_refused_not_read_as_linear(saved_models, tmp_path):
    _, keras_path, _ = saved_models["cnn"]
    path = with_config(keras_path, tmp_path / "nameless.keras",
                       lambda config: first_layer(config)["config"].update(activation={"x": 1}))
    refused(path, "expected activation to be one of", "received: activation='{\"x\": 1}'")


def test_batch_normalization_over_another_axis_than_the_channels_is_named(tmp_path, capsys):
    model = keras.Sequential([keras.Input((8, 8, 1)), layers.Conv2D(4, 3), layers.BatchNormalization(axis=1),
                              layers.Flatten(), layers.Dense(2)])
    model.save(tmp_path / "rows.keras")
    refused(tmp_path / "rows.keras", "(BatchNormalization) normalises axis 1", "the last axis (-1)")
    cli_refuses(tmp_path / "rows.keras", capsys, "normalises axis 1")
    vectors = keras.Sequential([keras.Input((4, 4, 1)), layers.Flatten(), layers.Dense(4),
                                layers.BatchNormalization(axis=1), layers.Dense(2)])
    vectors.save(tmp_path / "vectors.keras")                 # axis 1 of a vector IS its last axis: read as it is
    assert read_keras_spec(tmp_path / "vectors.keras").layers[2].__class__.__name__ == "BatchNormalization"


def test_an_unsupported_option_is_named(tmp_path):
    model = keras.Sequential([keras.Input((8, 8, 1)), layers.Conv2D(2, 3, dilation_rate=2), layers.Flatten()])
    model.save(tmp_path / "dilated.keras")
    refused(tmp_path / "dilated.keras", "dilation_rate=[2, 2] is not supported")


def test_weights_whose_shapes_do_not_match_the_config(tmp_path, capsys):
    small = keras.Sequential([keras.Input((8, 8, 1)), layers.Conv2D(2, 3, name="edges"), layers.Flatten(),
                              layers.Dense(3)])
    large = keras.Sequential([keras.Input((8, 8, 1)), layers.Conv2D(4, 3), layers.Flatten(), layers.Dense(3)])
    small.save(tmp_path / "small.keras")
    large.save(tmp_path / "large.keras")
    with zipfile.ZipFile(tmp_path / "small.keras") as first, zipfile.ZipFile(tmp_path / "large.keras") as second:
        members = {"config.json": first.read("config.json"), "metadata.json": first.read("metadata.json"),
                   "model.weights.h5": second.read("model.weights.h5")}
    path = zip_file(tmp_path / "mixed.keras", members)
    refused(path, "layer 'edges' (Conv2D): weight 1 of 2 is (3, 3, 1, 4) in the file, but the config makes it (3, 3, 1, 2)")
    assert main(["evaluate", str(path)]) == 2
    assert "weight 1 of 2 is (3, 3, 1, 4)" in capsys.readouterr().err


def test_an_h5_file_of_weights_only_says_the_architecture_is_needed(tmp_path, capsys):
    model = keras.Sequential([keras.Input((8, 8, 1)), layers.Flatten(), layers.Dense(3)])
    model.save_weights(tmp_path / "model.weights.h5")            # Keras 3's weights-only file
    with h5py.File(tmp_path / "keras2.h5", "w") as file:         # Keras 2's model.save_weights("x.h5") layout
        file.attrs["layer_names"] = [b"dense"]
        file.create_group("dense").attrs["weight_names"] = [b"dense/kernel:0"]
    for path in (tmp_path / "model.weights.h5", tmp_path / "keras2.h5"):
        refused(path, "weights only", "not the architecture")
        cli_refuses(path, capsys, "weights only", "fix:")


def test_a_zip_bomb_is_refused_before_it_expands(tmp_path, capsys):
    keras_path, _ = save_both(lab_dnn(), tmp_path, "dnn")
    with zipfile.ZipFile(keras_path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    members["assets/padding.bin"] = bytes(MAX_EXPANSION_RATIO * (1 << 20) // 10)   # 10 MB of zeros: ~1000x smaller
    path = zip_file(tmp_path / "bomb.keras", members)
    assert path.stat().st_size < 1 << 20
    refused(path, "would expand", "refuses archives over")
    cli_refuses(path, capsys, "would expand")


@pytest.mark.parametrize("name", ["../escape.txt", "/etc/evil", "assets/../../evil"])
def test_a_name_that_leaves_the_archive_folder_is_refused(tmp_path, name):
    members = {"config.json": json.dumps({"class_name": "Sequential", "config": {"layers": []}}).encode(),
               name: b"x"}
    refused(zip_file(tmp_path / "traversal.keras", members), "a name that leaves its folder")


def test_a_damaged_weights_file_is_a_message(tmp_path):
    keras_path, _ = save_both(lab_dnn(), tmp_path, "dnn")
    with zipfile.ZipFile(keras_path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    members["model.weights.h5"] = members["model.weights.h5"][:200]
    refused(zip_file(tmp_path / "cut.keras", members), "not a readable HDF5 file")


def test_keras_file_bytes_are_a_zip_keras_expects():
    network = random_network("input8x8x1,conv2x3,flatten,dense3")
    with zipfile.ZipFile(io.BytesIO(keras_file_bytes(network))) as archive:
        assert sorted(archive.namelist()) == ["config.json", "metadata.json", "model.weights.h5"]
        config = json.loads(archive.read("config.json"))
    assert config["class_name"] == "Sequential"
    assert [layer["class_name"] for layer in config["config"]["layers"]] == ["InputLayer", "Conv2D", "Flatten", "Dense"]
