"""A run's config.json as a typed record: `RunConfig`, with a versioned JSON round trip that checks what it reads.

    RunConfig.from_json(value, source) -> RunConfig       RunError naming the file and the field for anything wrong
    config.to_json() -> dict                              what config.json holds (lists for tuples, the spec as a dict)

Versions. 1: the layout before the version was recorded (no "version" key); 2: the same fields plus "format" and
"version". Both read back; a version above CONFIG_VERSION is refused with "upgrade convolab". Every other module reads
a run's settings through this record, never through the raw dict.
"""
from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from convolab.data.fingerprint import FolderChanges
from convolab.data.folders import class_name_text
from convolab.errors import ConvolabError, RunError
from convolab.spec import ModelSpec, spec_from_dict

if TYPE_CHECKING:   # train.py sits above runs.py, which reads this record; imported where a TrainConfig is made
    from convolab.train import TrainConfig

CONFIG_FORMAT = "convolab-run-config"
CONFIG_VERSION = 2
LOSS = "sparse categorical cross-entropy on logits"


class FolderChangedWarning(UserWarning):
    """A run's image folder holds other files than when the run trained: its test split is another."""


@dataclass
class DataSelection:
    """Which data a run used: how to load it again (load_dataset's arguments) and the subsets taken."""

    options: dict = field(default_factory=lambda: {"source": "fashion-mnist"})
    train_limit: int | None = None     # the first N training images (a quick try); None: all
    test_limit: int | None = None      # the first N test images; None: all


@dataclass(frozen=True)
class DataRecord:
    """The data a run was trained on: how to load it again, the subsets, and what it was (shape, classes, sizes)."""

    name: str
    selection: DataSelection
    input_shape: tuple[int, int, int]
    class_names: tuple[str, ...]
    source: str = ""                 # where it was found, in words
    sizes: dict[str, int] = field(default_factory=dict)   # train_size, validation_size, test_size
    # an image folder's files when the run trained (data.fingerprint.folder_record); empty for named datasets and
    # for runs written before it was recorded, which load as they always did
    files: dict = field(default_factory=dict)

    def load_options(self, data_dir: str | None = None, offline: bool = False) -> dict:
        """load_dataset's arguments for this data; a data_dir or offline given now wins over the recorded ones."""
        options = dict(self.selection.options)
        options["data_dir"] = data_dir or options.get("data_dir")
        options["offline"] = offline or options.get("offline", False)
        return options

    def load(self, data_dir: str | None = None, offline: bool = False):
        """The dataset again, as recorded (a data.Dataset); a FolderChangedWarning when its folder's files changed
        since the run trained (the test split is then another: the caller may still want to measure it)."""
        from convolab.data import load_dataset

        dataset = load_dataset(**self.load_options(data_dir, offline), progress=False)
        self.warn_if_changed(dataset)
        return dataset

    def warn_if_changed(self, dataset) -> None:
        """A FolderChangedWarning (one line on the command line) when `dataset`, the run's folder loaded now, holds
        other files than the run trained on."""
        changes = self.folder_changes(dataset)
        if changes is None:
            return
        consequence = ("the test split is no longer the one the run was trained with, so these numbers are not the "
                       "run's" if changes.moves_the_split else
                       "the split is the same, but these images may not be the ones the run saw (edited, or copied "
                       "without their times)")
        warnings.warn(f"{self.selection.options.get('source')}: the folder changed since the run trained "
                      f"({changes.describe()}); {consequence}", FolderChangedWarning, stacklevel=3)

    def folder_changes(self, dataset) -> FolderChanges | None:
        """What changed in the run's image folder, comparing `dataset` (the folder loaded now) with the record; None
        when nothing did, or nothing was recorded."""
        return FolderChanges.between(self.files, dataset.files)

    def test_data(self):
        """The test images (uint8 NCHW) and labels the run was evaluated on: its --test-limit applies, so image numbers
        mean the same images the run's metrics counted."""
        dataset = self.load()
        images, labels = dataset.test_images, dataset.test_labels
        limit = self.selection.test_limit
        return (images[:limit], labels[:limit]) if limit else (images, labels)

    @property
    def key(self) -> tuple:
        """Equal for runs whose test data is the same: a sweep's runs load it once."""
        return (repr(sorted(self.selection.options.items())), self.name, self.selection.test_limit)


@dataclass
class RunConfig:
    """config.json: everything needed to trace a number to how it was made, and to rebuild the run."""

    name: str
    spec: ModelSpec
    dataset: DataRecord
    train: TrainConfig
    stop_at: str | None = None
    early_stopping: int | None = None
    loss: str = LOSS
    device: str = ""                  # the device it trained on ("cpu", "cuda:0")
    hardware: dict = field(default_factory=dict)
    versions: dict = field(default_factory=dict)
    command: str = ""
    created: str = ""
    initial_weights: str | None = None   # the Keras model file training started from (convolab train fashion.keras)
    imported_from: str | None = None     # a Keras model file read as a run (runs.imported_run); never written

    def to_json(self) -> dict:
        options = {key: (list(value) if isinstance(value, tuple) else value)
                   for key, value in self.dataset.selection.options.items()}
        return {
            "format": CONFIG_FORMAT,
            "version": CONFIG_VERSION,
            "name": self.name,
            "spec": self.spec.to_dict(),
            "spec_line": self.spec.to_line(),
            "dataset": {"name": self.dataset.name, "source": self.dataset.source, "options": options,
                        "train_limit": self.dataset.selection.train_limit,
                        "test_limit": self.dataset.selection.test_limit,
                        "input_shape": list(self.dataset.input_shape), "class_names": list(self.dataset.class_names),
                        **self.dataset.sizes,
                        **({"files": self.dataset.files} if self.dataset.files else {})},
            "train": dataclasses.asdict(self.train),
            "loss": self.loss,
            "callbacks": {"stop_at": self.stop_at, "early_stopping": self.early_stopping},
            "device": self.device,
            "hardware": self.hardware,
            "versions": self.versions,
            "command": self.command,
            "created": self.created,
            # only when training started from a Keras file: a run of fresh weights reads and writes as before
            **({"initial_weights": self.initial_weights} if self.initial_weights is not None else {}),
        }

    @classmethod
    def from_json(cls, value: Any, source: str | Path = "config.json") -> RunConfig:
        """The record in `value` (config.json parsed); RunError naming `source` and the field for anything wrong."""
        reader = _Fields(source)
        top = reader.mapping(value, "the file")
        version = top.get("version", 1)
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            reader.fail(f"version {version!r}; expected a whole number from 1")
        if version > CONFIG_VERSION:
            raise RunError(f"{source}: run config version {version}; this convolab reads up to {CONFIG_VERSION}",
                           fix="upgrade convolab to read this run")
        try:
            spec = spec_from_dict(reader.get(top, "spec", dict), source=str(source))
        except ConvolabError as error:
            raise RunError(f"{source}: its spec cannot be read: {error.message}",
                           fix="the run directory is damaged; train again") from None
        data = reader.get(top, "dataset", dict)
        name = reader.get(data, "name", str, "dataset.name")
        options = data.get("options") or {"source": name}
        reader.mapping(options, "dataset.options")
        # JSON turned tuples (an image size) into lists; load_dataset wants them back.
        options = {key: (tuple(item) if isinstance(item, list) else item) for key, item in options.items()}
        selection = DataSelection(options=options, train_limit=reader.limit(data, "train_limit"),
                                  test_limit=reader.limit(data, "test_limit"))
        input_shape = reader.get(data, "input_shape", list, "dataset.input_shape")
        if len(input_shape) != 3 or not all(isinstance(size, int) and size > 0 for size in input_shape):
            reader.fail(f"dataset.input_shape {input_shape!r}; expected [height, width, channels], positive integers")
        class_names = reader.get(data, "class_names", list, "dataset.class_names")
        if not class_names or not all(isinstance(name_, str) for name_ in class_names):
            reader.fail("dataset.class_names; expected a list of class names")
        files = data.get("files") or {}
        if not isinstance(files, dict) or not isinstance(files.get("sha256", ""), str):
            reader.fail(f"dataset.files is {files!r:.60}; expected an object with count, sha256 and files")
        sizes = {key: data[key] for key in ("train_size", "validation_size", "test_size") if isinstance(data.get(key), int)}
        # class_name_text: a run written before folder names were made text may hold undecodable bytes.
        record = DataRecord(name=name, selection=selection, input_shape=tuple(input_shape),
                            class_names=tuple(class_name_text(name_) for name_ in class_names),
                            source=str(data.get("source") or ""), sizes=sizes, files=files)
        callbacks = reader.mapping(top.get("callbacks") or {}, "callbacks")
        return cls(
            name=str(top.get("name") or Path(source).parent.name), spec=spec, dataset=record,
            train=reader.train_config(reader.get(top, "train", dict)),
            stop_at=callbacks.get("stop_at"), early_stopping=callbacks.get("early_stopping"),
            loss=str(top.get("loss") or LOSS), device=str(top.get("device") or ""),
            hardware=dict(top.get("hardware") or {}), versions=dict(top.get("versions") or {}),
            command=str(top.get("command") or ""), created=str(top.get("created") or ""),
            initial_weights=top.get("initial_weights") if isinstance(top.get("initial_weights"), str) else None,
        )


class _Fields:
    """Typed reads of config.json's fields, each failure a RunError naming the file and the field."""

    def __init__(self, source: str | Path):
        self.source = source

    def fail(self, what: str):
        raise RunError(f"{self.source}: {what}", fix="the run directory is damaged; train again (or restore the file "
                       "from a copy)")

    def mapping(self, value: Any, what: str) -> dict:
        if not isinstance(value, dict):
            kind = {list: "a JSON list", str: "a string", type(None): "null"}.get(type(value), type(value).__name__)
            self.fail(f"{what} is {kind}; expected a JSON object")
        return value

    def get(self, mapping: dict, key: str, kind: type, what: str | None = None):
        what = what or key
        if key not in mapping:
            self.fail(f"lacks {what}")
        value = mapping[key]
        if kind is dict:
            return self.mapping(value, what)
        if not isinstance(value, kind):
            self.fail(f"{what} is {value!r}; expected a {kind.__name__}")
        return value

    def limit(self, data: dict, key: str) -> int | None:
        value = data.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            self.fail(f"dataset.{key} {value!r}; expected a positive whole number or null")
        return value

    def train_config(self, values: dict) -> TrainConfig:
        from convolab.train import TrainConfig

        known = {item.name for item in dataclasses.fields(TrainConfig)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise RunError(f"{self.source}: train has settings this convolab does not know: {', '.join(unknown)}",
                           fix="upgrade convolab to read this run")
        config = TrainConfig(**values)
        try:
            config.validate()
        except ConvolabError as error:
            self.fail(f"train: {error.message}")
        except TypeError:
            self.fail(f"train holds a value of the wrong type: {values!r}")
        return config
