"""keras.models: Sequential with compile / fit / evaluate / predict on NumPy arrays, the activation Model of the
course's visualization cell, and save / load_model.

    model = keras.models.Sequential([keras.Input(shape=(28, 28, 1)), keras.layers.Conv2D(32, (3, 3), activation="relu"),
                                     ...])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(training_images, training_labels, epochs=5)      # a History
    loss, accuracy = model.evaluate(test_images, test_labels)
    activation_model = keras.models.Model(inputs=model.input, outputs=[layer.output for layer in model.layers])
    maps = activation_model.predict(test_images[0:1])[0]                 # (1, 26, 26, 32)

A thin layer over the native API: the layers are convolab's specs (api.Sequential holds them), the network is
model.build_model's, fit is train.fit (the same loop as `convolab train`, the fast engine included), evaluate is
evaluate.evaluate_model. What differs is only Keras's calling convention: arrays in, Keras's return values out.
"""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import torch

from convolab import api
from convolab.activations import capture
from convolab.data import split_validation
from convolab.errors import ArgumentError, ModelFileError, RunError, SpecError, TrainingError
from convolab.evaluate import evaluate_model, predict_logits
from convolab.export import export_network
from convolab.keras import losses as keras_losses, optimizers as keras_optimizers
from convolab.keras.arrays import class_indices, images_nhwc, model_floats, stored_images
from convolab.keras.callbacks import Callback, History, KerasCallbacks, wants_batches
from convolab.keras.layers import Input
from convolab.keras.surface import check_arguments, check_keras_name, unsupported
from convolab.keras_files import is_keras_file, read_keras_file
from convolab.layers.arguments import short
from convolab.model import build_model
from convolab.runs import read_checkpoint
from convolab.shapes import analyze, keras_names, output_softmax_position
from convolab.spec import DEFAULT_INPUT_SHAPE, DEFAULT_NUM_CLASSES, LAYER_TYPES, Dense, ModelSpec, spec_from_dict
from convolab.train import (Progress, TrainConfig, choose_device, fit as train_fit, make_optimizer, make_progress,
                            seed_everything)

METRICS = ("accuracy", "acc", "sparse_categorical_accuracy", "categorical_accuracy")
MODEL_KIND = "keras-model"   # a checkpoint file holding a whole model: spec and weights
SEQUENTIAL_METHODS = ("add", "compile", "count_params", "evaluate", "fit", "get_layer", "input", "inputs", "layers",
                      "name", "output", "outputs", "pop", "predict", "save", "stop_training", "summary")


class SymbolicTensor:
    """A layer's output (or the model's input) as a placeholder: what keras.models.Model(inputs, outputs) wires."""

    def __init__(self, model: "Sequential", index: int):
        self.model, self.index = model, index   # index -1: the model's input

    @property
    def shape(self) -> tuple:
        if self.index < 0:
            return (None, *self.model.input_image_shape())
        return (None, *self.model.reports()[self.index].output_shape)

    def __repr__(self) -> str:
        where = "input" if self.index < 0 else f"output of layer {self.index}"
        return f"<KerasTensor shape={self.shape}, {where} of {self.model.name!r}>"


class LayerView:
    """One entry of model.layers: the convolab layer (its arguments read through), Keras's name, and `.output`."""

    def __init__(self, model: "Sequential", index: int):
        self._model, self._index = model, index

    @property
    def layer(self):
        return self._model.spec.layers[self._index]

    @property
    def name(self) -> str:
        return keras_names(self._model.spec.layers)[self._index]

    @property
    def output(self) -> SymbolicTensor:
        return SymbolicTensor(self._model, self._index)

    @property
    def input(self) -> SymbolicTensor:
        return SymbolicTensor(self._model, self._index - 1)

    def count_params(self) -> int:
        return self._model.reports()[self._index].params

    def get_weights(self) -> list[np.ndarray]:
        """The layer's weights as Keras lays them out and returns them (a Conv2D's kernel (h, w, in, out), then its
        bias): what pictures of the learned filters read. The model is built on its input shape if need be, as
        Keras builds it when that shape is given; without one, TrainingError."""
        model = self._model
        if model.network is None:
            if model.spec.input_shape is None:
                raise TrainingError(f"{self.name}.get_weights(): the model is not built yet, so its layers have no "
                                    "weights", fix="start with keras.Input((28, 28, 1)) (or input_shape= on the first "
                                                   "layer), or fit the model first")
            model._build(tuple(model.spec.input_shape), None)
        block = model.network.blocks[self._index]
        return [np.array(weights, copy=True) for weights in self.layer.keras_weights(block)]

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        layer = self._model.spec.layers[self._index]
        if hasattr(layer, name):
            return getattr(layer, name)
        raise unsupported(f"{type(layer).__name__}.{name}", ["name", "output", "input", "count_params", "get_weights"]
                          + [field.name for field in dataclasses.fields(layer)])   # its arguments, no class constants

    def __repr__(self) -> str:
        return f"<{type(self.layer).__name__} name={self.name}>"


class Sequential(api.Sequential):
    """Keras's Sequential: layers (keras.Input first, or input_shape= on the first layer), then compile and fit."""

    def __init__(self, layers=None, name: str | None = None, **keras_arguments):
        check_arguments("keras.models.Sequential", keras_arguments, ["layers", "name"], ("trainable",))
        self._input: Input | None = None
        self.stop_training = False
        self.network = None            # the torch ConvNet, built on first need (its weights live on)
        self.compiled: dict | None = None
        self._optimizer = None
        self._generator = None
        self._built_shape = None
        super().__init__(layers, name)

    # --- layers ------------------------------------------------------------------------------------------------

    def add(self, layer) -> None:
        if isinstance(layer, Input):
            if self._layers or self._input is not None:
                raise SpecError("keras.Input must come first, and once", fix="put keras.Input(shape=...) first")
            self._input = layer
            return
        if type(layer).__name__ not in LAYER_TYPES:
            raise unsupported(f"adding {type(layer).__name__}", list(LAYER_TYPES) + ["Input"],
                              "a Sequential takes keras.layers.* objects")
        if self.network is not None:
            raise TrainingError("this model is already built; adding a layer would discard its weights",
                                fix="make a new keras.models.Sequential with all its layers")
        ModelSpec(tuple(self._layers) + (layer,), self._given_shape(), self.name)   # fails here, where the bad layer is
        self._layers.append(layer)

    def pop(self) -> None:
        """Keras's pop: remove the last layer (before the model is built: its weights would no longer fit)."""
        if self.network is not None:
            raise TrainingError("this model is already built; removing a layer would discard its weights",
                                fix="make a new keras.models.Sequential with the layers you want")
        if not self._layers:
            raise SpecError("pop: the model has no layers to remove", fix="add layers first")
        self._layers.pop()

    def _given_shape(self):
        return self._input.image_shape if self._input is not None else None

    @property
    def spec(self) -> ModelSpec:
        return ModelSpec(tuple(self._layers), self._built_shape or self._given_shape(), self.name or "sequential")

    def input_image_shape(self) -> tuple[int, int, int]:
        return self.spec.input_shape or DEFAULT_INPUT_SHAPE

    def reports(self):
        """shapes.analyze's rows for this model (the summary's numbers)."""
        return analyze(self.spec, self.input_image_shape(), self._num_classes())

    def _num_classes(self) -> int | None:
        last_dense = [layer for layer in self._layers if isinstance(layer, Dense)]
        return DEFAULT_NUM_CLASSES if last_dense and last_dense[-1].units is None else None

    @property
    def layers(self) -> list[LayerView]:
        return [LayerView(self, index) for index in range(len(self._layers))]

    def get_layer(self, name: str | None = None, index: int | None = None) -> LayerView:
        names = keras_names(self.spec.layers)
        if index is not None:
            if isinstance(index, bool) or not isinstance(index, int) or not -len(names) <= index < len(names):
                raise SpecError(f"get_layer(index={index!r}): the model has layers 0 to {len(names) - 1}",
                                fix=f"an index between 0 and {len(names) - 1}, or get_layer(name) with one of "
                                    f"{', '.join(names)}")
            return self.layers[index]
        if name not in names:
            raise SpecError(f"no layer named {name!r}; the layers are {', '.join(names)}")
        return self.layers[names.index(name)]

    @property
    def input(self) -> SymbolicTensor:
        return SymbolicTensor(self, -1)

    @property
    def inputs(self) -> list[SymbolicTensor]:
        return [self.input]

    @property
    def output(self) -> SymbolicTensor:
        return SymbolicTensor(self, len(self._layers) - 1)

    @property
    def outputs(self) -> list[SymbolicTensor]:
        return [self.output]

    def count_params(self) -> int:
        return sum(report.params for report in self.reports())

    def summary(self, print_fn=None, **keras_arguments) -> None:
        """The explained summary: Keras's table with each row's arithmetic (an HTML table in a notebook)."""
        check_arguments("summary", keras_arguments, ["print_fn"],
                        ("line_length", "positions", "expand_nested", "show_trainable", "layer_range"))
        return super().summary(print_fn=print_fn, input_shape=self.input_image_shape(),
                               num_classes=self._num_classes())

    # --- compile -----------------------------------------------------------------------------------------------

    def compile(self, optimizer="rmsprop", loss=None, metrics=None, **keras_arguments) -> None:
        """Keras's compile: optimizer (a name or keras.optimizers.Adam(learning_rate=...)), a cross-entropy loss,
        metrics=["accuracy"]."""
        check_arguments("compile", keras_arguments, ["optimizer", "loss", "metrics"],
                        ("loss_weights", "weighted_metrics", "run_eagerly", "steps_per_execution", "jit_compile",
                         "auto_scale_loss"))
        if loss is None:
            raise ArgumentError("compile: expected a loss, received none",
                                fix="loss='sparse_categorical_crossentropy' (class numbers as labels)")
        if metrics is not None and not isinstance(metrics, (list, tuple)):   # Keras refuses a bare name too
            raise ArgumentError(f"compile: expected metrics to be a list, received {short(metrics)} "
                                f"({type(metrics).__name__})",
                                fix=f"metrics=[{short(metrics) if isinstance(metrics, str) else repr('accuracy')}]")
        metrics = list(metrics or [])
        for metric in metrics:
            if metric not in METRICS:
                raise unsupported(f"metric {metric!r}", METRICS, "convolab measures loss and accuracy")
        self.compiled = {"optimizer": keras_optimizers.get(optimizer), "loss": keras_losses.get(loss),
                         "metrics": metrics}
        self._optimizer = None   # Keras: a new compile starts a new optimizer state

    def _require_compiled(self, what: str) -> dict:
        if self.compiled is None:
            raise TrainingError(f"{what}: the model is not compiled",
                                fix="call model.compile(optimizer='adam', loss='sparse_categorical_crossentropy', "
                                    "metrics=['accuracy']) first")
        return self.compiled

    def _check_loss_matches_output(self, loss) -> None:
        """convolab computes cross-entropy from logits; the model's output must be what the loss reads. As in Keras,
        that output is the last layer's, and a softmax followed only by Dropout (nothing at inference) still gives
        probabilities."""
        outputs_probabilities = output_softmax_position(self._layers) is not None
        activation = "softmax" if outputs_probabilities else self._layers[-1].activation_name
        if activation == "softmax" and loss.from_logits:
            raise TrainingError("the model outputs probabilities (it ends with a softmax) but the loss says "
                                "from_logits=True",
                                fix="drop from_logits=True (or the softmax: Dense(10) with from_logits=True)")
        if activation != "softmax" and not loss.from_logits:
            raise TrainingError(f"the last layer's activation is {activation!r}, so its outputs are not "
                                f"probabilities, but the loss expects probabilities",
                                fix="end with Dense(10, activation='softmax'), or use "
                                    "keras.losses.SparseCategoricalCrossentropy(from_logits=True)")

    # --- the network -------------------------------------------------------------------------------------------

    def _build(self, image_shape: tuple[int, int, int], num_classes: int | None) -> None:
        """Build the ConvNet once, on the first data's shape; seeded, so the same code gives the same weights."""
        if self.network is not None:
            return
        self._built_shape = tuple(image_shape) if self.spec.input_shape is None else None
        self._generator = seed_everything(0)
        self.network = build_model(self.spec, image_shape, num_classes)

    def _device(self) -> torch.device:
        if self.network is None:
            return torch.device("cpu")
        for parameter in self.network.parameters():
            return parameter.device
        return torch.device("cpu")

    def _images(self, x, what: str) -> np.ndarray:
        return images_nhwc(x, what, self.spec.input_shape)   # None until known: the first data then decides

    def _labels(self, y, count: int, what: str) -> torch.Tensor:
        loss = self._require_compiled(what)["loss"]
        units = [layer.units for layer in self._layers if isinstance(layer, Dense)]
        return class_indices(y, count, units[-1] if units else None, loss.categorical, what)

    # --- fit, evaluate, predict --------------------------------------------------------------------------------

    def fit(self, x=None, y=None, batch_size: int | None = None, epochs: int = 1, verbose="auto", callbacks=None,
            validation_split: float = 0.0, validation_data=None, shuffle: bool = True, **keras_arguments) -> History:
        """Keras's fit on NumPy arrays: returns a History (history.history["accuracy"], ["val_loss"], ...)."""
        check_arguments("fit", keras_arguments,
                        ["x", "y", "batch_size", "epochs", "verbose", "callbacks", "validation_split",
                         "validation_data", "shuffle"],
                        ("class_weight", "sample_weight", "initial_epoch", "steps_per_epoch", "validation_steps",
                         "validation_batch_size", "validation_freq"))
        if isinstance(x, (str, Path)):
            raise ArgumentError(f"fit: expected arrays (x, y), received the dataset name {str(x)!r}",
                                fix="keras.datasets.fashion_mnist.load_data() gives the arrays; or use the native "
                                    "API: convolab.Sequential([...]).fit('fashion-mnist')")
        if not shuffle:
            raise ArgumentError("fit: shuffle=False is not supported; convolab shuffles every epoch",
                                fix="leave shuffle out")
        compiled = self._require_compiled("fit")
        self._check_loss_matches_output(compiled["loss"])
        epochs = whole_number("fit", "epochs", epochs, 1)
        batch_size = whole_number("fit", "batch_size", batch_size, 32)
        validation_split = 0.0 if validation_split is None else validation_split   # Keras reads None as none
        if isinstance(validation_split, bool) or not isinstance(validation_split, (int, float, np.floating)):
            raise ArgumentError(f"fit: validation_split={short(validation_split)}; expected a fraction in [0, 1)",
                                fix="e.g. validation_split=0.1")
        images = self._images(x, "fit x")
        labels = self._labels(y, len(images), "fit y")
        self._build(images.shape[1:], self._num_classes())
        stored = stored_images(images)
        train_data, validation = (stored, labels), None
        if validation_data is not None:
            if validation_split:
                raise ArgumentError("fit: give validation_split or validation_data, not both")
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                raise ArgumentError("fit: expected validation_data=(x_val, y_val)",
                                    fix="validation_data=(test_images, test_labels)")
            validation_images = self._images(validation_data[0], "validation_data x")
            if len(validation_images) == 0:   # its loss and accuracy would be nan every epoch
                raise ArgumentError("fit: validation_data holds no images", fix="validation_data=(test_images, "
                                    "test_labels), or leave validation_data out")
            validation = (stored_images(validation_images),
                          self._labels(validation_data[1], len(validation_images), "validation_data y"))
        elif validation_split:
            train_data, validation = split_validation(stored, labels, validation_split)   # Keras's: the last part
        optimizer = compiled["optimizer"]
        config = TrainConfig(epochs=int(epochs), batch_size=int(batch_size), optimizer=optimizer.name,
                             learning_rate=optimizer.learning_rate, weight_decay=optimizer.weight_decay)
        device = choose_device(config.device)
        self.network.to(device)
        if self._optimizer is None:
            self._optimizer = make_optimizer(config.optimizer, self.network.parameters(), config.learning_rate,
                                             device, config.weight_decay)
        keras_callbacks, native_callbacks = [], []
        if callbacks is not None and not isinstance(callbacks, (list, tuple)):   # Keras takes a list; one is a slip
            raise ArgumentError(f"fit: callbacks must be a list of keras.callbacks.Callback objects, received "
                                f"{type(callbacks).__name__}", fix="callbacks=[myCallback()]")
        for callback in list(callbacks or []):
            if isinstance(callback, Callback):
                keras_callbacks.append(callback)
            elif hasattr(callback, "on_epoch_end") and hasattr(callback, "check"):
                if hasattr(callback, "model"):
                    callback.model = self   # ModelCheckpoint saves this model
                native_callbacks.append(callback)
            else:
                raise ArgumentError(f"fit: callbacks must be keras.callbacks.Callback objects, received "
                                    f"{type(callback).__name__}", fix="subclass keras.callbacks.Callback")
        history = History(compiled["metrics"])
        steps = math.ceil(len(train_data[0]) / config.batch_size)
        bridge = KerasCallbacks(keras_callbacks + [history], self,
                                {"epochs": config.epochs, "steps": steps, "verbose": verbose})
        history.model = self
        progress = _CallbackProgress(make_progress(_progress_mode(verbose)), bridge)
        train_fit(self.network, train_data, config, validation_data=validation, device=device,
                  optimizer=self._optimizer, callbacks=native_callbacks + [bridge], progress=progress,
                  generator=self._generator)
        return history

    def _trained_network(self, image_shape=None):
        """The network (built untrained on first use, as a Keras model predicts before fit: on the images' shape when
        the model does not say its own)."""
        if self.network is None:
            self._build(tuple(image_shape or self.input_image_shape()), self._num_classes())
        return self.network

    def evaluate(self, x=None, y=None, batch_size: int | None = None, verbose="auto", return_dict: bool = False,
                 **keras_arguments):
        """Keras's evaluate: [loss, accuracy] (loss alone when compile had no metrics; a dict with return_dict)."""
        check_arguments("evaluate", keras_arguments, ["x", "y", "batch_size", "verbose", "return_dict"],
                        ("sample_weight", "steps", "callbacks"))
        compiled = self._require_compiled("evaluate")
        images = self._images(x, "evaluate x")
        labels = self._labels(y, len(images), "evaluate y")
        network = self._trained_network(images.shape[1:])
        evaluation = evaluate_model(network, stored_images(images), labels,
                                    [str(index) for index in range(network.num_classes)], device=self._device(),
                                    batch_size=whole_number("evaluate", "batch_size", batch_size, 256))
        if verbose not in (0, False):
            print(f"evaluate: loss {evaluation.loss:.4f}  accuracy {evaluation.accuracy:.4f}  "
                  f"({evaluation.count} images)")
        self.last_evaluation = evaluation
        if return_dict:
            return {"loss": evaluation.loss, **({"accuracy": evaluation.accuracy} if compiled["metrics"] else {})}
        return [evaluation.loss, evaluation.accuracy] if compiled["metrics"] else evaluation.loss

    def predict(self, x, batch_size: int | None = None, verbose="auto", **keras_arguments) -> np.ndarray:
        """Keras's predict: the last layer's outputs, (N, classes) probabilities for a softmax model."""
        check_arguments("predict", keras_arguments, ["x", "batch_size", "verbose"], ("steps", "callbacks"))
        images = self._images(x, "predict x")
        network = self._trained_network(images.shape[1:])
        logits = predict_logits(network, stored_images(images),
                                batch_size=whole_number("predict", "batch_size", batch_size, 256),
                                device=self._device())
        outputs = logits.softmax(dim=1) if network.output_activation == "softmax" else logits
        return outputs.numpy()

    def save(self, filepath, overwrite: bool = True, **keras_arguments) -> None:
        """The model with its weights as a Keras 3 .keras archive (what the course's model.save writes: Keras,
        convolab's commands and keras.models.load_model read it). Like Keras 3, any other name is refused before
        anything is written (so a typo cannot overwrite a run's config.json, say)."""
        check_arguments("save", keras_arguments, ["filepath", "overwrite"], ("zipped", "save_format", "include_optimizer"))
        check_keras_name("model.save", filepath)
        if not overwrite and Path(filepath).exists():
            raise RunError(f"{filepath} exists and overwrite=False", fix="choose another path")
        export_network(self._trained_network(), filepath, "keras")

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        raise unsupported(f"model.{name}", SEQUENTIAL_METHODS)

    def __repr__(self) -> str:
        return f"<keras.models.Sequential {self.name or 'sequential'}: {self.spec.to_line()}>"


def whole_number(method: str, name: str, value, default: int) -> int:
    """A count argument (epochs, batch_size) as Keras takes it: None means `default`; 0, 1.5, True or "a" are
    refused, as Keras refuses them (int() would turn 1.5 epochs into 1, `or 32` a batch_size of 0 into 32)."""
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ArgumentError(f"{method}: {name}={short(value)}; expected a whole number of 1 or more",
                            fix=f"e.g. {name}={default}")
    return int(value)


def _progress_mode(verbose) -> str:
    """Keras's verbose: 0 silent, 2 one line per epoch, 1 or "auto" a bar where one can be drawn."""
    return {0: "quiet", False: "quiet", 2: "plain"}.get(verbose, "auto")


class _CallbackProgress(Progress):
    """The chosen display, plus Keras's per-epoch-begin and per-batch hooks (called only when a callback wants them)."""

    def __init__(self, inner: Progress, bridge: KerasCallbacks):
        super().__init__()
        self.inner, self.bridge = inner, bridge
        self.per_batch = any(wants_batches(callback) for callback in bridge.callbacks)

    def start_epoch(self, epoch, epochs, steps, done):
        self.inner.start_epoch(epoch, epochs, steps, done)
        self.bridge.on_epoch_begin(epoch)

    def step(self, totals):
        self.inner.step(totals)
        if self.per_batch:
            self.bridge.on_batch_end(totals.steps, totals.metrics())

    def end_epoch(self, epoch, epochs, logs):
        self.inner.end_epoch(epoch, epochs, logs)

    def message(self, text):
        self.inner.message(text)

    def close(self):
        self.inner.close()


class Model:
    """keras.models.Model(inputs=model.input, outputs=[layer.output ...]): the course's activation model.

    predict(x) gives one array per output, each layer's (N, H, W, C) maps for conv and pooling layers (the lab's
    `activation_model.predict(x)[i][0, :, :, CONVOLUTION_NUMBER]`), (N, units) for Flatten and Dense.
    Only outputs of one Sequential's layers are supported (convolab has no functional API).
    """

    def __init__(self, inputs=None, outputs=None, name: str | None = None, **keras_arguments):
        check_arguments("keras.models.Model", keras_arguments, ["inputs", "outputs", "name"])
        inputs = inputs if isinstance(inputs, (list, tuple)) else [inputs]
        self.single = not isinstance(outputs, (list, tuple))
        outputs = [outputs] if self.single else list(outputs)
        every = inputs + outputs
        if not every or not all(isinstance(item, SymbolicTensor) for item in every):
            raise unsupported("keras.models.Model on these inputs/outputs", ["Model(inputs=model.input, "
                              "outputs=[layer.output for layer in model.layers])", "keras.models.Sequential"],
                              "convolab has no functional API; it builds models from a Sequential's layers")
        models = {id(item.model) for item in every}
        if len(models) != 1 or any(item.index != -1 for item in inputs):
            raise unsupported("keras.models.Model across models or from a layer's output as input",
                              ["Model(inputs=model.input, outputs=[layer.output for layer in model.layers])"])
        self.source: Sequential = every[0].model
        self.indices = [item.index for item in outputs]
        self.name = name or "functional"

    @property
    def outputs(self) -> list[SymbolicTensor]:
        return [SymbolicTensor(self.source, index) for index in self.indices]

    def predict(self, x, batch_size: int | None = None, verbose="auto", **keras_arguments):
        check_arguments("Model.predict", keras_arguments, ["x", "batch_size", "verbose"], ("steps", "callbacks"))
        images = self.source._images(x, "predict x")
        network = self.source._trained_network(images.shape[1:])
        wanted = [index for index in dict.fromkeys(self.indices) if index >= 0]
        activations = capture(network, network.spec, model_floats(images), wanted, allowed=tuple(LAYER_TYPES.values()))
        by_index = {maps.index: maps.values for maps in activations.layers}
        last = len(network.spec.layers) - 1
        if last in by_index and network.output_activation == "softmax":   # the block leaves the softmax to the loss
            by_index[last] = torch.from_numpy(by_index[last]).softmax(dim=1).numpy()
        results = [images.astype(np.float32) if index < 0 else by_index[index] for index in self.indices]
        return results[0] if self.single else results

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        raise unsupported(f"Model.{name}", ["predict", "outputs", "name"],
                          "convolab's Model is the activation model of the course's visualization cell")


def load_model(filepath, **keras_arguments) -> Sequential:
    """A model written by model.save or ModelCheckpoint (a Keras .keras or .h5 file, Keras's own included, or
    convolab's file), rebuilt with its weights (compile it again to train)."""
    check_arguments("keras.models.load_model", keras_arguments, ["filepath"], ("custom_objects", "compile", "safe_mode"))
    if is_keras_file(filepath):
        keras_model = read_keras_file(filepath)
        spec, weights, name = keras_model.spec, keras_model.network.state_dict(), keras_model.spec.name
    else:
        try:
            saved = read_checkpoint(filepath)
        except RunError:   # "a corrupted checkpoint ... train again" would not be about this file
            raise ModelFileError(f"keras.models.load_model({short(str(filepath))}): not a model file (neither a "
                                 "Keras .keras or .h5 file nor a model convolab saved)",
                                 fix="give a .keras file written by model.save (or an .h5 file of Keras 2)") from None
        if saved.get("kind") != MODEL_KIND:
            raise RunError(f"{filepath}: not a convolab Keras model file", fix="load files written by model.save(...)")
        spec, weights, name = spec_from_dict(saved["spec"]), saved["model"], saved.get("name")
    model = Sequential(list(spec.layers), name=name)
    model._input = Input(shape=spec.input_shape)
    model._build(spec.input_shape, None)
    model.network.load_state_dict(weights)
    return model


def __getattr__(name: str):
    raise unsupported(f"keras.models.{name}", ["Sequential", "Model", "load_model"])
