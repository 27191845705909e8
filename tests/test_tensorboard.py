"""TensorBoard event files, read back with TensorBoard's own EventAccumulator: scalars per epoch and every N steps,
weight histograms, the activation grid and confusion matrix as images, one hparams record in the run's directory."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from convolab import keras
from convolab.cli import main

from idx_fixtures import needs_debian
from train_fixtures import train_tiny_run

pytestmark = pytest.mark.skipif(importlib.util.find_spec("tensorboard") is None,
                                reason="tensorboard is an optional extra (in dev)")


def read_events(directory):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(directory), size_guidance={"images": 0, "histograms": 0, "scalars": 0})
    accumulator.Reload()
    return accumulator


@needs_debian
def test_a_run_with_tensorboard_holds_every_kind_of_record_in_its_own_directory(tmp_path):
    from convolab.tensorboard import TensorBoardWriter

    out = tmp_path / "cnn"
    writer = TensorBoardWriter(out, update_freq=4)
    train_tiny_run(out, spec="conv4x3,pool2,flatten,dense", epochs=2, train=256, test=64, callbacks=[writer],
                   on_train_end=[writer.finish_run])
    event_files = list(out.rglob("events.out.tfevents.*"))
    assert [path.parent for path in event_files] == [out]          # one directory: the hparams did not split off
    events = read_events(out)
    tags = events.Tags()
    assert [event.value for event in events.Scalars("epoch/loss")] == pytest.approx(
        [row["loss"] for row in __import__("json").loads((out / "history.json").read_text())])
    assert [event.step for event in events.Scalars("step/loss")] == [4, 8, 12, 16]   # 8 steps an epoch, every 4
    assert {"epoch/accuracy", "epoch/seconds", "final/test_accuracy", "final/test_loss"} <= set(tags["scalars"])
    assert any(tag.startswith("weights/blocks.0") for tag in tags["histograms"])
    assert {"pictures/confusion_matrix", "pictures/activations"} <= set(tags["images"])
    hparams = events.PluginTagToContent("hparams")
    assert set(hparams) == {"_hparams_/experiment", "_hparams_/session_start_info", "_hparams_/session_end_info"}
    assert b"learning_rate" in hparams["_hparams_/session_start_info"]


@needs_debian
def test_a_resumed_runs_step_scalars_go_on_from_where_it_stopped(tmp_path):
    from convolab.experiment import resume_run
    from convolab.tensorboard import TensorBoardWriter
    from train_fixtures import fashion

    out = tmp_path / "cnn"
    train_tiny_run(out, spec="conv4x3,pool2,flatten,dense", epochs=1, train=256, test=64,
                   callbacks=[TensorBoardWriter(out, update_freq=4)])
    resume_run(out, dataset=fashion(), epochs=2, callbacks=[TensorBoardWriter(out, update_freq=4)])
    events = read_events(out)
    assert [event.step for event in events.Scalars("step/loss")] == [4, 8, 12, 16]   # 8 steps an epoch, not 4, 8, 4, 8
    assert [event.step for event in events.Scalars("epoch/loss")] == [1, 2]


@needs_debian
def test_train_with_tensorboard_from_the_command_line(tmp_path, capsys):
    out = tmp_path / "dnn"
    assert main(["train", "flatten,dense16,dense", "--epochs", "1", "--train-limit", "128", "--test-limit", "32",
                 "--out", str(out), "--tensorboard", "--offline", "--quiet"]) == 0
    assert "final/test_accuracy" in read_events(out).Tags()["scalars"]


def test_without_the_package_the_flag_says_how_to_install_it(tmp_path, capsys, monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *args: None if name == "tensorboard" else real_find_spec(name, *args))
    assert main(["train", "dnn", "--out", str(tmp_path / "x"), "--tensorboard", "--offline"]) == 2
    assert 'pip install "convolab[tensorboard]"' in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_the_keras_tensorboard_callback_writes_epochs_and_one_hparams_record(tmp_path):
    rng = np.random.default_rng(0)
    images, labels = rng.random((40, 8, 8, 1)).astype(np.float32), rng.integers(0, 3, 40)
    model = keras.models.Sequential([keras.layers.Flatten(input_shape=(8, 8, 1)),
                                     keras.layers.Dense(3, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(images, labels, epochs=2, validation_split=0.25, verbose=0,
              callbacks=[keras.callbacks.TensorBoard(tmp_path / "logs", histogram_freq=1)])
    events = read_events(tmp_path / "logs")
    assert len(events.Scalars("epoch/val_accuracy")) == 2 and "final/loss" in events.Tags()["scalars"]
    assert "_hparams_/session_start_info" in events.PluginTagToContent("hparams")


def test_a_log_dir_that_is_a_file_is_a_message_before_training(tmp_path):
    from convolab.errors import WriteError

    (tmp_path / "logs").write_text("a file, not a folder")
    model = keras.models.Sequential([keras.layers.Flatten(input_shape=(8, 8, 1)),
                                     keras.layers.Dense(3, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    with pytest.raises(WriteError, match="logs: cannot write it"):
        model.fit(np.zeros((8, 8, 8, 1), np.float32), np.zeros(8, np.int64), epochs=1, verbose=0,
                  callbacks=[keras.callbacks.TensorBoard(tmp_path / "logs")])


def test_keras_write_images_draws_each_weight_as_grey_images_on_the_histogram_epochs(tmp_path):
    from convolab.tensorboard import weight_images

    kernel = torch.tensor([[[[-2.0, 0.0], [1.0, 2.0]]], [[[0.5, 0.0], [0.0, -0.5]]]])   # (2 filters, 1 channel, 2, 2)
    images = weight_images(kernel)
    assert images.shape == (2, 3, 3, 3)               # one image per filter and channel, a line right and below
    for channel in range(3):                                                # grey: the same in red, green and blue
        assert images[0, channel, :2, :2].tolist() == [[0.0, 0.5], [0.75, 1.0]]   # -max black, 0 grey, +max white
    assert images[0, :, 2, 0].tolist() == pytest.approx([0.85, 0.2, 0.2])  # the separating line is red
    assert weight_images(torch.ones(3, 5)).shape == (1, 3, 6, 4)           # a Dense matrix: one image
    assert weight_images(torch.zeros(4))[0, 0, 0].tolist() == pytest.approx([0.5] * 4 + [0.85])   # no 0 / 0

    rng = np.random.default_rng(0)
    images, labels = rng.random((40, 8, 8, 1)).astype(np.float32), rng.integers(0, 3, 40)
    model = keras.models.Sequential([keras.layers.Conv2D(4, 3, activation="relu", input_shape=(8, 8, 1)),
                                     keras.layers.Flatten(), keras.layers.Dense(3, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(images, labels, epochs=2, verbose=0,
              callbacks=[keras.callbacks.TensorBoard(tmp_path / "logs", histogram_freq=1, write_images=True)])
    written = {tag for tag in read_events(tmp_path / "logs").Tags()["images"] if tag.endswith("/image")}
    assert len(written) == 4                                                # conv kernel and bias, dense kernel and bias
    kernel_tag = next(tag for tag in written if tag.endswith("conv.weight/image"))
    drawn = read_events(tmp_path / "logs").Images(kernel_tag)
    assert [event.step for event in drawn] == [1, 2]
    assert drawn[0].height == 4 and drawn[0].width == 4 * 4     # the 4 filters' 3x3 images and lines, side by side


def test_a_full_disk_under_the_logs_is_one_message_without_a_threads_traceback(tmp_path, capfd):
    from test_failure_policy import small_tmpfs

    from convolab.errors import WriteError

    rng = np.random.default_rng(0)
    images, labels = rng.random((64, 28, 28, 1)).astype(np.float32), rng.integers(0, 10, 64)
    model = keras.models.Sequential([keras.layers.Conv2D(32, (3, 3), input_shape=(28, 28, 1)),
                                     keras.layers.Flatten(), keras.layers.Dense(10, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    with small_tmpfs(tmp_path / "full", "24k") as full:
        with pytest.raises(WriteError, match="cannot write it \\(no space left on the device\\)"):
            model.fit(images, labels, epochs=3, verbose=0,        # weight images: more than 24 KB an epoch
                      callbacks=[keras.callbacks.TensorBoard(full / "logs", histogram_freq=1, write_images=True)])
    err = capfd.readouterr().err
    assert "Traceback" not in err and "Exception in thread" not in err, err
