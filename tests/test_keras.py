"""`from convolab import keras`: the course's lab code runs with only its import changed, and agrees with real Keras 3
(torch backend) on signatures and what comes back; anything outside the surface fails with a clear message."""
from __future__ import annotations

import importlib.util
import inspect
import json
import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from convolab import keras
from convolab.errors import ArgumentError, ConvolabError, DataError, ModelFileError, TrainingError, UnsupportedError
from convolab.keras.arrays import class_indices, stored_images

from idx_fixtures import DEBIAN, needs_debian

# The course's lab (C1W3 "Improving Computer Vision Accuracy using Convolutions", TensorFlow 2 edition), with
# `import tensorflow as tf` -> `from convolab import keras` and `tf.keras.` -> `keras.`; nothing else changed.
# SLICE(...) is the only addition: the test trains on a small slice (the notebook on full data).
COURSE_LAB = '''
from convolab import keras

fmnist = keras.datasets.fashion_mnist
(training_images, training_labels), (test_images, test_labels) = fmnist.load_data()
(training_images, training_labels), (test_images, test_labels) = SLICE((training_images, training_labels), (test_images, test_labels))

training_images = training_images / 255.0
test_images = test_images / 255.0

model = keras.models.Sequential([
    keras.Input(shape=(28, 28, 1)),
    keras.layers.Conv2D(32, (3,3), activation='relu'),
    keras.layers.MaxPooling2D(2, 2),
    keras.layers.Conv2D(32, (3,3), activation='relu'),
    keras.layers.MaxPooling2D(2,2),
    keras.layers.Flatten(),
    keras.layers.Dense(128, activation='relu'),
    keras.layers.Dense(10, activation='softmax')
])
model.summary()
model.compile(optimizer='adam', loss='sparse_categorical_crossentropy', metrics=['accuracy'])

class myCallback(keras.callbacks.Callback):
  def on_epoch_end(self, epoch, logs={}):
    if(logs.get('accuracy') > 0.99):
      print("\\nReached 99% accuracy so cancelling training!")
      self.model.stop_training = True

callbacks = myCallback()
print(f'\\nMODEL TRAINING:')
history = model.fit(training_images, training_labels, epochs=2, callbacks=[callbacks])
print(f'\\nMODEL EVALUATION:')
test_loss = model.evaluate(test_images, test_labels)

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
f, axarr = plt.subplots(3,4)
FIRST_IMAGE=0
SECOND_IMAGE=23
THIRD_IMAGE=28
CONVOLUTION_NUMBER = 1
layer_outputs = [layer.output for layer in model.layers]
activation_model = keras.models.Model(inputs = model.inputs, outputs=layer_outputs)
for x in range(0,4):
  f1 = activation_model.predict(test_images[FIRST_IMAGE].reshape(1, 28, 28, 1), verbose=False)[x]
  axarr[0,x].imshow(f1[0, : , :, CONVOLUTION_NUMBER], cmap='inferno')
  axarr[0,x].grid(False)
  f2 = activation_model.predict(test_images[SECOND_IMAGE].reshape(1, 28, 28, 1), verbose=False)[x]
  axarr[1,x].imshow(f2[0, : , :, CONVOLUTION_NUMBER], cmap='inferno')
  axarr[1,x].grid(False)
  f3 = activation_model.predict(test_images[THIRD_IMAGE].reshape(1, 28, 28, 1), verbose=False)[x]
  axarr[2,x].imshow(f3[0, : , :, CONVOLUTION_NUMBER], cmap='inferno')
  axarr[2,x].grid(False)
predictions = model.predict(test_images[:5])
'''


def slice_of(train_count: int, test_count: int):
    def take(train, test):
        return (train[0][:train_count], train[1][:train_count]), (test[0][:test_count], test[1][:test_count])
    return take


def run_lab(code: str, namespace: dict) -> dict:
    exec(compile(code, "course_lab", "exec"), namespace)
    return namespace


@needs_debian
def test_the_course_lab_runs_with_only_the_import_changed(capsys):
    lab = run_lab(COURSE_LAB, {"SLICE": slice_of(320, 64)})
    printed = capsys.readouterr().out
    assert "Total params: 113,386" in printed                      # the lab's CNN, as Keras prints it
    history, test_loss = lab["history"], lab["test_loss"]
    assert history.epoch == [0, 1] and set(history.history) == {"loss", "accuracy"}
    assert len(test_loss) == 2 and 0 < test_loss[1] <= 1
    maps = lab["activation_model"].predict(lab["test_images"][:1], verbose=False)
    assert [m.shape for m in maps] == [(1, 26, 26, 32), (1, 13, 13, 32), (1, 11, 11, 32), (1, 5, 5, 32), (1, 800),
                                       (1, 128), (1, 10)]
    assert np.allclose(maps[-1], lab["model"].predict(lab["test_images"][:1]), atol=1e-6)   # the softmax included
    assert lab["predictions"].shape == (5, 10) and np.allclose(lab["predictions"].sum(axis=1), 1, atol=1e-5)


KERAS_CHECK = r"""
import inspect, json, os, sys
import numpy as np
import keras
code = sys.stdin.read()
namespace = {"SLICE": lambda train, test: ((train[0][:64], train[1][:64]), (test[0][:32], test[1][:32]))}
exec(compile(code, "course_lab", "exec"), namespace)
maps = namespace["activation_model"].predict(namespace["test_images"][:2], verbose=0)
signatures = {name: list(inspect.signature(getattr(keras.Model, name)).parameters)
              for name in ("fit", "evaluate", "predict", "compile")}
print(json.dumps({"history_keys": sorted(namespace["history"].history), "epoch": namespace["history"].epoch,
                  "evaluate": [type(value).__name__ for value in namespace["test_loss"]],
                  "predict": list(namespace["predictions"].shape), "maps": [list(m.shape) for m in maps],
                  "first_labels": namespace["training_labels"][:64].tolist(),
                  "pixel_sum": float(namespace["training_images"].sum()), "signatures": signatures}))
"""


def keras_home_with_debian_copy(home) -> dict:
    """A Keras cache holding Debian's Fashion-MNIST files, so that real Keras reads the same data offline."""
    folder = home / "datasets" / "fashion-mnist"
    folder.mkdir(parents=True)
    for file in DEBIAN.iterdir():
        (folder / file.name).symlink_to(file)
    return {**os.environ, "KERAS_BACKEND": "torch", "KERAS_HOME": str(home)}


@pytest.mark.slow
@needs_debian
def test_real_keras_3_gives_the_same_answers_in_the_same_shapes_to_the_same_code(tmp_path, monkeypatch):
    if importlib.util.find_spec("keras") is None:
        pytest.skip("keras is not installed (it is in the dev extra)")
    env = keras_home_with_debian_copy(tmp_path)
    code = COURSE_LAB.replace("from convolab import keras\n", "import keras\n")
    done = subprocess.run([sys.executable, "-c", KERAS_CHECK], input=code, capture_output=True, text=True,
                          timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    real = json.loads(done.stdout.strip().splitlines()[-1])
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    ours = run_lab(COURSE_LAB, {"SLICE": slice_of(64, 32)})
    assert ours["training_labels"].tolist() == real["first_labels"]             # the same data, read from the same
    assert float(ours["training_images"].sum()) == pytest.approx(real["pixel_sum"])   # Keras cache
    assert sorted(ours["history"].history) == real["history_keys"]
    assert ours["history"].epoch == real["epoch"]
    assert [type(value).__name__ for value in ours["test_loss"]] == real["evaluate"] == ["float", "float"]
    assert list(ours["predictions"].shape) == real["predict"]
    assert [list(m.shape) for m in ours["activation_model"].predict(ours["test_images"][:2])] == real["maps"]
    for name, parameters in real["signatures"].items():   # Keras's names in Keras's order, for what convolab takes
        ours_names = [p for p in inspect.signature(getattr(keras.models.Sequential, name)).parameters
                      if p not in ("self", "keras_arguments")]
        assert [p for p in parameters if p in ours_names] == ours_names, name


# --- datasets ---------------------------------------------------------------------------------------------------------

@needs_debian
def test_load_data_returns_keras_layout_uint8():
    (x_train, y_train), (x_test, y_test) = keras.datasets.fashion_mnist.load_data()
    assert x_train.shape == (60000, 28, 28) and x_test.shape == (10000, 28, 28)
    assert y_train.shape == (60000,) and x_train.dtype == y_train.dtype == np.uint8
    assert y_train[0] == 9   # the first training image is an ankle boot


def test_load_data_reads_a_keras_cache_mnist_npz(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    (tmp_path / "datasets").mkdir()
    rng = np.random.default_rng(1)
    arrays = {"x_train": rng.integers(0, 256, (60000, 28, 28), dtype=np.uint8), "y_train": np.zeros(60000, np.uint8),
              "x_test": np.ones((10000, 28, 28), np.uint8), "y_test": np.ones(10000, np.uint8)}
    np.savez(tmp_path / "datasets" / "mnist.npz", **arrays)
    (x_train, _), (x_test, y_test) = keras.datasets.mnist.load_data()
    assert np.array_equal(x_train, arrays["x_train"]) and y_test[0] == 1
    np.savez(tmp_path / "datasets" / "mnist.npz", x_train=np.zeros((3, 3)))
    with pytest.raises(DataError, match="mnist.npz"):
        keras.datasets.mnist.load_data()


def test_load_data_without_any_copy_names_keras_own_place_and_the_python_way(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setenv("CONVOLAB_DATA_DIR", str(tmp_path / "empty"))     # one place, empty: never a download
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError) as refused:
        keras.datasets.mnist.load_data()
    assert refused.value.message.startswith("keras.datasets.mnist.load_data(): no usable copy of")
    assert f"{tmp_path / 'keras' / 'datasets' / 'mnist.npz'}: not there (Keras's own copy)" in refused.value.message
    assert f"or put Keras's own copy at {tmp_path / 'keras' / 'datasets' / 'mnist.npz'}" in refused.value.fix


@needs_debian
def test_load_data_reads_a_keras_cache_fashion_mnist_folder(tmp_path, monkeypatch):
    folder = tmp_path / "datasets" / "fashion-mnist"
    folder.mkdir(parents=True)
    for file in DEBIAN.iterdir():
        (folder / file.name).symlink_to(file)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    (x_train, _), _ = keras.datasets.fashion_mnist.load_data()
    assert x_train.shape == (60000, 28, 28)


# --- arrays -----------------------------------------------------------------------------------------------------------

def test_images_divided_by_255_are_stored_as_the_same_uint8_pixels_and_others_keep_their_values():
    pixels = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1)
    stored = stored_images(pixels / 255.0)
    assert stored.dtype.is_floating_point is False and stored.shape == (1, 1, 16, 16)
    assert np.array_equal(stored.numpy()[0, 0], pixels[..., 0][0])
    raw = stored_images(pixels)                  # not normalised: the model must see 0..255, as Keras's would
    assert raw.dtype.is_floating_point and float((raw / 255.0).max()) == 255.0


def test_labels_sparse_one_hot_and_their_errors():
    assert class_indices(np.array([[1], [2]]), 2, 10, False, "y").tolist() == [1, 2]
    assert class_indices(keras.utils.to_categorical([3, 0], 10), 2, 10, True, "y").tolist() == [3, 0]
    with pytest.raises(DataError, match="categorical_crossentropy"):
        class_indices(np.eye(10)[:2], 2, 10, False, "y")
    with pytest.raises(DataError, match="0 to 9"):
        class_indices(np.array([10, 1]), 2, 10, False, "y")
    with pytest.raises(DataError, match="one label per image"):
        class_indices(np.array([1, 1, 1]), 2, 10, False, "y")


# --- the surface and its edges ----------------------------------------------------------------------------------------

def tiny_model(**compile_options):
    model = keras.models.Sequential([keras.layers.Conv2D(4, 3, activation="relu", input_shape=(8, 8, 1)),
                                     keras.layers.MaxPooling2D(2), keras.layers.Flatten(),
                                     keras.layers.Dense(3, activation="softmax")])
    model.compile(**{"optimizer": "adam", "loss": "sparse_categorical_crossentropy", "metrics": ["accuracy"],
                     **compile_options})
    return model


def tiny_data(count=48, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, count)
    images = np.zeros((count, 8, 8, 1), np.float32)
    for index, label in enumerate(labels):        # a learnable pattern: the label's row is bright
        images[index, label * 2:label * 2 + 2, :, 0] = 1.0
    return images, labels


def test_callbacks_see_acc_and_accuracy_batches_and_can_stop(capsys):
    seen = {"epochs": [], "batches": 0, "began": False}

    class Watch(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            seen["began"] = True

        def on_batch_end(self, batch, logs=None):
            seen["batches"] += 1

        def on_epoch_end(self, epoch, logs=None):
            seen["epochs"].append(epoch)
            assert logs["acc"] == logs["accuracy"] and logs["val_acc"] == logs["val_accuracy"]
            if epoch == 1:
                self.model.stop_training = True

    images, labels = tiny_data()
    history = tiny_model().fit(images, labels, epochs=5, batch_size=16, validation_split=0.25, callbacks=[Watch()],
                               verbose=2)
    assert seen == {"epochs": [0, 1], "batches": 6, "began": True}
    assert sorted(history.history) == ["accuracy", "loss", "val_accuracy", "val_loss"]
    assert "Watch set model.stop_training" in capsys.readouterr().out


def test_optimizer_objects_validation_data_early_stopping_and_checkpoints(tmp_path):
    images, labels = tiny_data()
    model = tiny_model(optimizer=keras.optimizers.Adam(learning_rate=0.01))
    checkpoint = keras.callbacks.ModelCheckpoint(str(tmp_path / "m-{epoch:02d}.keras"), monitor="val_accuracy",
                                                 save_best_only=True)
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=1, restore_best_weights=True)
    history = model.fit(images, labels, epochs=3, batch_size=8, validation_data=(images[:12], labels[:12]),
                        callbacks=[checkpoint, stop], verbose=0)
    assert history.history["val_loss"] and checkpoint.saved
    model.save(tmp_path / "final.keras")
    again = keras.models.load_model(tmp_path / "final.keras")
    assert np.allclose(again.predict(images[:4]), model.predict(images[:4]), atol=1e-6)
    loss, accuracy = model.evaluate(images, labels, verbose=0)
    assert 0 <= accuracy <= 1 and loss > 0
    assert keras.optimizers.SGD().learning_rate == 0.01   # Keras's SGD default, not Adam's


@pytest.mark.parametrize("template, word", [
    ("m-{epoch:02d}-{val_loss:.2f}.keras", "{val_loss:.2f}"),       # no validation in this fit
    ("m-{nope}.keras", "{nope}"),
    ("m-{epoch.keras", "not a valid template"),
])
def test_a_checkpoint_name_this_fit_cannot_fill_is_refused_before_training(tmp_path, template, word):
    images, labels = tiny_data()
    model = tiny_model()
    checkpoint = keras.callbacks.ModelCheckpoint(str(tmp_path / template))
    with pytest.raises(ArgumentError, match=re.escape(word)):
        model.fit(images, labels, epochs=1, callbacks=[checkpoint], verbose=0)
    assert list(tmp_path.iterdir()) == [] and not checkpoint.saved


@pytest.mark.parametrize("argument, value", [("epochs", 1.5), ("epochs", 0), ("batch_size", 0), ("batch_size", "a"),
                                             ("batch_size", True)])
def test_fit_refuses_a_count_it_would_otherwise_round_or_replace(argument, value):
    images, labels = tiny_data()
    with pytest.raises(ArgumentError, match=f"fit: {argument}="):
        tiny_model().fit(images, labels, verbose=0, **{"epochs": 1, argument: value})


@pytest.mark.parametrize("method", ["evaluate", "predict"])
@pytest.mark.parametrize("value", [0, -1, 2.5])
def test_evaluate_and_predict_refuse_a_batch_size_fit_refuses(method, value):
    # batch_size=0 was taken as "the default" here while fit refused it
    images, labels = tiny_data()
    arrays = (images, labels) if method == "evaluate" else (images,)
    with pytest.raises(ArgumentError, match=f"{method}: batch_size="):
        getattr(tiny_model(), method)(*arrays, batch_size=value, verbose=0)


@pytest.mark.parametrize("value", ["0.2", True, [0.2]])
def test_a_validation_split_that_is_no_number_is_named(value):
    images, labels = tiny_data()
    with pytest.raises(ArgumentError, match="fit: validation_split="):
        tiny_model().fit(images, labels, epochs=1, verbose=0, validation_split=value)


def test_empty_validation_data_is_refused_instead_of_giving_nan():
    images, labels = tiny_data()
    with pytest.raises(ArgumentError, match="validation_data holds no images"):
        tiny_model().fit(images, labels, epochs=1, verbose=0, validation_data=(images[:0], labels[:0]))


def test_metrics_as_a_bare_name_is_refused_as_keras_does():
    with pytest.raises(ArgumentError, match=r"expected metrics to be a list, received 'accuracy'") as refused:
        tiny_model(metrics="accuracy")
    assert refused.value.fix == "metrics=['accuracy']"


def test_a_softmax_followed_by_dropout_outputs_probabilities_for_the_loss_check():
    # As Keras (and ConvNet.output_activation): Dropout computes nothing at inference, the output is the softmax's.
    def ending_in_dropout(**compile_options):
        model = keras.models.Sequential([keras.Input(shape=(8, 8, 1)), keras.layers.Flatten(),
                                         keras.layers.Dense(3, activation="softmax"), keras.layers.Dropout(0.2)])
        model.compile(optimizer="adam", **compile_options)
        return model

    images, labels = tiny_data()
    history = ending_in_dropout(loss="sparse_categorical_crossentropy").fit(images, labels, epochs=1, verbose=0)
    assert len(history.history["loss"]) == 1
    with pytest.raises(TrainingError, match="outputs probabilities .* from_logits=True"):
        ending_in_dropout(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)).fit(
            images, labels, epochs=1, verbose=0)


def test_an_optimizer_learning_rate_that_is_no_number_is_named():
    for rate in ("a", None, -1):
        with pytest.raises(ArgumentError, match="expected learning_rate to be a positive number"):
            keras.optimizers.Adam(learning_rate=rate)
    assert keras.optimizers.Adam(learning_rate=np.float32(0.5)).learning_rate == 0.5


def test_callbacks_that_are_not_a_list_are_named():
    images, labels = tiny_data()
    for callbacks in (print, keras.callbacks.EarlyStopping()):
        with pytest.raises(ArgumentError, match="fit: callbacks must be a list"):
            tiny_model().fit(images, labels, epochs=1, verbose=0, callbacks=callbacks)


def test_get_layer_beyond_the_model_names_its_layers():
    from convolab.errors import SpecError

    model = tiny_model()
    assert model.get_layer(index=-1).name == model.layers[-1].name
    for index in (99, -99, "0"):
        with pytest.raises(SpecError, match="the model has layers 0 to 3"):
            model.get_layer(index=index)


def test_categorical_crossentropy_with_one_hot_labels():
    images, labels = tiny_data()
    model = tiny_model(loss="categorical_crossentropy")
    model.fit(images, keras.utils.to_categorical(labels, 3), epochs=1, verbose=0)
    assert model.predict(images[:2]).shape == (2, 3)


@pytest.mark.parametrize("call, error, words", [
    (lambda: keras.layers.LSTM(8), UnsupportedError, ["keras.layers.LSTM", "Conv2D"]),
    (lambda: keras.optimizers.Nadam(), UnsupportedError, ["Nadam", "Adam"]),
    (lambda: keras.applications, UnsupportedError, ["keras.applications", "layers"]),
    (lambda: keras.utils.image_dataset_from_directory, UnsupportedError,          # an image folder: convolab's own way
     ["image_dataset_from_directory", "convolab.data.load_dataset('photos/')", "--data photos/"]),
    (lambda: keras.preprocessing, UnsupportedError, ["keras.preprocessing", "model.predict('x.png')"]),
    (lambda: tiny_model().train_on_batch, UnsupportedError, ["train_on_batch", "fit"]),
    (lambda: tiny_model().fit(*tiny_data(), epoch=5), ArgumentError, ["epoch", "did you mean 'epochs'"]),
    (lambda: tiny_model().fit(*tiny_data(), class_weight={0: 2}), ArgumentError, ["class_weight", "not supported"]),
    (lambda: tiny_model(loss="mse"), UnsupportedError, ["'mse'", "sparse_categorical_crossentropy"]),
    (lambda: tiny_model(metrics=["mae"]), UnsupportedError, ["'mae'", "accuracy"]),
    (lambda: tiny_model(loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)).fit(*tiny_data()),
     TrainingError, ["from_logits"]),
    (lambda: keras.optimizers.Adam(learning_rat=0.1), ArgumentError, ["learning_rate"]),
    (lambda: keras.models.Sequential([keras.layers.Dense(3)]).fit(*tiny_data()), TrainingError, ["compile"]),
    (lambda: tiny_model().fit(np.zeros((4, 9, 9, 1)), np.zeros(4)), DataError, ["(8, 8, 1)", "(9, 9, 1)"]),
    (lambda: keras.models.Model(inputs=keras.Input(shape=(8, 8, 1)), outputs=None), UnsupportedError,
     ["functional API"]),
])
def test_anything_outside_the_surface_names_itself_and_what_is_supported(call, error, words):
    with pytest.raises(error) as raised:
        call()
    assert isinstance(raised.value, ConvolabError)
    for word in words:
        assert word in str(raised.value)


def test_the_native_fit_points_array_users_to_the_keras_api():
    from convolab import Conv2D, Dense, Flatten, Sequential
    with pytest.raises(ArgumentError, match="from convolab import keras"):
        Sequential([Conv2D(4, 3, input_shape=(8, 8, 1)), Flatten(), Dense(3)]).fit(*tiny_data(), epochs=1)


def test_every_convolab_layer_kind_is_a_keras_layer():
    from convolab.spec import LAYER_TYPES
    for name, kind in LAYER_TYPES.items():
        assert getattr(keras.layers, name) is kind
    from convolab.keras.layers import Conv2D   # `from keras.layers import ...` works too
    assert Conv2D is LAYER_TYPES["Conv2D"]


# --- model.save and ModelCheckpoint names; History's keys -------------------------------------------------------------

@pytest.mark.parametrize("name", ["xmodel", "config.json", "model.pt", "model.h5"])
def test_model_save_refuses_a_name_that_is_not_keras_and_writes_nothing(tmp_path, name):
    """Keras 3 refuses these names too; convolab once wrote its own torch file there (over a run's config.json)."""
    images, labels = tiny_data()
    model = tiny_model()
    model.fit(images, labels, epochs=1, verbose=0)
    (tmp_path / "config.json").write_text('{"keep": true}')
    with pytest.raises(ModelFileError, match=re.escape(name)) as refused:
        model.save(tmp_path / name)
    assert ".keras" in refused.value.fix and refused.value.fix.endswith(".keras')")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["config.json"]
    assert (tmp_path / "config.json").read_text() == '{"keep": true}'
    model.save(tmp_path / "model.keras")
    assert np.allclose(keras.models.load_model(tmp_path / "model.keras").predict(images[:4]), model.predict(images[:4]),
                       atol=1e-6)


@pytest.mark.parametrize("arguments, words", [
    ({"filepath": "w.weights.h5", "save_weights_only": True}, "does not support save_weights_only"),
    ({"filepath": "m.h5"}, "not legacy HDF5"),
    ({"filepath": "m-{epoch:02d}"}, "must end in .keras"),
])
def test_a_checkpoint_convolab_cannot_write_is_refused_before_training(tmp_path, arguments, words):
    images, labels = tiny_data()
    model = tiny_model()
    trained = []
    watch = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: trained.append(epoch))
    with pytest.raises(ConvolabError, match=re.escape(words)) as refused:
        checkpoint = keras.callbacks.ModelCheckpoint(str(tmp_path / arguments.pop("filepath")), **arguments)
        model.fit(images, labels, epochs=1, callbacks=[checkpoint, watch], verbose=0)
    assert "ModelCheckpoint" in str(refused.value) and ".keras" in refused.value.fix
    assert trained == [] and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("metrics", [["acc"], ["accuracy"], [], ["acc", "accuracy"]])
@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")   # inside real Keras's torch backend
def test_history_keys_are_the_compiled_metric_names_as_in_real_keras(metrics):
    from keras_reference import keras as real_keras    # skips without Keras; sets KERAS_BACKEND=torch

    images, labels = tiny_data(count=16)
    real = real_keras.Sequential([real_keras.Input((8, 8, 1)), real_keras.layers.Flatten(),
                                  real_keras.layers.Dense(3, activation="softmax")])
    real.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=metrics)
    expected = real.fit(images, labels, epochs=1, validation_split=0.25, verbose=0).history
    ours = tiny_model(metrics=metrics).fit(images, labels, epochs=1, validation_split=0.25, verbose=0).history
    assert sorted(ours) == sorted(expected)
    if "acc" in metrics:
        assert 0 <= ours["acc"][0] <= 1 and 0 <= ours["val_acc"][0] <= 1


def test_early_stopping_on_val_loss_without_validation_names_the_python_argument():
    images, labels = tiny_data()
    with pytest.raises(TrainingError, match="val_loss") as refused:
        tiny_model().fit(images, labels, epochs=1, callbacks=[keras.callbacks.EarlyStopping("val_loss")], verbose=0)
    assert "validation_split=0.1 in Python" in refused.value.fix


@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")   # inside real Keras's torch backend
def test_a_layers_get_weights_are_what_real_keras_reads_from_the_saved_model(tmp_path):
    from keras_reference import keras as real_keras    # skips without Keras; sets KERAS_BACKEND=torch

    model = tiny_model()
    before = model.layers[0].get_weights()              # built on its input shape, as Keras builds it
    assert [weights.shape for weights in before] == [(3, 3, 1, 4), (4,)]
    model.fit(*tiny_data(), epochs=1, verbose=0)
    model.save(tmp_path / "tiny.keras")
    real = real_keras.models.load_model(tmp_path / "tiny.keras")
    for ours, theirs in zip(model.layers, real.layers):
        assert [weights.shape for weights in ours.get_weights()] == [weights.shape for weights in theirs.get_weights()]
        assert all(np.array_equal(a, b) for a, b in zip(ours.get_weights(), theirs.get_weights()))
    assert not np.array_equal(model.layers[0].get_weights()[0], before[0])       # the trained ones, not the first
    with pytest.raises(TrainingError, match="not built yet"):
        keras.models.Sequential([keras.layers.Conv2D(4, 3)]).layers[0].get_weights()
    with pytest.raises(UnsupportedError) as refused:
        model.layers[0].set_weights(before)
    assert "get_weights" in refused.value.fix and "grammar" not in refused.value.fix   # no internals offered


def test_pop_removes_the_last_layer_before_the_model_is_built():
    # pop was listed among the supported methods but answered "not part of convolab's Keras API"
    model = keras.models.Sequential([keras.Input(shape=(8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(4),
                                     keras.layers.Dense(3, activation="softmax")])
    model.pop()
    assert [layer.name for layer in model.layers] == ["flatten", "dense"]
    model.add(keras.layers.Dense(3, activation="softmax"))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(*tiny_data(), epochs=1, verbose=0)
    with pytest.raises(TrainingError, match="already built"):
        model.pop()


def test_predict_and_evaluate_build_a_model_without_input_shape_on_the_images_given():
    # built on 28×28×1 instead, the first 8×8 images ended in torch's "mat1 and mat2 shapes cannot be multiplied"
    images, labels = tiny_data()
    for method, arrays in (("predict", (images,)), ("evaluate", (images, labels))):
        model = keras.models.Sequential([keras.layers.Flatten(), keras.layers.Dense(3, activation="softmax")])
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        getattr(model, method)(*arrays, verbose=0)
        assert model.spec.input_shape == (8, 8, 1)


@pytest.mark.parametrize("labels, classes", [([0, 6], 5), ([0, -1], None), ([0, 1.5], None)])
def test_to_categorical_refuses_what_numpy_would_misplace(labels, classes):
    with pytest.raises(DataError, match="to_categorical: expected class numbers"):
        keras.utils.to_categorical(np.array(labels), classes)


def test_load_model_of_a_file_that_is_no_model_says_so(tmp_path):
    text = tmp_path / "model.yaml"
    text.write_text("layers: []\n")
    with pytest.raises(ModelFileError, match="not a model file"):
        keras.models.load_model(str(text))


@pytest.mark.parametrize("value", ["False", "yes", 1, None])
def test_from_logits_that_is_no_bool_is_refused(value):
    # the string "False" is true: a softmax model would have trained as if it had none
    with pytest.raises(ArgumentError, match="expected from_logits to be True or False"):
        keras.losses.SparseCategoricalCrossentropy(from_logits=value)
    assert keras.losses.CategoricalCrossentropy(from_logits=np.bool_(True)).from_logits is True


def test_an_optimizer_or_loss_given_without_calling_it_is_named():
    with pytest.raises(ArgumentError, match=r"optimizer=keras.optimizers.Adam, the optimizer itself") as refused:
        tiny_model(optimizer=keras.optimizers.Adam)
    assert "keras.optimizers.Adam()" in refused.value.fix and "optimizer='adam'" in refused.value.fix
    with pytest.raises(ArgumentError, match=r"loss=keras.losses.SparseCategoricalCrossentropy, the loss itself"):
        tiny_model(loss=keras.losses.SparseCategoricalCrossentropy)


# --- keras.activations ------------------------------------------------------------------------------------------------

def test_activation_objects_build_the_same_model_as_their_names():
    by_object = keras.models.Sequential([keras.Input(shape=(28, 28, 1)),
                                         keras.layers.Conv2D(8, (3, 3), activation=keras.activations.relu),
                                         keras.layers.Flatten(), keras.layers.Activation(keras.activations.tanh),
                                         keras.layers.Dense(10, activation=keras.activations.softmax)])
    by_name = keras.models.Sequential([keras.Input(shape=(28, 28, 1)),
                                       keras.layers.Conv2D(8, (3, 3), activation="relu"), keras.layers.Flatten(),
                                       keras.layers.Activation("tanh"), keras.layers.Dense(10, activation="softmax")])
    assert [getattr(layer, "activation", None) for layer in by_object.layers] == ["relu", None, "tanh", "softmax"]
    assert by_object.spec.layers == by_name.spec.layers
    assert keras.activations.get("swish") is keras.activations.silu and keras.activations.get(None).__name__ == "linear"


def test_a_function_of_another_library_is_refused_with_the_name_to_give():
    import torch

    with pytest.raises(ConvolabError, match="function of another library") as caught:
        keras.layers.Dense(128, activation=torch.relu)       # what tf.nn.relu is to the course's code
    assert "activation='relu'" in caught.value.fix
    with pytest.raises(ConvolabError) as caught:
        keras.layers.Dense(128, activation=lambda x: x)
    assert "by name" in caught.value.fix
    with pytest.raises(UnsupportedError, match="keras.activations.rleu") as caught:
        keras.activations.rleu
    assert "relu" in caught.value.fix


def test_activation_functions_compute_what_real_keras_computes():
    import torch

    from keras_reference import keras as real_keras    # skips without Keras; sets KERAS_BACKEND=torch

    values = np.linspace(-4, 4, 24, dtype=np.float32).reshape(2, 3, 4)
    for name in keras.activations.__dir__():
        if name == "get":
            continue
        expected = torch.as_tensor(getattr(real_keras.activations, name)(values)).detach().numpy()  # torch backend
        np.testing.assert_allclose(getattr(keras.activations, name)(values), expected, rtol=1e-5, atol=1e-6,
                                   err_msg=name)
