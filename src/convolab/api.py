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

A Sequential is a list of layers and a name; `.spec` is the ModelSpec every other stage takes.
"""
from __future__ import annotations

from typing import Callable

from convolab.spec import Layer, ModelSpec


class Sequential:
    """A stack of layers in order, Keras-style; the input shape rides on the first layer (`input_shape=`)."""

    def __init__(self, layers: list[Layer] | tuple[Layer, ...] | None = None, name: str | None = None):
        self.name = name
        self._layers: list[Layer] = []
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
            precision: str = "auto"):
        """Train on `data` (a dataset name, an image folder or a loaded Dataset), test, and return the TrainResult.

        The lab's defaults (Adam 0.001, batch 32, 5 epochs). out: a run directory to write (default: none);
        overwrite: replace a run already there (otherwise it is an error).
        stop_at: e.g. "accuracy>=0.998". early_stopping: patience (needs validation_split). callbacks: Callback objects.
        precision: "auto" (float32 on CPU), "fp32", or "bf16" (bfloat16 autocast, float32 weights and logits).
        """
        from convolab.data import Dataset, load_dataset
        from convolab.errors import ArgumentError
        from convolab.experiment import DataSelection, train_run

        if labels or (hasattr(data, "shape") and hasattr(data, "dtype")):   # the course's fit(images, labels, epochs=5)
            raise ArgumentError("Sequential.fit takes a dataset name, folder or Dataset; received an array",
                                fix="for Keras's fit(x, y, ...) on arrays use `from convolab import keras` and "
                                    "keras.models.Sequential([...]) with model.compile(...)")
        from convolab.plots import write_run_pictures
        from convolab.train import TrainConfig, make_progress

        dataset = data if isinstance(data, Dataset) else load_dataset(data, progress=verbose)
        options = {"source": dataset.name} if isinstance(data, Dataset) else {"source": data}
        config = TrainConfig(epochs=epochs, batch_size=batch_size, optimizer=optimizer, learning_rate=learning_rate,
                             validation_split=validation_split, seed=seed, device=device, precision=precision)
        self.result = train_run(self.spec, dataset, config, out, name=self.name, overwrite=overwrite,
                                selection=DataSelection(options=options, train_limit=train_limit, test_limit=test_limit),
                                stop_at=stop_at, early_stopping=early_stopping, callbacks=callbacks,
                                progress=make_progress("auto" if verbose else "quiet"),
                                on_train_end=[write_run_pictures])   # curves.png and confusion.png when out is given
        return self.result

    def _trained(self):
        from convolab.errors import TrainingError

        if getattr(self, "result", None) is None:
            raise TrainingError("this model has not been trained yet", fix="call model.fit(...) first")
        return self.result

    def evaluate(self, data=None):
        """Test loss and accuracy, per-class accuracy, confusion matrix, top losses on `data`'s test set
        (default: the data it was fitted on). Returns an Evaluation (`.loss`, `.accuracy`, ...)."""
        from convolab.data import Dataset, load_dataset
        from convolab.evaluate import evaluate_model

        result = self._trained()
        dataset = result.dataset if data is None else data if isinstance(data, Dataset) else load_dataset(data)
        return evaluate_model(result.model, dataset.test_images, dataset.test_labels, list(dataset.class_names),
                              device=result.state.device)

    def predict(self, inputs, top: int = 3, invert="auto"):
        """Image files (a path or a list of paths) -> a list of Predictions (top classes with probabilities);
        a uint8 or float tensor (N, C, H, W) -> its (N, classes) probabilities, like Keras's model.predict."""
        import torch

        from convolab.evaluate import predict_logits
        from convolab.predict import predict_images

        result = self._trained()
        if isinstance(inputs, torch.Tensor):
            images = inputs if inputs.dtype == torch.uint8 else (inputs.clamp(0, 1) * 255).round().to(torch.uint8)
            return predict_logits(result.model, images, device=result.state.device).softmax(dim=1)
        paths = [inputs] if isinstance(inputs, (str, bytes)) or hasattr(inputs, "__fspath__") else list(inputs)
        return predict_images(result.model, paths, result.dataset.input_shape, list(result.dataset.class_names),
                              invert=invert, top=top, device=result.state.device)

    def __repr__(self) -> str:
        return self.spec.to_python()
