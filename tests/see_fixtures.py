"""Two tiny trained runs on real Fashion-MNIST, made once per test session, for the picture, report and CLI tests."""
from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

from convolab.data import load_dataset
from convolab.experiment import DataSelection, train_run
from convolab.train import TrainConfig, make_progress

TINY_CNN = "conv4x3,pool2,conv3x3,pool2,flatten,dense16,dense"
TINY_DNN = "flatten,dense16,dense"
TEST_IMAGES = 40  # enough for the lab's images 0, 23 and 28


@functools.lru_cache(maxsize=1)
def fashion():
    """Real Fashion-MNIST from Debian's system copy, loaded once."""
    return load_dataset("fashion-mnist", offline=True, progress=False)


def selection(train_limit: int = 600) -> DataSelection:
    """The first images only; `offline` recorded so that reloading the run never reaches for the network."""
    return DataSelection(options={"source": "fashion-mnist", "offline": True}, train_limit=train_limit,
                         test_limit=TEST_IMAGES)


@functools.lru_cache(maxsize=1)
def tiny_runs() -> dict[str, Path]:
    """{'tinycnn': path, 'tinydnn': path}: 2 epochs on 400 images each, a 0.2 validation split, 40 test images."""
    root = Path(tempfile.mkdtemp(prefix="convolab-see-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    paths = {}
    for name, line in (("tinycnn", TINY_CNN), ("tinydnn", TINY_DNN)):
        config = TrainConfig(epochs=2, batch_size=32, validation_split=0.2, seed=0, device="cpu")
        train_run(line, fashion(), config, root / name, name=name, selection=selection(400),
                  progress=make_progress("quiet"))
        paths[name] = root / name
    return paths


def copy_run(name: str, destination: Path) -> Path:
    """A private copy of a tiny run, for tests that write into it."""
    target = destination / name
    shutil.copytree(tiny_runs()[name], target)
    return target
