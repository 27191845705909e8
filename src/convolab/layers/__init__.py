"""Layer kinds: one module per kind or family, each owning everything convolab knows about that kind (layers/base.py
lists the questions). KINDS is the registry: adding a kind is its module and one line here."""
from __future__ import annotations

from convolab.layers.activation import Activation
from convolab.layers.base import LayerKind
from convolab.layers.conv import Conv2D
from convolab.layers.dense import Dense
from convolab.layers.depthwise import DepthwiseConv2D
from convolab.layers.global_max_pooling import GlobalMaxPooling2D
from convolab.layers.normalization import BatchNormalization
from convolab.layers.pooling import AveragePooling2D, GlobalAveragePooling2D, MaxPooling2D
from convolab.layers.registry import Registry
from convolab.layers.regularization import Dropout
from convolab.layers.reshape import Flatten
from convolab.layers.separable import SeparableConv2D

KINDS = Registry(
    Conv2D,
    MaxPooling2D,
    AveragePooling2D,
    GlobalAveragePooling2D,
    Flatten,
    Dense,
    Dropout,
    BatchNormalization,
    GlobalMaxPooling2D,
    DepthwiseConv2D,
    SeparableConv2D,
    Activation,
)
