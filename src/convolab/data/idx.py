"""The IDX format (MNIST's): a header, then one array; files come gzipped or raw.

Header: two zero bytes, one byte element type, one byte number of dimensions, then one big-endian uint32 per dimension;
the payload follows, exactly as many elements as the dimensions multiply to. The SHA-256 that identifies a copy is taken
over the decompressed IDX bytes, whatever the gzip wrapper.
"""
from __future__ import annotations

import hashlib
import zlib
from dataclasses import dataclass
from pathlib import Path

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
            f"DD the number of dimensions), such as 0x{IMAGES_MAGIC:08X} for images or 0x{LABELS_MAGIC:08X} for labels",
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
