"""Model specs in Keras's vocabulary: layer dataclasses, presets, the one-line grammar, YAML/JSON files, and printing back.

A spec is data, not a network: `ModelSpec(layers, input_shape, name)` holds frozen layer dataclasses whose names,
argument names and defaults are Keras's. Three forms say the same thing and print back to each other:

- Python:   Sequential([Conv2D(64, (3, 3), activation="relu", input_shape=(28, 28, 1)), MaxPooling2D(2, 2), ...])
- one line: conv64x3,pool2,conv64x3,pool2,flatten,dense128,dense10
- a file:   YAML or JSON, {"name": ..., "input_shape": [28, 28, 1], "layers": [{"type": "Conv2D", "filters": 64, ...}]}

Every argument is validated when the layer is made, so a bad spec fails before anything is built (SpecError, which is a
ValueError like Keras's). Shape arithmetic lives in shapes.py; this module never looks at tensors.
"""
from __future__ import annotations

import dataclasses
import difflib
import functools
import json
import math
import re
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar, Union

from convolab.errors import SpecError

# The lab's data: Fashion-MNIST images are 28×28 gray, in 10 classes. Used only when nothing else says otherwise.
DEFAULT_INPUT_SHAPE: tuple[int, int, int] = (28, 28, 1)
DEFAULT_NUM_CLASSES = 10

# Keras's activation names (keras.activations), plus the aliases people type. "linear" is Keras's None.
ACTIVATIONS: tuple[str, ...] = (
    "linear", "relu", "sigmoid", "tanh", "softmax", "elu", "selu", "gelu", "silu", "leaky_relu", "relu6",
    "softplus", "softsign", "hard_sigmoid", "exponential",
)
ACTIVATION_ALIASES = {"swish": "silu", "none": "linear", "identity": "linear", "leakyrelu": "leaky_relu"}
PADDINGS = ("valid", "same")


# --- validation helpers ----------------------------------------------------------------------------------------------

def _is_int(value: Any) -> bool:
    """True for Python/numpy integers, False for bool (Keras rejects filters=True too)."""
    return isinstance(value, int) and not isinstance(value, bool) or type(value).__name__.startswith(("int", "uint"))


def _positive_int(layer: str, argument: str, value: Any, example: str) -> int:
    """`value` as an int > 0, or a SpecError that says what was received."""
    if not _is_int(value) or int(value) <= 0:
        raise SpecError(
            f"{layer}: expected {argument} to be a positive integer, received: {argument}={value!r}",
            fix=f"for example {example}",
        )
    return int(value)


def _positive_pair(layer: str, argument: str, value: Any, example: str) -> tuple[int, int]:
    """An int or a pair of ints > 0 as (height, width); Keras's normalize_tuple."""
    if _is_int(value):
        pair = (value, value)
    elif isinstance(value, (tuple, list)) and len(value) == 2:
        pair = tuple(value)
    else:
        pair = None
    if pair is None or not all(_is_int(item) and int(item) > 0 for item in pair):
        raise SpecError(
            f"{layer}: expected {argument} to be a positive integer or a tuple of 2 positive integers, "
            f"received: {argument}={value!r}",
            fix=f"for example {example}",
        )
    return int(pair[0]), int(pair[1])


def _choice(layer: str, argument: str, value: Any, choices: tuple[str, ...], aliases: dict | None = None) -> str:
    """A string among `choices` (case-insensitive, aliases allowed), or a SpecError naming the nearest."""
    if isinstance(value, str):
        lowered = value.strip().lower()
        lowered = (aliases or {}).get(lowered, lowered)
        if lowered in choices:
            return lowered
    raise SpecError(
        f"{layer}: expected {argument} to be one of {', '.join(choices)}, received: {argument}={value!r}",
        fix=_suggestion(str(value), choices) or f"use one of {', '.join(choices)}",
    )


def _activation(layer: str, value: Any) -> str:
    """Keras's activation argument: None means linear."""
    if value is None:
        return "linear"
    return _choice(layer, "activation", value, ACTIVATIONS, ACTIVATION_ALIASES)


def _suggestion(received: str, choices: Any) -> str | None:
    """'did you mean X?' for the nearest name, or None when nothing is close."""
    nearest = difflib.get_close_matches(received.lower(), [str(choice).lower() for choice in choices], n=1, cutoff=0.5)
    if not nearest:
        return None
    original = {str(choice).lower(): str(choice) for choice in choices}[nearest[0]]
    return f"did you mean {original!r}?"


def _input_shape(layer: str, value: Any) -> tuple[int, int, int] | None:
    """Keras's input_shape argument as (height, width, channels); (h, w) means one channel, as the lab's Flatten uses."""
    if value is None:
        return None
    if isinstance(value, (tuple, list)) and len(value) in (2, 3) and all(_is_int(v) and int(v) > 0 for v in value):
        shape = tuple(int(v) for v in value)
        return shape if len(shape) == 3 else (shape[0], shape[1], 1)
    raise SpecError(
        f"{layer}: expected input_shape to be (height, width, channels) of positive integers, "
        f"received: input_shape={value!r}",
        fix="for example input_shape=(28, 28, 1)",
    )


def _set(layer: Any, **values: Any) -> None:
    """Store normalized values on a frozen dataclass (only __post_init__ calls this)."""
    for name, value in values.items():
        object.__setattr__(layer, name, value)


# --- layers ----------------------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Conv2D:
    """A 2-D convolution: `filters` windows of `kernel_size` slid with `strides`; Keras's defaults."""

    filters: int
    kernel_size: Union[int, tuple[int, int]]
    strides: Union[int, tuple[int, int]] = (1, 1)
    padding: str = "valid"
    activation: str | None = None  # None is Keras's linear; the one-line grammar defaults to relu instead
    use_bias: bool = True
    input_shape: tuple[int, ...] | None = None

    keras_name: ClassVar[str] = "conv2d"

    def __post_init__(self) -> None:
        _set(
            self,
            filters=_positive_int("Conv2D", "filters", self.filters, "Conv2D(64, (3, 3))"),
            kernel_size=_positive_pair("Conv2D", "kernel_size", self.kernel_size, "Conv2D(64, (3, 3))"),
            strides=_positive_pair("Conv2D", "strides", self.strides, "Conv2D(64, (3, 3), strides=(2, 2))"),
            padding=_choice("Conv2D", "padding", self.padding, PADDINGS),
            activation=_activation("Conv2D", self.activation),
            use_bias=_boolean("Conv2D", "use_bias", self.use_bias),
            input_shape=_input_shape("Conv2D", self.input_shape),
        )


@dataclasses.dataclass(frozen=True)
class MaxPooling2D:
    """The largest value in each `pool_size` window; strides default to pool_size, as in Keras."""

    pool_size: Union[int, tuple[int, int]] = (2, 2)
    strides: Union[int, tuple[int, int], None] = None
    padding: str = "valid"
    input_shape: tuple[int, ...] | None = None

    keras_name: ClassVar[str] = "max_pooling2d"

    def __post_init__(self) -> None:
        _init_pooling(self, type(self).__name__)


@dataclasses.dataclass(frozen=True)
class AveragePooling2D:
    """The mean of each `pool_size` window ('same' padding averages only the real values, as Keras/TensorFlow do)."""

    pool_size: Union[int, tuple[int, int]] = (2, 2)
    strides: Union[int, tuple[int, int], None] = None
    padding: str = "valid"
    input_shape: tuple[int, ...] | None = None

    keras_name: ClassVar[str] = "average_pooling2d"

    def __post_init__(self) -> None:
        _init_pooling(self, type(self).__name__)


def _init_pooling(layer: Any, kind: str) -> None:
    """Shared validation of the two pooling layers; strides=None becomes pool_size."""
    pool_size = _positive_pair(kind, "pool_size", layer.pool_size, f"{kind}((2, 2))")
    strides = pool_size if layer.strides is None else _positive_pair(
        kind, "strides", layer.strides, f"{kind}((3, 3), strides=(2, 2))")
    _set(
        layer,
        pool_size=pool_size,
        strides=strides,
        padding=_choice(kind, "padding", layer.padding, PADDINGS),
        input_shape=_input_shape(kind, layer.input_shape),
    )


@dataclasses.dataclass(frozen=True)
class GlobalAveragePooling2D:
    """The mean of each whole channel: (h, w, c) becomes (c,)."""

    input_shape: tuple[int, ...] | None = None

    keras_name: ClassVar[str] = "global_average_pooling2d"

    def __post_init__(self) -> None:
        _set(self, input_shape=_input_shape("GlobalAveragePooling2D", self.input_shape))


@dataclasses.dataclass(frozen=True)
class Flatten:
    """(h, w, c) becomes one vector of h·w·c values, row by row (Keras's channels-last order)."""

    input_shape: tuple[int, ...] | None = None

    keras_name: ClassVar[str] = "flatten"

    def __post_init__(self) -> None:
        _set(self, input_shape=_input_shape("Flatten", self.input_shape))


@dataclasses.dataclass(frozen=True)
class Dense:
    """A fully connected layer of `units`; units=None means 'the dataset's class count' (filled by resolve_spec)."""

    units: int | None
    activation: str | None = None  # None is Keras's linear; the one-line grammar defaults to relu / softmax instead
    use_bias: bool = True
    input_shape: tuple[int, ...] | None = None

    keras_name: ClassVar[str] = "dense"

    def __post_init__(self) -> None:
        units = None if self.units is None else _positive_int("Dense", "units", self.units, "Dense(128)")
        _set(
            self,
            units=units,
            activation=_activation("Dense", self.activation),
            use_bias=_boolean("Dense", "use_bias", self.use_bias),
            input_shape=_input_shape("Dense", self.input_shape),
        )


@dataclasses.dataclass(frozen=True)
class Dropout:
    """Zeroes a `rate` fraction of values while training (scaling the rest up); does nothing at inference."""

    rate: float
    input_shape: tuple[int, ...] | None = None

    keras_name: ClassVar[str] = "dropout"

    def __post_init__(self) -> None:
        rate = self.rate
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate < 1 or math.isnan(rate):
            raise SpecError(
                f"Dropout: expected rate to be a number in [0, 1), received: rate={rate!r}",
                fix="for example Dropout(0.25) drops a quarter of the values while training",
            )
        _set(self, rate=float(rate), input_shape=_input_shape("Dropout", self.input_shape))


@dataclasses.dataclass(frozen=True)
class BatchNormalization:
    """Normalizes each channel; Keras's momentum/epsilon (PyTorch's momentum is 1 - Keras's)."""

    momentum: float = 0.99
    epsilon: float = 1e-3
    input_shape: tuple[int, ...] | None = None

    keras_name: ClassVar[str] = "batch_normalization"

    def __post_init__(self) -> None:
        for argument, value, valid in (
            ("momentum", self.momentum, lambda v: 0 <= v < 1),
            ("epsilon", self.epsilon, lambda v: v > 0),
        ):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not valid(value):
                raise SpecError(
                    f"BatchNormalization: expected {argument} to be "
                    f"{'a number in [0, 1)' if argument == 'momentum' else 'a positive number'}, "
                    f"received: {argument}={value!r}",
                    fix="Keras's defaults are momentum=0.99, epsilon=0.001",
                )
        _set(
            self,
            momentum=float(self.momentum),
            epsilon=float(self.epsilon),
            input_shape=_input_shape("BatchNormalization", self.input_shape),
        )


def _boolean(layer: str, argument: str, value: Any) -> bool:
    """A real bool (a YAML 'yes' is a bool already; the string 'false' is not)."""
    if not isinstance(value, bool):
        raise SpecError(f"{layer}: expected {argument} to be true or false, received: {argument}={value!r}",
                        fix=f"{argument}=False")
    return value


Layer = Union[Conv2D, MaxPooling2D, AveragePooling2D, GlobalAveragePooling2D, Flatten, Dense, Dropout,
              BatchNormalization]
LAYER_TYPES: dict[str, type] = {cls.__name__: cls for cls in (
    Conv2D, MaxPooling2D, AveragePooling2D, GlobalAveragePooling2D, Flatten, Dense, Dropout, BatchNormalization)}


def _check_keyword_names(cls: type) -> None:
    """Make a misspelt keyword (Conv2D(64, 3, filter=8)) a SpecError naming the nearest argument, like the files."""
    generated_init = cls.__init__
    names = [field.name for field in dataclasses.fields(cls)]

    @functools.wraps(generated_init)
    def __init__(self, *args, **kwargs):
        for key in kwargs:
            if key not in names:
                raise SpecError(f"{cls.__name__}: unknown argument {key!r}; expected one of {', '.join(names)}",
                                fix=_suggestion(key, names) or f"use one of {', '.join(names)}")
        generated_init(self, *args, **kwargs)

    cls.__init__ = __init__


for _layer_type in LAYER_TYPES.values():
    _check_keyword_names(_layer_type)


def layer_arguments(layer: Layer) -> dict[str, Any]:
    """The layer's arguments by name (input_shape left out: it belongs to the ModelSpec)."""
    return {field.name: getattr(layer, field.name) for field in dataclasses.fields(layer) if field.name != "input_shape"}


# --- the whole spec --------------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """A stack of layers, the input shape when known (height, width, channels), and a name."""

    layers: tuple[Layer, ...]
    input_shape: tuple[int, int, int] | None = None
    name: str | None = None

    def __post_init__(self) -> None:
        layers = tuple(self.layers)
        if not layers:
            raise SpecError("expected at least one layer, received an empty model", fix="for example: " + PRESETS["cnn"])
        for position, layer in enumerate(layers, start=1):
            if type(layer).__name__ not in LAYER_TYPES:
                raise SpecError(f"layer {position}: expected a convolab layer (Conv2D, Dense, ...), received: {layer!r}",
                                fix="build layers with convolab's Conv2D, MaxPooling2D, Flatten, Dense, ...")
            if isinstance(layer, Dense) and layer.units is None:
                later_dense = [other for other in layers[position:] if isinstance(other, Dense)]
                if later_dense:
                    raise SpecError(
                        f"layer {position} (Dense): only the last Dense may leave units out (it gets the class count), "
                        "received units=None on a hidden Dense",
                        fix="give it a size, for example Dense(128) or dense128",
                    )
        input_shape = _input_shape("ModelSpec", self.input_shape)
        # Keras takes input_shape from the first layer; keep it on the spec, not on the layer, so forms compare equal.
        first_shape = layers[0].input_shape
        if first_shape is not None:
            if input_shape is not None and input_shape != first_shape:
                raise SpecError(
                    f"the first layer says input_shape={first_shape} but the model says {input_shape}",
                    fix="give the input shape once",
                )
            input_shape = first_shape
            layers = (dataclasses.replace(layers[0], input_shape=None),) + layers[1:]
        for position, layer in enumerate(layers[1:], start=2):
            if layer.input_shape is not None:
                raise SpecError(
                    f"layer {position} ({type(layer).__name__}): input_shape belongs on the first layer only, "
                    f"received: input_shape={layer.input_shape}",
                    fix="remove it here; each layer's input is the previous layer's output",
                )
        _set(self, layers=layers, input_shape=input_shape)

    def to_line(self) -> str:
        """The one-line form (see GRAMMAR); parse_line(spec.to_line()) == spec, name aside."""
        return format_line(self)

    def to_dict(self) -> dict[str, Any]:
        """The YAML/JSON form: plain lists, numbers and strings."""
        return spec_to_dict(self)

    def to_python(self) -> str:
        """Python source that builds this spec with convolab's Keras-style API."""
        return format_python(self)


def resolve_spec(spec: ModelSpec, input_shape: Any = None, num_classes: int | None = None) -> ModelSpec:
    """The spec with its input shape set and a last Dense without units given `num_classes` units.

    input_shape: (height, width, channels); when both the spec and the caller give one they must agree.
    num_classes: the dataset's class count; needed only when the last Dense leaves units out.
    """
    given = _input_shape("input", input_shape)
    if given is not None and spec.input_shape is not None and given != spec.input_shape:
        raise SpecError(
            f"the model was written for input {spec.input_shape} but the input here is {given}",
            fix="drop the model's input shape, or give data of that shape",
        )
    resolved_shape = spec.input_shape or given
    if resolved_shape is None:
        raise SpecError("the model's input shape is unknown", fix="give it, for example --input-shape 28,28,1")
    layers = list(spec.layers)
    for position, layer in enumerate(layers):
        if isinstance(layer, Dense) and layer.units is None:
            if num_classes is None:
                raise SpecError(
                    f"Dense #{position + 1}: units left out means 'the class count', but no class count is known",
                    fix="give one (--classes N) or write the size, for example dense10",
                )
            layers[position] = dataclasses.replace(layer, units=_positive_int("Dense", "units", num_classes, "10"))
    return ModelSpec(tuple(layers), resolved_shape, spec.name)


# --- the one-line grammar --------------------------------------------------------------------------------------------

GRAMMAR = """\
A model is one line of comma-separated layer tokens, first layer first (spaces and case do not matter):

  conv64x3            Conv2D: 64 filters, 3×3 window (conv64x3x5: a 3×5 window)
  conv32x5s2same-tanh   ... with strides 2 (s2x1: 2 down, 1 across), 'same' padding, tanh
  pool2  maxpool2     MaxPooling2D 2×2, strides = pool size (pool3s2: 3×3 window, strides 2; pool2same)
  avgpool2            AveragePooling2D, same options as pool
  gap                 GlobalAveragePooling2D: (h, w, c) -> (c)
  flatten             Flatten: (h, w, c) -> (h·w·c)
  dense128            Dense: 128 units; `dense` alone = the dataset's class count
  dropout0.25         Dropout of a quarter of the values while training
  bn                  BatchNormalization (bn-m0.9-eps0.00001: momentum 0.9, epsilon 1e-5)
  input28x28x1        the input shape (height x width x channels); first token only, optional

Options follow a dash: an activation (-relu -sigmoid -tanh -softmax -linear -elu -selu -gelu -silu -leaky_relu
-relu6 -softplus -softsign -hard_sigmoid -exponential) on conv and dense, -nobias on conv and dense.
Defaults: conv and hidden dense use relu, the last dense uses softmax; padding 'valid'; strides 1 (pooling:
the pool size). The lab's CNN: conv64x3,pool2,conv64x3,pool2,flatten,dense128,dense10

Presets: dnn, cnn (the lab's two networks) and the lab's exercises cnn16, cnn32 (16 or 32 filters per
convolution), cnn1conv (one convolution), cnn3conv (a third convolution), and fast and best, the specs of the
training recipes (convolab train --recipe fast|best). MODEL may also be a .yaml/.yml/.json file."""

# The lab's networks and its exercises, in the one-line form. `dense` = the dataset's class count (10 for the lab).
PRESETS: dict[str, str] = {
    "dnn": "flatten,dense128,dense",
    "cnn": "conv64x3,pool2,conv64x3,pool2,flatten,dense128,dense",
    "cnn16": "conv16x3,pool2,conv16x3,pool2,flatten,dense128,dense",
    "cnn32": "conv32x3,pool2,conv32x3,pool2,flatten,dense128,dense",
    "cnn1conv": "conv64x3,pool2,flatten,dense128,dense",
    "cnn3conv": "conv64x3,pool2,conv64x3,pool2,conv64x3,flatten,dense128,dense",
    # The specs of the time-to-accuracy recipes (recipes.py holds their hyperparameters; `convolab train --recipe`).
    "fast": "conv16x3,pool2,bn,conv64x3,pool2,bn,flatten,dense256,dense",
    "best": "conv32x3,pool2,bn,conv64x3same,conv64x3,pool2,bn,flatten,dropout0.3,dense256,dense",
}

_TOKEN_FORMS = {
    "conv": "conv<filters>x<kernel>[x<kernel width>][s<stride>][same|valid][-activation], e.g. conv64x3",
    "pool": "pool<size>[s<stride>][same|valid], e.g. pool2",
    "maxpool": "maxpool<size>[s<stride>][same|valid], e.g. maxpool2",
    "avgpool": "avgpool<size>[s<stride>][same|valid], e.g. avgpool2",
    "gap": "gap",
    "flatten": "flatten",
    "dense": "dense[<units>][-activation], e.g. dense128",
    "dropout": "dropout<rate>, e.g. dropout0.25",
    "bn": "bn[-m<momentum>][-eps<epsilon>], e.g. bn",
    "input": "input<height>x<width>x<channels>, e.g. input28x28x1",
}
_WORD = re.compile(r"[a-z]+")
_CONV = re.compile(r"(\d+)x(\d+)(?:x(\d+))?(?:s(\d+)(?:x(\d+))?)?(same|valid)?")
_POOL = re.compile(r"(\d+)?(?:x(\d+))?(?:s(\d+)(?:x(\d+))?)?(same|valid)?")
_DENSE = re.compile(r"(\d+)?")
_DROPOUT = re.compile(r"(\d*\.?\d+)")
_INPUT = re.compile(r"(\d+)x(\d+)(?:x(\d+))?")


class _TokenError(Exception):
    """A problem inside one token: what was expected there, and the fix."""

    def __init__(self, expected: str, fix: str):
        super().__init__(expected)
        self.expected = expected
        self.fix = fix


def parse_line(line: str, name: str | None = None) -> ModelSpec:
    """A ModelSpec from the one-line form (GRAMMAR); errors point at the token's position in the line."""
    if not isinstance(line, str) or not line.strip():
        raise SpecError(f"expected a model, received: {line!r}", fix=f"for example {PRESETS['cnn']}, or a preset: cnn")
    tokens = _split_tokens(line)
    input_shape = None
    if tokens and tokens[0][1].lower().startswith("input"):
        input_shape = _parse_token_or_raise(line, tokens, 0)
        tokens = tokens[1:]
    if not tokens:
        raise SpecError(f"expected layers after the input shape, received: {line!r}", fix=f"for example {PRESETS['cnn']}")
    dense_positions = [index for index, (_, text) in enumerate(tokens) if text.lower().startswith("dense")]
    last_dense = dense_positions[-1] if dense_positions else None
    layers = []
    for index in range(len(tokens)):
        layers.append(_parse_token_or_raise(line, tokens, index, last_dense=(index == last_dense)))
    try:
        return ModelSpec(tuple(layers), input_shape, name)
    except SpecError as error:
        raise SpecError(f"in {line!r}: {error.message}", fix=error.fix) from None


def _split_tokens(line: str) -> list[tuple[int, str]]:
    """(column, token) pairs; the column is where the token starts in `line`, for the caret under it."""
    tokens, column = [], 0
    for piece in line.split(","):
        stripped = piece.strip()
        tokens.append((column + len(piece) - len(piece.lstrip()), stripped))
        column += len(piece) + 1
    return tokens


def _parse_token_or_raise(line: str, tokens: list[tuple[int, str]], index: int, last_dense: bool = False) -> Any:
    """One token as a layer (or the input shape), or a SpecError with a caret under the token."""
    column, text = tokens[index]
    try:
        return _parse_token(text.lower(), last_dense)
    except (_TokenError, SpecError) as error:
        is_input = text.lower().startswith("input")
        number = index + 1 - sum(1 for _, other in tokens[:index] if other.lower().startswith("input"))
        where = "the input token" if is_input else f"layer {number}"
        received = repr(text) if text else "nothing (two commas in a row?)"
        if isinstance(error, _TokenError):
            detail = f"received {received}; expected {error.expected}"
        else:  # the layer's own validation: "Conv2D: expected filters ..., received: filters=0"
            kind, _, rest = error.message.partition(": ")
            where += f" ({kind})" if kind in LAYER_TYPES else ""
            detail = f"received {received}; {rest if kind in LAYER_TYPES else error.message}"
        pointer = f"  {line}\n  {' ' * column}{'^' * max(1, len(text))}"
        raise SpecError(f"{where} at column {column + 1}: {detail}\n{pointer}", fix=error.fix) from None


def _parse_token(token: str, last_dense: bool) -> Any:
    """One lower-case token: `word` + body + `-option`s."""
    word_match = _WORD.match(token)
    if word_match is None:
        raise _TokenError("a layer name (conv, pool, avgpool, gap, flatten, dense, dropout, bn)",
                          fix="start each token with a layer name, for example conv64x3")
    word = word_match.group(0)
    if word not in _TOKEN_FORMS:
        nearest = _suggestion(word, [name for name in _TOKEN_FORMS if name != "input"])
        raise _TokenError(f"a layer name ({', '.join(name for name in _TOKEN_FORMS if name != 'input')}), "
                          f"not {word!r}",
                          fix=(nearest + " " if nearest else "") + "see `convolab summary --help` for the grammar")
    # Numbers are printed without exponents (see _number), so a dash always starts an option.
    body, *options = token[len(word):].split("-")
    return _BUILDERS[word](body, options, last_dense, word)


def _full(pattern: re.Pattern, body: str, word: str) -> re.Match:
    match = pattern.fullmatch(body)
    if match is None:
        raise _TokenError(_TOKEN_FORMS[word], fix=f"write it like {_TOKEN_FORMS[word].split('e.g. ')[-1]}")
    return match


def _activation_and_bias(options: list[str], word: str, default: str) -> tuple[str, bool]:
    """The -activation and -nobias options of conv and dense."""
    activation, use_bias = default, True
    for option in options:
        if option == "nobias":
            use_bias = False
        elif ACTIVATION_ALIASES.get(option, option) in ACTIVATIONS:
            activation = ACTIVATION_ALIASES.get(option, option)
        else:
            nearest = _suggestion(option, ACTIVATIONS + ("nobias",))
            raise _TokenError(f"an option among {', '.join(ACTIVATIONS)}, nobias after '-'",
                              fix=nearest or f"for example {word}-relu")
    return activation, use_bias


def _no_options(options: list[str], word: str) -> None:
    if options:
        raise _TokenError(f"{_TOKEN_FORMS[word]} with no -options", fix=f"remove '-{'-'.join(options)}'")


def _build_conv(body: str, options: list[str], last_dense: bool, word: str) -> Conv2D:
    match = _full(_CONV, body, word)
    filters, kernel_h, kernel_w, stride_h, stride_w, padding = match.groups()
    activation, use_bias = _activation_and_bias(options, word, "relu")
    return Conv2D(
        int(filters),
        (int(kernel_h), int(kernel_w or kernel_h)),
        strides=(int(stride_h or 1), int(stride_w or stride_h or 1)),
        padding=padding or "valid",
        activation=activation,
        use_bias=use_bias,
    )


def _build_pool(body: str, options: list[str], last_dense: bool, word: str) -> Any:
    match = _full(_POOL, body, word)
    size_h, size_w, stride_h, stride_w, padding = match.groups()
    _no_options(options, word)
    if size_h is None and size_w is not None:
        raise _TokenError(_TOKEN_FORMS[word], fix=f"write it like {word}2")
    pool_size = (int(size_h or 2), int(size_w or size_h or 2))
    strides = None if stride_h is None else (int(stride_h), int(stride_w or stride_h))
    layer_type = AveragePooling2D if word == "avgpool" else MaxPooling2D
    return layer_type(pool_size, strides=strides, padding=padding or "valid")


def _build_bare(body: str, options: list[str], last_dense: bool, word: str) -> Any:
    if body:
        raise _TokenError(f"just '{word}'", fix=f"write '{word}' with nothing after it")
    _no_options(options, word)
    return GlobalAveragePooling2D() if word == "gap" else Flatten()


def _build_dense(body: str, options: list[str], last_dense: bool, word: str) -> Dense:
    match = _full(_DENSE, body, word)
    activation, use_bias = _activation_and_bias(options, word, "softmax" if last_dense else "relu")
    units = match.group(1)
    return Dense(None if units is None else int(units), activation=activation, use_bias=use_bias)


def _build_dropout(body: str, options: list[str], last_dense: bool, word: str) -> Dropout:
    match = _full(_DROPOUT, body, word)
    _no_options(options, word)
    return Dropout(float(match.group(1)))


def _build_bn(body: str, options: list[str], last_dense: bool, word: str) -> BatchNormalization:
    if body:
        raise _TokenError(_TOKEN_FORMS[word], fix="write 'bn', options after dashes: bn-m0.9-eps0.001")
    arguments: dict[str, float] = {}
    for option in options:
        match = re.fullmatch(r"(m|eps)(\d*\.?\d+)", option)
        if match is None:
            raise _TokenError(_TOKEN_FORMS[word], fix="options are -m<momentum> and -eps<epsilon>, e.g. bn-m0.9")
        arguments["momentum" if match.group(1) == "m" else "epsilon"] = float(match.group(2))
    return BatchNormalization(**arguments)


def _build_input(body: str, options: list[str], last_dense: bool, word: str) -> tuple[int, int, int]:
    match = _full(_INPUT, body, word)
    _no_options(options, word)
    height, width, channels = match.groups()
    return _input_shape("input", (int(height), int(width), int(channels or 1)))


_BUILDERS = {
    "conv": _build_conv, "pool": _build_pool, "maxpool": _build_pool, "avgpool": _build_pool, "gap": _build_bare,
    "flatten": _build_bare, "dense": _build_dense, "dropout": _build_dropout, "bn": _build_bn, "input": _build_input,
}


def _number(value: float) -> str:
    """A float without exponent or trailing zeros (0.25, 0.00001), so the line grammar can read it back."""
    text = format(Decimal(repr(float(value))), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _size(pair: tuple[int, int]) -> str:
    return str(pair[0]) if pair[0] == pair[1] else f"{pair[0]}x{pair[1]}"


def format_line(spec: ModelSpec) -> str:
    """The one-line form of `spec`; options appear only where they differ from the grammar's defaults."""
    dense_positions = [index for index, layer in enumerate(spec.layers) if isinstance(layer, Dense)]
    last_dense = dense_positions[-1] if dense_positions else None
    tokens = []
    if spec.input_shape is not None:
        tokens.append("input" + "x".join(str(v) for v in spec.input_shape))
    for index, layer in enumerate(spec.layers):
        if isinstance(layer, Conv2D):
            token = f"conv{layer.filters}x{_size(layer.kernel_size)}"
            token += "" if layer.strides == (1, 1) else f"s{_size(layer.strides)}"
            token += "same" if layer.padding == "same" else ""
            token += _options(layer.activation, layer.use_bias, "relu")
        elif isinstance(layer, (MaxPooling2D, AveragePooling2D)):
            token = ("avgpool" if isinstance(layer, AveragePooling2D) else "pool") + _size(layer.pool_size)
            token += "" if layer.strides == layer.pool_size else f"s{_size(layer.strides)}"
            token += "same" if layer.padding == "same" else ""
        elif isinstance(layer, GlobalAveragePooling2D):
            token = "gap"
        elif isinstance(layer, Flatten):
            token = "flatten"
        elif isinstance(layer, Dense):
            token = "dense" + ("" if layer.units is None else str(layer.units))
            token += _options(layer.activation, layer.use_bias, "softmax" if index == last_dense else "relu")
        elif isinstance(layer, Dropout):
            token = "dropout" + _number(layer.rate)
        else:
            token = "bn"
            token += "" if layer.momentum == 0.99 else f"-m{_number(layer.momentum)}"
            token += "" if layer.epsilon == 1e-3 else f"-eps{_number(layer.epsilon)}"
        tokens.append(token)
    return ",".join(tokens)


def _options(activation: str, use_bias: bool, default_activation: str) -> str:
    return ("" if activation == default_activation else f"-{activation}") + ("" if use_bias else "-nobias")


# --- the YAML/JSON form ----------------------------------------------------------------------------------------------

def spec_to_dict(spec: ModelSpec) -> dict[str, Any]:
    """{"name", "input_shape", "layers": [{"type": "Conv2D", "filters": 64, ...}]}; every argument written out."""
    layers = []
    for layer in spec.layers:
        entry: dict[str, Any] = {"type": type(layer).__name__}
        for argument, value in layer_arguments(layer).items():
            entry[argument] = list(value) if isinstance(value, tuple) else value
        layers.append(entry)
    result: dict[str, Any] = {}
    if spec.name is not None:
        result["name"] = spec.name
    if spec.input_shape is not None:
        result["input_shape"] = list(spec.input_shape)
    result["layers"] = layers
    return result


def spec_from_dict(data: Any, source: str = "the model") -> ModelSpec:
    """A ModelSpec from the YAML/JSON form; arguments follow Keras (Dense's activation defaults to linear)."""
    if isinstance(data, list):
        data = {"layers": data}
    if not isinstance(data, dict) or not isinstance(data.get("layers"), list):
        raise SpecError(f"{source}: expected a mapping with a 'layers' list, received: {_short(data)}",
                        fix='write {"layers": [{"type": "Conv2D", "filters": 64, "kernel_size": 3}, ...]}')
    unknown = sorted(set(data) - {"name", "input_shape", "layers"})
    if unknown:
        raise SpecError(f"{source}: unknown top-level key {unknown[0]!r}; expected name, input_shape, layers",
                        fix=_suggestion(unknown[0], ("name", "input_shape", "layers")) or "remove it")
    layers = [_layer_from_dict(entry, position, source) for position, entry in enumerate(data["layers"], start=1)]
    name = data.get("name")
    if name is not None and not isinstance(name, str):
        raise SpecError(f"{source}: expected name to be a string, received: name={name!r}", fix="name: my_model")
    try:
        return ModelSpec(tuple(layers), data.get("input_shape"), name)
    except SpecError as error:
        raise SpecError(f"{source}: {error.message}", fix=error.fix) from None


def _layer_from_dict(entry: Any, position: int, source: str) -> Layer:
    """One {"type": ..., argument: value} entry as a layer; names checked with a suggestion."""
    if not isinstance(entry, dict) or "type" not in entry:
        raise SpecError(f"{source}: layer {position}: expected a mapping with a 'type', received: {_short(entry)}",
                        fix='for example {"type": "Dense", "units": 128, "activation": "relu"}')
    type_name = entry["type"]
    by_lower = {name.lower(): cls for name, cls in LAYER_TYPES.items()}
    by_lower.update({cls.keras_name: cls for cls in LAYER_TYPES.values()})
    layer_type = by_lower.get(str(type_name).lower())
    if layer_type is None:
        raise SpecError(
            f"{source}: layer {position}: unknown layer type {type_name!r}; expected one of {', '.join(LAYER_TYPES)}",
            fix=_suggestion(str(type_name), LAYER_TYPES) or f"use one of {', '.join(LAYER_TYPES)}",
        )
    arguments = {key: value for key, value in entry.items() if key != "type"}
    allowed = [field.name for field in dataclasses.fields(layer_type)]
    for key in arguments:
        if key not in allowed:
            raise SpecError(
                f"{source}: layer {position} ({layer_type.__name__}): unknown argument {key!r}; "
                f"expected {', '.join(allowed)}",
                fix=_suggestion(str(key), allowed) or "remove it",
            )
    required = [field.name for field in dataclasses.fields(layer_type)
                if field.default is dataclasses.MISSING and field.name not in arguments]
    if required:
        raise SpecError(f"{source}: layer {position} ({layer_type.__name__}): missing argument {required[0]!r}",
                        fix=f"add {required[0]}: ..., for example " + {"filters": "filters: 64", "kernel_size":
                             "kernel_size: 3", "units": "units: 128", "rate": "rate: 0.25"}.get(required[0], ""))
    try:
        return layer_type(**arguments)
    except SpecError as error:
        raise SpecError(f"{source}: {at_position(error.message, position)}", fix=error.fix) from None


def at_position(message: str, position: int) -> str:
    """'Conv2D: expected ...' as 'layer 3 (Conv2D): expected ...', so a message names where the layer sits."""
    kind, separator, rest = message.partition(": ")
    if separator and kind in LAYER_TYPES:
        return f"layer {position} ({kind}): {rest}"
    return f"layer {position}: {message}"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def read_spec_file(path: str | Path) -> ModelSpec:
    """A ModelSpec from a .yaml/.yml/.json file; a file that does not parse names the line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise SpecError(f"cannot read the model file {str(path)!r}: {error.strerror or error}",
                        fix="check the path") from None
    except UnicodeDecodeError:
        raise SpecError(f"the model file {str(path)!r} is not UTF-8 text", fix="save it as YAML or JSON text") from None
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise SpecError(f"{path}: not valid JSON at line {error.lineno}, column {error.colno}: {error.msg}",
                            fix="fix the JSON there (a missing comma or quote?)") from None
    else:
        import yaml  # only YAML files need it

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            problem = getattr(error, "problem", None) or str(error).splitlines()[0]
            raise SpecError(f"{path}: not valid YAML{where}: {problem}",
                            fix="fix the YAML there (indentation? a missing colon?)") from None
    spec = spec_from_dict(data, source=str(path))
    return spec if spec.name is not None else dataclasses.replace(spec, name=path.stem)


# --- Python source ---------------------------------------------------------------------------------------------------

def format_python(spec: ModelSpec) -> str:
    """Python source for `spec`, Keras-style; only arguments that differ from Keras's defaults are written."""
    lines = []
    for index, layer in enumerate(spec.layers):
        arguments = []
        positional = {Conv2D: ("filters", "kernel_size"), Dense: ("units",), Dropout: ("rate",),
                      MaxPooling2D: ("pool_size",), AveragePooling2D: ("pool_size",)}.get(type(layer), ())
        defaults = {field.name: field.default for field in dataclasses.fields(layer)}
        for argument, value in layer_arguments(layer).items():
            if argument in positional:
                arguments.append(repr(value))
            elif not _is_default(layer, argument, value, defaults[argument]):
                arguments.append(f"{argument}={value!r}")
        if index == 0 and spec.input_shape is not None:
            arguments.append(f"input_shape={spec.input_shape!r}")
        lines.append(f"    {type(layer).__name__}({', '.join(arguments)}),")
    name = "" if spec.name is None else f", name={spec.name!r}"
    return "Sequential([\n" + "\n".join(lines) + f"\n]{name})"


def _is_default(layer: Layer, argument: str, value: Any, default: Any) -> bool:
    if argument == "activation":
        return value == "linear"
    if argument == "strides" and isinstance(layer, (MaxPooling2D, AveragePooling2D)):
        return value == layer.pool_size
    if isinstance(default, (int, float)) and not isinstance(default, bool):
        return value == default
    return value == default or (isinstance(default, tuple) and tuple(value) == default)


# --- one entry point for every form ----------------------------------------------------------------------------------

SPEC_FILE_SUFFIXES = (".yaml", ".yml", ".json")


def load_spec(text: str | Path) -> ModelSpec:
    """A ModelSpec from a preset name, a path to a .yaml/.yml/.json file, or a one-line string (in that order)."""
    if isinstance(text, Path):
        return read_spec_file(text)
    if not isinstance(text, str):
        raise SpecError(f"expected a preset name, a file or a one-line model, received: {_short(text)}",
                        fix="for example 'cnn'")
    stripped = text.strip()
    if stripped.lower() in PRESETS:
        return parse_line(PRESETS[stripped.lower()], name=stripped.lower())
    if stripped.lower().endswith(SPEC_FILE_SUFFIXES) or Path(stripped).is_file():
        return read_spec_file(stripped)
    if "," not in stripped and _WORD.fullmatch(stripped.lower()) and stripped.lower() not in _TOKEN_FORMS:
        nearest = _suggestion(stripped, PRESETS)
        raise SpecError(
            f"unknown model {stripped!r}: not a preset ({', '.join(PRESETS)}), a file, or a one-line model",
            fix=nearest or f"for example {PRESETS['cnn']}",
        )
    return parse_line(stripped)
