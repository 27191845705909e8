"""Model specs in Keras's vocabulary: a stack of layer kinds, presets, the one-line grammar, YAML/JSON files, and
printing back.

A spec is data, not a network: `ModelSpec(layers, input_shape, name)` holds frozen layer dataclasses whose names,
argument names and defaults are Keras's (one module per kind in convolab/layers/). Three forms say the same thing and
print back to each other:

- Python:   Sequential([Conv2D(64, (3, 3), activation="relu", input_shape=(28, 28, 1)), MaxPooling2D(2, 2), ...])
- one line: conv64x3,pool2,conv64x3,pool2,flatten,dense128,dense10
- a file:   YAML or JSON, {"name": ..., "input_shape": [28, 28, 1], "layers": [{"type": "Conv2D", "filters": 64, ...}]}

This module handles the forms; each layer's token, file entry and validation belong to its kind. Every argument is
validated when the layer is made, so a bad spec fails before anything is built (SpecError, which is a ValueError like
Keras's). Shape arithmetic lives with the kinds and in shapes.py; this module never looks at tensors.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
from pathlib import Path
from typing import Any

from convolab.errors import SpecError
from convolab.layers import (
    KINDS, AveragePooling2D, BatchNormalization, Conv2D, Dense, Dropout, Flatten, GlobalAveragePooling2D, LayerKind,
    MaxPooling2D,
)
from convolab.layers.activation_functions import ACTIVATION_ALIASES, ACTIVATIONS
from convolab.layers.arguments import PADDINGS, positive_int, short, store, suggestion
from convolab.layers.arguments import input_shape as input_shape_argument
from convolab.layers.base import TokenError

__all__ = [
    "ACTIVATIONS", "ACTIVATION_ALIASES", "PADDINGS", "DEFAULT_INPUT_SHAPE", "DEFAULT_NUM_CLASSES", "GRAMMAR", "PRESETS",
    "Layer", "LAYER_TYPES", "ModelSpec", "AveragePooling2D", "BatchNormalization", "Conv2D", "Dense", "Dropout",
    "Flatten", "GlobalAveragePooling2D", "MaxPooling2D", "load_spec", "parse_line", "format_line", "format_python",
    "read_spec_file", "resolve_spec", "spec_from_dict", "spec_to_dict", "layer_arguments", "at_position",
]

# The lab's data: Fashion-MNIST images are 28×28 gray, in 10 classes. Used only when nothing else says otherwise.
DEFAULT_INPUT_SHAPE: tuple[int, int, int] = (28, 28, 1)
DEFAULT_NUM_CLASSES = 10

Layer = LayerKind  # any registered kind
LAYER_TYPES = KINDS.kinds  # name -> kind, every registered kind

# A model file is a few hundred bytes; these bound what a hostile one may cost before it is refused.
MAX_SPEC_FILE_BYTES = 1 << 20


def __getattr__(name: str) -> Any:
    """Every registered kind is importable from here (`from convolab.spec import DepthwiseConv2D`)."""
    kind = KINDS.kinds.get(name)
    if kind is None:
        raise AttributeError(f"module 'convolab.spec' has no attribute {name!r}")
    return kind


def layer_arguments(layer: Layer) -> dict[str, Any]:
    """The layer's arguments by name (input_shape left out: it belongs to the ModelSpec)."""
    return layer.arguments()


def sized_by_classes(layer: Layer) -> bool:
    """True for a layer whose size is left to the dataset's class count (a Dense without units)."""
    return "units" in layer.arguments() and layer.units is None


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
            if not isinstance(layer, LayerKind) or type(layer).__name__ not in KINDS:
                raise SpecError(f"layer {position}: expected a convolab layer (Conv2D, Dense, ...), "
                                f"received: {short(layer)}",
                                fix="build layers with convolab's Conv2D, MaxPooling2D, Flatten, Dense, ...")
            if sized_by_classes(layer):
                later_sized = [other for other in layers[position:] if "units" in other.arguments()]
                if later_sized:
                    raise SpecError(
                        f"layer {position} (Dense): only the last Dense may leave units out (it gets the class count), "
                        "received units=None on a hidden Dense",
                        fix="give it a size, for example Dense(128) or dense128",
                    )
        input_shape = input_shape_argument("ModelSpec", self.input_shape)
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
        store(self, layers=layers, input_shape=input_shape)

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
    given = input_shape_argument("input", input_shape)
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
        if sized_by_classes(layer):
            if num_classes is None:
                raise SpecError(
                    f"{type(layer).__name__} #{position + 1}: units left out means 'the class count', but no class count is known",
                    fix="give one (--classes N) or write the size, for example dense10",
                )
            layers[position] = dataclasses.replace(layer, units=positive_int("Dense", "units", num_classes, "10"))
    return ModelSpec(tuple(layers), resolved_shape, spec.name)


# --- the one-line grammar --------------------------------------------------------------------------------------------

GRAMMAR = ("""\
A model is one line of comma-separated layer tokens, first layer first (spaces and case do not matter):

""" + KINDS.grammar() + """
  input28x28x1        the input shape (height x width x channels); first token only, optional

Options follow a dash: an activation (-relu -sigmoid -tanh -softmax -linear -elu -selu -gelu -silu -leaky_relu
-relu6 -softplus -softsign -hard_sigmoid -exponential; one per layer) and -nobias on conv, dwconv, sepconv, dense.
Defaults: convolutions and hidden dense use relu, the last dense uses softmax; padding 'valid'; strides 1 (pooling:
the pool size). The lab's CNN: conv64x3,pool2,conv64x3,pool2,flatten,dense128,dense10

Presets: dnn, cnn (the lab's two networks) and the lab's exercises cnn16, cnn32, cnn64 (16, 32 or 64 filters per
convolution; cnn64 is cnn), no-conv2 (the second convolution removed, its pooling kept), cnn1conv (one convolution),
cnn3conv (a third convolution), and fast and best, the specs of the training recipes (convolab train --recipe
fast|best). MODEL may also be a .yaml/.yml/.json file, or a Keras model file (.keras, or a legacy .h5) with its
weights.""")

# The lab's networks and its exercises, in the one-line form. `dense` = the dataset's class count (10 for the lab).
PRESETS: dict[str, str] = {
    "dnn": "flatten,dense128,dense",
    "cnn": "conv64x3,pool2,conv64x3,pool2,flatten,dense128,dense",
    "cnn16": "conv16x3,pool2,conv16x3,pool2,flatten,dense128,dense",
    "cnn32": "conv32x3,pool2,conv32x3,pool2,flatten,dense128,dense",
    "cnn1conv": "conv64x3,pool2,flatten,dense128,dense",
    "cnn3conv": "conv64x3,pool2,conv64x3,pool2,conv64x3,flatten,dense128,dense",
    # The sweep's exercise names, so that every command takes them: the lab's CNN, and it without its second Conv2D
    # (deleting that line leaves its MaxPooling2D: two poolings in a row).
    "cnn64": "conv64x3,pool2,conv64x3,pool2,flatten,dense128,dense",
    "no-conv2": "conv64x3,pool2,pool2,flatten,dense128,dense",
    # The specs of the time-to-accuracy recipes (recipes.py holds their hyperparameters; `convolab train --recipe`).
    "fast": "conv16x3,pool2,bn,conv64x3,pool2,bn,flatten,dense256,dense",
    "best": "conv32x3,pool2,bn,conv64x3same,conv64x3,pool2,bn,flatten,dropout0.4,dense256,dense",
}

_INPUT_FORM = "input<height>x<width>x<channels>, e.g. input28x28x1"
_WORD = re.compile(r"[a-z]+")
_INPUT = re.compile(r"(\d+)x(\d+)(?:x(\d+))?")


def _is_input(text: str) -> bool:
    return text.lower().startswith("input")


def parse_line(line: str, name: str | None = None) -> ModelSpec:
    """A ModelSpec from the one-line form (GRAMMAR); errors point at the token's position in the line."""
    if not isinstance(line, str) or not line.strip():
        raise SpecError(f"expected a model, received: {short(line)}", fix=f"for example {PRESETS['cnn']}, or a preset: cnn")
    tokens = _split_tokens(line)
    input_shape = None
    if tokens and _is_input(tokens[0][1]):
        input_shape = _parse_token_or_raise(line, tokens, 0)
        tokens = tokens[1:]
    if not tokens:
        raise SpecError(f"expected layers after the input shape, received: {line!r}", fix=f"for example {PRESETS['cnn']}")
    for column, text in tokens:
        if _is_input(text):                      # the input shape comes once, first: anywhere else it is no layer
            pointer = f"  {line}\n  {' ' * column}{'^' * len(text)}"
            raise SpecError(f"{text!r} at column {column + 1}: the input shape comes once, as the first token\n{pointer}",
                            fix=f"start the line with it, e.g. input28x28x1,{PRESETS['cnn']}")
    output_positions = [index for index, (_, text) in enumerate(tokens) if _takes_output_activation(text)]
    last_output = output_positions[-1] if output_positions else None
    layers = [_parse_token_or_raise(line, tokens, index, last=(index == last_output)) for index in range(len(tokens))]
    try:
        return ModelSpec(tuple(layers), input_shape, name)
    except SpecError as error:
        raise SpecError(f"in {line!r}: {error.message}", fix=error.fix) from None


def _takes_output_activation(text: str) -> bool:
    """Whether a token's kind takes the output activation when it is the last of its kind (Dense: softmax)."""
    word = _WORD.match(text.lower())
    kind = KINDS.for_word(word.group(0)) if word else None
    return kind is not None and kind.takes_output_activation


def _split_tokens(line: str) -> list[tuple[int, str]]:
    """(column, token) pairs; the column is where the token starts in `line`, for the caret under it."""
    tokens, column = [], 0
    for piece in line.split(","):
        stripped = piece.strip()
        tokens.append((column + len(piece) - len(piece.lstrip()), stripped))
        column += len(piece) + 1
    return tokens


def _parse_token_or_raise(line: str, tokens: list[tuple[int, str]], index: int, last: bool = False) -> Any:
    """One token as a layer (or the input shape), or a SpecError with a caret under the token."""
    column, text = tokens[index]
    if text.lower() in PRESETS and len(tokens) > 1:   # a whole model named inside a line of layers
        pointer = f"  {line}\n  {' ' * column}{'^' * len(text)}"
        raise SpecError(f"{text!r} at column {column + 1} is a preset (a whole model), not a layer; a one-line model is "
                        f"layers only\n{pointer}", fix=f"write its layers out: {PRESETS[text.lower()]}")
    try:
        return _parse_token(text.lower(), last)
    except (TokenError, SpecError) as error:
        is_input = _is_input(text)
        number = index + 1 - sum(1 for _, other in tokens[:index] if _is_input(other))
        where = "the input token" if is_input else f"layer {number}"
        received = repr(text) if text else "nothing (two commas in a row?)"
        if isinstance(error, TokenError):
            detail = f"received {received}; expected {error.expected}"
        else:  # the layer's own validation: "Conv2D: expected filters ..., received: filters=0"
            kind, _, rest = error.message.partition(": ")
            where += f" ({kind})" if kind in KINDS else ""
            detail = f"received {received}; {rest if kind in KINDS else error.message}"
        pointer = f"  {line}\n  {' ' * column}{'^' * max(1, len(text))}"
        raise SpecError(f"{where} at column {column + 1}: {detail}\n{pointer}", fix=error.fix) from None


def _parse_token(token: str, last: bool) -> Any:
    """One lower-case token: `word` + body + `-option`s; the word's kind reads the rest."""
    word_match = _WORD.match(token)
    words = KINDS.words
    if word_match is None:
        raise TokenError(f"a layer name ({', '.join(words)})",
                         fix="start each token with a layer name, for example conv64x3")
    word = word_match.group(0)
    # Numbers are printed without exponents (see number_text), so a dash always starts an option.
    body, *options = token[len(word):].split("-")
    if word == "input":
        return _parse_input(body, options)
    kind = KINDS.for_word(word)
    if kind is None:
        nearest = suggestion(word, words)
        raise TokenError(f"a layer name ({', '.join(words)}), not {word!r}",
                         fix=(nearest + " " if nearest else "") + "see `convolab summary --help` for the grammar")
    return kind.from_token(word, body, options, last)


def _parse_input(body: str, options: list[str]) -> tuple[int, int, int]:
    match = _INPUT.fullmatch(body)
    if match is None:
        raise TokenError(_INPUT_FORM, fix="write it like input28x28x1")
    if options:
        raise TokenError(f"{_INPUT_FORM} with no -options", fix=f"remove '-{'-'.join(options)}'")
    height, width, channels = match.groups()
    return input_shape_argument("input", (int(height), int(width), int(channels or 1)))


def format_line(spec: ModelSpec) -> str:
    """The one-line form of `spec`; options appear only where they differ from the grammar's defaults."""
    output_positions = [index for index, layer in enumerate(spec.layers) if layer.takes_output_activation]
    last_output = output_positions[-1] if output_positions else None
    tokens = []
    if spec.input_shape is not None:
        tokens.append("input" + "x".join(str(v) for v in spec.input_shape))
    tokens.extend(layer.token(last=index == last_output) for index, layer in enumerate(spec.layers))
    return ",".join(tokens)


# --- the YAML/JSON form ----------------------------------------------------------------------------------------------

def spec_to_dict(spec: ModelSpec) -> dict[str, Any]:
    """{"name", "input_shape", "layers": [{"type": "Conv2D", "filters": 64, ...}]}; every argument written out."""
    result: dict[str, Any] = {}
    if spec.name is not None:
        result["name"] = spec.name
    if spec.input_shape is not None:
        result["input_shape"] = list(spec.input_shape)
    result["layers"] = [layer.to_config() for layer in spec.layers]
    return result


def spec_from_dict(data: Any, source: str = "the model") -> ModelSpec:
    """A ModelSpec from the YAML/JSON form; arguments follow Keras (Dense's activation defaults to linear)."""
    if isinstance(data, list):
        data = {"layers": data}
    if not isinstance(data, dict) or not isinstance(data.get("layers"), list):
        raise SpecError(f"{source}: expected a mapping with a 'layers' list, received: {short(data)}",
                        fix='write {"layers": [{"type": "Conv2D", "filters": 64, "kernel_size": 3}, ...]}')
    unknown = sorted((str(key)[:60] for key in set(data) - {"name", "input_shape", "layers"}))
    if unknown:
        raise SpecError(f"{source}: unknown top-level key {unknown[0]!r}; expected name, input_shape, layers",
                        fix=suggestion(unknown[0], ("name", "input_shape", "layers")) or "remove it")
    layers = [_layer_from_dict(entry, position, source) for position, entry in enumerate(data["layers"], start=1)]
    name = data.get("name")
    if name is not None and not isinstance(name, str):
        raise SpecError(f"{source}: expected name to be a string, received: name={short(name)}", fix="name: my_model")
    try:
        return ModelSpec(tuple(layers), data.get("input_shape"), name)
    except SpecError as error:
        raise SpecError(f"{source}: {error.message}", fix=error.fix) from None


def _layer_from_dict(entry: Any, position: int, source: str) -> Layer:
    """One {"type": ..., argument: value} entry as a layer of the kind it names."""
    if not isinstance(entry, dict) or "type" not in entry:
        raise SpecError(f"{source}: layer {position}: expected a mapping with a 'type', received: {short(entry)}",
                        fix='for example {"type": "Dense", "units": 128, "activation": "relu"}')
    type_name = entry["type"]
    kind = KINDS.named(type_name) if isinstance(type_name, str) else None
    if kind is None:
        names = ", ".join(KINDS.kinds)
        raise SpecError(f"{source}: layer {position}: unknown layer type {short(type_name)}; expected one of {names}",
                        fix=suggestion(short(type_name).strip("'\""), KINDS.kinds) or f"use one of {names}")
    arguments = {key: value for key, value in entry.items() if key != "type"}
    try:
        return kind.from_config(arguments, f"{source}: layer {position}")
    except SpecError as error:
        if error.message.startswith(f"{source}: layer {position} "):
            raise
        raise SpecError(f"{source}: {at_position(error.message, position)}", fix=error.fix) from None


def at_position(message: str, position: int) -> str:
    """'Conv2D: expected ...' as 'layer 3 (Conv2D): expected ...', so a message names where the layer sits."""
    kind, separator, rest = message.partition(": ")
    if separator and kind in KINDS:
        return f"layer {position} ({kind}): {rest}"
    return f"layer {position}: {message}"


def read_spec_file(path: str | Path) -> ModelSpec:
    """A ModelSpec from a .yaml/.yml/.json file; a file that does not parse names the line.

    Hostile files are bounded: more than MAX_SPEC_FILE_BYTES, or nesting too deep to read, is refused with a message.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_SPEC_FILE_BYTES:
            raise SpecError(f"the model file {str(path)!r} holds {size:,} bytes; a model file is at most "
                            f"{MAX_SPEC_FILE_BYTES:,}", fix="give the model's YAML or JSON file (a few hundred bytes)")
        text = path.read_text(encoding="utf-8-sig")   # a byte-order mark (Windows editors write one) is not text
    except OSError as error:
        raise SpecError(f"cannot read the model file {short(str(path))}: {error.strerror or error}",
                        fix="check the path") from None
    except UnicodeDecodeError:
        if path.suffix.lower() == ".onnx":       # convolab writes ONNX (convolab export) but cannot read it back
            raise SpecError(f"{str(path)!r} is an ONNX file; convolab reads runs, Keras files (.keras, .h5) and specs "
                            "(YAML, JSON, one line), not ONNX",
                            fix="give the run or the Keras file the ONNX file was exported from") from None
        raise SpecError(f"the model file {str(path)!r} is not UTF-8 text", fix="save it as YAML or JSON text") from None
    try:
        data = _parse_file_text(path, text)
    except RecursionError:
        raise SpecError(f"{path}: nested too deeply to be a model (lists or mappings inside each other thousands of "
                        "levels deep)", fix="a model file is a mapping with a flat 'layers' list") from None
    spec = spec_from_dict(data, source=str(path))
    return spec if spec.name is not None else dataclasses.replace(spec, name=path.stem)


def _parse_file_text(path: Path, text: str) -> Any:
    """The JSON or YAML value of a model file's text."""
    if path.suffix.lower() == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as error:
            raise SpecError(f"{path}: not valid JSON at line {error.lineno}, column {error.colno}: {error.msg}",
                            fix="fix the JSON there (a missing comma or quote?)") from None
    import yaml  # only YAML files need it

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise SpecError(f"{path}: not valid YAML{where}: {problem}",
                        fix="fix the YAML there (indentation? a missing colon?)") from None


# --- Python source ---------------------------------------------------------------------------------------------------

def format_python(spec: ModelSpec) -> str:
    """Python source for `spec`, Keras-style; only arguments that differ from Keras's defaults are written."""
    lines = []
    for index, layer in enumerate(spec.layers):
        arguments = []
        defaults = {field.name: field.default for field in dataclasses.fields(layer)}
        for argument, value in layer.arguments().items():
            if argument in layer.positional:
                arguments.append(repr(value))
            elif not layer.argument_is_default(argument, value, defaults[argument]):
                arguments.append(f"{argument}={value!r}")
        if index == 0 and spec.input_shape is not None:
            arguments.append(f"input_shape={spec.input_shape!r}")
        lines.append(f"    {type(layer).__name__}({', '.join(arguments)}),")
    name = "" if spec.name is None else f", name={spec.name!r}"
    return "Sequential([\n" + "\n".join(lines) + f"\n]{name})"


# --- one entry point for every form ----------------------------------------------------------------------------------

SPEC_FILE_SUFFIXES = (".yaml", ".yml", ".json")


def _is_existing_file(text: str) -> bool:
    """Whether `text` names a file; a name the OS cannot even look up (too long, a NUL byte) names none."""
    try:
        return Path(text).is_file()
    except (OSError, ValueError):
        return False


def _is_directory(path: Path) -> bool:
    try:
        return path.is_dir()
    except OSError:                              # a name too long for the file system is no folder either
        return False


def load_spec(text: str | Path) -> ModelSpec:
    """A ModelSpec from a preset name, a path to a .yaml/.yml/.json file, a Keras model file (.keras, .h5: its
    architecture; runs.load_model_source reads its weights too), or a one-line string (in that order)."""
    from convolab.keras_files import is_keras_file, read_keras_spec  # the one stage below spec that spec calls

    if is_keras_file(text):
        return read_keras_spec(str(text).strip())
    if isinstance(text, Path):
        return read_spec_file(text)
    if not isinstance(text, str):
        raise SpecError(f"expected a preset name, a file or a one-line model, received: {short(text)}",
                        fix="for example 'cnn'")
    stripped = text.strip()
    if stripped.lower() in PRESETS:
        return parse_line(PRESETS[stripped.lower()], name=stripped.lower())
    if stripped.lower().endswith(SPEC_FILE_SUFFIXES) or _is_existing_file(stripped):
        return read_spec_file(stripped)
    if ("/" in stripped or os.sep in stripped) and "," not in stripped:   # a path: no layer token has a slash
        where = Path(stripped).expanduser()
        what = ("a folder, not a run directory (a run has config.json and checkpoint.pt)" if _is_directory(where)
                else "no such file or folder")
        raise SpecError(f"{short(stripped)}: {what}",
                        fix="give a run directory that `convolab train` wrote, a Keras file (.keras, .h5), a spec "
                            "file (.yaml, .json), a preset (cnn) or a one-line model")
    if "," not in stripped and _WORD.fullmatch(stripped.lower()) and KINDS.for_word(stripped.lower()) is None \
            and stripped.lower() != "input":
        nearest = suggestion(stripped, PRESETS)
        raise SpecError(
            f"unknown model {stripped!r}: not a preset ({', '.join(PRESETS)}), a file, or a one-line model",
            fix=nearest or f"for example {PRESETS['cnn']}",
        )
    return parse_line(stripped)
