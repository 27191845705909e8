"""Shared pieces for the training tests: real Fashion-MNIST loaded once per session, tiny models, a fake dataset."""
from __future__ import annotations

import functools
import os
import signal

import torch

from convolab.data import Dataset, load_dataset
from convolab.train import EpochTotals, Progress

FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


@functools.lru_cache(maxsize=1)
def fashion() -> Dataset:
    """The real Fashion-MNIST from Debian's system copy (about 1.5 s), loaded once per test session."""
    return load_dataset("fashion-mnist", offline=True, progress=False)


def fashion_subset(train: int, test: int) -> Dataset:
    """The first `train` training and `test` test images of Fashion-MNIST, as a Dataset."""
    full = fashion()
    return Dataset(name=full.name, class_names=full.class_names, train_images=full.train_images[:train],
                   train_labels=full.train_labels[:train], test_images=full.test_images[:test],
                   test_labels=full.test_labels[:test], source=full.source)


def tiny_mlp(seed: int = 0, hidden: int = 16, dropout: float = 0.0) -> torch.nn.Module:
    """A plain nn.Module (no convolab spec): the loop must work on any model that returns logits."""
    torch.manual_seed(seed)
    layers = [torch.nn.Flatten(), torch.nn.Linear(784, hidden), torch.nn.ReLU()]
    if dropout:
        layers.append(torch.nn.Dropout(dropout))   # consumes the global RNG: resume must restore it
    layers.append(torch.nn.Linear(hidden, 10))
    return torch.nn.Sequential(*layers)


TINY_SPEC = "flatten,dense16-relu,dense"   # 784*16+16 + 16*10+10 = 12,730 parameters: trains in a blink


def train_tiny_run(out, spec: str = TINY_SPEC, epochs: int = 1, train: int = 320, test: int = 200, **options):
    """A real run directory from a tiny model on a Fashion-MNIST subset, through the same code as `convolab train`."""
    from convolab.experiment import DataSelection, train_run
    from convolab.train import QuietProgress, TrainConfig

    config = TrainConfig(epochs=epochs, device="cpu", **{key: options.pop(key) for key in list(options)
                                                         if key in TrainConfig.__dataclass_fields__})
    selection = DataSelection(options={"source": "fashion-mnist", "offline": True}, train_limit=train, test_limit=test)
    return train_run(spec, fashion(), config, out, selection=selection, progress=QuietProgress(), **options)


class StopAtStep(Progress):
    """Sends the process a real SIGINT (Ctrl-C) after `step` batches of epoch `epoch`."""

    def __init__(self, epoch: int, step: int):
        super().__init__()
        self.epoch, self.step_at, self.current = epoch, step, 0

    def start_epoch(self, epoch, epochs, steps, done):
        self.current = epoch

    def step(self, totals: EpochTotals) -> None:
        if self.current == self.epoch and totals.steps == self.step_at:
            os.kill(os.getpid(), signal.SIGINT)

    def end_epoch(self, epoch, epochs, logs):
        pass


def train_folder_run(tmp_path, epochs: int = 1):
    """A run trained for `epochs` on a tiny image folder (4 gray 8x8 PNGs in each of 2 classes): (folder, run)."""
    from PIL import Image

    from convolab.cli import main

    folder = tmp_path / "photos"
    for label, name in enumerate(("dark", "light")):
        (folder / name).mkdir(parents=True)
        for index in range(4):
            Image.new("L", (8, 8), 60 + 120 * label + index).save(folder / name / f"{index}.png")
    run = tmp_path / "run"
    assert main(["train", "flatten,dense", "--data", str(folder), "--image-size", "8,8", "--epochs", str(epochs),
                 "--quiet", "--out", str(run)]) == 0
    return folder, run


def change_folder(folder, change: str) -> str:
    """Add, remove or touch (a newer modification time, same bytes) one file of a train_folder_run folder; returns
    the file's path relative to the folder, as messages name it."""
    if change == "add":
        (folder / "dark" / "new.png").write_bytes((folder / "dark" / "0.png").read_bytes())
        return "dark/new.png"
    target = folder / "light" / "1.png"
    if change == "remove":
        target.unlink()
    else:
        status = target.stat()
        os.utime(target, ns=(status.st_atime_ns, status.st_mtime_ns + 1_000_000_000))
    return "light/1.png"
