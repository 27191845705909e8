"""`from convolab import keras`: the Keras surface the course uses, running on convolab's engine.

    from convolab import keras
    (training_images, training_labels), (test_images, test_labels) = keras.datasets.fashion_mnist.load_data()
    model = keras.models.Sequential([keras.Input(shape=(28, 28, 1)), keras.layers.Conv2D(64, (3, 3), activation="relu"),
                                     keras.layers.MaxPooling2D(2, 2), keras.layers.Flatten(),
                                     keras.layers.Dense(128, activation="relu"), keras.layers.Dense(10, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.summary()
    model.fit(training_images / 255.0, training_labels, epochs=5)

NumPy arrays in Keras's layout (N, H, W, C), Keras's signatures and return values; anything outside this surface fails
with a message naming it and what is supported. The native API (convolab.Sequential, runs) is unchanged.
"""
from __future__ import annotations

from convolab.keras import activations, callbacks, datasets, layers, losses, models, optimizers, utils
from convolab.keras.layers import Input
from convolab.keras.models import Model, Sequential, load_model
from convolab.keras.surface import unsupported

__all__ = ["Input", "Model", "Sequential", "activations", "callbacks", "datasets", "layers", "load_model", "losses",
           "models", "optimizers", "utils"]


def __getattr__(name: str):
    # keras.preprocessing (Keras 2's image loaders): convolab's own way into image folders is named.
    raise unsupported(f"keras.{name}", __all__, utils.NATIVE_IMAGES if name == "preprocessing" else "")
