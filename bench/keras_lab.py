"""The lab as the Keras course notebook writes it, timed: the baseline the benchmarks run side by side with convolab.

usage: PYTHON bench/keras_lab.py cnn|dnn EPOCHS [TRAIN_N]

PYTHON is a Python with Keras: TensorFlow's (`pip install tensorflow-cpu`, the course's Keras) or Keras 3 on any
backend (`KERAS_BACKEND=torch`). The model, optimizer (Adam), batch (32) and loss are the notebook's. The images are
Debian's Fashion-MNIST IDX files (`FASHION_MNIST_DIR`, default /usr/share/datasets/fashion-mnist), read with NumPy so
that the script needs neither convolab nor a download. Prints one line of key=value pairs that bench_lab.py parses.
"""
from __future__ import annotations

import gzip
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")   # TensorFlow's start-up chatter would hide the result line

IDX_DIR = Path(os.environ.get("FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist"))
FILES = {"train_images": "train-images-idx3-ubyte", "train_labels": "train-labels-idx1-ubyte",
         "test_images": "t10k-images-idx3-ubyte", "test_labels": "t10k-labels-idx1-ubyte"}


def read_idx(stem: str) -> np.ndarray:
    """One IDX file (plain or .gz): big-endian dimensions after a 4-byte magic whose last byte is the rank."""
    for path in (IDX_DIR / stem, IDX_DIR / f"{stem}.gz"):
        if path.is_file():
            raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
            rank = raw[3]
            shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(rank))
            return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * rank).reshape(shape)
    raise SystemExit(f"keras_lab.py: {stem} not found in {IDX_DIR} (Debian: apt install dataset-fashion-mnist, "
                     "or set FASHION_MNIST_DIR)")


def load_keras():
    """tf.keras when TensorFlow is there (the course's Keras), else Keras 3 on its configured backend."""
    try:
        import tensorflow
        return tensorflow.keras, f"tensorflow {tensorflow.__version__}"
    except ImportError:
        import keras
        return keras, f"keras {keras.__version__} on {keras.backend.backend()}"


def build(keras, kind: str):
    """The notebook's two networks."""
    layers = keras.layers
    if kind == "cnn":
        body = [layers.Conv2D(64, (3, 3), activation="relu"), layers.MaxPooling2D(2, 2),
                layers.Conv2D(64, (3, 3), activation="relu"), layers.MaxPooling2D(2, 2), layers.Flatten()]
    else:
        body = [layers.Flatten()]
    return keras.models.Sequential([keras.Input((28, 28, 1)), *body, layers.Dense(128, activation="relu"),
                                    layers.Dense(10, activation="softmax")])


def main() -> None:
    kind, epochs = sys.argv[1], int(sys.argv[2])
    train_n = int(sys.argv[3]) if len(sys.argv) > 3 else 60000
    train_images = (read_idx(FILES["train_images"])[:train_n] / 255.0).astype("float32")[..., None]
    train_labels = read_idx(FILES["train_labels"])[:train_n]
    test_images = (read_idx(FILES["test_images"]) / 255.0).astype("float32")[..., None]
    test_labels = read_idx(FILES["test_labels"])
    keras, version = load_keras()
    model = build(keras, kind)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    started = time.perf_counter()
    history = model.fit(train_images, train_labels, epochs=epochs, verbose=0)   # batch 32, Keras's default
    trained = time.perf_counter()
    _, test_accuracy = model.evaluate(test_images, test_labels, verbose=0)
    evaluated = time.perf_counter()
    print(f"keras ({version}) {kind} n={train_n} epochs={epochs} train_s={trained - started:.1f} "
          f"s_per_epoch={(trained - started) / epochs:.2f} train_acc={history.history['accuracy'][-1]:.4f} "
          f"test_acc={test_accuracy:.4f} eval_s={evaluated - trained:.2f}")


if __name__ == "__main__":
    main()
