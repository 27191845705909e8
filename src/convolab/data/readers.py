"""Readers: how a copy of a registry dataset in one directory becomes verified tensors. READERS maps the name a
registry entry gives (DatasetInfo.reader) to one; IDX, the MNIST family's format, is the only one today.

A reader answers three questions about a directory: which of the dataset's files are there (`present`), the whole
verified copy (`read`), and whether a freshly downloaded file is the published one (`check_download`).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from convolab.data.checksums import FileCheck, verify, verify_download
from convolab.data.idx import read_idx
from convolab.data.registry import DatasetInfo, IdxFile
from convolab.errors import DataError


@dataclass
class Splits:
    """A copy read from disk: uint8 images (N, C, H, W) and int64 labels per split, with each file's check."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    checks: tuple[FileCheck, ...]


class Reader(Protocol):
    def present(self, directory: Path, info: DatasetInfo) -> list[Path]: ...

    def read(self, directory: Path, info: DatasetInfo) -> Splits: ...

    def check_download(self, path: Path, file: IdxFile) -> str: ...


def _candidate_names(file: IdxFile) -> tuple[str, ...]:
    """The names a copy of `file` goes by: gzipped, raw, and the original archive's dotted raw name."""
    raw = file.filename[: -len(".gz")]
    dotted = raw.replace("-idx", ".idx")   # "train-images.idx3-ubyte", as some unpackers write it
    return (file.filename, raw, dotted)


def find_files(directory: Path, file: IdxFile) -> list[Path]:
    """The copies of `file` in `directory` under each of its names (gzipped first), present ones only."""
    return [directory / name for name in _candidate_names(file) if (directory / name).is_file()]


def find_file(directory: Path, file: IdxFile) -> Path | None:
    """The copy of `file` in `directory` under any of its names, or None."""
    copies = find_files(directory, file)
    return copies[0] if copies else None


def read_verified(directory: Path, file: IdxFile, info: DatasetInfo):
    """The first of `file`'s copies in `directory` that reads and verifies: (its IdxContent, its FileCheck).

    `gunzip -k` leaves both names; a damaged .gz beside a whole raw file (or the reverse) is not the copy's fault. When
    none is whole, the first one's problem is the one named."""
    problems: list[DataError] = []
    for path in find_files(directory, file):
        try:
            content = read_idx(path, expected_magic=file.magic, expected_shape=file.shape)
            return content, verify(path, file, info, content.content_sha256, content.gzipped)
        except DataError as error:
            problems.append(error)
    raise problems[0]


class IdxReader:
    """Four IDX files (train and test images and labels), gzipped or raw; images are one channel."""

    def present(self, directory: Path, info: DatasetInfo) -> list[Path]:
        return [path for path in (find_file(directory, file) for file in info.files) if path is not None]

    def read(self, directory: Path, info: DatasetInfo) -> Splits:
        """All four files, each validated and checked; a DataError naming the first problem."""
        missing = [file.filename for file in info.files if find_file(directory, file) is None]
        if missing:
            raise DataError(f"missing {', '.join(missing)}" if len(missing) < len(info.files) else "no dataset files")
        arrays: dict[str, np.ndarray] = {}
        checks: list[FileCheck] = []
        for file in info.files:
            content, check = read_verified(directory, file, info)
            checks.append(check)
            arrays[file.role] = content.array
        for split in ("train", "test"):
            images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
            if len(images) != len(labels):
                raise DataError(f"{directory}: {split} counts disagree: {len(images):,} images but {len(labels):,} "
                                "labels", fix="the image and label files come from different sets; use matching files")
            if labels.size and int(labels.max()) >= len(info.class_names):
                raise DataError(f"{directory}: {split} label {int(labels.max())} is out of range; "
                                f"{info.name} has {len(info.class_names)} classes")
        return Splits(
            train_images=torch.from_numpy(arrays["train_images"]).unsqueeze(1),   # (N, 28, 28) -> (N, 1, 28, 28)
            train_labels=torch.from_numpy(arrays["train_labels"]).to(torch.int64),
            test_images=torch.from_numpy(arrays["test_images"]).unsqueeze(1),
            test_labels=torch.from_numpy(arrays["test_labels"]).to(torch.int64),
            checks=tuple(checks),
        )

    def check_download(self, path: Path, file: IdxFile) -> str:
        """The content SHA-256 of a downloaded file that is valid IDX and matches a published checksum."""
        content = read_idx(path, expected_magic=file.magic, expected_shape=file.shape)
        verify_download(path, file, content.content_sha256)
        return content.content_sha256


READERS: dict[str, Reader] = {"idx": IdxReader()}


def reader_for(info: DatasetInfo) -> Reader:
    """The reader `info` names; DataError for a name no reader has."""
    if info.reader not in READERS:
        raise DataError(f"{info.name}: no reader {info.reader!r}; expected one of {', '.join(sorted(READERS))}",
                        fix="register the reader in convolab.data.readers.READERS")
    return READERS[info.reader]
