"""A dataset in memory, and the report `convolab data` prints about it.

Images at rest are uint8 tensors (N, C, H, W); labels int64 (N,). They become float32 / 255 on the device, batch by
batch (batches.py).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from convolab.data.checksums import FileCheck


@dataclass
class Dataset:
    """A dataset in memory: uint8 images (N, C, H, W), int64 labels (N,), class names, and where it came from."""

    name: str
    class_names: tuple[str, ...]
    train_images: torch.Tensor   # (N, C, H, W) uint8
    train_labels: torch.Tensor   # (N,) int64
    test_images: torch.Tensor    # (M, C, H, W) uint8
    test_labels: torch.Tensor    # (M,) int64
    source: str                  # where it was found, in words: "system copy /usr/share/datasets/fashion-mnist"
    checks: tuple[FileCheck, ...] = ()
    looked: tuple[str, ...] = ()            # places tried before the one used, each with why it failed
    skipped_files: tuple[str, ...] = ()     # image files that could not be read, each with the reason
    # load_dataset's arguments that give this data again (a run records them, so that evaluate and --resume reload
    # it); empty when the dataset was made another way
    options: dict = field(default_factory=dict)
    # an image folder's files as loaded (fingerprint.folder_record: count, SHA-256, listing): a run records it, so that
    # evaluate, show, report and --resume notice a folder changed since; empty for named datasets
    files: dict = field(default_factory=dict)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """Keras order: (height, width, channels)."""
        _, channels, height, width = self.train_images.shape
        return (height, width, channels)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def verdict(self) -> str:
        """'verified', 'unverified' (valid structure, no checksum covers it), or 'not applicable' (image folders)."""
        if not self.checks:
            return "not applicable"
        return "verified" if all(check.verdict == "verified" for check in self.checks) else "unverified"


def describe_dataset(dataset: Dataset) -> str:
    """Where a dataset was found, what was tried first, counts per split and class, and the checksum verdict."""
    lines = [f"dataset: {dataset.name}", f"found in: {dataset.source}"]
    if dataset.looked:
        lines.append("looked first in:")
        lines += [f"  - {place}" for place in dataset.looked]
    height, width, channels = dataset.input_shape
    lines.append(f"images: {height}x{width}, {channels} channel{'s' if channels > 1 else ''} (input_shape "
                 f"{dataset.input_shape})")
    train_counts = torch.bincount(dataset.train_labels, minlength=dataset.num_classes).tolist()
    test_counts = torch.bincount(dataset.test_labels, minlength=dataset.num_classes).tolist()
    lines.append(f"splits: train {len(dataset.train_labels):,}, test {len(dataset.test_labels):,}")
    name_width = max(len("class"), *(len(name) for name in dataset.class_names))
    lines.append(f"  {'label':>5}  {'class':<{name_width}}  {'train':>7}  {'test':>7}")
    for label, name in enumerate(dataset.class_names):
        lines.append(f"  {label:>5}  {name:<{name_width}}  {train_counts[label]:>7,}  {test_counts[label]:>7,}")
    if dataset.checks:
        lines.append(f"checksums: {dataset.verdict}")
        for check in dataset.checks:
            lines.append(f"  {check.verdict:<10} {Path(check.path).name:<28} {check.how} "
                         f"({check.content_sha256[:12]}…)")
    else:
        lines.append("checksums: not applicable (an image folder has no published checksums)")
    if dataset.skipped_files:
        lines.append(f"files left out: {len(dataset.skipped_files)} (unreadable, or not an image type)")
        lines += [f"  - {reason}" for reason in dataset.skipped_files]
    return "\n".join(lines)
