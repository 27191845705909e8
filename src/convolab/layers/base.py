"""What every layer kind answers about itself, so that spec, shapes, summary, diagram, model and engine ask the kind
instead of branching on its type (Keras's own way: each layer computes its output shape and counts its weights).

A kind is a frozen dataclass in Keras's vocabulary that also inherits LayerKind. It owns, in one place:
- its arguments and their validation (the dataclass and its __post_init__);
- its one-line token (`from_token`, `token`) and its YAML/JSON entry (`to_config`, `from_config`);
- its Keras config (`keras_config`, `from_keras_config`, the options it computes at one value only in `keras_fixed`)
  and Keras's weight layout (`keras_weights`, `set_keras_weights`): what keras_files reads and writes .keras/.h5 with;
- its arithmetic with the explanation (`analyze`: output shape, parameters, multiply-adds, receptive field);
- its torch block (`block`), whose class says what the fast engine may do with it (see Block).
"""
from __future__ import annotations

import dataclasses
import re
from decimal import Decimal
from typing import Any, ClassVar, NamedTuple

import numpy as np
from torch import nn

from convolab.errors import SpecError
from convolab.layers.activation_functions import ACTIVATIONS, activation_option
from convolab.layers.arithmetic import Explained, ReceptiveField, Shape, shape_text
from convolab.layers.arguments import suggestion


class TokenError(Exception):
    """A problem inside one one-line token: what was expected there, and the fix (spec.py adds the caret)."""

    def __init__(self, expected: str, fix: str):
        super().__init__(expected)
        self.expected = expected
        self.fix = fix


@dataclasses.dataclass(frozen=True)
class Position:
    """Where a layer sits while a spec is analyzed: its 1-based index, and whether a pooling layer came before it."""

    index: int
    kind: str
    after_pooling: bool = False

    def where(self) -> str:
        return f"{self.kind} #{self.index}"


class Analysis(NamedTuple):
    """What a kind computes about itself on one input shape: output, parameters, cost, field, and why."""

    output_shape: Shape
    explanations: list[str]
    trainable: int = 0
    non_trainable: int = 0
    macs: Explained = Explained(0, "")
    receptive_field: Explained = Explained(None, "unchanged")  # None: the input's field, unchanged


class Block(nn.Module):
    """A torch block computing one spec layer; what the fast engine (engine.py) may do with it.

    fast_role: "conv" for a plain convolution a following "max_pool" may fuse with (pool before activating).
    draws_random: the block draws random numbers while training (Dropout); inside a shard it takes the shard's own
    generator as `generator=`.
    crop_windows(): ((size, stride), (size, stride)) along height and width when the block reads only the leading
    rows and columns for fewer outputs (a 'valid' window), so the layer before it may compute less; None otherwise.
    """

    fast_role: ClassVar[str | None] = None
    draws_random: ClassVar[bool] = False

    def crop_windows(self) -> tuple[tuple[int, int], tuple[int, int]] | None:
        return None


def _as_tuple(value: Any) -> Any:
    """Keras writes pairs as lists, tuples or (Keras 2) single numbers for both; compare them as tuples."""
    return tuple(value) if isinstance(value, (list, tuple)) else value


# The option every image layer shares: convolab computes channels-last tensors (None: Keras's default, channels-last).
CHANNELS_LAST: dict[str, tuple] = {"data_format": ("channels_last", None)}


class LayerKind:
    """The questions every kind answers; the defaults fit a layer without arguments, weights or window."""

    keras_name: ClassVar[str]                  # Keras's automatic name: conv2d, conv2d_1, ...
    token_words: ClassVar[tuple[str, ...]] = ()  # the one-line words that make this kind: ("pool", "maxpool")
    token_forms: ClassVar[dict[str, str]] = {}   # word -> its form in error messages
    grammar: ClassVar[str] = ""                # the kind's lines in the grammar's help
    positional: ClassVar[tuple[str, ...]] = ()   # arguments the Python form writes without their name
    argument_examples: ClassVar[dict[str, str]] = {}  # how a file writes a required argument: {"units": "units: 128"}
    colors: ClassVar[tuple[str, str]] = ("#f2f2f2", "#777777")  # the diagram's fill and border
    windowed: ClassVar[bool] = False           # slides a window over an image: feature maps, a growing field
    pooling: ClassVar[bool] = False            # a pooling layer (window messages may suggest removing one)
    has_kernels: ClassVar[bool] = False        # learned windows worth drawing (convolab filters)
    takes_output_activation: ClassVar[bool] = False  # in a line, the last such layer defaults to softmax (Dense)
    identity_at_inference: ClassVar[bool] = False  # computes nothing when predicting (Dropout)
    # Keras options this kind computes at one value only: {option: (the value written, other spellings accepted)}.
    # keras_config writes the first; from_keras_config refuses any other (a .keras file with dilation_rate=2, say).
    keras_fixed: ClassVar[dict[str, tuple]] = {}

    # --- arguments ----------------------------------------------------------------------------------------------

    def arguments(self) -> dict[str, Any]:
        """The layer's arguments by name (input_shape left out: it belongs to the ModelSpec)."""
        return {field.name: getattr(self, field.name) for field in dataclasses.fields(self)
                if field.name != "input_shape"}

    @property
    def activation_name(self) -> str:
        """The activation the layer applies to its output ("linear" when none)."""
        return getattr(self, "activation", None) or "linear"

    def argument_is_default(self, argument: str, value: Any, default: Any) -> bool:
        """Whether the Python form may leave `argument` out (Keras's default)."""
        if argument == "activation":
            return value == "linear"
        if isinstance(default, (int, float)) and not isinstance(default, bool):
            return value == default
        return value == default or (isinstance(default, tuple) and tuple(value) == default)

    # --- the one-line form --------------------------------------------------------------------------------------

    @classmethod
    def from_token(cls, word: str, body: str, options: list[str], last: bool) -> "LayerKind":
        """The layer a token makes: `word` + `body` + '-option's. `last`: the last layer taking the output activation."""
        if body:
            raise TokenError(f"just '{word}'", fix=f"write '{word}' with nothing after it")
        no_options(options, cls.token_forms.get(word, word))
        return cls()

    def token(self, last: bool) -> str:
        """The token that parses back to this layer."""
        return self.token_words[0]

    # --- the YAML/JSON form -------------------------------------------------------------------------------------

    def to_config(self) -> dict[str, Any]:
        """{"type": "Conv2D", "filters": 64, ...}: every argument written out, tuples as lists."""
        entry: dict[str, Any] = {"type": type(self).__name__}
        for argument, value in self.arguments().items():
            entry[argument] = list(value) if isinstance(value, tuple) else value
        return entry

    @classmethod
    def from_config(cls, arguments: dict[str, Any], where: str) -> "LayerKind":
        """A layer from a file entry's arguments (type removed); names checked with a suggestion. `where` prefixes
        messages ('model.yaml: layer 3')."""
        allowed = [field.name for field in dataclasses.fields(cls)]
        for key in arguments:
            if key not in allowed:
                raise SpecError(f"{where} ({cls.__name__}): unknown argument {str(key)[:60]!r}; "
                                f"expected {', '.join(allowed)}",
                                fix=suggestion(str(key)[:60], allowed) or "remove it")
        required = [field.name for field in dataclasses.fields(cls)
                    if field.default is dataclasses.MISSING and field.name not in arguments]
        if required:
            raise SpecError(f"{where} ({cls.__name__}): missing argument {required[0]!r}",
                            fix=f"add {required[0]}: ..., for example " + cls.argument_examples.get(required[0], ""))
        return cls(**arguments)

    # --- Keras's own config and weights (what a .keras/.h5 file holds) ------------------------------------------

    def keras_config(self) -> dict[str, Any]:
        """The arguments Keras's layer class takes for this layer: keras.layers.<Kind>(**layer.keras_config()), the
        options convolab computes at one value only (keras_fixed) written out, so no Keras default can differ."""
        fixed = {name: (list(values[0]) if isinstance(values[0], tuple) else values[0])
                 for name, values in self.keras_fixed.items()}
        return {**fixed, **{name: (list(value) if isinstance(value, tuple) else value)
                            for name, value in self.arguments().items()}}

    @classmethod
    def from_keras_config(cls, config: dict[str, Any]) -> "LayerKind":
        """This kind from a Keras layer's get_config(); Keras's bookkeeping keys (name, dtype, initializers) are
        ignored, an argument convolab cannot compute is refused."""
        for key, accepted in cls.keras_fixed.items():
            if key in config and _as_tuple(config[key]) not in [_as_tuple(value) for value in accepted]:
                raise SpecError(f"{cls.__name__}: {key}={config[key]!r} is not supported by convolab",
                                fix=f"use {key}={accepted[0]!r}")
        names = [field.name for field in dataclasses.fields(cls) if field.name != "input_shape"]
        return cls(**{name: config[name] for name in names if name in config})

    def keras_weights(self, block: nn.Module) -> list[np.ndarray]:
        """The block's weights in Keras's order and layout (what layer.get_weights() returns)."""
        return []

    def set_keras_weights(self, block: nn.Module, weights: list[np.ndarray]) -> None:
        """Load Keras-layout `weights` (layer.get_weights()) into the block."""
        if weights:
            raise SpecError(f"{type(self).__name__} has no weights, received {len(weights)} arrays",
                            fix="give the weights to the layer that has them")

    # --- arithmetic and pictures --------------------------------------------------------------------------------

    def analyze(self, shape: Shape, field: ReceptiveField, position: Position) -> Analysis:
        """Output shape, parameters, multiply-adds and receptive field on input `shape`, each with its arithmetic."""
        raise NotImplementedError

    def settings(self) -> str:
        """The layer's settings in a few words for the diagram: '64 filters 3×3, relu'."""
        return ""

    def kernels(self, block: nn.Module) -> np.ndarray:
        """The learned windows as (kernel_h, kernel_w, in_channels, filters), for has_kernels kinds."""
        raise SpecError(f"{type(self).__name__} has no kernels", fix="pick a layer with kernels (Conv2D)")

    # --- torch --------------------------------------------------------------------------------------------------

    def block(self, input_shape: Shape, activation: str | None = None) -> nn.Module:
        """The torch block computing this layer on `input_shape`; `activation` overrides the layer's own."""
        raise NotImplementedError


# --- helpers the kinds share -----------------------------------------------------------------------------------------

def no_options(options: list[str], form: str) -> None:
    if options:
        raise TokenError(f"{form} with no -options", fix=f"remove '-{'-'.join(options)}'")


def full_match(pattern: re.Pattern, body: str, form: str) -> re.Match:
    """`body` matched whole by `pattern`, or a TokenError showing the token's form."""
    match = pattern.fullmatch(body)
    if match is None:
        raise TokenError(form, fix=f"write it like {form.split('e.g. ')[-1]}")
    return match


def activation_and_bias(options: list[str], word: str, default: str, bias: bool = True) -> tuple[str, bool]:
    """The -activation and -nobias options of a layer with weights; two activations, or -nobias twice, are refused,
    not overwritten or ignored."""
    activation, use_bias, named = default, True, None
    for option in options:
        if option == "nobias" and bias:
            if not use_bias:
                raise TokenError("-nobias once, received it twice", fix="drop the second -nobias")
            use_bias = False
        elif activation_option(option) is not None:
            if named is not None:
                raise TokenError(f"one activation, received -{named} and -{option}",
                                 fix=f"keep one of -{named} and -{option}, or apply the second as a layer of its own: "
                                     f"...-{named},{option}")
            named = option
            activation = activation_option(option)
        else:
            extra = ("nobias",) if bias else ()
            nearest = suggestion(option, ACTIVATIONS + extra)
            raise TokenError(f"an option among {', '.join(ACTIVATIONS + extra)} after '-'",
                             fix=nearest or f"for example {word}-relu")
    return activation, use_bias


def activation_suffix(activation: str, use_bias: bool, default_activation: str) -> str:
    """The options a token needs to print back its activation and bias."""
    return ("" if activation == default_activation else f"-{activation}") + ("" if use_bias else "-nobias")


def size_text(pair: tuple[int, int]) -> str:
    """(3, 3) -> '3', (3, 5) -> '3x5': the grammar's window sizes."""
    return str(pair[0]) if pair[0] == pair[1] else f"{pair[0]}x{pair[1]}"


def pair_words(value: tuple[int, int]) -> str:
    """(3, 3) -> '3×3'."""
    return "×".join(str(part) for part in value)


def require_image(position: Position, shape: Shape) -> None:
    """A layer that slides over an image refuses a vector."""
    if len(shape) != 3:
        raise SpecError(
            f"{position.where()}: received a vector input {shape_text(shape)}; expected an image "
            "(height, width, channels)",
            fix=f"move layer {position.index} before flatten/gap/dense, or remove it",
        )


def require_fit(position: Position, shape: Shape, window: tuple[int, int], padding: str) -> None:
    """A 'valid' window larger than its input leaves no output at all; the fix names a pooling layer only if one came
    before."""
    if padding == "valid" and (window[0] > shape[0] or window[1] > shape[1]):
        remove = " or remove a pooling layer" if position.after_pooling else ""
        raise SpecError(
            f"{position.where()}: {window[0]}×{window[1]} window on a {shape[0]}×{shape[1]} input; "
            f"use padding='same'{remove}",
            fix=f"add 'same' to the token (conv64x3same, pool2same) or padding='same'{remove}"
                + ("" if position.after_pooling else ", or give a larger input"),
        )


def number_text(value: float) -> str:
    """A float without exponent or trailing zeros (0.25, 0.00001), so the line grammar can read it back; -0.0 is
    0 (a '-' would start an option: 'dropout-0' does not parse)."""
    text = format(Decimal(repr(float(value) + 0.0)), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text
