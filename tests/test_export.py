"""Keras models inside convolab's commands, and convolab's models out to Keras and ONNX, against the real things:
the course's CNN trained in real Keras (torch backend) gives the same predictions in `convolab evaluate`/`predict` and
the same summary table; exported files run in real Keras and real onnxruntime with the same outputs; a failed export
leaves nothing behind."""
from __future__ import annotations

import json
import os
import signal
import stat

import numpy as np
import pytest
import torch
from PIL import Image

from keras_fixtures import keras, keras_outputs, keras_table, lab_cnn, lab_dnn, save_both
from train_fixtures import fashion, train_tiny_run

import convolab
from convolab import export as export_module
from convolab.cli import main
from convolab.errors import ModelFileError
from convolab.runs import load_run

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")   # Keras's torch backend and NumPy 2's copy=
onnxruntime = pytest.importorskip("onnxruntime", reason="the onnx extra (in dev) installs onnxruntime")

TRAIN_IMAGES, TEST_IMAGES = 256, 300


def keras_inputs(images_uint8: torch.Tensor) -> np.ndarray:
    """Fashion-MNIST uint8 (N, 1, 28, 28) as the course feeds Keras: float (N, 28, 28, 1) / 255."""
    return images_uint8.permute(0, 2, 3, 1).float().div(255).numpy()


@pytest.fixture(scope="module")
def course_model(tmp_path_factory):
    """The course's CNN built and trained in real Keras on a small slice, saved as .keras and .h5."""
    directory = tmp_path_factory.mktemp("course")
    data = fashion()
    keras.utils.set_random_seed(0)
    model = lab_cnn()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(keras_inputs(data.train_images[:TRAIN_IMAGES]), data.train_labels[:TRAIN_IMAGES].numpy(), epochs=1,
              batch_size=32, verbose=0)
    keras_path, h5_path = save_both(model, directory, "fashion")
    return model, keras_path, h5_path


@pytest.mark.parametrize("form", ["keras", "h5"])
def test_the_course_model_evaluates_and_predicts_in_convolab_as_in_keras(course_model, form, tmp_path, capsys):
    model, keras_path, h5_path = course_model
    path = keras_path if form == "keras" else h5_path
    data = fashion()
    images, labels = data.test_images[:TEST_IMAGES], data.test_labels[:TEST_IMAGES]
    probabilities = keras_outputs(model, keras_inputs(images))
    keras_accuracy = float((probabilities.argmax(axis=1) == labels.numpy()).mean())
    keras_loss = float(-np.log(probabilities[np.arange(TEST_IMAGES), labels.numpy()]).mean())

    assert main(["evaluate", str(path), "--test-limit", str(TEST_IMAGES), "--json"]) == 0
    evaluation = json.loads(capsys.readouterr().out)
    assert evaluation["test_accuracy"] == pytest.approx(keras_accuracy, abs=1e-9)
    assert evaluation["test_loss"] == pytest.approx(keras_loss, abs=1e-5)

    files = []
    for index in range(4):
        files.append(tmp_path / f"test-{index}.png")
        Image.fromarray(images[index, 0].numpy()).save(files[-1])
    assert main(["predict", str(path), *map(str, files), "--json", "--top", "1"]) == 0
    predictions = json.loads(capsys.readouterr().out)
    for index, prediction in enumerate(predictions):
        best = int(probabilities[index].argmax())
        assert prediction["top"][0]["class"] == data.class_names[best]
        assert prediction["top"][0]["probability"] == pytest.approx(float(probabilities[index, best]), abs=1e-5)


def test_the_course_model_summary_is_keras_table(course_model, capsys):
    model, keras_path, _ = course_model
    assert main(["summary", str(keras_path), "--format", "json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    ours = [(layer["type"], tuple(layer["output_shape"]), layer["params"]) for layer in summary["layers"]]
    assert ours == keras_table(model)
    assert summary["totals"]["params"] == model.count_params()
    assert main(["summary", str(keras_path)]) == 0
    text = capsys.readouterr().out
    assert "Total params: 243,786" in text and 'Model: "fashion"' in text


def test_training_continues_from_the_keras_weights_into_a_run_directory(tmp_path, capsys):
    model = lab_dnn()
    keras_path, _ = save_both(model, tmp_path, "dnn")
    out = tmp_path / "run"
    # a learning rate too small to move anything: the run's weights must be the file's
    assert main(["train", str(keras_path), "--epochs", "1", "--train-limit", "64", "--test-limit", "64",
                 "--learning-rate", "1e-12", "--out", str(out), "--quiet"]) == 0
    run = load_run(out)
    assert run.config.initial_weights == str(keras_path)
    kernel = run.model.state_dict()["blocks.1.linear.weight"]
    assert torch.allclose(kernel, torch.from_numpy(keras.ops.convert_to_numpy(model.layers[1].kernel).T), atol=1e-6)


def test_show_filters_and_report_draw_a_keras_file_beside_it(course_model, capsys):
    model, keras_path, _ = course_model
    assert main(["filters", str(keras_path)]) == 0
    assert (keras_path.parent / "fashion-filters.png").stat().st_size > 1000
    assert main(["show", str(keras_path), "--images", "0,23,28", "--filter", "1"]) == 0
    assert (keras_path.parent / "fashion-activations.png").stat().st_size > 1000
    assert main(["report", str(keras_path)]) == 0
    page = (keras_path.parent / "fashion-report.html").read_text()
    assert "a Keras model file, trained outside convolab" in page
    probabilities = keras_outputs(model, keras_inputs(fashion().test_images))
    accuracy = float((probabilities.argmax(axis=1) == fashion().test_labels.numpy()).mean())
    assert f"test accuracy <b>{accuracy:.4f}</b>" in page


def test_export_to_onnx_runs_in_onnxruntime_as_keras_computes(course_model, tmp_path, capsys):
    model, keras_path, _ = course_model
    out = tmp_path / "fashion.onnx"
    assert main(["export", str(keras_path), "--format", "onnx", "--out", str(out)]) == 0
    line = capsys.readouterr().out
    assert "256 fashion-mnist test images" in line and "largest difference from PyTorch" in line
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    images = keras_inputs(fashion().test_images[:7])
    for batch in (images[:1], images):   # the batch axis is dynamic
        theirs = session.run(None, {"images": batch})[0]
        assert np.abs(theirs - keras_outputs(model, batch)).max() <= 1e-5


def test_export_of_a_run_to_keras_loads_in_keras_with_the_same_outputs(tmp_path, capsys):
    train_tiny_run(tmp_path / "run", spec="conv4x3same,pool2,bn,flatten,dense")
    assert main(["export", str(tmp_path / "run"), "--format", "keras"]) == 0
    assert "weights equal bit for bit" in capsys.readouterr().out
    model = keras.models.load_model(tmp_path / "run" / "model.keras")
    run = load_run(tmp_path / "run")
    images = fashion().test_images[:5]
    with torch.no_grad():
        ours = run.model.probabilities(images.float() / 255).numpy()
    assert np.abs(ours - keras_outputs(model, keras_inputs(images))).max() <= 1e-5


def test_the_python_api_loads_saves_and_exports(course_model, tmp_path):
    model, keras_path, _ = course_model
    loaded = convolab.load(keras_path)
    assert isinstance(loaded, convolab.Sequential)
    images = fashion().test_images[:5]
    probabilities = loaded.predict(images).numpy()
    assert np.abs(probabilities - keras_outputs(model, keras_inputs(images))).max() <= 1e-5
    loaded.save(tmp_path / "again.keras")
    again = keras.models.load_model(tmp_path / "again.keras")
    assert np.abs(keras_outputs(again, keras_inputs(images)) - probabilities).max() <= 1e-5
    exported = loaded.export(tmp_path / "again.onnx")
    assert exported.max_difference <= 1e-4 and (tmp_path / "again.onnx").is_file()


def test_the_course_codes_model_save_writes_a_keras_file_that_keras_and_convolab_read(course_model, tmp_path,
                                                                                      capsys):
    from convolab import keras as course                # the course's code: `from convolab import keras`
    from convolab.errors import RunError

    course.utils.set_random_seed(0)
    model = course.models.Sequential([course.Input(shape=(28, 28, 1)),
                                      course.layers.Conv2D(4, (3, 3), activation="relu"),
                                      course.layers.MaxPooling2D(2, 2), course.layers.Flatten(),
                                      course.layers.Dense(10, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    data = fashion()
    model.fit(keras_inputs(data.train_images[:64]), data.train_labels[:64].numpy(), epochs=1, verbose=0)
    path = tmp_path / "fashion.keras"
    model.save(path)
    images = keras_inputs(data.test_images[:5])
    ours = model.predict(images, verbose=0)
    assert np.abs(keras_outputs(keras.models.load_model(path), images) - ours).max() <= 1e-5   # real Keras reads it
    assert np.abs(course.models.load_model(path).predict(images, verbose=0) - ours).max() <= 1e-6
    assert main(["summary", str(path)]) == 0 and "conv2d" in capsys.readouterr().out
    real, keras_path, _ = course_model                  # and the course code loads a file real Keras saved
    loaded = course.models.load_model(keras_path)
    assert np.abs(loaded.predict(images, verbose=0) - keras_outputs(real, images)).max() <= 1e-5
    with pytest.raises(ModelFileError, match="not legacy HDF5"):
        model.save(tmp_path / "fashion.h5")


def test_a_failed_export_leaves_no_file(course_model, tmp_path, monkeypatch, capsys):
    _, keras_path, _ = course_model
    monkeypatch.setattr(export_module, "ONNX_TOLERANCE", -1.0)   # every file now "disagrees"
    out = tmp_path / "refused.onnx"
    assert main(["export", str(keras_path), "--format", "onnx", "--out", str(out)]) == 2
    assert "the file was not kept" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []

    read = export_module.read_keras_file

    def damaged(path):
        model_file = read(path)
        with torch.no_grad():
            model_file.network.blocks[0].conv.bias.add_(1)
        return model_file

    monkeypatch.setattr(export_module, "read_keras_file", damaged)
    assert main(["export", str(keras_path), "--format", "keras", "--out", str(tmp_path / "refused.keras")]) == 2
    assert "read back differ" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_a_keras_model_for_other_shapes_evaluates_with_channels_and_size_alone(tmp_path, capsys):
    model = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Conv2D(2, 3), keras.layers.Flatten(),
                              keras.layers.Dense(10, activation="softmax")])
    model.save(tmp_path / "rgb.keras")
    assert main(["evaluate", str(tmp_path / "rgb.keras"), "--test-limit", "40"]) == 2
    assert "--channels 3 --image-size 32,32" in capsys.readouterr().err        # the fix says what fits
    assert main(["evaluate", str(tmp_path / "rgb.keras"), "--channels", "3", "--image-size", "32,32",
                 "--test-limit", "40", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["test_count"] == 40           # Fashion-MNIST, shaped as the model takes


def test_exporting_an_h5_never_replaces_a_keras_file_of_the_same_name(course_model, tmp_path, capsys):
    _, keras_path, h5_path = course_model
    source, mine = tmp_path / "fashion.h5", tmp_path / "fashion.keras"
    source.write_bytes(h5_path.read_bytes())
    mine.write_bytes(b"the user's own, different model")
    assert main(["export", str(source), "--format", "keras"]) == 0
    assert "fashion-export.keras" in capsys.readouterr().out
    assert mine.read_bytes() == b"the user's own, different model"
    assert (tmp_path / "fashion-export.keras").is_file()


def test_a_keras_file_is_never_exported_over_itself(course_model, tmp_path, capsys):
    _, keras_path, _ = course_model
    source = tmp_path / "trained.keras"
    source.write_bytes(keras_path.read_bytes())
    (tmp_path / "link.keras").symlink_to(source)
    for out in (source, tmp_path / "link.keras", tmp_path / "." / "trained.keras"):
        assert main(["export", str(source), "--format", "keras", "--out", str(out)]) == 2
        error = capsys.readouterr().err
        assert "is the file being exported" in error and f"--out {out.stem}-export.keras" in error
    assert source.read_bytes() == keras_path.read_bytes()
    assert keras.models.load_model(source).optimizer is not None     # its compile settings and optimizer kept


def test_export_refuses_what_it_cannot_write(tmp_path, capsys):
    assert main(["export", "cnn", "--format", "keras", "--out", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err
    (tmp_path / "config.json").write_text("{}")                  # a run's own file is never replaced by an export
    assert main(["export", "cnn", "--format", "onnx", "--out", str(tmp_path / "config.json")]) == 2
    assert "exists and is not a .onnx file" in capsys.readouterr().err
    assert (tmp_path / "config.json").read_text() == "{}"
    (tmp_path / "config.json").unlink()
    fifo = tmp_path / "fifo.keras"                                 # nor a device or pipe's node
    os.mkfifo(fifo)
    assert main(["export", "cnn", "--format", "keras", "--out", str(fifo)]) == 2
    assert "not a regular file" in capsys.readouterr().err and stat.S_ISFIFO(fifo.lstat().st_mode)
    fifo.unlink()
    assert main(["export", "cnn", "--format", "onnx", "--out", str(tmp_path / "wrong.keras")]) == 2
    assert "a .keras name for an ONNX file" in capsys.readouterr().err
    assert main(["export", "cnn", "--format", "keras", "--out", str(tmp_path / "wrong.ONNX")]) == 2
    assert "name it wrong.keras, or use --format onnx" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
    model = convolab.Sequential([convolab.Flatten(input_shape=(4, 4, 1)), convolab.Dense(2)])
    with pytest.raises(ModelFileError, match="save writes Keras 3 .keras files"):
        model.save(tmp_path / "x.h5")
    with pytest.raises(ModelFileError, match="save writes Keras 3 .keras files"):
        model.save(5)
    from convolab.errors import ArgumentError
    for path in (5, None, b"runs/cnn"):
        with pytest.raises(ArgumentError, match="expected the path of a run directory or a Keras file"):
            convolab.load(path)
    with pytest.raises(ModelFileError, match="export writes .onnx or .keras"):
        model.export(tmp_path / "x.pb")
    assert main(["evaluate", str(tmp_path / "missing.keras")]) == 2
    assert "no such file" in capsys.readouterr().err


@pytest.mark.parametrize("number, status, said", [(signal.SIGINT, 130, "interrupted"),
                                                  (signal.SIGTERM, 143, "stopped by SIGTERM")])
def test_ctrl_c_or_sigterm_inside_the_onnx_exporter_is_an_interruption_not_an_export_bug(tmp_path, monkeypatch, capsys,
                                                                                         number, status, said):
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)   # a terminal's Ctrl-C, put back below
    layout_forward = export_module.KerasLayout.forward

    def interrupted_while_traced(self, images):   # a real signal while torch.onnx.export traces the model
        os.kill(os.getpid(), number)
        return layout_forward(self, images)

    monkeypatch.setattr(export_module.KerasLayout, "forward", interrupted_while_traced)
    out = tmp_path / "e.onnx"
    try:
        assert main(["export", "flatten,dense", "--format", "onnx", "--out", str(out)]) == status
    finally:
        signal.signal(signal.SIGINT, previous)
    assert capsys.readouterr().err == f"convolab export: {said}\n"
    assert list(tmp_path.iterdir()) == []   # the half-written temporary is gone too


def test_a_quoted_torch_message_loses_its_terminal_colours():
    from convolab.errors import plain_text

    assert plain_text("\x1b[96mThis is step 1/3\x1b[0m of exporting") == "This is step 1/3 of exporting"


def test_a_ctrl_c_the_exporter_wrapped_in_its_own_error_is_an_interruption(tmp_path, monkeypatch, capsys):
    # What `convolab export --format onnx` hit when Ctrl-C landed inside torch.export (about 3.4 s in): torch's own
    # TorchExportError, coloured, with the KeyboardInterrupt as its cause. The timing cannot be hit reliably in a test.
    from torch.onnx._internal.exporter._errors import TorchExportError

    from convolab.errors import Terminated

    for stop, status, said in ((KeyboardInterrupt, 130, "interrupted"), (Terminated, 143, "stopped by SIGTERM")):
        def wrapped_interrupt(*arguments, **options):
            try:
                raise stop
            except KeyboardInterrupt as interrupt:
                raise TorchExportError("Failed to export the model with torch.export. \x1b[96mThis is step 1/3\x1b[0m "
                                       "of exporting the model to ONNX.") from interrupt

        monkeypatch.setattr(export_module.torch.onnx, "export", wrapped_interrupt)
        out = tmp_path / "e.onnx"
        assert main(["export", "flatten,dense", "--format", "onnx", "--out", str(out)]) == status
        assert capsys.readouterr().err == f"convolab export: {said}\n"
        assert list(tmp_path.iterdir()) == []

    def coloured_failure(*arguments, **options):
        raise TorchExportError("Failed to export the model with torch.export. \x1b[96mThis is step 1/3\x1b[0m")

    monkeypatch.setattr(export_module.torch.onnx, "export", coloured_failure)
    assert main(["export", "flatten,dense", "--format", "onnx", "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert "This is step 1/3" in error and "\x1b" not in error, error
