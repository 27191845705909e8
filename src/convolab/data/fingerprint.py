"""What an image folder's files were, cheaply: every file's relative path, size and modification time (one stat()
each, no image read), a SHA-256 over them, and what changed between two such records.

    stat_files(root, paths) -> list[FileStat]                  the listing (streaming.py's cache key hashes it too)
    digest(header, stats, tags) -> str                         SHA-256 of a listing (and per-file tags: label, split)
    folder_record(root, paths) -> dict                         what a run's config.json keeps of its folder's files
    FolderChanges.between(recorded, current) -> FolderChanges  added, removed and changed files, in words

Why a run records this: a folder's train/test split is a seeded shuffle of the files found, so adding or removing one
image moves others between the splits. evaluate, show and report of a run then measure other test images (some the
model trained on), and --resume would continue on another training set. An edited file (or one copied without its
time) keeps the split, but its pixels may not be the ones the run saw. The record lets them notice both.
Size and modification time rather than the bytes: reading 10,000 photos to hash them costs seconds, a stat() each
costs milliseconds, and an edit that keeps both size and time (to the nanosecond) is not something a person does.
"""
from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

RECORD_HEADER = "convolab-folder-files 1\n"   # the run record's digest; streaming.py's cache key has its own header
NAMED = 3                                      # files named in a message; the rest are counted


@dataclass(frozen=True)
class FileStat:
    """One file of a folder: its path relative to the folder (text; undecodable bytes kept as surrogates), size and
    modification time in nanoseconds."""

    relative: str
    size: int
    mtime_ns: int


def stat_files(root: Path, paths: Iterable[Path]) -> list[FileStat]:
    """One stat() per file, in the order given."""
    stats = []
    for path in paths:
        status = path.stat()
        stats.append(FileStat(str(path.relative_to(root)), status.st_size, status.st_mtime_ns))
    return stats


def digest(header: str, stats: Sequence[FileStat], tags: Sequence[str] | None = None) -> str:
    """SHA-256 of `header` and every file's relative path (bytes as on disk: any name, UTF-8 or not), size, time and
    tag ('' or text such as '\\0label\\0split' that the caller wants the digest to depend on too)."""
    hasher = hashlib.sha256(header.encode())
    for position, stat in enumerate(stats):
        hasher.update(os.fsencode(stat.relative))
        hasher.update(f"\0{stat.size}\0{stat.mtime_ns}{tags[position] if tags else ''}\n".encode())
    return hasher.hexdigest()


def folder_record(root: Path, paths: Iterable[Path]) -> dict:
    """{"count", "sha256", "files": {relative path: [size, mtime_ns]}}: the count and digest decide whether the folder
    changed; the listing says which files did."""
    stats = stat_files(root, paths)
    return {"count": len(stats), "sha256": digest(RECORD_HEADER, stats),
            "files": {stat.relative: [stat.size, stat.mtime_ns] for stat in stats}}


@dataclass
class FolderChanges:
    """The files added, removed and changed (other size or time) between a recorded folder and the folder now."""

    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    count_before: int = 0
    count_now: int = 0

    @classmethod
    def between(cls, recorded: dict, current: dict) -> FolderChanges | None:
        """None when the digests agree (or nothing was recorded: an older run, a named dataset)."""
        if not recorded.get("sha256") or recorded.get("sha256") == current.get("sha256"):
            return None
        before, now = recorded.get("files") or {}, current.get("files") or {}
        changes = cls(count_before=int(recorded.get("count", len(before))), count_now=int(current.get("count", len(now))))
        if before:                         # a record without its listing can only say the counts
            changes.added = sorted(set(now) - set(before))
            changes.removed = sorted(set(before) - set(now))
            changes.changed = sorted(name for name in set(before) & set(now) if list(before[name]) != list(now[name]))
        return changes

    @property
    def moves_the_split(self) -> bool:
        """Whether the train/test split is another: files added or removed (a split is a seeded shuffle of the file
        list), or a record without its listing that cannot say. Files that only changed size or time keep the split:
        edited, or copied without their times (`cp -r`, a git checkout; `cp -p` and `rsync -a` keep them)."""
        return bool(self.added or self.removed) or not self.changed

    @property
    def file_count(self) -> int:
        """How many files differ (at least 1: the digests differ)."""
        return max(1, len(self.added) + len(self.removed) + len(self.changed))

    def describe(self) -> str:
        """'2 files added, 1 removed, 0 changed: cat/new.png, dog/new2.png, cat/old.png' (up to NAMED named)."""
        if not (self.added or self.removed or self.changed):
            return f"{self.count_before:,} files recorded, {self.count_now:,} now"
        counts = (f"{len(self.added)} file{'s' if len(self.added) != 1 else ''} added, {len(self.removed)} removed, "
                  f"{len(self.changed)} changed")
        names = [f"{name} (added)" for name in self.added] + [f"{name} (removed)" for name in self.removed] + \
                [f"{name} (changed)" for name in self.changed]
        shown = [name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace") for name in names[:NAMED]]
        more = f", and {len(names) - NAMED} more" if len(names) > NAMED else ""
        return f"{counts}: {', '.join(shown)}{more}"
