"""convolab: build, explain, train, evaluate, see inside and compare convolutional image classifiers."""
__version__ = "0.1.0"

import importlib

# The Keras-style API, importable from the package (`from convolab import Sequential, Conv2D`), loaded on first use:
# importing it imports PyTorch (seconds), and the `convolab` command must be inside its own Ctrl-C handling before that
# happens (cli.main), and quick to answer --help.
_EXPORTS = {
    "Sequential": "convolab.api", "load": "convolab.api",
    **{name: "convolab.spec" for name in ("AveragePooling2D", "BatchNormalization", "Conv2D", "Dense", "Dropout",
                                          "Flatten", "GlobalAveragePooling2D", "MaxPooling2D")},
}


def __getattr__(name: str):
    """The API above, every registered layer kind (`from convolab import DepthwiseConv2D`), and `convolab.keras`,
    each imported when first asked for."""
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    if name == "keras":
        return importlib.import_module("convolab.keras")
    if name[:1].isupper():   # a layer kind's name (`from convolab import arguments` asks here first: no layers then)
        from convolab.layers import KINDS

        if name in KINDS:
            return KINDS.kinds[name]
    raise AttributeError(f"module 'convolab' has no attribute {name!r}")


def __dir__() -> list[str]:
    """What tab completion offers: the lazily loaded API above as well as what is already loaded."""
    return sorted({*globals(), *_EXPORTS, "keras"})
