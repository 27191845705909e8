"""convolab: build, explain, train, evaluate, see inside and compare convolutional image classifiers."""
__version__ = "0.1.0"

from convolab.api import Sequential, load  # noqa: E402 - the Keras-style API, re-exported so `from convolab import ...` works
from convolab.spec import (  # noqa: E402
    AveragePooling2D, BatchNormalization, Conv2D, Dense, Dropout, Flatten, GlobalAveragePooling2D, MaxPooling2D,
)
from convolab.layers import KINDS as _KINDS  # noqa: E402


def __getattr__(name: str):
    """Every registered layer kind is importable from the package (`from convolab import DepthwiseConv2D`), and
    `convolab.keras` loads on first use (importing it eagerly would slow every command)."""
    if name in _KINDS:
        return _KINDS.kinds[name]
    if name == "keras":
        import importlib
        return importlib.import_module("convolab.keras")
    raise AttributeError(f"module 'convolab' has no attribute {name!r}")
