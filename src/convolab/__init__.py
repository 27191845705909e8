"""convolab: build, explain, train, evaluate, see inside and compare convolutional image classifiers."""
__version__ = "0.1.0"

from convolab.api import Sequential  # noqa: E402 - the Keras-style API, re-exported so `from convolab import ...` works
from convolab.spec import (  # noqa: E402
    AveragePooling2D, BatchNormalization, Conv2D, Dense, Dropout, Flatten, GlobalAveragePooling2D, MaxPooling2D,
)
