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

from convolab.spec import DEFAULT_INPUT_SHAPE, DEFAULT_NUM_CLASSES, Dense, Layer, ModelSpec


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

    def summary(self, print_fn: Callable[[str], object] = print, input_shape=None, num_classes: int | None = None,
                format: str = "text") -> None:
        """Print the explained summary, one line per `print_fn` call (Keras's print_fn, to capture it).

        input_shape: (height, width, channels) when the first layer has none; default the lab's (28, 28, 1).
        num_classes: for a last Dense without units; default 10, the lab's.
        """
        from convolab.summary import summarize

        spec = self.spec
        if input_shape is None and spec.input_shape is None:
            input_shape = DEFAULT_INPUT_SHAPE
        if num_classes is None and any(isinstance(layer, Dense) and layer.units is None for layer in spec.layers):
            num_classes = DEFAULT_NUM_CLASSES
        text = summarize(spec, input_shape, num_classes, format=format)
        for line in text.rstrip("\n").split("\n"):
            print_fn(line)

    def __repr__(self) -> str:
        return self.spec.to_python()
