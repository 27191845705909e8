"""keras.optimizers: Adam, SGD, RMSprop and AdamW with Keras's arguments and defaults, run by convolab's make_optimizer.

An optimizer here is a description (name, learning rate, decay); convolab builds the PyTorch optimizer when the model
is fitted. Keras's defaults: Adam, RMSprop, AdamW 0.001; SGD 0.01 (note: not 0.001); AdamW's weight_decay 0.004.
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass

from convolab.errors import ArgumentError
from convolab.keras.surface import check_arguments, unsupported

# Keras's arguments convolab's optimizers do not implement: given with a non-default value, they are refused.
KERAS_ONLY = ("beta_1", "beta_2", "epsilon", "amsgrad", "clipnorm", "clipvalue", "global_clipnorm", "use_ema",
              "ema_momentum", "ema_overwrite_frequency", "loss_scale_factor", "gradient_accumulation_steps", "name",
              "rho", "momentum", "nesterov", "centered")


@dataclass(frozen=True)
class Optimizer:
    """What compile needs: convolab's optimizer name, the learning rate and the weight decay."""

    name: str
    learning_rate: float
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        if isinstance(self.learning_rate, bool) or not isinstance(self.learning_rate, (int, float)) \
                or not self.learning_rate > 0:
            raise ArgumentError(f"{type(self).__name__}: expected learning_rate to be a positive number, "
                                f"received {self.learning_rate!r}", fix="e.g. learning_rate=0.001")


def _make(kind: str, default_rate: float, weight_decay_default: float = 0.0):
    def factory(learning_rate: float = default_rate, weight_decay: float | None = None, **keras_arguments):
        names = ["learning_rate"] + (["weight_decay"] if kind == "adamw" else [])
        check_arguments(f"keras.optimizers.{factory.__name__}", keras_arguments, names, KERAS_ONLY)
        if weight_decay and kind != "adamw":
            raise ArgumentError(f"keras.optimizers.{factory.__name__}: weight_decay is supported with AdamW only",
                                fix=f"use keras.optimizers.AdamW(learning_rate={learning_rate}, "
                                    f"weight_decay={weight_decay})")
        # a number (NumPy's too) becomes a float; anything else goes as it is, for Optimizer to name it
        number = isinstance(learning_rate, numbers.Real) and not isinstance(learning_rate, bool)
        return Optimizer(kind, float(learning_rate) if number else learning_rate,
                         weight_decay_default if weight_decay is None else weight_decay)
    return factory


Adam = _make("adam", 0.001)
Adam.__name__ = "Adam"
SGD = _make("sgd", 0.01)
SGD.__name__ = "SGD"
RMSprop = _make("rmsprop", 0.001)
RMSprop.__name__ = "RMSprop"
AdamW = _make("adamw", 0.001, 0.004)
AdamW.__name__ = "AdamW"
OPTIMIZERS = {"Adam": Adam, "SGD": SGD, "RMSprop": RMSprop, "AdamW": AdamW}
BY_STRING = {"adam": Adam, "sgd": SGD, "rmsprop": RMSprop, "adamw": AdamW}


def get(identifier) -> Optimizer:
    """compile's optimizer=: a name ("adam", Keras's defaults) or an optimizer object."""
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, str) and identifier.lower() in BY_STRING:
        return BY_STRING[identifier.lower()]()
    uncalled = [name for name, factory in OPTIMIZERS.items() if identifier is factory]
    if uncalled:
        raise ArgumentError(f"compile: optimizer=keras.optimizers.{uncalled[0]}, the optimizer itself rather than one "
                            "made by calling it", fix=f"optimizer=keras.optimizers.{uncalled[0]}() (learning_rate=... "
                                                      f"inside the parentheses), or optimizer='{uncalled[0].lower()}'")
    raise unsupported(f"optimizer {identifier!r}", list(BY_STRING) + [f"keras.optimizers.{name}(...)" for name in
                                                                       OPTIMIZERS])


def __getattr__(name: str):
    raise unsupported(f"keras.optimizers.{name}", OPTIMIZERS)
