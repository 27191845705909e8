"""Real Keras 3 (torch backend: pure Python over the torch already installed, no TensorFlow) for the import/export
tests: building the lab's models and specs of every kind, saving them, and running them."""
from __future__ import annotations

import numpy as np

from keras_reference import keras   # sets KERAS_BACKEND=torch before Keras is imported, or skips without Keras

layers = keras.layers


def lab_cnn() -> "keras.Sequential":
    """The course notebook's CNN, as it writes it."""
    return keras.Sequential([
        keras.Input((28, 28, 1)),
        layers.Conv2D(64, (3, 3), activation="relu"),
        layers.MaxPooling2D(2, 2),
        layers.Conv2D(64, (3, 3), activation="relu"),
        layers.MaxPooling2D(2, 2),
        layers.Flatten(),
        layers.Dense(128, activation="relu"),
        layers.Dense(10, activation="softmax"),
    ])


def lab_dnn() -> "keras.Sequential":
    """The course notebook's DNN: its input is (28, 28), without a channel axis."""
    return keras.Sequential([
        keras.Input((28, 28)),
        layers.Flatten(),
        layers.Dense(128, activation="relu"),
        layers.Dense(10, activation="softmax"),
    ])


def every_kind_models() -> dict[str, "keras.Sequential"]:
    """Models that between them use every kind convolab reads, the options that bite ('same' padding with even
    kernels, strides 2 and 3, pooling strides unlike the window) and many activations."""
    return {
        "even-same-strides": keras.Sequential([
            keras.Input((17, 15, 3)),
            layers.Conv2D(6, 4, strides=2, padding="same", activation="tanh"),
            layers.BatchNormalization(momentum=0.9, epsilon=1e-5),
            layers.Conv2D(5, (2, 3), strides=3, padding="same", activation="elu", use_bias=False),
            layers.MaxPooling2D(3, strides=2, padding="same"),
            layers.Flatten(),
            layers.Dropout(0.3),
            layers.Dense(12, activation="gelu"),
            layers.BatchNormalization(),
            layers.Dense(4, activation="softmax"),
        ]),
        "pool-gap": keras.Sequential([
            keras.Input((20, 20, 2)),
            layers.Conv2D(7, 3, strides=(1, 2), activation="silu"),
            layers.AveragePooling2D(2),
            layers.Conv2D(8, 3, padding="same", activation="leaky_relu"),
            layers.MaxPooling2D((2, 2), strides=(1, 1)),
            layers.GlobalAveragePooling2D(),
            layers.Dense(9, activation="sigmoid", use_bias=False),
            layers.Dense(3, activation="relu6"),
            layers.Dense(5),
        ]),
        "new-kinds": keras.Sequential([
            keras.Input((12, 11, 2)),
            layers.DepthwiseConv2D(4, strides=2, padding="same", depth_multiplier=2, activation="relu"),
            layers.SeparableConv2D(5, 3, strides=3, padding="same", depth_multiplier=2, activation="tanh"),
            layers.Activation("gelu"),
            layers.SeparableConv2D(3, (2, 1), use_bias=False),
            layers.GlobalMaxPooling2D(),
            layers.Dense(4),
            layers.Activation("softmax"),
        ]),
        "vector-activations": keras.Sequential([
            keras.Input((6, 6, 1)),
            layers.Flatten(),
            layers.Dense(10, activation="selu"),
            layers.Dense(10, activation="softplus"),
            layers.Dense(10, activation="softsign"),
            layers.Dense(10, activation="hard_sigmoid"),
            layers.Dense(3, activation="softmax"),
        ]),
    }


def randomize_batch_norm(model) -> None:
    """Moving statistics and γ/β away from 1 and 0, so inference-mode BatchNormalization is really tested."""
    generator = np.random.default_rng(3)
    for layer in model.layers:
        if isinstance(layer, layers.BatchNormalization):
            size = layer.gamma.shape[0]
            layer.set_weights([generator.uniform(0.5, 2, size), generator.uniform(-1, 1, size),
                               generator.uniform(-1, 1, size), generator.uniform(0.5, 2, size)])


def keras_outputs(model, images_nhwc: np.ndarray) -> np.ndarray:
    """The model's outputs in inference mode (Dropout off, BatchNormalization on its moving statistics)."""
    return np.asarray(keras.ops.convert_to_numpy(model(images_nhwc, training=False)))


def keras_table(model) -> list[tuple[str, tuple, int]]:
    """Keras's summary table as rows: (type, output shape without the batch axis, parameters)."""
    return [(type(layer).__name__, tuple(layer.output.shape[1:]), layer.count_params()) for layer in model.layers]


def save_both(model, directory, name: str) -> tuple:
    """The model saved as .keras and as legacy .h5 (Keras 3's model.save("x.h5") writes Keras 2's layout)."""
    import warnings

    keras_path, h5_path = directory / f"{name}.keras", directory / f"{name}.h5"
    model.save(keras_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.save(h5_path)
    return keras_path, h5_path
