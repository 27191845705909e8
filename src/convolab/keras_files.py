"""Keras model files in and out, without Keras or TensorFlow: a `.keras` or legacy `.h5` file ⇄ a ModelSpec and weights.

Two formats hold a whole model (architecture and weights):

- `.keras` (Keras 3): a zip of `config.json` (the architecture, `keras.saving.serialize_keras_object`'s form),
  `metadata.json` (Keras's version) and `model.weights.h5`. In that HDF5 file each layer's weights sit under
  `layers/<name>/vars/0, 1, ...` in the layer's own order (Conv2D: kernel, bias), where <name> is NOT the layer's name
  but its class name in snake case, made unique in model order (`conv2d`, `conv2d_1`, ...): that is how Keras's
  saving_lib addresses them, so it is how this module reads and writes them.
- legacy `.h5` (Keras 2 / tf.keras, and Keras 3's `model.save("x.h5")`): one HDF5 file whose `model_config` attribute
  is the architecture (JSON) and whose `model_weights/<layer name>` groups list their datasets in a `weight_names`
  attribute, in the layer's order.

Weights change layout on the way: Keras's Conv2D kernel is (height, width, in, out), PyTorch's (out, in, height,
width); Keras's Dense kernel is (in, out), PyTorch's (out, in); BatchNormalization's gamma, beta, moving mean and
moving variance are PyTorch's weight, bias, running_mean and running_var. Each kind owns its mapping (convolab.layers:
`keras_config`, `from_keras_config`, `keras_weights`, `set_keras_weights`); this module owns only the files.

Reading never extracts anything to disk and never runs code from the file: names in the archive are checked (no
absolute paths, no '..'), and its expanded size is bounded before a byte is decompressed (zip bombs).
"""
from __future__ import annotations

import dataclasses
import io
import json
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from convolab.errors import ConvolabError, ModelFileError, SpecError
from convolab.layers import KINDS, LayerKind
from convolab.model import ConvNet, build_model
from convolab.shapes import analyze, keras_names
from convolab.spec import ModelSpec

KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")
CONFIG_NAME = "config.json"
METADATA_NAME = "metadata.json"
WEIGHTS_NAME = "model.weights.h5"
ZIP_MAGIC = b"PK\x03\x04"
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
# A course model is a few MB; the largest convolab can build on 28x28 images stays far below this. Anything declaring
# more once expanded is refused before it is decompressed.
MAX_EXPANDED_BYTES = 1 << 30
# Weights compress little (float32 noise): a member that claims to expand 100-fold beyond 1 MiB is a bomb, not a model.
MAX_EXPANSION_RATIO = 100
RATIO_FLOOR_BYTES = 1 << 20
KERAS_VERSION_WRITTEN = "3.6.0"   # the oldest Keras 3 whose loader reads every config key written here


# --- the kinds: each layer kind's Keras config and weight layout live with the kind (convolab.layers) ----------------

# Other class names Keras (2 and 3) reads for the same layers.
KERAS_CLASS_ALIASES = {"Convolution2D": "Conv2D", "MaxPool2D": "MaxPooling2D", "AvgPool2D": "AveragePooling2D",
                       "GlobalAvgPool2D": "GlobalAveragePooling2D", "GlobalMaxPool2D": "GlobalMaxPooling2D",
                       "SeparableConvolution2D": "SeparableConv2D"}
INPUT_CLASS_NAMES = ("InputLayer",)


def kind_of(class_name: str) -> type[LayerKind] | None:
    """The convolab kind of a Keras class name (Keras's own names are convolab's), or None."""
    return KINDS.kinds.get(KERAS_CLASS_ALIASES.get(class_name, class_name))


def supported_layers() -> str:
    """'InputLayer, Conv2D, ...': what a message lists as readable."""
    return ", ".join(INPUT_CLASS_NAMES + tuple(KINDS.kinds))


# Keras's activation spellings that differ from convolab's (Keras 2 called silu swish).
KERAS_ACTIVATION_ALIASES = {None: "linear", "swish": "silu"}


def keras_activation(config: dict) -> str:
    """A layer config's activation as convolab's name: a string, or Keras 3's {"class_name": ..., "config": ...}."""
    value = config.get("activation")
    if isinstance(value, dict):   # a serialized function: its name is the config (or the registered name)
        inner = value.get("config")
        named = inner if isinstance(inner, str) else value.get("registered_name") or value.get("class_name")
        value = named if isinstance(named, str) else json.dumps(value)   # nameless: refused by the kind, not linear
    return KERAS_ACTIVATION_ALIASES.get(value, value)


# --- what a file holds ----------------------------------------------------------------------------------------------

@dataclasses.dataclass
class KerasModel:
    """A Keras model file read: the spec, the network with the file's weights (in eval mode), its origin."""

    spec: ModelSpec
    network: ConvNet | None   # None when only the architecture was read
    path: Path
    keras_version: str | None
    layer_names: list[str]   # the file's own layer names (conv2d_3, ...), in spec order

    @property
    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.network.state_dict()


def is_keras_file(text: Any) -> bool:
    """Whether a MODEL argument names a Keras model file (by its suffix)."""
    return isinstance(text, (str, Path)) and str(text).strip().lower().endswith(KERAS_SUFFIXES)


def read_keras_spec(path: str | Path) -> ModelSpec:
    """Only the architecture of a .keras or .h5 file (as `convolab summary` needs): no weights read."""
    return _read(Path(path), with_weights=False).spec


def read_keras_file(path: str | Path) -> KerasModel:
    """The architecture and weights of a .keras or .h5 file, or a ModelFileError saying what is wrong with it."""
    return _read(Path(path), with_weights=True)


def _read(path: Path, with_weights: bool) -> KerasModel:
    try:
        with path.open("rb") as file:
            magic = file.read(8)
    except FileNotFoundError:
        raise ModelFileError(f"{path}: no such file", fix="check the path to the .keras or .h5 file") from None
    except OSError as error:
        raise ModelFileError(f"{path}: cannot be read ({error.strerror or error})", fix="check the path") from None
    try:
        if magic.startswith(ZIP_MAGIC):
            return _read_keras_zip(path, with_weights)
        if magic.startswith(HDF5_MAGIC):
            return _read_legacy_h5(path, with_weights)
    except ConvolabError:
        raise
    except (TypeError, AttributeError, KeyError, IndexError, ValueError) as error:
        # The config or the weights are not laid out as Keras writes them (a list where Keras writes a name, a
        # missing entry, text where numbers belong): the file's fault, said as such, never an internal error.
        raise ModelFileError(f"{path}: its model config or weights are not laid out as Keras writes them "
                             f"({type(error).__name__}: {str(error)[:200]})",
                             fix="save the model again from Keras with model.save('model.keras')") from None
    kind = "a .keras file (Keras 3: a zip archive)" if path.suffix.lower() == ".keras" else "an HDF5 file"
    raise ModelFileError(f"{path}: not {kind}; its first bytes are {magic[:8]!r}",
                         fix="save the model from Keras with model.save('model.keras'); a copy may have been cut short")


# --- .keras: the zip ----------------------------------------------------------------------------------------------------

def _checked_members(path: Path, archive: zipfile.ZipFile) -> dict[str, zipfile.ZipInfo]:
    """The archive's members by name, after refusing names that leave the folder and sizes that explode."""
    members = {}
    total = 0
    for info in archive.infolist():
        name = info.filename
        parts = name.replace("\\", "/").split("/")
        if name.startswith(("/", "\\")) or ".." in parts or re.match(r"^[A-Za-z]:", name):
            raise ModelFileError(f"{path}: the archive holds {name!r}, a name that leaves its folder; refused",
                                 fix="this is not a file Keras wrote; do not use it")
        total += info.file_size
        ratio_too_high = info.file_size > RATIO_FLOOR_BYTES and info.file_size > MAX_EXPANSION_RATIO * max(
            info.compress_size, 1)
        if total > MAX_EXPANDED_BYTES or ratio_too_high:
            raise ModelFileError(
                f"{path}: the archive would expand to {total / 2**20:.0f} MiB ({name!r}: {info.file_size} bytes from "
                f"{info.compress_size}); convolab refuses archives over {MAX_EXPANDED_BYTES >> 20} MiB or "
                f"{MAX_EXPANSION_RATIO}x compression",
                fix="this is not a model Keras wrote for convolab's image sizes; do not use it")
        members[name] = info
    return members


def _read_keras_zip(path: Path, with_weights: bool) -> KerasModel:
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as error:
        raise ModelFileError(f"{path}: not a readable .keras archive ({error})",
                             fix="save the model again with model.save('model.keras')") from None
    with archive:
        members = _checked_members(path, archive)
        if CONFIG_NAME not in members:
            raise ModelFileError(f"{path}: the archive has no {CONFIG_NAME} (it holds {', '.join(members) or 'nothing'})",
                                 fix="a .keras file holds config.json, metadata.json and model.weights.h5; save the "
                                     "whole model with model.save('model.keras')")
        config = _json(path, CONFIG_NAME, _member_bytes(path, archive, CONFIG_NAME))
        metadata = _json(path, METADATA_NAME, _member_bytes(path, archive, METADATA_NAME)) \
            if METADATA_NAME in members else {}
        version = metadata.get("keras_version") if isinstance(metadata, dict) else None
        spec, names, weight_paths = spec_from_keras_config(config, path)
        network = None
        if with_weights:
            if WEIGHTS_NAME not in members:
                raise ModelFileError(f"{path}: the archive has no {WEIGHTS_NAME}: the architecture without weights",
                                     fix="save the whole model with model.save('model.keras')")
            with _open_h5(path, io.BytesIO(_member_bytes(path, archive, WEIGHTS_NAME))) as weights_file:
                arrays = [_zip_layer_arrays(weights_file, group) for group in weight_paths]
            network = network_with_weights(spec, arrays, names, path)
    return KerasModel(spec=spec, network=network, path=path, keras_version=version, layer_names=names)


def _member_bytes(path: Path, archive: zipfile.ZipFile, name: str) -> bytes:
    try:
        return archive.read(name)   # at most the declared size, which _checked_members bounded
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as error:
        raise ModelFileError(f"{path}: {name} in the archive is damaged ({error})",
                             fix="save the model again from Keras") from None


def _json(path: Path, name: str, data: bytes) -> Any:
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        raise ModelFileError(f"{path}: {name} is not valid JSON ({error})", fix="save the model again from Keras") \
            from None


def _h5py():
    import h5py   # a core dependency; imported here so that specs and runs never pay for it

    return h5py


def _open_h5(path: Path, source: Any):
    h5py = _h5py()
    try:
        return h5py.File(source, "r")
    except OSError as error:
        raise ModelFileError(f"{path}: the weights are not a readable HDF5 file ({error})",
                             fix="save the model again from Keras") from None


def _zip_layer_arrays(weights_file, group_path: str) -> list[np.ndarray]:
    """The arrays under layers/<group>/vars, in order 0, 1, ... (an absent group: a layer without weights)."""
    group = weights_file.get(f"{group_path}/vars")
    if group is None:
        return []
    keys = sorted(group.keys(), key=lambda key: int(key) if key.isdigit() else key)
    return [np.asarray(group[key]) for key in keys]


# --- legacy .h5 -------------------------------------------------------------------------------------------------------

def _attribute_text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _name_list(group, name: str) -> list[str]:
    """A list attribute Keras may have split into name0, name1, ... chunks (HDF5's 64 KiB header limit)."""
    if name in group.attrs:
        return [_attribute_text(item) for item in group.attrs[name]]
    names, chunk = [], 0
    while f"{name}{chunk}" in group.attrs:
        names.extend(_attribute_text(item) for item in group.attrs[f"{name}{chunk}"])
        chunk += 1
    return names


def _read_legacy_h5(path: Path, with_weights: bool) -> KerasModel:
    with _open_h5(path, str(path)) as file:
        if "model_config" not in file.attrs:
            holds = "weights only (model.save_weights)" if "layer_names" in file.attrs or "layers" in file \
                or "model_weights" in file else "no Keras model"
            raise ModelFileError(
                f"{path}: this HDF5 file holds {holds}, not the architecture (no model_config); convolab needs the "
                "architecture to know what the weights belong to",
                fix="save the whole model in Keras with model.save('model.keras') (or model.save('model.h5')), or "
                    "write the architecture as a convolab spec (convolab summary --help) and train it")
        config = _json(path, "model_config", _attribute_text(file.attrs["model_config"]).encode("utf-8"))
        version = _attribute_text(file.attrs["keras_version"]) if "keras_version" in file.attrs else None
        spec, names, _ = spec_from_keras_config(config, path, keras_version=version)
        network = None
        if with_weights:
            weights = file.get("model_weights", file)
            arrays = []
            for name in names:
                group = weights.get(name)
                if group is None:
                    raise ModelFileError(f"{path}: the weights of layer {name!r} are missing (model_weights/{name})",
                                         fix="save the whole model again from Keras")
                arrays.append([np.asarray(group[weight]) for weight in _name_list(group, "weight_names")])
            network = network_with_weights(spec, arrays, names, path)
    return KerasModel(spec=spec, network=network, path=path, keras_version=version, layer_names=names)


# --- config.json / model_config -> ModelSpec --------------------------------------------------------------------------

def _snake_case(name: str) -> str:
    """Keras's naming.to_snake_case: Conv2D -> conv2d, MaxPooling2D -> max_pooling2d."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def weight_group_names(class_names: list[str]) -> list[str]:
    """Where saving_lib puts each layer's weights: snake-cased class names made unique in order (conv2d, conv2d_1)."""
    used: dict[str, int] = {}
    names = []
    for class_name in class_names:
        base = _snake_case(class_name)
        if base in used:
            used[base] += 1
            names.append(f"{base}_{used[base]}")
        else:
            used[base] = 0
            names.append(base)
    return names


def _inbound_names(entry: dict) -> list[list[str]]:
    """The layers feeding each call of a Functional layer: Keras 3's keras_history, or Keras 2's [[name, 0, 0, {}]]."""
    calls = []
    for node in entry.get("inbound_nodes") or []:
        names: list[str] = []

        def collect(value: Any) -> None:
            if isinstance(value, dict):
                history = (value.get("config") or {}).get("keras_history") if value.get("class_name") == \
                    "__keras_tensor__" else None
                if history:
                    names.append(history[0])
                else:
                    for item in value.values():
                        collect(item)
            elif isinstance(value, (list, tuple)):
                if len(value) >= 3 and isinstance(value[0], str) and isinstance(value[1], int):
                    names.append(value[0])   # Keras 2: [layer name, node index, tensor index, kwargs]
                else:
                    for item in value:
                        collect(item)

        collect(node)
        calls.append(names)
    return calls


def _functional_chain(entries: list[dict], config: dict, path: Path) -> list[dict]:
    """A Functional model's layers in order when they form one chain; otherwise the message the issue asks for."""
    by_name = {entry.get("name") or entry.get("config", {}).get("name"): entry for entry in entries}
    inputs, outputs = config.get("input_layers") or [], config.get("output_layers") or []
    # Keras 3 writes one input as [name, 0, 0], Keras 2 as [[name, 0, 0]]
    inputs = [inputs] if inputs and isinstance(inputs[0], str) else inputs
    outputs = [outputs] if outputs and isinstance(outputs[0], str) else outputs
    if len(inputs) != 1 or len(outputs) != 1:
        raise ModelFileError(f"{path}: convolab reads Sequential stacks; this file has a graph with {len(inputs)} "
                             f"inputs and {len(outputs)} outputs", fix=_STACK_FIX)
    consumers: dict[str, list[str]] = {}
    for name, entry in by_name.items():
        calls = _inbound_names(entry)
        if len(calls) > 1 or any(len(call) > 1 for call in calls):
            raise ModelFileError(f"{path}: convolab reads Sequential stacks; this file has a branching graph at layer "
                                 f"{name!r} ({entry.get('class_name')}), which takes several inputs", fix=_STACK_FIX)
        for call in calls:
            for source in call:
                consumers.setdefault(source, []).append(name)
    chain, current = [], inputs[0][0]
    while True:
        chain.append(by_name[current])
        following = consumers.get(current, [])
        if len(following) > 1:
            raise ModelFileError(f"{path}: convolab reads Sequential stacks; this file has a branching graph at layer "
                                 f"{current!r}, whose output feeds {', '.join(following)}", fix=_STACK_FIX)
        if not following:
            break
        current = following[0]
    if current != outputs[0][0] or len(chain) != len(by_name):
        raise ModelFileError(f"{path}: convolab reads Sequential stacks; this file's graph does not run as one chain "
                             f"from {inputs[0][0]!r} to {outputs[0][0]!r}", fix=_STACK_FIX)
    return chain


_STACK_FIX = ("rebuild it as keras.Sequential([...]) of the supported layers (" + supported_layers().replace(
    "InputLayer, ", "") + ") and save that")


def _model_layers(config: Any, path: Path) -> tuple[list[dict], bool]:
    """The layer entries of a Sequential or single-chain Functional model, and whether InputLayer is in the list."""
    if not isinstance(config, dict) or "class_name" not in config:
        raise ModelFileError(f"{path}: the architecture is not a Keras model config (no class_name)",
                             fix="save the model from Keras with model.save('model.keras')")
    class_name = config["class_name"]
    inner = config.get("config")
    if class_name == "Sequential":
        layers = inner if isinstance(inner, list) else (inner or {}).get("layers")   # very old Keras: a bare list
        if not isinstance(layers, list):
            raise ModelFileError(f"{path}: the Sequential model lists no layers", fix="save the model again")
        return layers, False
    if class_name in ("Functional", "Model") and isinstance(inner, dict) and "layers" in inner:
        return _functional_chain(list(inner["layers"]), inner, path), True
    raise ModelFileError(
        f"{path}: convolab reads Sequential stacks; this file holds a subclassed model ({class_name!r}), whose "
        "layers and order live in Python code, not in the file",
        fix=_STACK_FIX)


def _input_shape_of(config: dict) -> tuple[int, ...] | None:
    shape = config.get("batch_shape") or config.get("batch_input_shape")
    return tuple(shape[1:]) if shape else None


def spec_from_keras_config(config: Any, path: Path, keras_version: str | None = None
                           ) -> tuple[ModelSpec, list[str], list[str]]:
    """(spec, the file's layer names, each layer's weight group in a .keras file) from a Keras model config."""
    entries, input_listed = _model_layers(config, path)
    class_names = [str(entry.get("class_name")) for entry in entries]
    groups = [f"layers/{name}" for name in weight_group_names(
        class_names if input_listed else [name for name in class_names if name not in INPUT_CLASS_NAMES])]
    if not input_listed:   # Sequential: saving_lib skips the InputLayer when naming
        groups_iter = iter(groups)
        groups = [None if name in INPUT_CLASS_NAMES else next(groups_iter) for name in class_names]
    input_shape, layers, names, weight_groups = None, [], [], []
    axes: dict[int, Any] = {}                    # BatchNormalization's axis, by the layer's position
    legacy_keras = keras_version is not None and keras_version.startswith(("1.", "2."))
    for position, (entry, group) in enumerate(zip(entries, groups), start=1):
        layer_config = entry.get("config") or {}
        class_name = entry.get("class_name")
        name = layer_config.get("name") or entry.get("name") or f"layer {position}"
        where = f"layer {name!r} ({class_name})"
        shape = _input_shape_of(layer_config)
        if shape is not None and input_shape is None:
            input_shape = shape
        if class_name in INPUT_CLASS_NAMES:
            continue
        kind = kind_of(class_name)
        if kind is None:
            raise ModelFileError(f"{path}: {where} is a layer convolab does not compute; it reads "
                                 f"{supported_layers()}", fix="rebuild the model from those layers, or remove this one")
        if legacy_keras and keras_activation(layer_config) in ("hard_sigmoid", "leaky_relu"):
            raise ModelFileError(f"{path}: {where}: Keras {keras_version}'s {keras_activation(layer_config)} is not "
                                 "Keras 3's (different slope), which convolab computes",
                                 fix="use another activation, or save the model from Keras 3")
        if class_name == "BatchNormalization" and "axis" in layer_config:
            axes[len(layers)] = layer_config["axis"]
        try:
            layers.append(kind.from_keras_config({**layer_config, "activation": keras_activation(layer_config)}
                                                 if "activation" in layer_config else layer_config))
        except (SpecError, TypeError) as error:
            detail = error.message if isinstance(error, SpecError) else f"its config does not fit ({error})"
            raise ModelFileError(f"{path}: {where}: {detail}",
                                 fix=getattr(error, "fix", None) or "rebuild the layer with Keras's defaults") from None
        names.append(name)
        weight_groups.append(group)
    if not layers:
        raise ModelFileError(f"{path}: the model has no layers", fix="save a model with layers")
    if input_shape is None:
        raise ModelFileError(f"{path}: the model's input shape is not in the file (it was never built)",
                             fix="build the model before saving: keras.Input((28, 28, 1)) as its first layer")
    model_name = (config.get("config") or {}).get("name") if isinstance(config.get("config"), dict) else None
    try:
        spec = ModelSpec(tuple(layers), input_shape, path.stem or model_name)
        reports = analyze(spec)   # shapes checked now: the file's layers must fit together as convolab computes them
    except SpecError as error:
        raise ModelFileError(f"{path}: {error.message}", fix=error.fix) from None
    for position, axis in axes.items():          # Keras counts the batch as axis 0; channels are the last axis
        rank = len(reports[position].input_shape) + 1
        given = axis[0] if isinstance(axis, list) and len(axis) == 1 else axis
        if given not in (-1, rank - 1):
            raise ModelFileError(f"{path}: layer {names[position]!r} (BatchNormalization) normalises axis {axis!r}; "
                                 f"convolab normalises the channels, the last axis (-1)",
                                 fix="rebuild the layer as BatchNormalization() (axis=-1, Keras's default)")
    return spec, names, weight_groups


# --- weights: Keras arrays -> the network ------------------------------------------------------------------------------

def network_with_weights(spec: ModelSpec, arrays: list[list[np.ndarray]], names: list[str], path: Path) -> ConvNet:
    """The ConvNet of `spec` holding each layer's Keras arrays, every count and shape checked against the config's."""
    network = build_model(spec)
    for layer, block, layer_arrays, name in zip(network.spec.layers, network.blocks, arrays, names):
        expected = [array.shape for array in layer.keras_weights(block)]   # what the config makes of this layer
        if len(layer_arrays) != len(expected):
            raise ModelFileError(
                f"{path}: layer {name!r} ({type(layer).__name__}) has {len(layer_arrays)} weight arrays in the file; "
                f"its config needs {len(expected)}",
                fix="the weights were saved for another architecture; save the whole model again from Keras")
        for number, (array, shape) in enumerate(zip(layer_arrays, expected), start=1):
            if tuple(array.shape) != tuple(shape):
                raise ModelFileError(
                    f"{path}: layer {name!r} ({type(layer).__name__}): weight {number} of {len(expected)} is "
                    f"{tuple(array.shape)} in the file, but the config makes it {tuple(shape)}",
                    fix="the weights were saved for another architecture; save the whole model again from Keras")
        layer.set_keras_weights(block, [np.asarray(array, dtype=np.float32) for array in layer_arrays])
    return network.eval()


# --- ModelSpec and weights -> a .keras file -----------------------------------------------------------------------------

def _layer_entry(layer: LayerKind, name: str, input_shape: tuple[int, ...]) -> dict:
    return {"module": "keras.layers", "class_name": type(layer).__name__,
            "config": {"name": name, "trainable": True, "dtype": "float32", **layer.keras_config()},
            "registered_name": None, "build_config": {"input_shape": [None, *input_shape]}}


def keras_config(spec: ModelSpec) -> dict:
    """config.json for `spec` (resolved): a Sequential whose first layer is its InputLayer, each layer built."""
    reports = analyze(spec)
    input_entry = {"module": "keras.layers", "class_name": "InputLayer",
                   "config": {"batch_shape": [None, *spec.input_shape], "dtype": "float32", "sparse": False,
                              "name": "input_layer"}, "registered_name": None}
    layers = [input_entry] + [_layer_entry(layer, name, report.input_shape)
                              for layer, name, report in zip(spec.layers, keras_names(spec.layers), reports)]
    return {"module": "keras", "class_name": "Sequential",
            "config": {"name": _keras_model_name(spec.name), "trainable": True, "dtype": "float32", "layers": layers},
            "registered_name": None, "build_config": {"input_shape": [None, *spec.input_shape]}}


def _keras_model_name(name: str | None) -> str:
    """A Keras model name from a spec name (Keras allows no '/' in names)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name or "sequential") or "sequential"


def keras_file_bytes(network: ConvNet, date: str = "") -> bytes:
    """The bytes of a .keras file that keras.models.load_model reads: config.json, metadata.json, model.weights.h5."""
    h5py = _h5py()
    spec = network.spec
    weights = io.BytesIO()
    group_names = weight_group_names([type(layer).__name__ for layer in spec.layers])
    with h5py.File(weights, "w") as file:
        layers_group = file.create_group("layers")
        for layer, block, layer_name, group_name in zip(spec.layers, network.blocks, keras_names(spec.layers),
                                                        group_names):
            variables = layers_group.create_group(group_name).create_group("vars")
            variables.attrs["name"] = layer_name
            for position, array in enumerate(layer.keras_weights(block)):
                variables.create_dataset(str(position), data=np.asarray(array, dtype=np.float32))
        file.create_group("vars").attrs["name"] = _keras_model_name(spec.name)
    archive_bytes = io.BytesIO()
    with zipfile.ZipFile(archive_bytes, "w") as archive:
        archive.writestr(METADATA_NAME, json.dumps({"keras_version": KERAS_VERSION_WRITTEN, "date_saved": date,
                                                    "written_by": "convolab"}))
        archive.writestr(CONFIG_NAME, json.dumps(keras_config(spec)))
        archive.writestr(WEIGHTS_NAME, weights.getvalue())
    return archive_bytes.getvalue()
