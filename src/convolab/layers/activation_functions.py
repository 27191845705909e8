"""Keras's activation functions, one table: the names (and the aliases people type), the torch module computing each,
and whether each commutes with max-pooling (what lets the fast engine pool before activating)."""
from __future__ import annotations

from typing import Any, Callable, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from convolab.errors import SpecError
from convolab.layers.arguments import choice, short


class _HardSigmoid(nn.Module):
    """Keras 3's hard_sigmoid: relu6(x + 3) / 6 (the same as PyTorch's Hardsigmoid)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.hardsigmoid(x)


class _Exponential(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.exp(x)


class ActivationFunction(NamedTuple):
    """How one Keras activation is computed, and whether max(f(a), f(b)) == f(max(a, b)) for it (non-decreasing)."""

    module: Callable[[], nn.Module]
    commutes_with_max: bool


# Keras's names (keras.activations); softmax runs over channels (Keras's last axis, NCHW's dim 1).
FUNCTIONS: dict[str, ActivationFunction] = {
    "linear": ActivationFunction(nn.Identity, True),
    "relu": ActivationFunction(nn.ReLU, True),
    "sigmoid": ActivationFunction(nn.Sigmoid, False),  # non-decreasing too, but float rounding can tie differently
    "tanh": ActivationFunction(nn.Tanh, False),
    "softmax": ActivationFunction(lambda: nn.Softmax(dim=1), False),
    "elu": ActivationFunction(nn.ELU, False),
    "selu": ActivationFunction(nn.SELU, False),
    "gelu": ActivationFunction(nn.GELU, False),
    "silu": ActivationFunction(nn.SiLU, False),
    "leaky_relu": ActivationFunction(lambda: nn.LeakyReLU(0.2), True),  # Keras 3's slope is 0.2 (PyTorch's 0.01)
    "relu6": ActivationFunction(nn.ReLU6, True),
    "softplus": ActivationFunction(nn.Softplus, False),
    "softsign": ActivationFunction(nn.Softsign, False),
    "hard_sigmoid": ActivationFunction(_HardSigmoid, False),
    "exponential": ActivationFunction(_Exponential, False),
}
ACTIVATIONS: tuple[str, ...] = tuple(FUNCTIONS)
ACTIVATION_ALIASES = {"swish": "silu", "none": "linear", "identity": "linear", "leakyrelu": "leaky_relu"}


def activation_argument(layer: str, value: Any, argument: str = "activation") -> str:
    """Keras's activation argument: None means linear; aliases become Keras's names; convolab.keras.activations'
    objects name themselves. Any other function is refused with the name to give instead (tf.nn.relu: "relu")."""
    if value is None:
        return "linear"
    named = getattr(value, "keras_activation", None)
    if isinstance(named, str) and named in FUNCTIONS:
        return named
    if callable(value) and not isinstance(value, str):
        function_name = str(getattr(value, "__name__", "")).lower()
        function_name = ACTIVATION_ALIASES.get(function_name, function_name)
        raise SpecError(f"{layer}: {argument}={short(value)} is a function of another library; convolab computes "
                        f"its activations itself and takes them by name",
                        fix=(f"{argument}={function_name!r} (or keras.activations.{function_name} from convolab)"
                             if function_name in FUNCTIONS else f"give one of {', '.join(ACTIVATIONS)} by name"))
    return choice(layer, argument, value, ACTIVATIONS, ACTIVATION_ALIASES)


def activation_option(option: str) -> str | None:
    """The activation a one-line '-option' names (aliases allowed), or None when it names none."""
    name = ACTIVATION_ALIASES.get(option, option)
    return name if name in FUNCTIONS else None


def make_activation(name: str) -> nn.Module:
    """Keras's activation by name as a torch module."""
    return FUNCTIONS[name].module()


def commutes_with_max(module: nn.Module) -> bool:
    """True when `module` is one of the table's activations that max-pooling may run before."""
    return any(function.commutes_with_max and type(module) is type(function.module())
               for function in FUNCTIONS.values())
