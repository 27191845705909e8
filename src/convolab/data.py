"""Datasets as verified tensors: the IDX reader, the registry, where files are found, image folders, batches.

Where a dataset comes from, in this order (../shared/DESIGN.md):
  1. `data_dir` / `CONVOLAB_DATA_DIR`: a directory the user chose. It is authoritative: when it is given and its files are
     missing or bad, loading fails there rather than quietly using some other copy.
  2. The cache, `$XDG_CACHE_HOME/convolab/<dataset>/` (default `~/.cache/convolab/<dataset>/`). A cache file that fails its
     check is renamed `*.corrupt` (kept for inspection, never trusted again) and fetched anew when the network is allowed.
  3. System copies: `/usr/share/datasets/fashion-mnist/` (Debian's `dataset-fashion-mnist`).
  4. Download from the mirrors Keras and torchvision use, into the cache: timeouts, retries over mirrors, a progress bar,
     the checksum verified, a temporary file renamed into place only when whole. `offline=True` forbids it.

How a file is proven intact. The gzip wrapper differs between copies (Debian re-compressed its files), so the checksum that
identifies the data is a SHA-256 of the decompressed IDX content. For Fashion-MNIST it is recorded below (computed from
Debian's copy, whose images and labels equal Zalando's). MNIST has no such hash that we could compute or find published;
its mirrors publish the MD5 of the gzip file (torchvision's table). So MNIST is verified by that MD5 when the file is the
mirrors' gzip, and after the first such verified download the content SHA-256 is recorded next to the cache
(`content-sha256.json`), which then verifies any later copy, gzipped or raw. A copy that no checksum covers is still fully
validated in structure (magic, element type, dimensions, counts) and reported as "unverified", never as verified.

Images at rest are uint8 tensors (N, C, H, W); labels int64 (N,). They become float32 / 255 on the device, batch by batch.
"""
from __future__ import annotations

import hashlib
import http.client
import json
import os
import socket
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from convolab.errors import DataError

# --- the IDX format --------------------------------------------------------------------------------------------------
# Header: two zero bytes, one byte element type, one byte number of dimensions, then one big-endian uint32 per dimension.

IDX_ELEMENT_TYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
GZIP_MAGIC = b"\x1f\x8b"
# The largest decompressed IDX file accepted: the biggest real one here is 47 MB; this stops a gzip bomb, not a dataset.
MAX_IDX_BYTES = 1 << 30


@dataclass(frozen=True)
class IdxContent:
    """A validated IDX file: its array, the SHA-256 of its decompressed bytes, whether it was gzipped."""

    array: np.ndarray
    content_sha256: str
    gzipped: bool


def _decompress(path: Path, raw: bytes) -> bytes:
    """Gunzip `raw` (read from `path`), refusing truncated streams and anything larger than MAX_IDX_BYTES."""
    decompressor = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        content = decompressor.decompress(raw, MAX_IDX_BYTES + 1)
    except zlib.error as error:
        raise DataError(
            f"{path}: not a valid gzip stream ({error})",
            fix="the file is damaged; replace it with a whole copy (convolab's cache replaces its own damaged files)",
        ) from None
    if len(content) > MAX_IDX_BYTES:
        raise DataError(
            f"{path}: decompresses to more than {MAX_IDX_BYTES:,} bytes; expected an IDX file of at most that size",
            fix="this is not an MNIST-style IDX file; replace it with the real one",
        )
    if not decompressor.eof:
        raise DataError(
            f"{path}: truncated gzip file ({len(raw):,} bytes read, the compressed stream ends early)",
            fix="the copy is incomplete (an interrupted download?); replace it with a whole copy",
        )
    return content


def read_idx(path: str | Path, expected_magic: int | None = None,
             expected_shape: tuple[int | None, ...] | None = None) -> IdxContent:
    """Read one IDX file, gzipped or raw, validating magic number, element type, dimensions and payload size.

    expected_magic: 2049 for labels, 2051 for images (None accepts any valid IDX header).
    expected_shape: dimensions to insist on; None in a position accepts any size there.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as error:
        raise DataError(f"{path}: cannot read ({error.strerror or error})",
                        fix="check the path and its permissions") from None
    gzipped = raw[:2] == GZIP_MAGIC
    content = _decompress(path, raw) if gzipped else raw
    if len(content) < 4:
        raise DataError(f"{path}: {len(content)} bytes; an IDX file has at least a 4-byte header",
                        fix="the file is empty or truncated; replace it")
    magic = int.from_bytes(content[:4], "big")
    element_type, ndim = content[2], content[3]
    if content[:2] != b"\x00\x00" or element_type not in IDX_ELEMENT_TYPES or ndim == 0:
        raise DataError(
            f"{path}: wrong magic number 0x{magic:08X}; expected an IDX header 0x0000TTDD (TT an element type, "
            f"DD the number of dimensions), such as 0x{2051:08X} for images or 0x{2049:08X} for labels",
            fix="this is not an IDX file (or it is corrupt); use the files from the dataset's mirror",
        )
    if expected_magic is not None and magic != expected_magic:
        raise DataError(
            f"{path}: wrong magic number {magic} (0x{magic:08X}); expected {expected_magic} (0x{expected_magic:08X})",
            fix="the file is not the one its name says (images and labels swapped?); use the dataset's original files",
        )
    header_size = 4 + 4 * ndim
    if len(content) < header_size:
        raise DataError(f"{path}: truncated header ({len(content)} bytes; expected {header_size} for {ndim} dimensions)",
                        fix="the file is incomplete; replace it")
    shape = tuple(int.from_bytes(content[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    if expected_shape is not None:
        if len(shape) != len(expected_shape) or any(e is not None and e != s for s, e in zip(shape, expected_shape)):
            wanted = "x".join("N" if e is None else str(e) for e in expected_shape)
            raise DataError(f"{path}: dimensions {'x'.join(map(str, shape))}; expected {wanted}",
                            fix="use the dataset's original files")
    dtype = IDX_ELEMENT_TYPES[element_type]
    payload = len(content) - header_size
    expected_payload = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if payload < expected_payload:
        raise DataError(
            f"{path}: truncated payload: {payload:,} bytes of data; the header ({'x'.join(map(str, shape))} "
            f"{dtype.name}) needs {expected_payload:,}",
            fix="the file is incomplete; replace it with a whole copy",
        )
    if payload > expected_payload:
        raise DataError(
            f"{path}: oversized payload: {payload:,} bytes of data; the header ({'x'.join(map(str, shape))} "
            f"{dtype.name}) declares {expected_payload:,}",
            fix="the file has extra bytes (two files concatenated?); use the dataset's original files",
        )
    # bytearray makes the buffer writable, so torch.from_numpy can share it without a copy or a warning.
    buffer = bytearray(content)
    array = np.frombuffer(buffer, dtype=dtype, offset=header_size).reshape(shape)
    return IdxContent(array=array, content_sha256=hashlib.sha256(content).hexdigest(), gzipped=gzipped)


# --- the registry ----------------------------------------------------------------------------------------------------

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
        return 2051 if len(self.shape) == 3 else 2049


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
            # source we trust. The first download verified by the MD5 above records it (see _recorded_hashes).
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


def dataset_info(name: str) -> DatasetInfo:
    """The registry entry for `name`; a DataError listing the known names otherwise."""
    if name not in DATASETS:
        raise DataError(
            f"unknown dataset {name!r}; expected one of {', '.join(sorted(DATASETS))}, or a folder of images",
            fix="give a dataset name, or a path to a folder with one subfolder of images per class",
        )
    return DATASETS[name]


# --- where files are found -------------------------------------------------------------------------------------------

def cache_root() -> Path:
    """`$XDG_CACHE_HOME/convolab`, defaulting to `~/.cache/convolab`."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "convolab"


def _candidate_names(file: IdxFile) -> tuple[str, ...]:
    """The names a copy of `file` goes by: gzipped, raw, and the original archive's dotted raw name."""
    raw = file.filename[: -len(".gz")]
    dotted = raw.replace("-idx", ".idx")   # "train-images.idx3-ubyte", as some unpackers write it
    return (file.filename, raw, dotted)


def _find_file(directory: Path, file: IdxFile) -> Path | None:
    for name in _candidate_names(file):
        candidate = directory / name
        if candidate.is_file():
            return candidate
    return None


@dataclass(frozen=True)
class FileCheck:
    """What was checked for one file: where it is, its content SHA-256, and the verdict."""

    role: str
    path: str
    content_sha256: str
    verdict: str        # "verified" or "unverified"
    how: str            # which checksum proved it, or why none could


@dataclass
class _Attempt:
    """One place looked, what happened there, and the fix its error suggested (if any)."""

    place: str
    outcome: str
    fix: str | None = None


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()


def _recorded_hashes_path(info: DatasetInfo) -> Path:
    return cache_root() / info.name / "content-sha256.json"


def _recorded_hashes(info: DatasetInfo) -> dict[str, str]:
    """Content SHA-256s recorded after a download verified by the mirrors' MD5 (for datasets without built-in ones)."""
    path = _recorded_hashes_path(info)
    try:
        recorded = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return {role: value for role, value in recorded.items() if isinstance(value, str)}


def _record_hashes(info: DatasetInfo, hashes: dict[str, str]) -> None:
    path = _recorded_hashes_path(info)
    recorded = _recorded_hashes(info) | hashes
    temporary = path.with_suffix(f".tmp{os.getpid()}")
    temporary.write_text(json.dumps(recorded, indent=1, sort_keys=True) + "\n")
    temporary.replace(path)


def _identify_other_dataset(content_sha256: str, info: DatasetInfo) -> str:
    """' (it is fashion-mnist's train_images)' when the content belongs to another registered dataset, else ''."""
    for other in DATASETS.values():
        for file in other.files:
            if file.content_sha256 == content_sha256 and other.name != info.name:
                return f" (it is {other.name}'s {file.role.replace('_', ' ')})"
    return ""


def _load_checked(path: Path, file: IdxFile, info: DatasetInfo) -> tuple[np.ndarray, FileCheck]:
    """Read and validate `path` as `file`, then prove its content by the strongest checksum known."""
    content = read_idx(path, expected_magic=file.magic, expected_shape=file.shape)
    expected_sha256 = file.content_sha256 or _recorded_hashes(info).get(file.role)
    if expected_sha256 is not None:
        if content.content_sha256 != expected_sha256:
            raise DataError(
                f"{path}: checksum mismatch: content SHA-256 {content.content_sha256}; expected {expected_sha256} "
                f"for {info.name}'s {file.filename}{_identify_other_dataset(content.content_sha256, info)}",
                fix=f"the file is not {info.name}'s original; delete or replace it",
            )
        source = "convolab's table" if file.content_sha256 else "the one recorded at the first verified download"
        return content.array, FileCheck(file.role, str(path), content.content_sha256, "verified",
                                        f"content SHA-256 matches {source}")
    if content.gzipped and file.md5 is not None and _md5(path) == file.md5:
        return content.array, FileCheck(file.role, str(path), content.content_sha256, "verified",
                                        "gzip file's MD5 matches the mirrors' published one")
    other = _identify_other_dataset(content.content_sha256, info)
    if other:
        raise DataError(f"{path}: this file belongs to another dataset{other}, not to {info.name}",
                        fix=f"put {info.name}'s own files there")
    return content.array, FileCheck(file.role, str(path), content.content_sha256, "unverified",
                                    "structure valid; no published checksum covers this copy's bytes")


def _load_directory(directory: Path, info: DatasetInfo) -> tuple[dict[str, np.ndarray], list[FileCheck]]:
    """All four files from one directory, each validated and checked; a DataError naming the first problem."""
    arrays: dict[str, np.ndarray] = {}
    checks: list[FileCheck] = []
    missing = [file.filename for file in info.files if _find_file(directory, file) is None]
    if missing:
        raise DataError(f"missing {', '.join(missing)}" if len(missing) < len(info.files) else "no dataset files")
    for file in info.files:
        path = _find_file(directory, file)
        array, check = _load_checked(path, file, info)
        arrays[file.role] = array
        checks.append(check)
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if len(images) != len(labels):
            raise DataError(f"{directory}: {split} counts disagree: {len(images):,} images but {len(labels):,} labels",
                            fix="the image and label files come from different sets; use matching files")
        if labels.size and int(labels.max()) >= len(info.class_names):
            raise DataError(f"{directory}: {split} label {int(labels.max())} is out of range; "
                            f"{info.name} has {len(info.class_names)} classes")
    return arrays, checks


def _remove_if_empty(directory: Path) -> None:
    """Leave no empty cache folder behind after a failed download, so the next report says 'no such directory'."""
    try:
        directory.rmdir()
    except OSError:
        pass


def _set_aside(path: Path) -> Path:
    """Rename a bad cache file to `*.corrupt` so it is never trusted again but can still be inspected."""
    target = path.with_name(path.name + ".corrupt")
    path.replace(target)
    return target


# --- download --------------------------------------------------------------------------------------------------------

DOWNLOAD_TIMEOUT_S = 30.0     # per connection and per read: a stalled mirror is abandoned after this long
DOWNLOAD_ATTEMPTS = 2         # per mirror, before the next mirror is tried
RETRY_DELAY_S = 1.0           # between attempts on one mirror
CHUNK_BYTES = 1 << 16


def _fetch(url: str, destination: Path, progress: bool) -> None:
    """Stream `url` to `destination`, raising DataError if the transfer fails or stops short of Content-Length."""
    try:
        response = urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S)
    except urllib.error.HTTPError as error:
        raise DataError(f"HTTP {error.code} {error.reason}") from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise DataError(f"cannot connect ({reason})") from None
    with response:
        total = int(response.headers.get("Content-Length") or 0)
        received = 0
        bar = _progress_bar(destination.name.split(".part")[0], total) if progress else None
        try:
            with open(destination, "wb") as out:
                while True:
                    try:
                        chunk = response.read(CHUNK_BYTES)
                    except http.client.IncompleteRead as error:
                        received += len(error.partial)
                        raise DataError(f"transfer cut after {received:,} of {total:,} bytes") from None
                    except (socket.timeout, OSError) as error:
                        raise DataError(f"transfer failed after {received:,} bytes ({error})") from None
                    if not chunk:
                        break
                    out.write(chunk)
                    received += len(chunk)
                    if bar is not None:
                        bar[0].update(bar[1], completed=received)
        finally:
            if bar is not None:
                bar[0].stop()
    if total and received != total:
        raise DataError(f"transfer cut after {received:,} of {total:,} bytes")


def _progress_bar(label: str, total: int):
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    progress = Progress("[bold]{task.description}", BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                        console=Console(stderr=True), transient=False)
    task = progress.add_task(label, total=total or None)
    progress.start()
    return progress, task


def _download_file(file: IdxFile, info: DatasetInfo, directory: Path, progress: bool) -> None:
    """Fetch `file` into `directory` from the first mirror that gives a verified copy; DataError listing every try."""
    failures: list[str] = []
    destination = directory / file.filename
    for mirror in info.mirrors:
        url = mirror + file.filename
        for attempt in range(1, DOWNLOAD_ATTEMPTS + 1):
            temporary = directory / f"{file.filename}.part{os.getpid()}"
            try:
                _fetch(url, temporary, progress)
                content = read_idx(temporary, expected_magic=file.magic, expected_shape=file.shape)
                md5_ok = file.md5 is not None and _md5(temporary) == file.md5
                sha_ok = file.content_sha256 is not None and content.content_sha256 == file.content_sha256
                if not (md5_ok or sha_ok):
                    raise DataError(f"checksum mismatch (content SHA-256 {content.content_sha256[:16]}…)")
                temporary.replace(destination)   # only a whole, verified file takes the real name
                if file.content_sha256 is None:
                    _record_hashes(info, {file.role: content.content_sha256})
                return
            except DataError as error:
                failures.append(f"{url}: {error.message.replace(str(temporary) + ': ', '')}")
                if "checksum mismatch" in error.message:
                    break   # the mirror serves the wrong bytes; asking again will not change them
                if attempt < DOWNLOAD_ATTEMPTS:
                    time.sleep(RETRY_DELAY_S)
            finally:
                temporary.unlink(missing_ok=True)
    counted = {failure: failures.count(failure) for failure in failures}   # identical retries said once, counted
    raise DataError("every mirror failed:" + "".join(
        f"\n      - {failure}" + (f" (x{count})" if count > 1 else "") for failure, count in counted.items()))


def _download(info: DatasetInfo, directory: Path, progress: bool) -> None:
    """Fetch every file of `info` that `directory` lacks into it (the cache)."""
    directory.mkdir(parents=True, exist_ok=True)
    for file in info.files:
        if _find_file(directory, file) is None:
            _download_file(file, info, directory, progress)


# --- the whole registry dataset --------------------------------------------------------------------------------------

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


def _missing_message(info: DatasetInfo, attempts: list[_Attempt], offline: bool) -> DataError:
    lines = [f"no usable copy of {info.title} ({info.name}) was found. Looked in:"]
    lines += [f"  - {attempt.place}: {attempt.outcome}" for attempt in attempts]
    fixes = list(dict.fromkeys(attempt.fix for attempt in attempts if attempt.fix))   # a damaged file's own fix first
    if info.apt_package:
        fixes.append(f"install the system copy: sudo apt-get install {info.apt_package}")
    if offline:
        fixes.append("allow the download: run without --offline (the files go to the cache, checksums verified)")
    fixes.append("fetch the four files by hand into a folder, then pass --data-dir FOLDER (or set CONVOLAB_DATA_DIR):")
    fixes += [f"    {info.mirrors[0] if info.mirrors else ''}{file.filename}" for file in info.files]
    if len(info.mirrors) > 1:
        fixes.append(f"  (same names on the other mirrors: {', '.join(info.mirrors[1:])})")
    return DataError("\n".join(lines), fix="\n    ".join(fixes))


def _as_tensors(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).unsqueeze(1)   # (N, 28, 28) -> (N, 1, 28, 28)


def load_registry_dataset(info: DatasetInfo, data_dir: str | Path | None = None, offline: bool = False,
                          progress: bool = True) -> Dataset:
    """Find `info`'s files in the documented order, verify them, and return them as tensors (one channel, 28x28)."""
    attempts: list[_Attempt] = []

    def build(arrays: dict[str, np.ndarray], checks: list[FileCheck], source: str) -> Dataset:
        return Dataset(
            name=info.name, class_names=info.class_names,
            train_images=_as_tensors(arrays["train_images"]),
            train_labels=torch.from_numpy(arrays["train_labels"]).to(torch.int64),
            test_images=_as_tensors(arrays["test_images"]),
            test_labels=torch.from_numpy(arrays["test_labels"]).to(torch.int64),
            source=source, checks=tuple(checks),
            looked=tuple(f"{attempt.place}: {attempt.outcome}" for attempt in attempts),
        )

    # 1. A directory the user chose: the dataset's own subfolder of it, or the directory itself.
    if data_dir is not None:
        chosen, origin = data_dir, "--data-dir"
    else:
        chosen, origin = os.environ.get("CONVOLAB_DATA_DIR"), "CONVOLAB_DATA_DIR"
    if chosen:
        root = Path(chosen).expanduser()
        for directory in (root / info.name, root):
            if not directory.is_dir():
                attempts.append(_Attempt(f"{directory} ({origin})", "no such directory"))
                continue
            try:
                arrays, checks = _load_directory(directory, info)
                return build(arrays, checks, f"{directory} ({origin})")
            except DataError as error:
                attempts.append(_Attempt(f"{directory} ({origin})", error.message, error.fix))
                if any(_find_file(directory, file) for file in info.files):
                    break   # the files are here but bad: report that, do not look in the parent
        error = _missing_message(info, attempts, offline)
        error.message += f"\n  ({origin} was given, so no other place was searched; it names the copy to use.)"
        unset = "without --data-dir" if origin == "--data-dir" else "with CONVOLAB_DATA_DIR unset"
        error.fix += f"\n    or run {unset} to use the cache, the system copy or the download"
        raise error

    # 2. The cache: a bad file is set aside, never trusted.
    cache = cache_root() / info.name
    if cache.is_dir():
        try:
            arrays, checks = _load_directory(cache, info)
            return build(arrays, checks, f"cache {cache}")
        except DataError as error:
            outcome = error.message
            present = [path for path in (_find_file(cache, file) for file in info.files) if path is not None]
            named = [path for path in present if str(path) in error.message]
            # A file named by the error is bad; an error naming none (counts that disagree) condemns the whole copy.
            for path in named or (present if str(cache) in error.message else []):
                outcome += f"; set aside as {_set_aside(path).name}"
            attempts.append(_Attempt(f"cache {cache}", outcome))   # set aside: no fix needed, a download replaces it
    else:
        attempts.append(_Attempt(f"cache {cache}", "no such directory"))

    # 3. System copies, read-only.
    if not info.system_dirs:
        attempts.append(_Attempt("system copies", f"none known (no Debian or Ubuntu package ships {info.name})"))
    for directory in map(Path, info.system_dirs):
        if not directory.is_dir():
            hint = f" (the {info.apt_package} package is not installed)" if info.apt_package else ""
            attempts.append(_Attempt(f"system copy {directory}", f"no such directory{hint}"))
            continue
        try:
            arrays, checks = _load_directory(directory, info)
            return build(arrays, checks, f"system copy {directory}")
        except DataError as error:
            attempts.append(_Attempt(f"system copy {directory}", error.message,
                                     f"reinstall the system copy: sudo apt-get install --reinstall {info.apt_package}"
                                     if info.apt_package else None))

    # 4. Download into the cache.
    if offline:
        attempts.append(_Attempt("download from " + ", ".join(info.mirrors), "not tried: offline"))
        raise _missing_message(info, attempts, offline)
    try:
        _download(info, cache, progress)
        arrays, checks = _load_directory(cache, info)
    except DataError as error:
        attempts.append(_Attempt("download into " + str(cache), error.message))
        _remove_if_empty(cache)
        raise _missing_message(info, attempts, offline) from None
    except OSError as error:
        attempts.append(_Attempt("download into " + str(cache), f"cannot write ({error})"))
        raise _missing_message(info, attempts, offline) from None
    return build(arrays, checks, f"downloaded into cache {cache}")


# --- image folders ---------------------------------------------------------------------------------------------------

DEFAULT_FOLDER_IMAGE_SIZE = (28, 28)   # the lab's input size, so the lab's models apply as they are


def class_name_text(folder_name: str) -> str:
    """A folder name as printable text: bytes that are not UTF-8 (which Python keeps as lone surrogates, and no font,
    terminal or HTML page can show) become \\xNN escapes: b"caf\\xe9" -> "caf\\\\xe9". UTF-8 names are unchanged."""
    return folder_name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _class_folders(directory: Path) -> list[Path]:
    return sorted((child for child in directory.iterdir() if child.is_dir() and not child.name.startswith(".")),
                  key=lambda child: child.name)


def _image_files(folder: Path) -> list[Path]:
    from convolab.images import IMAGE_SUFFIXES

    return sorted(path for path in folder.rglob("*") if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES)


def _other_files(folder: Path) -> list[Path]:
    """Files under `folder` without an image suffix (hidden ones, like .DS_Store, aside): reported, never read."""
    from convolab.images import IMAGE_SUFFIXES

    return sorted(path for path in folder.rglob("*") if path.is_file() and not path.name.startswith(".")
                  and path.suffix.lower() not in IMAGE_SUFFIXES)


def _read_folder_split(root: Path, class_folders: tuple[str, ...], input_shape: tuple[int, int, int],
                       skipped: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """Every readable image under root/<class folder>/ as (N, C, H, W) uint8 and (N,) labels; the files left out, with the
    reason, go to `skipped`: unreadable images, and files whose suffix is not an image type."""
    from convolab.images import IMAGE_SUFFIXES, load_image

    height, width, channels = input_shape
    tensors: list[torch.Tensor] = []
    labels: list[int] = []
    for label, folder_name in enumerate(class_folders):
        folder = root / folder_name
        if not folder.is_dir():
            continue
        skipped.extend(f"{path}: not an image type (expected {', '.join(IMAGE_SUFFIXES)})"
                       for path in _other_files(folder))
        for path in _image_files(folder):
            try:
                tensors.append(load_image(path, input_shape, invert=False))
            except DataError as error:
                skipped.append(error.message)
                continue
            labels.append(label)
    images = torch.stack(tensors) if tensors else torch.zeros((0, channels, height, width), dtype=torch.uint8)
    return images, torch.tensor(labels, dtype=torch.int64)


def _folder_classes(root: Path, split_roots: list[Path]) -> tuple[str, ...]:
    """Class names (subfolder names) under `split_roots`, each required to hold at least one image file; two at least."""
    names = sorted({child.name for split_root in split_roots for child in _class_folders(split_root)})
    if len(names) < 2:
        found = f"one class ({names[0]!r})" if names else "no class subfolders"
        raise DataError(
            f"{root}: {found}; a classifier needs at least two classes, one subfolder of images each",
            fix=f"arrange the images as {root}/<class name>/<image files>, with two or more class folders",
        )
    train_root = split_roots[0]
    empty = [name for name in names if not (train_root / name).is_dir() or not _image_files(train_root / name)]
    if empty:
        raise DataError(
            f"{train_root}: class folder(s) with no image files: {', '.join(empty)}",
            fix="put PNG, JPEG, BMP, GIF or WebP images in every class folder, or remove the empty ones",
        )
    return tuple(names)


def _all_gray(images: torch.Tensor) -> bool:
    return bool((images[:, 0] == images[:, 1]).all() and (images[:, 1] == images[:, 2]).all())


def _stratified_split(labels: torch.Tensor, test_split: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (train, test): per class, a seeded shuffle and round(n * test_split) of its images held out for test."""
    generator = torch.Generator().manual_seed(seed)
    train_parts, test_parts = [], []
    for label in torch.unique(labels).tolist():
        members = torch.nonzero(labels == label).flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        held_out = round(len(members) * test_split)
        test_parts.append(members[:held_out])
        train_parts.append(members[held_out:])
    return torch.cat(train_parts).sort().values, torch.cat(test_parts).sort().values


def load_image_folder(root: str | Path, channels: int | None = None, image_size: tuple[int, int] | None = None,
                      test_split: float = 0.2, seed: int = 0) -> Dataset:
    """A folder with one subfolder of images per class (or train/ and test/ folders of those) as a Dataset.

    channels: 1 (gray) or 3 (RGB); None picks 1 when every image is gray (R = G = B everywhere, whatever the file's
    mode: WebP, say, stores gray as RGB), else 3.
    image_size: (height, width) every image is fitted into, aspect kept and padded; default 28x28 as the lab.
    test_split: the fraction of each class held out for test when there are no train/ and test/ folders; the
    choice is a seeded shuffle, so the same folder and seed always give the same split.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"{root}: no such folder", fix="give a dataset name (fashion-mnist, mnist) or a folder of images")
    if not 0.0 <= test_split < 1.0:
        raise DataError(f"test_split={test_split}; expected a fraction in [0, 1)", fix="use --test-split 0.2, say")
    presplit = (root / "train").is_dir() and (root / "test").is_dir()
    split_roots = [root / "train", root / "test"] if presplit else [root]
    class_folders = _folder_classes(root, split_roots)
    class_names = tuple(class_name_text(name) for name in class_folders)
    if len(set(class_names)) < len(class_names):
        raise DataError(f"{root}: two class folders have the same name once shown as text: "
                        f"{', '.join(sorted(name for name in class_names if class_names.count(name) > 1))}",
                        fix="rename one of them (UTF-8 names are shown as they are)")
    if channels not in (None, 1, 3):
        raise DataError(f"channels={channels}; expected 1 (gray) or 3 (RGB)", fix="use --channels 1 or --channels 3")
    height, width = image_size or DEFAULT_FOLDER_IMAGE_SIZE
    # Undecided channels: read as RGB, and keep one channel if all three are equal everywhere (exactly what reading as
    # gray gives, since Pillow's luma of R = G = B is that value).
    input_shape = (height, width, channels or 3)
    skipped: list[str] = []
    if presplit:
        train_images, train_labels = _read_folder_split(root / "train", class_folders, input_shape, skipped)
        test_images, test_labels = _read_folder_split(root / "test", class_folders, input_shape, skipped)
        how = "train/ and test/ folders"
    else:
        images, labels = _read_folder_split(root, class_folders, input_shape, skipped)
        train_index, test_index = _stratified_split(labels, test_split, seed)
        train_images, train_labels = images[train_index], labels[train_index]
        test_images, test_labels = images[test_index], labels[test_index]
        how = f"split {1 - test_split:.0%}/{test_split:.0%} per class with seed {seed}"
    if channels is None and _all_gray(train_images) and _all_gray(test_images):
        train_images, test_images = train_images[:, :1].clone(), test_images[:, :1].clone()
    counts = torch.bincount(train_labels, minlength=len(class_names))
    unreadable_classes = [name for name, count in zip(class_names, counts.tolist()) if count == 0]
    if unreadable_classes:
        raise DataError(
            f"{root}: no readable training images for class(es) {', '.join(unreadable_classes)} "
            f"({len(skipped)} file(s) left out: {'; '.join(skipped[:5])})",
            fix="replace the unreadable files, or add readable images to those classes",
        )
    return Dataset(
        name=root.name, class_names=class_names,
        train_images=train_images, train_labels=train_labels, test_images=test_images, test_labels=test_labels,
        source=f"image folder {root} ({how})", skipped_files=tuple(skipped),
    )


# --- the one entry point ---------------------------------------------------------------------------------------------

def _looks_like_path(source: str | Path) -> bool:
    text = str(source)
    return isinstance(source, Path) or os.sep in text or text.startswith((".", "~")) or Path(text).is_dir()


def _reshape_images(images: torch.Tensor, channels: int | None, image_size: tuple[int, int] | None) -> torch.Tensor:
    """Whole-tensor conversion of (N, C, H, W) uint8 images to `channels` and to fit `image_size`, aspect kept."""
    if channels is not None and channels != images.shape[1]:
        if channels == 3 and images.shape[1] == 1:
            images = images.expand(-1, 3, -1, -1).contiguous()
        elif channels == 1 and images.shape[1] == 3:
            # ITU-R 601 luma, the weights Pillow's convert("L") uses.
            weights = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
            images = (images.float() * weights).sum(dim=1, keepdim=True).round().clamp(0, 255).to(torch.uint8)
        else:
            raise DataError(f"channels={channels}; expected 1 (gray) or 3 (RGB)", fix="use --channels 1 or --channels 3")
    if image_size is not None and tuple(image_size) != tuple(images.shape[2:]):
        height, width = image_size
        scale = min(height / images.shape[2], width / images.shape[3])
        new_height, new_width = max(1, round(images.shape[2] * scale)), max(1, round(images.shape[3] * scale))
        resized = torch.nn.functional.interpolate(images.float(), size=(new_height, new_width), mode="bilinear",
                                                  antialias=True, align_corners=False)
        resized = resized.round().clamp(0, 255).to(torch.uint8)
        top, left = (height - new_height) // 2, (width - new_width) // 2
        # Zero padding: the registry datasets' background is black.
        images = torch.nn.functional.pad(resized, (left, width - new_width - left, top, height - new_height - top))
    return images


def _parse_image_size(image_size) -> tuple[int, int] | None:
    if image_size is None:
        return None
    if isinstance(image_size, int):
        image_size = (image_size, image_size)
    try:
        height, width = (int(value) for value in image_size)
    except (TypeError, ValueError):
        raise DataError(f"image_size={image_size!r}; expected (height, width)", fix="use --image-size 28,28") from None
    if not (1 <= height <= 4096 and 1 <= width <= 4096):
        raise DataError(f"image_size=({height}, {width}); expected sides from 1 to 4096", fix="use --image-size 28,28")
    return (height, width)


def load_dataset(source: str | Path = DEFAULT_DATASET, data_dir: str | Path | None = None, offline: bool = False,
                 channels: int | None = None, image_size: tuple[int, int] | None = None, test_split: float = 0.2,
                 seed: int = 0, progress: bool = True) -> Dataset:
    """A dataset by name (fashion-mnist, mnist) or a path to an image folder, as verified uint8 tensors.

    data_dir: a folder holding the four IDX files (gzipped or raw); default CONVOLAB_DATA_DIR, then the usual places.
    offline: never touch the network.  channels: 1 or 3 (default: the data's own).  image_size: (height, width) to fit,
    aspect kept and padded (default: the data's own; 28x28 for image folders).  test_split, seed: image folders only,
    when they have no train/ and test/ subfolders.  progress: show a progress bar while downloading.
    """
    size = _parse_image_size(image_size)
    if channels is not None and channels not in (1, 3):
        raise DataError(f"channels={channels}; expected 1 (gray) or 3 (RGB)", fix="use --channels 1 or --channels 3")
    if isinstance(source, str) and source in DATASETS:
        dataset = load_registry_dataset(DATASETS[source], data_dir=data_dir, offline=offline, progress=progress)
    elif _looks_like_path(source):
        return load_image_folder(source, channels=channels, image_size=size, test_split=test_split, seed=seed)
    else:
        dataset_info(str(source))   # raises the "unknown dataset" error
        raise AssertionError("unreachable")
    dataset.train_images = _reshape_images(dataset.train_images, channels, size)
    dataset.test_images = _reshape_images(dataset.test_images, channels, size)
    return dataset


# --- validation split and batches ------------------------------------------------------------------------------------

def split_validation(images: torch.Tensor, labels: torch.Tensor, fraction: float
                     ) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """Hold out the LAST `fraction` of the arrays for validation, as Keras's fit(validation_split=...) does.

    Keras takes the last samples before any shuffling, so with data sorted by class the validation set can miss
    classes; Fashion-MNIST's training file is not sorted, so its last 10% is a fair sample. Returns views, not copies.
    """
    if not 0.0 <= fraction < 1.0:
        raise DataError(f"validation_split={fraction}; expected a fraction in [0, 1)",
                        fix="use --validation-split 0.1, say (0 for none)")
    if len(images) != len(labels):
        raise DataError(f"{len(images)} images but {len(labels)} labels; expected equal counts")
    # Keras: split_at = int(n * (1 - validation_split)).
    split_at = int(len(images) * (1.0 - fraction))
    if fraction > 0 and split_at == len(images):
        split_at = len(images) - 1
    if fraction > 0 and split_at < 1:
        raise DataError(f"validation_split={fraction} of {len(images)} images leaves {split_at} to train on",
                        fix="use a smaller --validation-split (0.1, say), or more images (--train-limit)")
    return (images[:split_at], labels[:split_at]), (images[split_at:], labels[split_at:])


def iterate_batches(images: torch.Tensor, labels: torch.Tensor, batch_size: int, shuffle: bool = False,
                    generator: torch.Generator | None = None, device: torch.device | str = "cpu"
                    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Batches (float32 images / 255 on `device`, int64 labels) drawn by index from uint8 tensors; the last may be short.

    shuffle draws a fresh permutation from `generator` (so a seeded generator gives the same order every run).
    No per-sample Python: each batch is one index_select on the stored tensor.
    """
    if batch_size < 1:
        raise DataError(f"batch_size={batch_size}; expected a positive integer", fix="use --batch-size 32, say")
    count = len(images)
    order = torch.randperm(count, generator=generator) if shuffle else None
    device = torch.device(device)
    for start in range(0, count, batch_size):
        if order is None:
            batch_images, batch_labels = images[start:start + batch_size], labels[start:start + batch_size]
        else:
            index = order[start:start + batch_size]
            batch_images, batch_labels = images[index], labels[index]
        # uint8 crosses to the device (4x less traffic than float), and is scaled there.
        batch_images = batch_images.to(device, non_blocking=True).float().div_(255.0)
        yield batch_images, batch_labels.to(device, non_blocking=True)


# --- describing a dataset --------------------------------------------------------------------------------------------

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


def save_sample_grid(dataset: Dataset, path: str | Path, per_class: int = 8, seed: int = 0) -> Path:
    """A PNG of `per_class` training samples per class, one row per class, the class name at the left."""
    import matplotlib.pyplot as plt

    from convolab.plots import save_figure   # plots sets the backend and draws labels as plain text

    generator = torch.Generator().manual_seed(seed)
    rows = dataset.num_classes
    figure, axes = plt.subplots(rows, per_class, figsize=(per_class * 0.9 + 1.6, rows * 0.9), squeeze=False)
    for label, name in enumerate(dataset.class_names):
        members = torch.nonzero(dataset.train_labels == label).flatten()
        chosen = members[torch.randperm(len(members), generator=generator)[:per_class]]
        for column in range(per_class):
            axis = axes[label][column]
            axis.set_xticks([])
            axis.set_yticks([])
            for spine in axis.spines.values():
                spine.set_visible(False)
            if column < len(chosen):
                image = dataset.train_images[chosen[column]]   # (C, H, W)
                if image.shape[0] == 1:
                    axis.imshow(image[0].numpy(), cmap="gray", vmin=0, vmax=255)
                else:
                    axis.imshow(image.permute(1, 2, 0).numpy())
        axes[label][0].set_ylabel(f"{label}: {name}", rotation=0, ha="right", va="center", fontsize=9)
    shown = min(per_class, int(torch.bincount(dataset.train_labels, minlength=rows).max()))
    figure.suptitle(f"{dataset.name}: {shown} training samples per class", fontsize=11)
    figure.tight_layout()
    return save_figure(figure, path, dpi=100)
