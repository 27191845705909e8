"""Image folders larger than memory: decoded once, by DataLoader worker processes, into a resized uint8 cache on disk
that every later epoch (and every later run) reads at memory speed, one batch at a time.

    needs_streaming(count, input_shape, stream, memory_budget) -> bool    # data.load_image_folder asks this first
    load_streamed_folder(root, class_names, ...) -> Dataset              # and calls this when the answer is yes
    CachedImages                                                         # what that Dataset holds instead of tensors

Why a cache rather than decoding every epoch: decoding and resizing one JPEG costs about a millisecond of a core, so a
20,000-image folder is 20 core-seconds per epoch, more than training the lab's CNN on it. Decoded once, resized and
stored as uint8, an image is C x H x W bytes read back from the kernel's page cache.

Why batches are read with pread rather than through a memory map held open: every page of a mapped file that the
process touches counts in its resident memory, so one epoch over a 7.5 GB cache would show 7.5 GB resident (reclaimable,
but reported as held). pread copies a batch into a fresh buffer: the file stays in the page cache (memory speed while
memory is free, dropped under pressure) and the process holds only the batches in flight, whatever the folder's size.
The file is a plain C-order array, so `np.memmap(path, np.uint8, "r", shape=(N, C, H, W))` reads it too.

The cache lives in <cache root>/folders/<hash of the folder's path and the image shape>/: `images-<fingerprint>.u8` and
`index.json` (the fingerprint, every file with its label and split, which ones were readable and why the others were
not, whether all were gray). The fingerprint hashes every file's relative path, size and modification time, so adding,
removing, replacing or touching a file rebuilds the cache. Both files are written under a temporary name and renamed into
place, the index last, so a crash mid-build leaves the previous cache or none. A lock file makes concurrent loaders (the
processes of one torchrun job) wait for one build instead of each decoding the folder.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from convolab.data.fingerprint import digest, stat_files
from convolab.errors import DataError, WriteError

CACHE_FORMAT = 1
DECODE_BATCH = 64          # images per DataLoader batch while building: large enough to amortise the worker hand-off
MEMORY_FRACTION = 0.25     # default budget: a quarter of physical memory for the decoded folder; above it, stream
IN_PROCESS_BELOW = 500     # fewer files than this decode in the loading process: a worker takes ~0.5 s to start


# --- when to stream -------------------------------------------------------------------------------------------------

def parse_memory_size(text: str | int) -> int:
    """'2G', '512M', '300000K' or a plain number of bytes, as bytes."""
    value = str(text).strip().upper().removesuffix("B")
    scale = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}.get(value[-1:], 1)
    number = value[:-1] if scale > 1 else value
    try:
        size = int(float(number) * scale)
    except ValueError:
        raise DataError(f"memory budget {text!r}; expected bytes or a size such as 512M or 4G",
                        fix="set CONVOLAB_MEMORY_BUDGET=4G, say") from None
    if size <= 0:
        raise DataError(f"memory budget {text!r}; expected a positive size", fix="set CONVOLAB_MEMORY_BUDGET=4G, say")
    return size


def memory_budget_bytes(budget: str | int | None = None) -> int:
    """The budget for a folder decoded into memory: `budget`, else $CONVOLAB_MEMORY_BUDGET, else a quarter of RAM."""
    budget = budget if budget is not None else os.environ.get("CONVOLAB_MEMORY_BUDGET")
    if budget is not None:
        return parse_memory_size(budget)
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") * MEMORY_FRACTION)


def decoded_bytes(count: int, input_shape: tuple[int, int, int]) -> int:
    """Bytes of `count` images decoded to uint8 at `input_shape` (H, W, C): one byte per pixel and channel."""
    height, width, channels = input_shape
    return count * height * width * channels


def needs_streaming(count: int, input_shape: tuple[int, int, int], stream: bool | None,
                    memory_budget: str | int | None = None) -> bool:
    """stream=True or False decides; None streams when the decoded folder would exceed the memory budget."""
    if stream is not None:
        return bool(stream)
    return decoded_bytes(count, input_shape) > memory_budget_bytes(memory_budget)


# --- reading the cache ----------------------------------------------------------------------------------------------

class CachedImages:
    """A (N, C, H, W) uint8 image set on disk that behaves, for what training and evaluation ask of it, like a tensor.

    len(x), x.shape, x.dtype; x[i] -> (C, H, W) tensor; x[index list or tensor] -> (K, C, H, W) tensor, read with one
    pread per run of consecutive rows; x[a:b] -> a CachedImages of those rows (nothing read); x.to(device) -> all rows
    as a tensor. `rows` are this set's rows in the file (a split is a subset of the file's rows); `channels` 1 keeps
    the first of three stored channels (a folder found to be all gray is stored as RGB and read as gray).
    """

    dtype = torch.uint8

    def __init__(self, path: str | Path, stored_shape: tuple[int, int, int], rows: np.ndarray, channels: int):
        self.path = Path(path)
        self.stored_shape = tuple(stored_shape)                 # (C, H, W) as written
        self.rows = np.asarray(rows, dtype=np.int64)
        self.channels = channels
        self._image_bytes = int(np.prod(self.stored_shape))
        self._descriptor: tuple[int, int] | None = None         # (pid, fd): a forked worker opens its own

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def shape(self) -> torch.Size:
        _, height, width = self.stored_shape
        return torch.Size((len(self.rows), self.channels, height, width))

    def __repr__(self) -> str:
        return f"CachedImages({self.path}, shape={tuple(self.shape)})"

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_descriptor": None}

    def __del__(self) -> None:
        if self._descriptor is not None and self._descriptor[0] == os.getpid():
            os.close(self._descriptor[1])

    def _fd(self) -> int:
        if self._descriptor is None or self._descriptor[0] != os.getpid():
            try:
                self._descriptor = (os.getpid(), os.open(self.path, os.O_RDONLY))
            except OSError as error:
                raise DataError(f"{self.path}: the image cache cannot be read ({error.strerror})",
                                fix="load the folder again: the cache is rebuilt") from None
        return self._descriptor[1]

    def __getitem__(self, key) -> "CachedImages | torch.Tensor":
        if isinstance(key, slice):
            return CachedImages(self.path, self.stored_shape, self.rows[key], self.channels)
        if isinstance(key, torch.Tensor):
            key = key.cpu().numpy()
        index = np.asarray(key)
        if index.dtype == bool:
            index = np.flatnonzero(index)
        if index.ndim == 0:
            return self._read(self.rows[[int(index)]])[0]
        return self._read(self.rows[index.astype(np.int64)])

    def to(self, device: torch.device | str = "cpu", non_blocking: bool = False) -> torch.Tensor:
        """All rows as one tensor on `device` (a batch's worth, as iterate_batches uses it on a slice)."""
        return self._read(self.rows).to(device, non_blocking=non_blocking)

    def numpy(self) -> np.ndarray:
        return self._read(self.rows).numpy()

    def _read(self, rows: np.ndarray) -> torch.Tensor:
        """Rows of the file, in the order asked, as (K, C, H, W) uint8: sorted, one pread per consecutive run."""
        order = np.argsort(rows, kind="stable")
        sorted_rows = rows[order]
        staging = np.empty((len(rows), *self.stored_shape), dtype=np.uint8)
        starts = np.flatnonzero(np.diff(sorted_rows, prepend=-2) != 1)     # where a run of consecutive rows begins
        ends = np.append(starts[1:], len(rows))
        fd = self._fd()
        for start, end in zip(starts.tolist(), ends.tolist()):
            _read_exactly(fd, memoryview(staging[start:end]).cast("B"), int(sorted_rows[start]) * self._image_bytes,
                          self.path)
        images = np.empty_like(staging)
        images[order] = staging
        tensor = torch.from_numpy(images)
        return tensor[:, :1].contiguous() if self.channels < self.stored_shape[0] else tensor


def _read_exactly(fd: int, buffer: memoryview, offset: int, path: Path) -> None:
    done = 0
    while done < len(buffer):
        count = os.preadv(fd, [buffer[done:]], offset + done)
        if count == 0:
            raise DataError(f"{path}: the image cache is shorter than its index says (truncated?)",
                            fix="load the folder again: the cache is rebuilt")
        done += count


# --- building the cache ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FolderFile:
    """One image file of the folder: its path, label, and split ("all", or "train"/"test" for presplit folders)."""

    path: Path
    label: int
    split: str


def fingerprint(root: Path, files: list[FolderFile], stored_shape: tuple[int, int, int]) -> str:
    """SHA-256 of every file's relative path, size, modification time, label and split, and the stored shape."""
    stats = stat_files(root, [file.path for file in files])
    return digest(f"convolab-folder-cache {CACHE_FORMAT} {stored_shape}\n", stats,
                  [f"\0{file.label}\0{file.split}" for file in files])


def cache_directory(root: Path, stored_shape: tuple[int, int, int]) -> Path:
    """<cache root>/folders/<16 hex digits of the folder's resolved path and the stored shape>."""
    from convolab.data.registry import cache_root

    key = hashlib.sha256(os.fsencode(root.resolve()) + f"\0{stored_shape}".encode()).hexdigest()[:16]
    return cache_root() / "folders" / key


class _DecodeFiles(torch.utils.data.Dataset):
    """Image i of the list, decoded, converted and resized in a worker: (uint8 (C, H, W), '' or why it is unreadable)."""

    def __init__(self, paths: list[Path], input_shape: tuple[int, int, int]):
        self.paths = paths
        self.input_shape = input_shape

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, str]:
        from convolab.images import load_image

        try:
            return load_image(self.paths[index], self.input_shape, invert=False), ""
        except DataError as error:
            height, width, channels = self.input_shape
            return torch.zeros((channels, height, width), dtype=torch.uint8), error.message


def _collate(items: list[tuple[torch.Tensor, str]]) -> tuple[torch.Tensor, list[str]]:
    return torch.stack([image for image, _ in items]), [problem for _, problem in items]


def default_workers(count: int) -> int:
    """Decoding processes for `count` files: one per core the process may use, at most 8 (beyond that the disk is
    usually the limit); none (decode here) below IN_PROCESS_BELOW files, where starting workers costs more."""
    if count < IN_PROCESS_BELOW:
        return 0
    return max(1, min(8, len(os.sched_getaffinity(0))))


def _write_images(files: list[FolderFile], input_shape: tuple[int, int, int], destination: Path, workers: int,
                  report) -> tuple[list[str], bool]:
    """Decode every file into `destination` in order; returns (one problem per file, '' if readable; all gray)."""
    loader = torch.utils.data.DataLoader(_DecodeFiles([file.path for file in files], input_shape),
                                         batch_size=DECODE_BATCH, num_workers=workers, collate_fn=_collate)
    problems: list[str] = []
    all_gray = True
    started, last_report = time.perf_counter(), time.perf_counter()
    with open(destination, "wb") as output:
        for images, batch_problems in loader:
            output.write(images.numpy().tobytes())
            readable = images[[index for index, problem in enumerate(batch_problems) if not problem]]
            if all_gray and input_shape[2] == 3 and len(readable):
                all_gray = bool((readable[:, 0] == readable[:, 1]).all() and (readable[:, 1] == readable[:, 2]).all())
            problems += batch_problems
            if report is not None and time.perf_counter() - last_report > 5:
                last_report = time.perf_counter()
                rate = len(problems) / (last_report - started)
                report(f"  decoded {len(problems):,} of {len(files):,} ({rate:,.0f} images/s)")
        output.flush()
        os.fsync(output.fileno())
    return problems, all_gray


def _read_index(directory: Path) -> dict | None:
    try:
        return json.loads((directory / "index.json").read_text())
    except (OSError, ValueError):
        return None


def _atomic_json(path: Path, value: dict) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(value))
    os.replace(temporary, path)


def build_or_reuse_cache(root: Path, files: list[FolderFile], input_shape: tuple[int, int, int],
                         workers: int | None = None, report=None) -> tuple[Path, dict, bool]:
    """The cache of `files` decoded at `input_shape` (H, W, C): (directory, index, True if built now, False if reused).

    Rebuilt whenever the fingerprint (file list, sizes, times, labels, shape) differs from the index's.
    """
    height, width, channels = input_shape
    stored_shape = (channels, height, width)
    directory = cache_directory(root, stored_shape)
    current = fingerprint(root, files, stored_shape)
    try:
        return _build_or_reuse(root, files, input_shape, directory, current, workers, report)
    except OSError as error:                     # the cache's folder, not an image: those are each file's problem
        raise cache_failure(directory, error, len(files) * channels * height * width) from None


def cache_failure(directory: Path, error: OSError, size: int) -> WriteError:
    """The message when the cache cannot be written: XDG_CACHE_HOME a file, a read-only or full disk."""
    reason = error.strerror or str(error)
    needed = f"{size / 1e6:,.1f} MB" if size >= 100_000 else f"{size:,} bytes"
    return WriteError(f"{directory}: cannot write the image cache there ({reason}; it needs {needed})",
                      fix="point XDG_CACHE_HOME at a writable folder with that much room, or load the folder into "
                          "memory instead (without --stream, and CONVOLAB_MEMORY_BUDGET above that size)")


def _build_or_reuse(root: Path, files: list[FolderFile], input_shape: tuple[int, int, int], directory: Path,
                    current: str, workers: int | None, report) -> tuple[Path, dict, bool]:
    height, width, channels = input_shape
    stored_shape = (channels, height, width)
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)           # another process building the same cache: wait, then reuse it
        index = _read_index(directory)
        data = directory / f"images-{current[:16]}.u8"
        expected_size = len(files) * channels * height * width
        if (index is not None and index.get("fingerprint") == current and data.is_file()
                and data.stat().st_size == expected_size):
            return directory, index, False
        workers = default_workers(len(files)) if workers is None else workers
        if report is not None:
            report(f"decoding {len(files):,} images from {root} into the cache {directory} ({workers or 'no'} worker processes)")
        started = time.perf_counter()
        temporary = data.with_name(f".{data.name}.{os.getpid()}.tmp")
        try:
            problems, all_gray = _write_images(files, input_shape, temporary, workers, report)
            os.replace(temporary, data)
        finally:
            temporary.unlink(missing_ok=True)
        seconds = time.perf_counter() - started
        index = {"format": CACHE_FORMAT, "fingerprint": current, "data": data.name, "root": str(root.resolve()),
                 "stored_shape": list(stored_shape), "files": [str(file.path.relative_to(root)) for file in files],
                 "labels": [file.label for file in files], "splits": [file.split for file in files],
                 "problems": problems, "all_gray": all_gray, "decode_seconds": seconds}
        _atomic_json(directory / "index.json", index)
        for stale in directory.glob("images-*.u8"):   # the previous build's data, now that the index no longer names it
            if stale != data:
                stale.unlink(missing_ok=True)
        if report is not None:
            report(f"  decoded {len(files):,} images in {seconds:.1f}s ({len(files) / max(seconds, 1e-9):,.0f} images/s)")
        return directory, index, True


# --- the folder as a Dataset ----------------------------------------------------------------------------------------

def load_streamed_folder(root: Path, class_names: tuple[str, ...], files: list[FolderFile], skipped: list[str],
                         image_size: tuple[int, int], channels: int | None, how: str, test_split: float, seed: int,
                         workers: int | None = None, report=None):
    """A Dataset whose images stay on disk in the cache (CachedImages), split and checked as load_image_folder does.

    files: every image file (label, split "all" or "train"/"test"); skipped: the non-image files already left out, to
    which the unreadable images are added. channels None: stored as RGB and read as gray if every image is gray.
    """
    from convolab.data.dataset import Dataset
    from convolab.data.folders import _stratified_split, check_every_class_readable

    height, width = image_size
    directory, index, built = build_or_reuse_cache(root, files, (height, width, channels or 3), workers, report)
    if report is not None and not built:
        report(f"reading {len(files):,} decoded images from the cache {directory}")
    problems = index["problems"]
    skipped.extend(problem for problem in problems if problem)
    readable = np.array([not problem for problem in problems], dtype=bool)
    labels = torch.tensor(index["labels"], dtype=torch.int64)
    splits = np.array(index["splits"])
    stored_channels = index["stored_shape"][0]
    read_channels = 1 if channels is None and index["all_gray"] else stored_channels
    data = directory / index["data"]

    def images(rows: np.ndarray) -> CachedImages:
        return CachedImages(data, tuple(index["stored_shape"]), rows, read_channels)

    if (splits == "all").all():
        rows = np.flatnonzero(readable)
        train_index, test_index = _stratified_split(labels[rows], test_split, seed)
        train_rows, test_rows = rows[train_index.numpy()], rows[test_index.numpy()]
    else:
        train_rows = np.flatnonzero(readable & (splits == "train"))
        test_rows = np.flatnonzero(readable & (splits == "test"))
    train_labels, test_labels = labels[train_rows], labels[test_rows]
    counts = check_every_class_readable(root, class_names, train_labels, skipped)
    if report is not None:
        balance = ", ".join(f"{name} {count:,}" for name, count in zip(class_names, counts))
        report(f"train images per class: {balance}" + (f"; {len(skipped)} file(s) left out" if skipped else ""))
    size = decoded_bytes(len(files), (height, width, stored_channels)) / 2**20
    return Dataset(
        name=root.name, class_names=class_names,
        train_images=images(train_rows), train_labels=train_labels,
        test_images=images(test_rows), test_labels=test_labels,
        source=f"image folder {root} ({how}; streamed from the cache {directory}, {size:,.0f} MiB)",
        skipped_files=tuple(skipped),
    )
