"""Proving a copy's files are the dataset's own: content SHA-256, the mirrors' gzip MD5, hashes recorded at download.

The strongest known checksum decides (registry.py explains which exists for which dataset). A file that matches another
registered dataset's hash is named as that dataset's, so a swapped folder is not reported as merely "unverified".
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from convolab.data.registry import DATASETS, DatasetInfo, IdxFile, cache_root
from convolab.errors import DataError

RECORDED_HASHES = "content-sha256.json"


@dataclass(frozen=True)
class FileCheck:
    """What was checked for one file: where it is, its content SHA-256, and the verdict."""

    role: str
    path: str
    content_sha256: str
    verdict: str        # "verified" or "unverified"
    how: str            # which checksum proved it, or why none could


def file_md5(path: Path) -> str:
    """The MD5 of a file as stored (the gzip wrapper included), read in blocks."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _recorded_hashes_path(info: DatasetInfo) -> Path:
    return cache_root() / info.name / RECORDED_HASHES


def recorded_hashes(info: DatasetInfo) -> dict[str, str]:
    """Content SHA-256s recorded after a download verified by the mirrors' MD5 (for datasets without built-in ones)."""
    try:
        recorded = json.loads(_recorded_hashes_path(info).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(recorded, dict):
        return {}
    return {role: value for role, value in recorded.items() if isinstance(value, str)}


def record_hashes(info: DatasetInfo, hashes: dict[str, str]) -> None:
    """Add `hashes` (role -> content SHA-256) to the cache's record, replacing the file whole."""
    path = _recorded_hashes_path(info)
    recorded = recorded_hashes(info) | hashes
    temporary = path.with_suffix(f".tmp{os.getpid()}")
    temporary.write_text(json.dumps(recorded, indent=1, sort_keys=True) + "\n")
    temporary.replace(path)


def identify_other_dataset(content_sha256: str, info: DatasetInfo) -> str:
    """' (it is fashion-mnist's train_images)' when the content belongs to another registered dataset, else ''."""
    for other in DATASETS.values():
        for file in other.files:
            if file.content_sha256 == content_sha256 and other.name != info.name:
                return f" (it is {other.name}'s {file.role.replace('_', ' ')})"
    return ""


def verify(path: Path, file: IdxFile, info: DatasetInfo, content_sha256: str, gzipped: bool) -> FileCheck:
    """The verdict for a structurally valid `path` read as `file`; DataError when a checksum says it is another file."""
    expected_sha256 = file.content_sha256 or recorded_hashes(info).get(file.role)
    if expected_sha256 is not None:
        if content_sha256 != expected_sha256:
            raise DataError(
                f"{path}: checksum mismatch: content SHA-256 {content_sha256}; expected {expected_sha256} "
                f"for {info.name}'s {file.filename}{identify_other_dataset(content_sha256, info)}",
                fix=f"the file is not {info.name}'s original; delete or replace it",
            )
        source = "convolab's table" if file.content_sha256 else "the one recorded at the first verified download"
        return FileCheck(file.role, str(path), content_sha256, "verified", f"content SHA-256 matches {source}")
    if gzipped and file.md5 is not None and file_md5(path) == file.md5:
        return FileCheck(file.role, str(path), content_sha256, "verified",
                         "gzip file's MD5 matches the mirrors' published one")
    other = identify_other_dataset(content_sha256, info)
    if other:
        raise DataError(f"{path}: this file belongs to another dataset{other}, not to {info.name}",
                        fix=f"put {info.name}'s own files there")
    return FileCheck(file.role, str(path), content_sha256, "unverified",
                     "structure valid; no published checksum covers this copy's bytes")


def verify_download(path: Path, file: IdxFile, content_sha256: str) -> None:
    """A downloaded file must match a published checksum (the gzip MD5 or the content SHA-256); DataError otherwise."""
    md5_ok = file.md5 is not None and file_md5(path) == file.md5
    sha_ok = file.content_sha256 is not None and content_sha256 == file.content_sha256
    if not (md5_ok or sha_ok):
        raise DataError(f"checksum mismatch (content SHA-256 {content_sha256[:16]}…)")
