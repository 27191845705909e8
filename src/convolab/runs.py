"""Run directories: what a training run leaves on disk, written atomically, and read back as a `Run`.

A run directory (docs/ARCHITECTURE.md):
  config.json                 spec (dict and one-line), dataset, input shape, class names, hyperparameters, seed,
                              versions, device
  history.csv, history.json   one row per epoch: epoch, loss, accuracy, val_loss, val_accuracy, seconds
  checkpoint.pt               model and optimizer state, epoch, step, random states, history; written every epoch
  best.pt                     the weights of the best epoch by the monitored metric
  metrics.json                test loss and accuracy, per-class accuracy, confusion matrix
Every file is written to a temporary file in the same directory and renamed into place (os.replace), so a crash or
Ctrl-C mid-write leaves the previous version whole. Checkpoints hold only tensors, numbers, strings, lists and dicts,
and are read with torch.load(weights_only=True): loading one never runs code from the file.
"""
from __future__ import annotations

import csv
import errno
import io
import json
import os
import pickle
import platform
import re
import shlex
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from convolab import __version__
from convolab.data import DATASETS, DEFAULT_DATASET
from convolab.errors import ArgumentError, ConvolabError, RunError, SpecError, WriteError
from convolab.keras_files import is_keras_file, read_keras_file
from convolab.model import build_model
from convolab.runconfig import DataRecord, DataSelection, RunConfig
from convolab.shapes import keras_names, readable_bytes
from convolab.spec import DEFAULT_INPUT_SHAPE, ModelSpec, load_spec

CONFIG = "config.json"
HISTORY_CSV = "history.csv"
HISTORY_JSON = "history.json"
CHECKPOINT = "checkpoint.pt"
BEST = "best.pt"
METRICS = "metrics.json"
HISTORY_COLUMNS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "seconds", "cpu_seconds")
CHECKPOINT_FORMAT = "convolab-checkpoint"
CHECKPOINT_VERSION = 1
TEMPORARY_SUFFIX = ".tmp"   # atomic writes go through .NAME.XXXXXXXX.tmp in the same folder


# --- writing files: atomically, and every failure one message -----------------------------------------------------

# What an OSError's errno means for someone writing a file, and what to do about it. Errors not listed here are
# described by the operating system's own words.
WRITE_FAILURES: dict[int, tuple[str, str]] = {
    errno.ENOSPC: ("no space left on the device", "free space on that disk, or write somewhere else"),
    errno.EDQUOT: ("the disk quota is used up", "free space within your quota, or write somewhere else"),
    errno.EROFS: ("the file system is read-only", "write somewhere else (give another --out)"),
    errno.EACCES: ("permission denied", "write somewhere you may write, or fix the folder's permissions"),
    errno.EPERM: ("permission denied", "write somewhere you may write, or fix the folder's permissions"),
    errno.ENOTDIR: ("a part of the path is a file, not a directory", "choose a path whose folders are folders"),
    errno.EEXIST: ("a part of the path is a file, not a directory", "choose a path whose folders are folders"),
    errno.EISDIR: ("it is a directory", "give a file name, not a folder"),
    errno.ENAMETOOLONG: ("the name is too long for the file system", "choose a shorter name"),
}


def require_suffix(path: str | Path, suffixes, what: str, noun: str, fix_extra: str = "") -> str:
    """`path`'s suffix (lower case) when it is one of `suffixes`, else ArgumentError before anything is written: a
    picture or page is never written under another kind of name (`--out RUN/checkpoint.pt` would replace that file).
    what: the message's start ("a picture is written as .png, ..."); noun: what such a file is ("picture")."""
    suffix = Path(path).suffix.lower()
    if suffix not in suffixes:
        named = f"{suffix} is" if suffix else "a name without a suffix is"
        raise ArgumentError(f"{path}: {what}; {named} not a {noun}'s name, and nothing was written",
                            fix=f"name it {Path(path).with_suffix(next(iter(suffixes))).name}{fix_extra}")
    return suffix


def free_bytes(path: str | Path) -> int | None:
    """Bytes free to an ordinary user on the file system holding `path` (its nearest existing folder); None if unknown."""
    path = Path(path)
    for candidate in (path, *path.parents):
        try:
            stats = os.statvfs(candidate)
        except OSError:
            continue
        return stats.f_bavail * stats.f_frsize
    return None


def write_failure(path: str | Path, error: OSError, size: int | None = None) -> WriteError:
    """The one message for a write that failed: the file, the reason, and the fix; with the space a full disk lacks."""
    path = Path(path)
    reason, fix = WRITE_FAILURES.get(error.errno, (error.strerror or str(error), "write somewhere else"))
    message = f"{path}: cannot write it ({reason})"
    if error.errno in (errno.ENOSPC, errno.EDQUOT) and size is not None:
        free = free_bytes(path.parent)
        message += f"; it needs {readable_bytes(size)}" + (f", {readable_bytes(free)} are free there"
                                                            if free is not None else "")
        fix = f"free at least {readable_bytes(size)} on that disk, or write somewhere else"
    try:
        kept = path.is_file()
    except OSError:                              # the name itself is the problem (too long): nothing was there
        kept = False
    if kept:
        message += f"; the previous {path.name} is kept as it was"
    return WriteError(message, fix=fix)


@contextmanager
def writing(path: str | Path, size: int | None = None) -> Iterator[None]:
    """Turn any OSError raised while writing `path` into write_failure's WriteError."""
    try:
        yield
    except OSError as error:
        raise write_failure(path, error, size) from None


def require_free_space(path: str | Path, needed: int, what: str) -> None:
    """WriteError before any work is done when the file system of `path` has less than `needed` bytes free."""
    free = free_bytes(path)
    if free is not None and free < needed:
        raise WriteError(f"{path}: not enough free space for {what}: it needs about {readable_bytes(needed)}, "
                         f"{readable_bytes(free)} are free there", fix=f"free at least "
                         f"{readable_bytes(needed - free)} on that disk, or give another --out")


def make_directory(path: str | Path) -> Path:
    """mkdir -p `path`; WriteError (not a directory, read-only, ...) naming it otherwise."""
    path = Path(path)
    with writing(path):
        path.mkdir(parents=True, exist_ok=True)
    return path


def _current_umask() -> int:
    """The process's umask (reading it means setting it, so set it straight back)."""
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write `data` to `path` through a temporary file in the same directory, then rename it into place.

    Any failure (a full disk, a read-only folder, a folder that is a file) is one WriteError naming the file, and the
    previous version of the file is left whole. A path that exists and is not a regular file (/dev/stdout, a pipe)
    is written in place: renaming over a device would replace the device.
    """
    path = Path(path)
    with writing(path, size=len(data)):
        if path.exists() and not path.is_file() and not path.is_dir():
            with open(path, "wb") as file:
                file.write(data)
            return path
        make_directory(path.parent)
        if path.is_dir():
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMPORARY_SUFFIX)
        try:
            # mkstemp makes 0600 files (it is meant for secrets); a run's files get the permissions any new file would.
            os.fchmod(handle, 0o666 & ~_current_umask())
            with os.fdopen(handle, "wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, path)
        except BaseException:
            # Ctrl-C mid-write included: the old file stays, the partial one goes.
            Path(temporary).unlink(missing_ok=True)
            raise
    return path


@contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """A temporary path beside `path` to write (and check) a file at; renamed to `path` when the block ends without
    an error, removed otherwise, so a crash, Ctrl-C or failed check leaves the previous file whole (or none).
    An OSError in the block (a full disk) is atomic_write_bytes's WriteError."""
    path = Path(path)
    make_directory(path.parent)
    with writing(path):
        if path.is_dir():
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
    if path.exists() and not path.is_file():      # a device or a pipe: renaming over it would replace the device node
        raise WriteError(f"{path}: not a regular file (a device, a pipe or a socket); a checked file cannot be "
                         "written there", fix="give a file name")
    with writing(path):
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMPORARY_SUFFIX)
        os.close(handle)
        try:
            os.chmod(temporary, 0o666 & ~_current_umask())   # as any new file, not mkstemp's 0600
            yield Path(temporary)
            os.replace(temporary, path)
        finally:
            Path(temporary).unlink(missing_ok=True)


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write `text` (UTF-8) atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, value: Any) -> Path:
    """Write `value` as indented JSON atomically."""
    return atomic_write_text(path, json.dumps(value, indent=2) + "\n")


def atomic_torch_save(value: dict, path: str | Path) -> Path:
    """torch.save `value` atomically (serialized in memory first: a checkpoint of the lab's models is a few MB)."""
    buffer = io.BytesIO()
    torch.save(value, buffer)
    return atomic_write_bytes(path, buffer.getvalue())


def history_csv(history: list[dict]) -> str:
    """The history as CSV text: one row per epoch, empty cells for metrics a run does not record."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=HISTORY_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in history:
        writer.writerow({column: row.get(column, "") for column in HISTORY_COLUMNS})
    return out.getvalue()


# --- reading checkpoints ----------------------------------------------------------------------------------------------

def _forbidden_global(error: Exception) -> str | None:
    """The Python callable a refused pickle names ('posix.system'), when torch refused the file for holding code."""
    match = re.search(r"GLOBAL (\S+)", str(error))
    return match.group(1) if match else None


def read_checkpoint(path: str | Path, required: tuple[str, ...] = ("model",)) -> dict:
    """Load a checkpoint without unpickling arbitrary objects; RunError if it is missing, empty, corrupt, holds code,
    is not convolab's, or lacks one of the `required` entries."""
    path = Path(path)
    if not path.is_file():
        raise RunError(f"{path}: no checkpoint there", fix="give the run directory of a finished or stopped training")
    if path.stat().st_size == 0:
        raise RunError(f"{path}: the checkpoint is empty (0 bytes); whatever wrote it did not finish",
                       fix="nothing was overwritten; train again with --overwrite, or restore the file from a copy")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except PermissionError:
        raise RunError(f"{path}: cannot be read (permission denied)",
                       fix=f"give yourself read permission (chmod u+r {path}), or run as the user who trained it") from None
    except pickle.UnpicklingError as error:
        forbidden = _forbidden_global(error)
        if forbidden is None:                    # torch's own text would suggest weights_only=False: never here
            raise RunError(f"{path}: corrupted checkpoint, cannot be read (its bytes are not a checkpoint's)",
                           fix="nothing was overwritten; train again with another --out, or restore the file from a "
                               "copy") from None
        raise RunError(f"{path}: the file contains code ({forbidden}), which loading would run; convolab refuses to "
                       "run it. convolab's checkpoints hold only numbers and text, so this file did not come from a "
                       "convolab run", fix="delete it unless you know who made it; give a run directory that "
                                           "`convolab train` wrote") from None
    except Exception:  # noqa: BLE001 - torch raises many kinds (zip, EOF, runtime) for one cause: a bad file
        # torch's own words ("PytorchStreamReader failed ... internal miniz error") name its internals, not the file
        raise RunError(f"{path}: the checkpoint is truncated or damaged ({path.stat().st_size:,} bytes, its archive "
                       "is incomplete or corrupt), so it cannot be read", fix=damaged_checkpoint_fix(path)) from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise RunError(f"{path}: not a convolab checkpoint (no '{CHECKPOINT_FORMAT}' marker)",
                       fix="give a file written by `convolab train`")
    if not isinstance(payload.get("version", 0), int) or payload.get("version", 0) > CHECKPOINT_VERSION:
        raise RunError(f"{path}: checkpoint format version {payload['version']!r}; this convolab reads up to "
                       f"{CHECKPOINT_VERSION}", fix="upgrade convolab")
    missing = [key for key in required if key not in payload]
    if missing or not isinstance(payload.get("model", {}), dict):
        raise RunError(f"{path}: a damaged convolab checkpoint: it has convolab's marker but "
                       + (f"no {', '.join(repr(key) for key in missing)} entry" if missing else
                          "its 'model' entry is not a table of weights"),
                       fix="nothing was overwritten; train again with --overwrite, or restore the file from a copy")
    return payload


def damaged_checkpoint_fix(path: Path) -> str:
    """What to do about an unreadable checkpoint.pt: the run's best.pt when it is intact (its weights are usable),
    else training it again or restoring the file (nothing was overwritten)."""
    best = path.parent / BEST
    if path.name == CHECKPOINT and best.is_file():
        try:
            read_checkpoint(best)
        except RunError:
            pass
        else:
            return (f"the run's {BEST} is intact: read its weights with `convolab evaluate {path.parent} --weights "
                    f"best`; the training itself cannot be resumed: restore {path.name} from a copy, or train again "
                    "with --overwrite")
    return "nothing was overwritten; train again with another --out, or restore the file from a copy"


def layer_label(spec: ModelSpec, index: int) -> str:
    """'layer 3 (conv2d_1, Conv2D)': how a message names the spec's layer `index` (0-based, counted from 1 on screen)."""
    if 0 <= index < len(spec.layers):
        return f"layer {index + 1} ({keras_names(spec.layers)[index]}, {type(spec.layers[index]).__name__})"
    return "the model"


def describe_mismatch(spec: ModelSpec, expected: dict[str, torch.Tensor], found: dict[str, torch.Tensor]) -> list[str]:
    """One line per layer whose weights in `found` do not fit the model built from `spec` (`expected`)."""
    def layer_of(key: str) -> int:
        parts = key.split(".")
        return int(parts[1]) if len(parts) > 1 and parts[0] == "blocks" and parts[1].isdigit() else -1

    lines = []
    for key in sorted(set(expected) | set(found), key=lambda k: (layer_of(k), k)):
        want, got = expected.get(key), found.get(key)
        where = layer_label(spec, layer_of(key))
        if got is None:
            lines.append(f"{where}: {key} missing from the checkpoint (the model expects {tuple(want.shape)})")
        elif want is None:
            lines.append(f"{where}: {key} {tuple(got.shape)} in the checkpoint, but the model has no such weight")
        elif tuple(want.shape) != tuple(got.shape):
            lines.append(f"{where}: {key} is {tuple(got.shape)} in the checkpoint, the model expects {tuple(want.shape)}")
    return lines


def load_weights(model: torch.nn.Module, spec: ModelSpec, state_dict: dict, source: str | Path) -> None:
    """Load `state_dict` into `model`; RunError naming each layer that differs when it comes from another spec."""
    differences = describe_mismatch(spec, model.state_dict(), state_dict)
    if differences:
        shown = differences[:8] + ([f"... and {len(differences) - 8} more"] if len(differences) > 8 else [])
        raise RunError(
            f"{source}: the checkpoint was written for another model spec than {spec.to_line()!r}; "
            f"layers that differ:\n    " + "\n    ".join(shown),
            fix="use the spec the run was trained with (see its config.json), or train this spec anew",
        )
    model.load_state_dict(state_dict)


# --- writing a run ----------------------------------------------------------------------------------------------------

def versions() -> dict[str, str]:
    """The library versions a number depends on."""
    import numpy

    return {"convolab": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "numpy": numpy.__version__, "platform": platform.platform()}


def hardware(device: torch.device) -> dict[str, Any]:
    """The machine in a few words: CPU, cores, threads, and the GPU when one is used."""
    info: dict[str, Any] = {"device": str(device), "processor": platform.processor() or platform.machine(),
                            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads()}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


class RunLocked(RunError):
    """Another process is training into the run directory."""


class RunLock:
    """An exclusive OS lock (flock) on RUN/.lock for as long as a training writes into RUN.

    The operating system drops the lock when the process ends, however it ends (kill -9 included), so a lock never
    outlives its trainer; the file itself is removed on a normal exit. The holder's process id is written into the
    file, for the message a second trainer gets. Where flock does not exist (Windows), runs are not locked.
    """

    FILE = ".lock"

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.handle: int | None = None

    def __enter__(self) -> "RunLock":
        try:
            import fcntl
        except ImportError:   # not a POSIX system
            return self
        make_directory(self.path)
        lock_file = self.path / self.FILE
        while self.handle is None:
            with writing(lock_file):
                handle = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o666 & ~_current_umask())
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = os.read(handle, 32).decode("ascii", "replace").strip() or "unknown"
                os.close(handle)
                raise RunLocked(f"{self.path}: another convolab (process {holder}) is training into this run "
                                "directory right now; two trainings into one directory would mix their files",
                                fix="wait for it to finish (or stop it), or give another --out") from None
            if _same_file(handle, lock_file):
                self.handle = handle
            else:   # the previous holder removed the file between our open and our lock: lock the new one
                os.close(handle)
        os.ftruncate(self.handle, 0)
        os.write(self.handle, f"{os.getpid()}\n".encode("ascii"))
        return self

    def __exit__(self, *exc) -> None:
        if self.handle is not None:
            (self.path / self.FILE).unlink(missing_ok=True)   # while still holding it: see _same_file
            os.close(self.handle)
            self.handle = None


def training_process(path: str | Path) -> str | None:
    """The process id of the convolab training into run directory `path` right now (it holds the RunLock), else None.

    Asked with a shared lock taken and dropped at once: it fails only while a trainer holds the exclusive one (a lock
    file left by `kill -9` is not held, and says nothing)."""
    try:
        import fcntl
    except ImportError:   # not a POSIX system: runs are not locked
        return None
    try:
        handle = os.open(Path(path) / RunLock.FILE, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return os.read(handle, 32).decode("ascii", "replace").strip() or "unknown"
    else:
        fcntl.flock(handle, fcntl.LOCK_UN)
        return None
    finally:
        os.close(handle)


def _same_file(handle: int, path: Path) -> bool:
    """Whether the open file `handle` is still the file at `path` (not removed or replaced since it was opened)."""
    try:
        return os.path.samestat(os.fstat(handle), os.stat(path))
    except OSError:
        return False


# What commands write into a run directory after its training (show, filters, report, export, training's pictures):
# `train --overwrite` removes them with the run they describe. Files of any other name are the user's and stay.
RUN_PRODUCTS = ("curves.png", "confusion.png", "activations.png", "filters.png", "report.html", "model.keras",
                "model.onnx")
TENSORBOARD_EVENTS = "events.out.tfevents.*"   # what `train --tensorboard` writes into the run (TensorBoard's names)
# What a run directory holds besides its config.json, other commands' products included: what `--overwrite` removes
# (with the TensorBoard events), and what a folder that holds no run must not already hold.
RUN_OUTPUTS = (CHECKPOINT, BEST, METRICS, HISTORY_CSV, HISTORY_JSON, *RUN_PRODUCTS)

# The files a training writes, whose leftover temporaries (.checkpoint.pt.XXXXXXXX.tmp from a kill -9 mid-write)
# the next training of the run removes.
TRAINING_FILES = (CONFIG, CHECKPOINT, BEST, METRICS, HISTORY_CSV, HISTORY_JSON, "curves.png", "confusion.png")


def remove_stale_temporaries(path: str | Path) -> list[Path]:
    """Delete the temporaries of TRAINING_FILES left in run directory `path` by a process killed mid-write.

    Only call it holding the run's lock: then no live process is writing them.
    """
    removed = []
    for name in TRAINING_FILES:
        for temporary in Path(path).glob(f".{name}.*{TEMPORARY_SUFFIX}"):
            with writing(temporary):
                temporary.unlink(missing_ok=True)
            removed.append(temporary)
    return removed


def stopped_before_first_checkpoint(path: Path) -> RunError:
    """The message for a run directory with config.json and no checkpoint.pt: killed (or a full disk) in epoch 1."""
    try:
        spec_line = RunDirectory(path).read_config().spec.to_line()
    except ConvolabError:
        spec_line = "MODEL"
    overwrite = "" if RunDirectory(path).never_trained() else " --overwrite"
    return RunError(f"{path}: the run there stopped before its first checkpoint (it has {CONFIG} but no "
                    f"{CHECKPOINT}: training was interrupted, killed or failed before the end of epoch 1), so there "
                    "is nothing to resume or read",
                    fix=f"train it again in place: convolab train {shlex.quote(spec_line)} --out {shlex.quote(str(path))}"
                        + overwrite)


@contextmanager
def locked_run(path: str | Path | None) -> Iterator[None]:
    """Hold run directory `path`'s RunLock (made if need be) and clear what a killed writer left; None: nothing."""
    if path is None:
        yield
        return
    with RunLock(path):
        remove_stale_temporaries(path)
        yield


class RunDirectory:
    """Writes one run's files; every write is atomic."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.made = False   # whether the folder has been seen to exist (_require_folder)

    def file(self, name: str) -> Path:
        return self.path / name

    def has_run(self) -> bool:
        """Whether a run already lives here (a config or a checkpoint)."""
        return self.file(CONFIG).exists() or self.file(CHECKPOINT).exists()

    def holds_convolab_run(self) -> bool:
        """Whether config.json here is a convolab run's (it reads as a RunConfig), not another program's."""
        try:
            self.read_config()
        except ConvolabError:
            return False
        return True

    def never_trained(self) -> bool:
        """Whether the directory holds only the config.json of a run stopped before its first checkpoint (Ctrl-C or a
        kill during data loading or epoch 1), besides the lock and a killed writer's temporaries: nothing anyone could
        lose, so a new training may start there without --overwrite."""
        if not self.file(CONFIG).is_file():
            return False
        return all(entry.name in (CONFIG, RunLock.FILE) or entry.name.endswith(TEMPORARY_SUFFIX)
                   for entry in self.path.iterdir())

    def create(self, overwrite: bool = False) -> None:
        """Make the directory; RunError if a run is already there and `overwrite` is False (nothing is lost silently).
        A directory that never_trained is taken as free: its config.json is written anew. A folder that holds no
        convolab run is never written over: if it holds files of the names a run writes (the user's own report.html,
        metrics.json, config.json, ...), RunError, with or without `overwrite`.

        Call it holding the run's RunLock, so that two trainings cannot both find the directory free.
        """
        if self.path.exists() and not self.path.is_dir():
            raise RunError(f"{self.path}: exists and is not a directory", fix="choose another --out")
        if self.path.is_dir() and not self.holds_convolab_run():
            self.refuse_files_a_run_would_replace()
        if self.has_run() and not overwrite and not self.never_trained():
            if not self.file(CHECKPOINT).exists():
                raise stopped_before_first_checkpoint(self.path)
            raise RunError(f"{self.path}: already holds a run",
                           fix="continue it with --resume, choose another --out, or replace it with --overwrite "
                               "(in Python: another out=, or overwrite=True)")
        make_directory(self.path)
        if overwrite:   # what the replaced run made, so that nothing left describes another model
            self.remove(*RUN_OUTPUTS, *self.tensorboard_events())

    def tensorboard_events(self) -> list[str]:
        """The names of the TensorBoard event files here (`train --tensorboard` writes one a run)."""
        return sorted(path.name for path in self.path.glob(TENSORBOARD_EVENTS))

    def remove(self, *names: str) -> list[str]:
        """Delete these files of the run (those present); returns the names deleted."""
        removed = []
        for name in names:
            if self.file(name).exists():
                with writing(self.file(name)):
                    self.file(name).unlink(missing_ok=True)
                removed.append(name)
        return removed

    def refuse_files_a_run_would_replace(self) -> None:
        """RunError naming the files of this folder (which holds no convolab run) that a training would write over."""
        taken = [name for name in (CONFIG, *RUN_OUTPUTS) if self.file(name).exists()] + self.tensorboard_events()
        if taken:
            what = ("its config.json is not a convolab run's" if self.file(CONFIG).exists()
                    else "it has no config.json")
            raise RunError(f"{self.path}: holds no convolab run ({what}), and training there would write over "
                           f"{', '.join(taken)}", fix="choose another --out (a new or empty folder): convolab never "
                                                     "removes or replaces files it did not make, --overwrite included")

    def write_config(self, config: RunConfig) -> None:
        atomic_write_json(self.file(CONFIG), config.to_json())

    def read_config(self) -> RunConfig:
        """config.json as a checked RunConfig (any version this convolab knows); RunError naming what is wrong."""
        return RunConfig.from_json(read_json(self.file(CONFIG)), self.file(CONFIG))

    def spec(self) -> ModelSpec:
        return self.read_config().spec

    def test_data(self):
        """The test images and labels the run was evaluated on, loaded again as its config records."""
        return self.read_config().dataset.test_data()

    def write_history(self, history: list[dict]) -> None:
        self._require_folder()
        atomic_write_json(self.file(HISTORY_JSON), history)
        atomic_write_text(self.file(HISTORY_CSV), history_csv(history))

    def _require_folder(self) -> None:
        """Before each file training writes: a folder that was there once and is gone was deleted while the run
        trained (its runs folder cleaned, `rm -r`), and a write would make it again, holding files without the
        run's config.json that no command can read. RunError instead, nothing written."""
        if self.path.is_dir():
            self.made = True
        elif self.made:
            raise RunError(f"{self.path}: the run was deleted while it trained (its folder is gone); training stops "
                           "here and writes nothing more",
                           fix="train it again with the same command, into the same folder or another --out")

    def save_checkpoint(self, payload: dict) -> None:
        """The resumable state; `payload` is built by train.fit (see train.checkpoint_payload)."""
        self._require_folder()
        atomic_torch_save({"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, **payload}, self.file(CHECKPOINT))

    def save_best(self, model: torch.nn.Module, epoch: int, monitor: str, value: float) -> None:
        """The weights of the best epoch so far, by `monitor`."""
        self._require_folder()
        atomic_torch_save({"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "kind": "best",
                           "model": model.state_dict(), "epoch": epoch, "monitor": monitor, "value": value},
                          self.file(BEST))

    def write_metrics(self, metrics: dict) -> None:
        self._require_folder()
        atomic_write_json(self.file(METRICS), metrics)

    def load_checkpoint(self) -> dict:
        return read_checkpoint(self.file(CHECKPOINT))


def read_json(path: Path) -> Any:
    """A JSON file of a run; RunError naming the file if it is unreadable."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunError(f"{path}: missing", fix="give the directory that `convolab train` wrote") from None
    except PermissionError:
        raise RunError(f"{path}: cannot be read (permission denied)",
                       fix=f"give yourself read permission (chmod u+r {path}), or run as the user who trained it") from None
    except (OSError, ValueError) as error:
        raise RunError(f"{path}: cannot be read as JSON ({error})",
                       fix="the run directory is damaged; train again with another --out") from None


# --- reading a run ----------------------------------------------------------------------------------------------------

@dataclass
class Run:
    """A finished (or stopped) run read back: its config, spec, model with weights, history, test metrics."""

    path: Path
    config: RunConfig
    spec: ModelSpec
    model: torch.nn.Module
    history: list[dict]
    metrics: dict | None
    checkpoint: dict = field(repr=False, default_factory=dict)
    metrics_problem: str | None = None   # why metrics.json could not be read (metrics is None then)

    @property
    def name(self) -> str:
        return self.config.name or self.path.name

    @property
    def class_names(self) -> list[str]:
        return list(self.config.dataset.class_names)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return self.config.dataset.input_shape

    @property
    def status(self) -> str:
        """'finished', 'stopped' (a callback ended it), 'interrupted' (Ctrl-C), 'failed', 'running', or 'imported'
        (a Keras model file read as a run)."""
        return self.checkpoint.get("status", "unknown")

    def test_data(self):
        """The test images (uint8 NCHW) and labels the run was evaluated on (its --test-limit applied); for a Keras
        file whose model does not fit the lab's data, a RunError before any data is loaded (check_recorded_data)."""
        self.check_recorded_data()
        return self.config.dataset.test_data()

    def check_recorded_data(self) -> None:
        """A Keras file is drawn and measured on the lab's data (Fashion-MNIST, 28×28×1 in 10 classes): RunError,
        before anything is computed, when its model takes other images or has another number of classes. A run
        directory records the data it was trained on, which fits it."""
        if not self.imported:
            return
        info = DATASETS[self.config.dataset.name]
        height, width, channels = self.input_shape
        check_data_fits(self, info.name, DEFAULT_INPUT_SHAPE, info.class_names,
                        fix=f"show and report draw a Keras file on {info.name} ({DEFAULT_INPUT_SHAPE[0]}×"
                            f"{DEFAULT_INPUT_SHAPE[1]}×{DEFAULT_INPUT_SHAPE[2]} images, {len(info.class_names)} "
                            f"classes), so they need a model with that input and {len(info.class_names)} outputs; "
                            f"this one needs {height}×{width}×{channels} images in {len(self.class_names)} classes: "
                            f"measure it on such data with convolab evaluate {self.path} --data FOLDER "
                            f"--channels {channels} --image-size {height},{width}")

    @property
    def imported(self) -> bool:
        """Whether this is a Keras model file rather than a run directory."""
        return self.config.imported_from is not None

    def output_path(self, name: str) -> Path:
        """Where a picture or page about this run goes by default: inside a run directory; beside a Keras file,
        named after it (fashion.keras -> fashion-activations.png)."""
        return self.path.with_name(f"{self.path.stem}-{name}") if self.imported else self.path / name


def check_data_fits(run: Run, name: str, input_shape: tuple[int, int, int], class_names, fix: str) -> None:
    """RunError unless data `name` (images of `input_shape`, in `class_names`) fits the run's model. A Keras file
    knows its class count, not its class names: it takes the names of the data it is used on."""
    classes_fit = len(class_names) == len(run.class_names) if run.imported else list(class_names) == run.class_names
    if not classes_fit or tuple(input_shape) != run.input_shape:
        what = "model, which takes" if run.imported else f"run, which was trained on {run.config.dataset.name}"
        # As many classes under other names (a folder whose class folders were renamed): the counts alone read as a fit.
        names = (f" (its classes: {', '.join(class_names)}; the run's: {', '.join(run.class_names)})"
                 if not classes_fit and len(class_names) == len(run.class_names) else "")
        raise RunError(f"the data ({name}, {tuple(input_shape)}, {len(class_names)} classes) does not fit the {what} "
                       f"{run.input_shape} images in {len(run.class_names)} classes{names}", fix=fix)


def exists(path: str | Path) -> bool:
    """Path.exists, except that a name too long for the file system names nothing instead of raising: a one-line spec
    of more than 255 characters (a deep model) is asked "are you a run?" by every command that takes both. (A command
    that takes only a run keeps Path.exists: its message is then that the name is too long.)"""
    try:
        return Path(path).exists()
    except OSError as error:
        if error.errno == errno.ENAMETOOLONG:
            return False
        raise


def require_run(path: str | Path) -> Path:
    """The run directory `path`, or a RunError saying why it is not one."""
    path = Path(path)
    if not path.exists():
        raise RunError(f"{path}: no such run directory", fix="give a directory that `convolab train --out` wrote, "
                       "e.g. runs/cnn")
    if not path.is_dir():
        raise RunError(f"{path}: not a run directory (it is a file)", fix="give the directory that holds config.json "
                       "and checkpoint.pt")
    missing = [name for name in (CONFIG, CHECKPOINT) if not (path / name).is_file()]
    if missing == [CHECKPOINT]:
        trainer = training_process(path)
        if trainer is not None:
            raise RunLocked(f"{path}: process {trainer} is training it right now and has not saved its first "
                            f"checkpoint yet (it does at the end of epoch 1)",
                            fix="wait for it to finish (or evaluate its last checkpoint when one exists)")
        raise stopped_before_first_checkpoint(path)
    if missing:
        raise RunError(f"{path}: not a run directory (no {' or '.join(missing)})",
                       fix="give a directory that `convolab train --out` wrote, e.g. runs/cnn")
    return path


def load_run(path: str | Path, device: str | torch.device = "cpu", weights: str = "final") -> Run:
    """Read a run directory: config, spec, the model with its weights, history and test metrics. A Keras model file
    (.keras, .h5) reads as a run too: its spec and weights, no history, taken as trained on Fashion-MNIST when its
    input and output fit it (imported_run).

    weights: "final" (checkpoint.pt: the weights training ended with, best ones if early stopping restored them)
    or "best" (best.pt: the best epoch by the monitored metric).
    """
    if is_keras_file(path) and not Path(path).is_dir():
        return imported_run(path, device)
    path = require_run(path)
    config = RunDirectory(path).read_config()
    spec, input_shape, num_classes = config.spec, config.dataset.input_shape, len(config.dataset.class_names)
    weights_file = path / (BEST if weights == "best" else CHECKPOINT)
    if weights == "best":   # best.pt alone holds the weights: a damaged checkpoint.pt costs only its history
        state = read_checkpoint(weights_file)["model"]
        try:
            checkpoint = read_checkpoint(path / CHECKPOINT)
        except RunError:
            checkpoint = {"history": read_json(path / HISTORY_JSON) if (path / HISTORY_JSON).is_file() else []}
    else:
        checkpoint = read_checkpoint(path / CHECKPOINT)
        state = checkpoint["model"]
    try:
        model = build_model(spec, input_shape, num_classes)
    except SpecError as error:   # it was built from this record when it trained: the record was changed since
        raise RunError(f"{path / CONFIG}: its model does not fit its own data record ({error.message}): the file was "
                       "edited or damaged", fix="restore config.json from a copy of the run; its dataset's class_names "
                                                "and input_shape must be those the run was trained with") from None
    load_weights(model, spec, state, weights_file)
    model.to(device).eval()
    history = list(checkpoint.get("history", []))
    metrics_file, metrics, metrics_problem = path / METRICS, None, None
    if metrics_file.is_file():
        try:
            metrics = read_json(metrics_file)
        except RunError as error:   # the test's record alone: the model, its weights and history still read
            metrics_problem = error.message
    return Run(path=path, config=config, spec=spec, model=model, history=history, metrics=metrics,
               checkpoint=checkpoint, metrics_problem=metrics_problem)


@dataclass
class ModelWeights:
    """Weights to start a model from (a Keras file's), keyed like ConvNet.state_dict(), and where they came from."""

    state_dict: dict[str, torch.Tensor]
    source: Path


def load_model_source(text: str) -> tuple[ModelSpec, ModelWeights | None]:
    """A MODEL argument as (spec, weights): a Keras file brings both; a preset, spec file or one-line spec only the
    spec (None: fresh weights)."""
    if is_keras_file(text):
        model_file = read_keras_file(text.strip())
        return model_file.spec, ModelWeights(model_file.state_dict, model_file.path)
    return load_spec(text), None


def imported_run(path: str | Path, device: str | torch.device = "cpu") -> Run:
    """A Keras model file as a Run: its spec and weights; the data it is taken to know is the lab's Fashion-MNIST when
    its shapes fit (28×28×1 in, 10 classes out), else classes named by number (give --data to evaluate on yours)."""
    model_file = read_keras_file(path)
    spec, model = model_file.spec, model_file.network.to(device).eval()
    info = DATASETS[DEFAULT_DATASET]
    fits_default = spec.input_shape == (28, 28, 1) and model.num_classes == len(info.class_names)
    class_names = list(info.class_names) if fits_default else [str(number) for number in range(model.num_classes)]
    from convolab.train import TrainConfig   # train.py sits above runs.py (see runconfig)

    record = DataRecord(name=info.name, selection=DataSelection(options={"source": info.name}),
                        input_shape=spec.input_shape, class_names=tuple(class_names))
    config = RunConfig(name=spec.name or model_file.path.stem, spec=spec, dataset=record, train=TrainConfig(),
                       imported_from=str(model_file.path))
    return Run(path=model_file.path, config=config, spec=spec, model=model, history=[], metrics=None,
               checkpoint={"status": "imported", "epoch": 0, "model": model_file.state_dict})


def folder_name(name: str | None, default: str = "model") -> str:
    """A run folder's name from a model's name (a spec file's "name", a one-line spec): one path component of
    letters, digits, '_', '.' and '-', at most 60 characters, never '.' or '..'; `default` when nothing is left. A
    spec's name never leads a run out of runs/ ("../x", "/tmp/x")."""
    cleaned = re.sub(r"[^\w.-]+", "-", name or "")[:60].strip("-.")
    return cleaned or default


def next_free_directory(base: str | Path) -> Path:
    """`base` if no run lives there, else base-2, base-3, ...: a default --out never replaces an earlier run."""
    base = Path(base)
    candidate, number = base, 2
    while RunDirectory(candidate).has_run():
        candidate = base.with_name(f"{base.name}-{number}")
        number += 1
    return candidate


def python_command() -> str:
    """The command line that made this run, for config.json."""
    return " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])
