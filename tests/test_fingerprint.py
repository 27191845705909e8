"""data.fingerprint: a folder's files recorded by path, size and time, and what changed between two records."""
from __future__ import annotations

import hashlib
import os

from convolab.data.fingerprint import RECORD_HEADER, FolderChanges, folder_record


def make_files(root, names):
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(name.encode())
    return sorted(root / name for name in names)


def test_the_record_is_a_sha256_over_each_files_path_size_and_time(tmp_path):
    paths = make_files(tmp_path, ["a/1.png", "b/2.png"])
    record = folder_record(tmp_path, paths)
    expected = hashlib.sha256(RECORD_HEADER.encode())
    for path in paths:                                       # the reference, written out
        status = path.stat()
        expected.update(str(path.relative_to(tmp_path)).encode() + f"\0{status.st_size}\0{status.st_mtime_ns}\n".encode())
    assert record == {"count": 2, "sha256": expected.hexdigest(),
                      "files": {"a/1.png": [7, paths[0].stat().st_mtime_ns], "b/2.png": [7, paths[1].stat().st_mtime_ns]}}
    assert FolderChanges.between(record, folder_record(tmp_path, paths)) is None


def test_changes_count_and_name_up_to_three_files(tmp_path):
    paths = make_files(tmp_path, ["a/1.png", "a/2.png", "b/3.png"])
    before = folder_record(tmp_path, paths)
    paths[0].unlink()
    paths[1].write_bytes(b"longer than before")
    paths += make_files(tmp_path, ["c/4.png", "c/5.png"])
    changes = FolderChanges.between(before, folder_record(tmp_path, [path for path in paths if path.exists()]))
    assert changes.describe() == ("2 files added, 1 removed, 1 changed: c/4.png (added), c/5.png (added), "
                                  "a/1.png (removed), and 1 more")
    assert changes.file_count == 4


def test_a_touched_file_is_changed_and_no_record_means_no_change(tmp_path):
    [path] = make_files(tmp_path, ["a/1.png"])
    before = folder_record(tmp_path, [path])
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1))
    now = folder_record(tmp_path, [path])
    assert FolderChanges.between(before, now).describe() == "0 files added, 0 removed, 1 changed: a/1.png (changed)"
    assert FolderChanges.between({}, now) is None            # an older run, a named dataset: nothing to compare
    # a record without its listing still tells a change, by its counts
    assert FolderChanges.between({"count": 1, "sha256": "0" * 64}, now).describe() == "1 files recorded, 1 now"
