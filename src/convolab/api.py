"""The Keras-style Python API: `Sequential([...])` with the lab's own vocabulary, so the lab's code reads the same.

    from convolab import Sequential, Conv2D, MaxPooling2D, Flatten, Dense
    model = Sequential([
        Conv2D(64, (3, 3), activation="relu", input_shape=(28, 28, 1)),
        MaxPooling2D(2, 2),
        Flatten(),
        Dense(128, activation="relu"),
        Dense(10, activation="softmax"),
    ])
    model.summary()

A Sequential is a list of layers and a name; `.spec` is the ModelSpec every other stage takes. Its weights come from
`fit` or from a file: `convolab.load("fashion.keras")` reads a Keras model (or a run directory) with its weights, and
`model.save("x.keras")` / `model.export("x.onnx")` write them for Keras 3 and onnxruntime.
"""
from __future__ import annotations

import os
from typing import Callable

from convolab.spec import DEFAULT_INPUT_SHAPE, DEFAULT_NUM_CLASSES, Layer, ModelSpec


def check_keywords(where: str, unknown: dict, method: Callable) -> None:
    """An ArgumentError for the first keyword `method` does not take (fit(epoch=1)), naming the nearest it does
    (Python's own TypeError names neither the method's arguments nor the likely one)."""
    import inspect

    from convolab.errors import ArgumentError
    from convolab.layers.arguments import suggestion

    if not unknown:
        return
    taken = [name for name, parameter in inspect.signature(method).parameters.items()
             if name != "self" and parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY)]
    key = next(iter(unknown))
    raise ArgumentError(f"{where}: unknown argument {key!r}; it takes {', '.join(taken)}",
                        fix=suggestion(key, taken) or f"use one of {', '.join(taken)}")


class Sequential:
    """A stack of layers in order, Keras-style; the input shape rides on the first layer (`input_shape=`)."""

    def __init__(self, layers: list[Layer] | tuple[Layer, ...] | None = None, name: str | None = None):
        self.name = name
        self.result = None      # the TrainResult of the last fit
        self.loaded = None      # the Run this model was read from (convolab.load)
        self._layers: list[Layer] = []
        if layers is not None and not isinstance(layers, (list, tuple)):   # Sequential(Conv2D(...)): a list was meant
            from convolab.errors import ArgumentError

            raise ArgumentError(f"Sequential takes a list of layers, received a {type(layers).__name__}",
                                fix="Sequential([Conv2D(64, (3, 3), input_shape=(28, 28, 1)), ...])")
        for layer in layers or []:
            self.add(layer)

    def add(self, layer: Layer) -> None:
        """Append a layer (Keras's model.add); it is checked against the others when `.spec` is made."""
        ModelSpec(tuple(self._layers) + (layer,), None, self.name)  # fails here, where the bad layer is added
        self._layers.append(layer)

    @property
    def layers(self) -> list[Layer]:
        return list(self._layers)

    @property
    def spec(self) -> ModelSpec:
        """The ModelSpec of these layers (the input shape taken from the first layer)."""
        return ModelSpec(tuple(self._layers), None, self.name)

    def summary(self, print_fn: Callable[[str], object] | None = None, input_shape=None,
                num_classes: int | None = None, format: str = "text") -> None:
        """Print the explained summary, one line per `print_fn` call (Keras's print_fn, to capture it); in a notebook
        (no print_fn) it is displayed once, as an HTML table with each row's arithmetic.

        input_shape: (height, width, channels) when the first layer has none; default the lab's (28, 28, 1).
        num_classes: for a last Dense without units; default 10, the lab's.
        """
        from convolab.notebook import show
        from convolab.summary import Summary, summarize, summary_inputs

        input_shape, num_classes = summary_inputs(self.spec, input_shape, num_classes)
        if print_fn is not None and not callable(print_fn):
            from convolab.errors import ArgumentError

            raise ArgumentError(f"summary: print_fn={print_fn!r}; expected a function called with each line",
                                fix="e.g. summary(print_fn=lines.append), or leave it out to print")
        if print_fn is None and format == "text":
            return show(Summary(self.spec, input_shape, num_classes))
        text = summarize(self.spec, input_shape, num_classes, format=format)
        for line in text.rstrip("\n").split("\n"):
            (print_fn or print)(line)

    # --- training, evaluation, prediction: the same code as `convolab train`, `evaluate` and `predict` -----------

    def fit(self, data="fashion-mnist", *labels, epochs: int = 5, batch_size: int = 32, optimizer: str = "adam",
            learning_rate: float = 0.001, validation_split: float = 0.0, seed: int = 0, device: str = "auto",
            out=None, overwrite: bool = False, stop_at: str | None = None, early_stopping: int | None = None,
            callbacks=(), train_limit: int | None = None, test_limit: int | None = None, verbose: bool = True,
            precision: str = "auto", **unknown):
        """Train on `data` (a dataset name, an image folder or a loaded Dataset), test, and return the TrainResult.

        The lab's defaults (Adam 0.001, batch 32, 5 epochs). out: a run directory to write (default: none);
        overwrite: replace a run already there (otherwise it is an error).
        stop_at: e.g. "accuracy>=0.998". early_stopping: patience (needs validation_split). callbacks: Callback objects.
        precision: "auto" (float32 on CPU), "fp32", or "bf16" (bfloat16 autocast, float32 weights and logits).
        """
        from convolab.data import Dataset, load_dataset
        from convolab.errors import ArgumentError
        from convolab.experiment import DataSelection, train_run

        check_keywords("Sequential.fit", unknown, Sequential.fit)
        if labels or (hasattr(data, "shape") and hasattr(data, "dtype")):   # the course's fit(images, labels, epochs=5)
            raise ArgumentError("Sequential.fit takes a dataset name, folder or Dataset; received an array",
                                fix="for Keras's fit(x, y, ...) on arrays use `from convolab import keras` and "
                                    "keras.models.Sequential([...]) with model.compile(...)")
        from convolab.callbacks import Callback
        from convolab.plots import write_run_pictures
        from convolab.train import TrainConfig, make_progress

        # The course's myCallback (keras.callbacks.Callback, on_epoch_end(epoch, logs)) answers Keras's fit(x, y);
        # its module is named, not imported: keras/ sits on top of this module.
        listed = callbacks if isinstance(callbacks, (list, tuple)) else [callbacks]
        keras_style = [callback for callback in listed if not isinstance(callback, Callback)
                       and any(base.__module__ == "convolab.keras.callbacks" for base in type(callback).__mro__)]
        if keras_style:
            raise ArgumentError(f"fit: callbacks=[{type(keras_style[0]).__name__}()], a keras.callbacks.Callback: "
                                "Keras's callbacks go with Keras's fit(x, y, callbacks=[...]) on arrays",
                                fix="here stop_at='accuracy>=0.95' does what the course's myCallback does; or use "
                                    "`from convolab import keras`, keras.models.Sequential([...]), compile and "
                                    "fit(images, labels, callbacks=[...])")

        # Checked before any data is loaded: a wrong type is a message naming the argument, not a TypeError inside.
        def whole(value) -> bool:
            return isinstance(value, int) and not isinstance(value, bool)

        for name, value, fits, expected, example in (
                ("train_limit", train_limit, train_limit is None or (whole(train_limit) and train_limit > 0),
                 "None or a positive whole number", "1000"),
                ("test_limit", test_limit, test_limit is None or (whole(test_limit) and test_limit > 0),
                 "None or a positive whole number", "1000"),
                ("early_stopping", early_stopping, early_stopping is None or (whole(early_stopping) and early_stopping > 0),
                 "None or a patience in epochs", "2"),
                ("stop_at", stop_at, stop_at is None or isinstance(stop_at, str), "None or a target", "'accuracy>=0.9'"),
                ("validation_split", validation_split, isinstance(validation_split, (int, float))
                 and not isinstance(validation_split, bool), "a fraction", "0.1"),
                ("out", out, out is None or isinstance(out, (str, os.PathLike)), "None or a folder path", "'runs/mine'"),
                ("callbacks", callbacks, isinstance(callbacks, (list, tuple))
                 and all(isinstance(callback, Callback) for callback in callbacks),
                 "a list of convolab.callbacks.Callback objects", "[EarlyStopping(patience=2)]")):
            if not fits:
                raise ArgumentError(f"fit: {name}={value!r}; expected {expected}", fix=f"e.g. {name}={example}")
        if not isinstance(data, (str, os.PathLike, Dataset)):
            raise ArgumentError(f"fit: data={data!r:.60}, a {type(data).__name__}; expected a dataset name, an image "
                                "folder or a loaded Dataset",
                                fix="e.g. fit('fashion-mnist') or fit('path/to/images'); for arrays use `from convolab "
                                    "import keras`")
        config = TrainConfig(epochs=epochs, batch_size=batch_size, optimizer=optimizer, learning_rate=learning_rate,
                             validation_split=validation_split, seed=seed, device=device, precision=precision)
        config.validate()
        dataset = data if isinstance(data, Dataset) else load_dataset(data, progress=verbose)
        # How the run can load its data again (evaluate, --resume): load_dataset's arguments (a folder by its absolute
        # path, as text: fit(Path("photos")) or fit("photos") from a notebook's folder work from anywhere after), else
        # the name of a Dataset made by hand (a dataset convolab knows by name)
        options = dict(dataset.options) or {"source": dataset.name}
        self.result = train_run(self.spec, dataset, config, out, name=self.name, overwrite=overwrite,
                                selection=DataSelection(options=options, train_limit=train_limit, test_limit=test_limit),
                                stop_at=stop_at, early_stopping=early_stopping, callbacks=callbacks,
                                progress=make_progress("auto" if verbose else "quiet"),
                                on_train_end=[write_run_pictures],   # curves.png and confusion.png when out is given
                                weights=self._starting_weights())
        return self.result

    def _starting_weights(self):
        """A loaded model trains on from the weights it was read with; a built one starts fresh, as before."""
        from convolab.runs import ModelWeights

        if self.loaded is None:
            return None
        state = {key: value.detach().cpu().clone() for key, value in self.loaded.model.state_dict().items()}
        return ModelWeights(state, self.loaded.path)

    def _trained(self):
        """(network, input shape, class names, device, dataset or None) of a fitted or loaded model."""
        from convolab.errors import TrainingError

        if self.result is not None:
            return (self.result.model, self.result.dataset.input_shape, list(self.result.dataset.class_names),
                    self.result.state.device, self.result.dataset)
        if self.loaded is not None:
            return self.loaded.model, self.loaded.input_shape, self.loaded.class_names, "cpu", None
        raise TrainingError("this model has not been trained yet", fix="call model.fit(...) first, or "
                            "convolab.load('model.keras')")

    def evaluate(self, data=None):
        """Test loss and accuracy, per-class accuracy, confusion matrix, top losses on `data`'s whole test set
        (default: the data it was fitted on), as `convolab evaluate RUN` measures a run: fit's test_limit limits the
        test after training only (its result's .evaluation). Returns an Evaluation (`.loss`, `.accuracy`, ...)."""
        from convolab.data import Dataset, load_dataset
        from convolab.evaluate import evaluate_model

        from convolab.errors import ArgumentError, RunError

        network, input_shape, class_names, device, fitted_on = self._trained()
        if data is not None and not isinstance(data, (Dataset, str, os.PathLike)):
            raise ArgumentError(f"evaluate: data={data!r:.60}, a {type(data).__name__}; expected a dataset name, an "
                                "image folder or a Dataset", fix="model.evaluate() (the data it was fitted on), or "
                                                                "model.evaluate('fashion-mnist')")
        if isinstance(data, Dataset):
            dataset = data
        elif data is not None:
            dataset = load_dataset(data, progress=False)
        else:                                    # the data it was fitted on, or the data the loaded run recorded
            dataset = fitted_on or self.loaded.config.dataset.load()
        imported = self.loaded is not None and self.loaded.imported   # a Keras file knows its class count only
        classes_fit = (len(dataset.class_names) == len(class_names) if imported
                       else list(dataset.class_names) == list(class_names))
        if not classes_fit or tuple(dataset.input_shape) != tuple(input_shape):
            raise RunError(f"the data ({dataset.name}, {tuple(dataset.input_shape)}, {len(dataset.class_names)} "
                           f"classes) does not fit the model, which takes {tuple(input_shape)} images in "
                           f"{len(class_names)} classes",
                           fix="evaluate on data of that shape and those classes: model.evaluate() uses the data it "
                               "was fitted on")
        flips = self.loaded is not None and self.loaded.config.train.test_time_flip   # a recipe's run tests so
        return evaluate_model(network, dataset.test_images, dataset.test_labels,
                              list(dataset.class_names) if imported else list(class_names), device=device,
                              test_time_flip=flips)

    def predict(self, inputs, top: int = 3, invert="auto"):
        """Image files (a path, a file's bytes, or a list of them) -> a list of Predictions (top classes with
        probabilities); a uint8 or float tensor (N, C, H, W) -> its (N, classes) probabilities, like Keras's
        model.predict."""
        import torch

        from convolab.evaluate import predict_logits
        from convolab.predict import predict_images

        from convolab.errors import ArgumentError

        network, input_shape, class_names, device, _dataset = self._trained()
        height, width, channels = input_shape
        if isinstance(inputs, torch.Tensor):
            if inputs.dim() != 4 or tuple(inputs.shape[1:]) != (channels, height, width):
                raise ArgumentError(f"predict: a tensor of shape {tuple(inputs.shape)}; this model takes (N, {channels}, "
                                    f"{height}, {width}) images", fix="give images (N, C, H, W) of the model's size")
            images = inputs if inputs.dtype == torch.uint8 else (pixel_fractions(inputs) * 255).round().to(torch.uint8)
            return predict_logits(network, images, device=device).softmax(dim=1)
        if hasattr(inputs, "getexif"):               # a Pillow image (it also has an __array_interface__)
            raise ArgumentError(f"predict: a Pillow image ({type(inputs).__name__}, {getattr(inputs, 'mode', '?')} "
                                f"{getattr(inputs, 'size', '?')}); expected an image file's path, its bytes, or a "
                                "tensor of images",
                                fix="model.predict('photo.png') with its file, or image.save(buffer, 'PNG') into an "
                                    "io.BytesIO and model.predict(buffer.getvalue())")
        if hasattr(inputs, "__array_interface__"):   # a NumPy array: its layout (NHWC or NCHW) cannot be told apart
            raise ArgumentError(f"predict: a NumPy array of shape {getattr(inputs, 'shape', '?')}",
                                fix=f"torch.from_numpy(images) as (N, {channels}, {height}, {width}) images, or "
                                    "`from convolab import keras` whose predict takes Keras's (N, H, W, C)")
        # bytes are an image file's contents (an upload), as load_image reads them; str and paths name files
        def image_file(item) -> bool:
            return isinstance(item, (str, bytes, os.PathLike))

        paths = [inputs] if image_file(inputs) else list(inputs) if isinstance(inputs, (list, tuple)) else None
        if paths is None or not paths or not all(image_file(path) for path in paths):
            odd = inputs if paths is None or not paths else next(path for path in paths if not image_file(path))
            raise ArgumentError(f"predict: received {type(odd).__name__} {odd!r:.60}; expected an image file's path, "
                                "its bytes, a list of them, or a tensor of images",
                                fix=f"model.predict('shirt.png'), model.predict(['a.png', 'b.png']), or "
                                    f"model.predict(images) with a torch tensor (N, {channels}, {height}, {width})")
        return predict_images(network, paths, input_shape, class_names, invert=invert, top=top, device=device)

    # --- files: Keras 3 and ONNX ------------------------------------------------------------------------------------

    def _network_to_write(self):
        """The fitted or loaded network; an untrained model is written with fresh Keras-style weights (as Keras does)."""
        from convolab.model import build_model
        from convolab.spec import resolve_spec

        if self.result is not None or self.loaded is not None:
            return self._trained()[0]
        spec = self.spec
        return build_model(resolve_spec(spec, spec.input_shape or DEFAULT_INPUT_SHAPE, DEFAULT_NUM_CLASSES)).eval()

    def save(self, path) -> None:
        """Write a Keras 3 .keras file (keras.models.load_model opens it and computes the same outputs)."""
        from pathlib import Path

        from convolab.errors import ModelFileError
        from convolab.export import export_network

        if not isinstance(path, (str, os.PathLike)) or isinstance(path, bytes) or Path(path).suffix.lower() != ".keras":
            raise ModelFileError(f"save writes Keras 3 .keras files, received: {str(path)!r}",
                                 fix="model.save('model.keras'); for ONNX: model.export('model.onnx')")
        export_network(self._network_to_write(), path, "keras")

    def export(self, path):
        """Write an ONNX (.onnx) or Keras (.keras) file by its suffix; ONNX is checked in onnxruntime (see
        convolab.export). Returns what was written and the largest difference measured."""
        from pathlib import Path

        from convolab.errors import ModelFileError
        from convolab.export import SUFFIXES, export_network

        formats = {suffix: name for name, suffix in SUFFIXES.items()}
        suffix = Path(path).suffix.lower()
        if suffix not in formats:
            raise ModelFileError(f"export writes .onnx or .keras files, received: {str(path)!r}",
                                 fix="model.export('model.onnx')")
        config = self.loaded.config if self.loaded is not None and self.result is None else None
        return export_network(self._network_to_write(), path, formats[suffix], config)

    def __repr__(self) -> str:
        if not self._layers:                     # a model still being built (model.add(...) comes next): shown, not refused
            return f"Sequential([], name={self.name!r})  # no layers yet: model.add(Conv2D(...))"
        return self.spec.to_python()


def load(path) -> Sequential:
    """A Keras model file (.keras, or a legacy .h5) or a run directory as a Sequential with its weights: summary,
    evaluate, predict, fit (continuing from them), save and export work on it at once."""
    import dataclasses

    from convolab.errors import ArgumentError
    from convolab.runs import load_run

    if not isinstance(path, (str, os.PathLike)) or isinstance(path, bytes):
        raise ArgumentError(f"load({path!r}): expected the path of a run directory or a Keras file",
                            fix="e.g. convolab.load('runs/cnn') or convolab.load('fashion.keras')")
    run = load_run(path)
    spec = run.spec
    first = dataclasses.replace(spec.layers[0], input_shape=spec.input_shape)
    model = Sequential([first, *spec.layers[1:]], name=spec.name)
    model.loaded = run
    return model


def pixel_fractions(images):
    """A float tensor of images as the model reads them, checked: finite values in [0, 1] (pixels / 255).

    Any other tensor was a silent mistake before: images forgotten un-divided (0..255 floats) were clipped to 1, every
    pixel white; NaN became 0; int64 pixels were clipped to 0 or 1. ArgumentError naming what came and the fix."""
    import torch

    from convolab.errors import ArgumentError

    if not images.is_floating_point():
        raise ArgumentError(f"predict: a tensor of {images.dtype}; expected uint8 pixels (0 to 255) or floats from 0 "
                            "to 1", fix="images.to(torch.uint8) for pixels 0..255, or images / 255.0")
    if images.numel() and not bool(torch.isfinite(images).all()):
        raise ArgumentError("predict: a float tensor holding NaN or infinite values; expected floats from 0 to 1",
                            fix="check how the images were made (a division by zero?)")
    if images.numel() and (float(images.min()) < 0 or float(images.max()) > 1):
        raise ArgumentError(f"predict: float values from {float(images.min()):g} to {float(images.max()):g}; expected "
                            "0 to 1 (pixels / 255), as the model was trained on",
                            fix="images / 255.0 for pixels 0..255, or pass them as uint8 (images.to(torch.uint8))")
    return images.float()
