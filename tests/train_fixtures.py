"""Shared pieces for the training tests: real Fashion-MNIST loaded once per session, tiny models, a fake dataset."""
from __future__ import annotations

import functools

import torch

from convolab.data import Dataset, load_dataset

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
