"""The IDX format (MNIST's): a header, then one array, read as a stream and checked before anything large is held.

Header: two zero bytes, one byte element type, one byte number of dimensions, then one big-endian uint32 per dimension;
the payload follows, exactly as many elements as the dimensions multiply to. Files come gzipped or raw.

Everything the header promises is checked as soon as the header arrives (magic, element type, dimensions, the declared
size against MAX_IDX_BYTES), so a wrong or hostile file costs a few bytes of reading, not its whole size: the payload
buffer is allocated only for a size the header declared and the limit allows, and bytes beyond it are counted, never
kept. The SHA-256 that identifies a copy is taken over the decompressed IDX bytes, whatever the gzip wrapper.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from convolab.errors import DataError

IDX_ELEMENT_TYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
IMAGES_MAGIC, LABELS_MAGIC = 2051, 2049
GZIP_MAGIC = b"\x1f\x8b"
# The largest decompressed IDX file accepted: the biggest real one here is 47 MB; this stops a gzip bomb, not a dataset.
MAX_IDX_BYTES = 1 << 30
_CHUNK_BYTES = 1 << 20
_EXTRA_COUNTED = 1 << 20   # bytes past the declared payload counted for the message, no more


@dataclass(frozen=True)
class IdxContent:
    """A validated IDX file: its array, the SHA-256 of its decompressed bytes, whether it was gzipped."""

    array: np.ndarray
    content_sha256: str
    gzipped: bool


def _gzip_error(path: Path, read_so_far: int, error: Exception) -> DataError:
    """The DataError for an exception the gzip stream raised while reading `path`."""
    if isinstance(error, EOFError):
        return DataError(
            f"{path}: truncated gzip file ({read_so_far:,} bytes decompressed, the compressed stream ends early)",
            fix="the copy is incomplete (an interrupted download?); replace it with a whole copy",
        )
    return DataError(
        f"{path}: not a valid gzip stream ({error})",
        fix="the file is damaged; replace it with a whole copy (convolab's cache replaces its own damaged files)",
    )


class _Stream:
    """The decompressed bytes of one file, read in order; gzip and OS errors become DataErrors naming the file."""

    def __init__(self, path: Path, handle: BinaryIO, gzipped: bool):
        self.path, self.gzipped, self.position = path, gzipped, 0
        self._raw = handle
        self._stream: BinaryIO = gzip.GzipFile(fileobj=handle, mode="rb") if gzipped else handle

    def _call(self, method, *args):
        try:
            return method(*args)
        except (EOFError, gzip.BadGzipFile, zlib.error) as error:
            raise _gzip_error(self.path, self.position, error) from None
        except OSError as error:
            raise DataError(f"{self.path}: cannot read ({error.strerror or error})",
                            fix="check the path and its permissions") from None

    def read(self, size: int) -> bytes:
        data = self._call(self._stream.read, size)
        self.position += len(data)
        return data

    def read_into(self, buffer: memoryview) -> int:
        """Fill `buffer` as far as the stream goes; the number of bytes read."""
        filled = 0
        while filled < len(buffer):
            count = self._call(self._stream.readinto, buffer[filled:])
            if not count:
                break
            filled += count
        self.position += filled
        return filled

    def count_rest(self, limit: int) -> int:
        """Bytes left in the stream, read and dropped, counting stops just past `limit` (a bomb is never drained)."""
        remaining = 0
        if not self.gzipped:
            remaining = max(0, os.fstat(self._raw.fileno()).st_size - self._raw.tell())
            return min(remaining, limit + 1)
        while remaining <= limit:
            chunk = self.read(min(_CHUNK_BYTES, limit + 1 - remaining))
            if not chunk:
                break
            remaining += len(chunk)
        return remaining


def _refuse_oversized(path: Path, size_text: str) -> DataError:
    return DataError(
        f"{path}: decompresses to more than {MAX_IDX_BYTES:,} bytes{size_text}; expected an IDX file of at most that "
        "size",
        fix="this is not an MNIST-style IDX file; replace it with the real one",
    )


def _read_header(stream: _Stream) -> tuple[int, np.dtype, tuple[int, ...]]:
    """(magic, element type, shape) from the first bytes; DataError for anything that is not an IDX header."""
    path = stream.path
    start = stream.read(4)
    if len(start) < 4:
        raise DataError(f"{path}: {len(start)} bytes; an IDX file has at least a 4-byte header",
                        fix="the file is empty or truncated; replace it")
    magic = int.from_bytes(start, "big")
    element_type, ndim = start[2], start[3]
    if start[:2] != b"\x00\x00" or element_type not in IDX_ELEMENT_TYPES or ndim == 0:
        # A gzip that is not IDX inside may still be a bomb: say that first, having counted (never kept) the bytes.
        if stream.gzipped and stream.count_rest(MAX_IDX_BYTES) + 4 > MAX_IDX_BYTES:
            raise _refuse_oversized(path, "")
        raise DataError(
            f"{path}: wrong magic number 0x{magic:08X}; expected an IDX header 0x0000TTDD (TT an element type, "
            f"DD the number of dimensions), such as 0x{IMAGES_MAGIC:08X} for images or 0x{LABELS_MAGIC:08X} for labels",
            fix="this is not an IDX file (or it is corrupt); use the files from the dataset's mirror",
        )
    dims = stream.read(4 * ndim)
    if len(dims) < 4 * ndim:
        raise DataError(f"{path}: truncated header ({4 + len(dims)} bytes; expected {4 + 4 * ndim} for {ndim} "
                        "dimensions)", fix="the file is incomplete; replace it")
    shape = tuple(int.from_bytes(dims[4 * i: 4 * i + 4], "big") for i in range(ndim))
    return magic, IDX_ELEMENT_TYPES[element_type], shape


def _check_expected(path: Path, magic: int, shape: tuple[int, ...], expected_magic: int | None,
                    expected_shape: tuple[int | None, ...] | None) -> None:
    if expected_magic is not None and magic != expected_magic:
        raise DataError(
            f"{path}: wrong magic number {magic} (0x{magic:08X}); expected {expected_magic} (0x{expected_magic:08X})",
            fix="the file is not the one its name says (images and labels swapped?); use the dataset's original files",
        )
    if expected_shape is not None:
        if len(shape) != len(expected_shape) or any(e is not None and e != s for s, e in zip(shape, expected_shape)):
            wanted = "x".join("N" if e is None else str(e) for e in expected_shape)
            raise DataError(f"{path}: dimensions {'x'.join(map(str, shape))}; expected {wanted}",
                            fix="use the dataset's original files")


def read_idx(path: str | Path, expected_magic: int | None = None,
             expected_shape: tuple[int | None, ...] | None = None) -> IdxContent:
    """Read one IDX file, gzipped or raw, validating magic number, element type, dimensions and payload size.

    expected_magic: 2049 for labels, 2051 for images (None accepts any valid IDX header).
    expected_shape: dimensions to insist on; None in a position accepts any size there.
    """
    path = Path(path)
    try:
        handle = open(path, "rb")
    except OSError as error:
        raise DataError(f"{path}: cannot read ({error.strerror or error})",
                        fix="check the path and its permissions") from None
    with handle:
        gzipped = handle.read(2) == GZIP_MAGIC
        handle.seek(0)
        stream = _Stream(path, handle, gzipped)
        magic, dtype, shape = _read_header(stream)
        _check_expected(path, magic, shape, expected_magic, expected_shape)
        header_size = 4 + 4 * len(shape)
        described = f"{'x'.join(map(str, shape))} {dtype.name}"
        expected_payload = int(np.prod(shape, dtype=object)) * dtype.itemsize   # object: no int64 overflow
        if header_size + expected_payload > MAX_IDX_BYTES:
            raise _refuse_oversized(path, f" (its header declares {described}: {expected_payload:,} bytes of data)")
        content = bytearray(header_size + expected_payload)
        content[:header_size] = magic.to_bytes(4, "big") + b"".join(size.to_bytes(4, "big") for size in shape)
        payload = stream.read_into(memoryview(content)[header_size:])
        if payload < expected_payload:
            raise DataError(
                f"{path}: truncated payload: {payload:,} bytes of data; the header ({described}) needs "
                f"{expected_payload:,}",
                fix="the file is incomplete; replace it with a whole copy",
            )
        # Reading to the end also checks the gzip CRC; extra bytes are counted up to a bound only (a bomb stops there).
        extra = stream.count_rest(_EXTRA_COUNTED)
    if extra:
        total = f"{payload + extra:,}" if extra <= _EXTRA_COUNTED else f"more than {payload + _EXTRA_COUNTED:,}"
        raise DataError(
            f"{path}: oversized payload: {total} bytes of data; the header ({described}) declares {expected_payload:,}",
            fix="the file has extra bytes (two files concatenated?); use the dataset's original files",
        )
    # The bytearray is writable, so torch.from_numpy can share it without a copy or a warning.
    array = np.frombuffer(content, dtype=dtype, offset=header_size).reshape(shape)
    return IdxContent(array=array, content_sha256=hashlib.sha256(content).hexdigest(), gzipped=gzipped)
