"""The datasets convolab knows by name: classes, files with checksums, where copies live, and which reader reads them.

An entry names its reader (readers.READERS): "idx" for the MNIST family today. A colour dataset in another format is
one more entry here and one more reader, nothing else.

How a file is proven intact. The gzip wrapper differs between copies (Debian re-compressed its files), so the checksum that
identifies the data is a SHA-256 of the decompressed IDX content. For Fashion-MNIST it is recorded below (computed from
Debian's copy, whose images and labels equal Zalando's). MNIST has no such hash that we could compute or find published;
its mirrors publish the MD5 of the gzip file (torchvision's table). So MNIST is verified by that MD5 when the file is the
mirrors' gzip, and after the first such verified download the content SHA-256 is recorded next to the cache
(`content-sha256.json`), which then verifies any later copy, gzipped or raw. A copy that no checksum covers is still fully
validated in structure (magic, element type, dimensions, counts) and reported as "unverified", never as verified.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from convolab.data.idx import IMAGES_MAGIC, LABELS_MAGIC
from convolab.errors import DataError


@dataclass(frozen=True)
class IdxFile:
    """One of a dataset's four files: its mirror name, role, expected shape and checksums."""

    filename: str                # as on the mirrors, gzipped: "train-images-idx3-ubyte.gz"
    role: str                    # "train_images", "train_labels", "test_images" or "test_labels"
    shape: tuple[int | None, ...]   # (60000, 28, 28) for images, (60000,) for labels; None: any size there
    md5: str | None              # the MD5 the mirrors publish for the gzip file
    content_sha256: str | None   # SHA-256 of the decompressed IDX bytes; None where no trustworthy value is known

    @property
    def magic(self) -> int:
        return IMAGES_MAGIC if len(self.shape) == 3 else LABELS_MAGIC


@dataclass(frozen=True)
class DatasetInfo:
    """A dataset convolab knows by name: classes, files with checksums, where copies live and where to fetch them."""

    name: str
    title: str
    class_names: tuple[str, ...]
    files: tuple[IdxFile, ...]
    mirrors: tuple[str, ...]        # base URLs, each ending in "/", tried in order
    system_dirs: tuple[str, ...]    # read-only copies installed by the system's package manager
    apt_package: str | None = None
    reader: str = "idx"             # the key of readers.READERS that reads a copy of it


def _idx_files(counts: tuple[int, int], md5s: tuple[str, str, str, str],
               sha256s: tuple[str | None, str | None, str | None, str | None]) -> tuple[IdxFile, ...]:
    train, test = counts
    return (
        IdxFile("train-images-idx3-ubyte.gz", "train_images", (train, 28, 28), md5s[0], sha256s[0]),
        IdxFile("train-labels-idx1-ubyte.gz", "train_labels", (train,), md5s[1], sha256s[1]),
        IdxFile("t10k-images-idx3-ubyte.gz", "test_images", (test, 28, 28), md5s[2], sha256s[2]),
        IdxFile("t10k-labels-idx1-ubyte.gz", "test_labels", (test,), md5s[3], sha256s[3]),
    )


DATASETS: dict[str, DatasetInfo] = {
    "fashion-mnist": DatasetInfo(
        name="fashion-mnist",
        title="Fashion-MNIST (Zalando)",
        class_names=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                     "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
        files=_idx_files(
            (60000, 10000),
            # MD5s of the gzip files, from Zalando's README (github.com/zalandoresearch/fashion-mnist).
            ("8d4fb7e6c68d591d4c3dfef9ec88bf0d", "25c81989df183df01b3e8a0aad5dffbe",
             "bef4ecab320f06d8554ea6380940ec79", "bb300cfdad3c16e7a12a480ee83cd310"),
            # SHA-256 of the decompressed IDX content, computed from Debian's dataset-fashion-mnist
            # (0.0~git20200523.55506a9-1): `zcat FILE | sha256sum`.
            ("c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
             "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
             "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
             "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"),
        ),
        mirrors=(
            "https://storage.googleapis.com/tensorflow/tf-keras-datasets/",              # Keras
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",              # torchvision, Zalando's S3
            "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",  # Zalando's GitHub
        ),
        system_dirs=("/usr/share/datasets/fashion-mnist",),
        apt_package="dataset-fashion-mnist",
    ),
    "mnist": DatasetInfo(
        name="mnist",
        title="MNIST handwritten digits (LeCun, Cortes, Burges)",
        class_names=tuple(str(digit) for digit in range(10)),
        files=_idx_files(
            (60000, 10000),
            # MD5s of the gzip files, as torchvision's MNIST.resources lists them for both mirrors below.
            ("f68b3c2dcbeaaa9fbdd348bbdeb94873", "d53e105ee54ea40749a09fcbcd1e9432",
             "9fb629c4189551a2d022fa330f9573f3", "ec29112dd5afa0611ce80d1b7f02629c"),
            # No content SHA-256: none could be computed here (no copy, no network) and none was found published by a
            # source we trust. The first download verified by the MD5 above records it (see checksums.recorded_hashes).
            (None, None, None, None),
        ),
        mirrors=(
            "https://ossci-datasets.s3.amazonaws.com/mnist/",          # torchvision
            "https://storage.googleapis.com/cvdf-datasets/mnist/",     # TensorFlow Datasets, the CVDF mirror
        ),
        system_dirs=(),   # Debian and Ubuntu package no MNIST
        apt_package=None,
    ),
}
DEFAULT_DATASET = "fashion-mnist"


def cache_root() -> Path:
    """`$XDG_CACHE_HOME/convolab`, defaulting to `~/.cache/convolab`: where downloads go, one folder per dataset."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "convolab"


def dataset_info(name: str) -> DatasetInfo:
    """The registry entry for `name`; a DataError listing the known names otherwise."""
    if name not in DATASETS:
        raise DataError(
            f"unknown dataset {name!r}; expected one of {', '.join(sorted(DATASETS))}, or a folder of images",
            fix="give a dataset name, or a path to a folder with one subfolder of images per class",
        )
    return DATASETS[name]
