"""Where a registry dataset is found: a list of sources tried in order, each returning the copy or saying why not.

  1. `data_dir` / `CONVOLAB_DATA_DIR`: a directory the user chose. It is authoritative: when it is given and its files are
     missing or bad, loading fails there rather than quietly using some other copy.
  2. The cache, `$XDG_CACHE_HOME/convolab/<dataset>/` (default `~/.cache/convolab/<dataset>/`). A cache file that fails its
     check is renamed `*.corrupt` (kept for inspection, never trusted again) and fetched anew when the network is allowed.
  3. System copies: `/usr/share/datasets/fashion-mnist/` (Debian's `dataset-fashion-mnist`).
  4. Download from the mirrors Keras and torchvision use, into the cache (download.py). `offline=True` forbids it.

Loading is one loop over the sources; the error that lists every place tried, with the fixes, comes from that loop.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from convolab.data.dataset import Dataset
from convolab.data.download import download
from convolab.data.readers import Reader, Splits, reader_for
from convolab.data.registry import DatasetInfo, cache_root
from convolab.errors import DataError


@dataclass
class Attempt:
    """One place looked, what happened there, and the fix its error suggested (if any)."""

    place: str
    outcome: str
    fix: str | None = None


@dataclass
class Found:
    """A copy that read and verified, and the place it came from, in words."""

    splits: Splits
    place: str


class Source:
    """A place a copy may be. `look` returns the copy, or the attempts that say why not."""

    def look(self, info: DatasetInfo, reader: Reader) -> Found | list[Attempt]:
        raise NotImplementedError

    def amend(self, error: DataError) -> None:
        """Add what this source knows to the final "not found" error (nothing, for most)."""


@dataclass
class ChosenDirectory(Source):
    """--data-dir or CONVOLAB_DATA_DIR: the dataset's own subfolder of it, or the directory itself; authoritative."""

    root: Path
    origin: str   # "--data-dir" or "CONVOLAB_DATA_DIR"

    def look(self, info: DatasetInfo, reader: Reader) -> Found | list[Attempt]:
        attempts = []
        for directory in (self.root / info.name, self.root):
            place = f"{directory} ({self.origin})"
            if not directory.is_dir():
                # A file (the archive itself, say) is not "no such directory": it names what is there instead.
                what = ("a file, not a directory (the folder that holds the four files is wanted)"
                        if directory.is_file() else "no such directory")
                attempts.append(Attempt(place, what))
                continue
            try:
                return Found(reader.read(directory, info), place)
            except DataError as error:
                attempts.append(Attempt(place, error.message, error.fix))
                if reader.present(directory, info):
                    break   # the files are here but bad: report that, do not look in the parent
        return attempts

    def amend(self, error: DataError) -> None:
        error.message += f"\n  ({self.origin} was given, so no other place was searched; it names the copy to use.)"
        unset = "without --data-dir" if self.origin == "--data-dir" else "with CONVOLAB_DATA_DIR unset"
        error.fix += f"\n    or run {unset} to use the cache, the system copy or the download"


def _set_aside(path: Path) -> Path:
    """Rename a bad cache file to `*.corrupt` so it is never trusted again but can still be inspected."""
    target = path.with_name(path.name + ".corrupt")
    path.replace(target)
    return target


class Cache(Source):
    """convolab's own cache: a bad file is set aside, never trusted, so that a download replaces it."""

    def look(self, info: DatasetInfo, reader: Reader) -> Found | list[Attempt]:
        cache = cache_root() / info.name
        if not cache.is_dir():
            return [Attempt(f"cache {cache}", "no such directory")]
        try:
            return Found(reader.read(cache, info), f"cache {cache}")
        except DataError as error:
            outcome = error.message
            present = reader.present(cache, info)
            named = [path for path in present if str(path) in error.message]
            # A file named by the error is bad; an error naming none (counts that disagree) condemns the whole copy.
            for path in named or (present if str(cache) in error.message else []):
                outcome += f"; set aside as {_set_aside(path).name}"
            return [Attempt(f"cache {cache}", outcome)]   # set aside: no fix needed, a download replaces it


class SystemCopies(Source):
    """Read-only copies a system package installed (Debian's dataset-fashion-mnist)."""

    def look(self, info: DatasetInfo, reader: Reader) -> Found | list[Attempt]:
        if not info.system_dirs:
            return [Attempt("system copies", f"none known (no Debian or Ubuntu package ships {info.name})")]
        attempts = []
        for directory in map(Path, info.system_dirs):
            place = f"system copy {directory}"
            if not directory.is_dir():
                hint = f" (the {info.apt_package} package is not installed)" if info.apt_package else ""
                attempts.append(Attempt(place, f"no such directory{hint}"))
                continue
            try:
                return Found(reader.read(directory, info), place)
            except DataError as error:
                fix = (f"reinstall the system copy: sudo apt-get install --reinstall {info.apt_package}"
                       if info.apt_package else None)
                attempts.append(Attempt(place, error.message, fix))
        return attempts


@dataclass
class Download(Source):
    """The mirrors, into the cache; refused when offline."""

    offline: bool
    progress: bool

    def look(self, info: DatasetInfo, reader: Reader) -> Found | list[Attempt]:
        if self.offline:
            return [Attempt("download from " + ", ".join(info.mirrors), "not tried: offline")]
        cache = cache_root() / info.name
        try:
            download(info, cache, self.progress)
            return Found(reader.read(cache, info), f"downloaded into cache {cache}")
        except DataError as error:
            try:
                cache.rmdir()   # no empty folder left behind, so the next report says "no such directory"
            except OSError:
                pass
            return [Attempt("download into " + str(cache), error.message)]
        except OSError as error:
            return [Attempt("download into " + str(cache), f"cannot write ({error})")]


def sources_for(data_dir: str | Path | None, offline: bool, progress: bool) -> list[Source]:
    """The sources to try, in order: a chosen directory alone, else the cache, system copies and the download."""
    if data_dir is not None:
        chosen, origin = data_dir, "--data-dir"
    else:
        chosen, origin = os.environ.get("CONVOLAB_DATA_DIR"), "CONVOLAB_DATA_DIR"
    if chosen:
        return [ChosenDirectory(Path(chosen).expanduser(), origin)]
    return [Cache(), SystemCopies(), Download(offline, progress)]


def not_found(info: DatasetInfo, attempts: list[Attempt], offline: bool) -> DataError:
    """The error when no source gave a copy: every place tried and what happened there, then every way to get one."""
    lines = [f"no usable copy of {info.title} ({info.name}) was found. Looked in:"]
    lines += [f"  - {attempt.place}: {attempt.outcome}" for attempt in attempts]
    fixes = list(dict.fromkeys(attempt.fix for attempt in attempts if attempt.fix))   # a damaged file's own fix first
    if info.apt_package:
        fixes.append(f"install the system copy: sudo apt-get install {info.apt_package}")
    if offline:
        fixes.append("allow the download: run without --offline (the files go to the cache, checksums verified)")
    fixes.append("fetch the four files by hand into a folder, then pass --data-dir FOLDER (in Python too: set "
                 "CONVOLAB_DATA_DIR=FOLDER):")
    fixes += [f"    {info.mirrors[0] if info.mirrors else ''}{file.filename}" for file in info.files]
    if len(info.mirrors) > 1:
        fixes.append(f"  (same names on the other mirrors: {', '.join(info.mirrors[1:])})")
    return DataError("\n".join(lines), fix="\n    ".join(fixes))


def load_registry_dataset(info: DatasetInfo, data_dir: str | Path | None = None, offline: bool = False,
                          progress: bool = True) -> Dataset:
    """Find `info`'s files in the documented order, verify them, and return them as tensors."""
    reader = reader_for(info)
    sources = sources_for(data_dir, offline, progress)
    attempts: list[Attempt] = []
    for source in sources:
        outcome = source.look(info, reader)
        if isinstance(outcome, Found):
            splits = outcome.splits
            return Dataset(
                name=info.name, class_names=info.class_names,
                train_images=splits.train_images, train_labels=splits.train_labels,
                test_images=splits.test_images, test_labels=splits.test_labels,
                source=outcome.place, checks=splits.checks,
                looked=tuple(f"{attempt.place}: {attempt.outcome}" for attempt in attempts),
            )
        attempts += outcome
    error = not_found(info, attempts, offline)
    for source in sources:
        source.amend(error)
    raise error
