"""keras.datasets: `fashion_mnist.load_data()` and `mnist.load_data()` as Keras returns them, from convolab's sources.

    (x_train, y_train), (x_test, y_test) = keras.datasets.fashion_mnist.load_data()
    # uint8 arrays: (60000, 28, 28), (60000,), (10000, 28, 28), (10000,)

Where the data comes from: a Keras cache the learner already has first (`$KERAS_HOME/datasets`, default
`~/.keras/datasets`: Fashion-MNIST's four files in `fashion-mnist/`, MNIST's `mnist.npz`), then convolab's own places
in their documented order (data.load_dataset: CONVOLAB_DATA_DIR, convolab's cache, the Debian copy, the download). The
Keras copy is checked like any other (checksums for Fashion-MNIST's files, shapes and types for mnist.npz).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from convolab.data import Dataset, load_dataset
from convolab.errors import DataError
from convolab.keras.surface import unsupported

KERAS_DATASETS = ("fashion_mnist", "mnist")
NPZ_KEYS = {"x_train": (60000, 28, 28), "y_train": (60000,), "x_test": (10000, 28, 28), "y_test": (10000,)}


def keras_cache() -> Path:
    """Where Keras keeps downloaded datasets: $KERAS_HOME/datasets, default ~/.keras/datasets."""
    return Path(os.environ.get("KERAS_HOME") or Path("~/.keras").expanduser()) / "datasets"


def _arrays(dataset: Dataset):
    """A convolab Dataset as Keras's ((x_train, y_train), (x_test, y_test)): uint8 (N, 28, 28) images, uint8 labels."""
    def images(tensor):
        return tensor[:, 0].numpy() if tensor.shape[1] == 1 else tensor.permute(0, 2, 3, 1).numpy()
    return ((images(dataset.train_images), dataset.train_labels.numpy().astype(np.uint8)),
            (images(dataset.test_images), dataset.test_labels.numpy().astype(np.uint8)))


def read_mnist_npz(path: Path):
    """Keras's mnist.npz, checked: four uint8 arrays of the known shapes."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in NPZ_KEYS}
    except (OSError, ValueError, KeyError) as error:
        raise DataError(f"{path}: not a readable Keras mnist.npz ({error})",
                        fix="delete it, or let convolab load MNIST from its own places") from None
    for key, shape in NPZ_KEYS.items():
        if arrays[key].shape != shape or arrays[key].dtype != np.uint8:
            raise DataError(f"{path}: {key} is {arrays[key].dtype} {arrays[key].shape}; expected uint8 {shape}",
                            fix="delete the damaged file")
    return (arrays["x_train"], arrays["y_train"]), (arrays["x_test"], arrays["y_test"])


class _RegistryDataset:
    """One of keras.datasets' modules: `load_data()` only."""

    def __init__(self, keras_name: str, convolab_name: str):
        self.keras_name, self.convolab_name = keras_name, convolab_name

    def load_data(self, path: str | None = None):
        """((x_train, y_train), (x_test, y_test)) as uint8 NumPy arrays in Keras's layout."""
        cache = keras_cache()
        if self.convolab_name == "mnist":
            npz = cache / (path or "mnist.npz")
            if npz.is_file():
                return read_mnist_npz(npz)
        elif path is not None:
            raise unsupported(f"keras.datasets.{self.keras_name}.load_data(path=...)", ["load_data()"],
                              "Keras's fashion_mnist takes no path")
        elif any((cache / self.convolab_name).glob("*-ubyte*")):   # Keras leaves the folder empty after a failed download
            return _arrays(load_dataset(self.convolab_name, data_dir=cache, progress=False))
        try:
            return _arrays(load_dataset(self.convolab_name, progress=False))
        except DataError as error:             # say where Keras's own copy was looked for too
            keras_copy = cache / (path or "mnist.npz") if self.convolab_name == "mnist" else cache / self.convolab_name
            raise DataError(f"keras.datasets.{self.keras_name}.load_data(): {error.message}\n  - {keras_copy}: not there "
                            "(Keras's own copy)", fix=f"{error.fix}\n    or put Keras's own copy at {keras_copy}") from None

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        raise unsupported(f"keras.datasets.{self.keras_name}.{name}", ["load_data"])

    def __repr__(self) -> str:
        return f"<keras.datasets.{self.keras_name}: convolab's {self.convolab_name}>"


fashion_mnist = _RegistryDataset("fashion_mnist", "fashion-mnist")
mnist = _RegistryDataset("mnist", "mnist")


def __getattr__(name: str):
    raise unsupported(f"keras.datasets.{name}", KERAS_DATASETS, "convolab has Fashion-MNIST and MNIST, or image folders")
