"""Generated IDX datasets and a local HTTP mirror for the data tests (no test touches the internet)."""
from __future__ import annotations

import gzip
import hashlib
import http.server
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from convolab.data import download
from convolab.data import DatasetInfo, IdxFile

DEBIAN = Path("/usr/share/datasets/fashion-mnist")
needs_debian = pytest.mark.skipif(not DEBIAN.is_dir(), reason="Debian's dataset-fashion-mnist is not installed")
TINY_CLASSES = ("zero", "one", "two")


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    """Every test gets its own empty cache and no CONVOLAB_DATA_DIR, and downloads retry without waiting.

    Autouse in every test module that imports it.
    """
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.delenv("CONVOLAB_DATA_DIR", raising=False)
    monkeypatch.setattr(download, "RETRY_DELAY_S", 0.0)
    monkeypatch.setattr(download, "DOWNLOAD_TIMEOUT_S", 5.0)
    return tmp_path / "xdg-cache"


def idx_bytes(array: np.ndarray, magic: bytes | None = None) -> bytes:
    """The IDX encoding of a uint8 array: header (magic, dimensions) then the payload."""
    header = magic if magic is not None else bytes([0, 0, 0x08, array.ndim])
    dims = b"".join(int(size).to_bytes(4, "big") for size in array.shape)
    return header + dims + array.astype(np.uint8).tobytes()


def gz(content: bytes) -> bytes:
    return gzip.compress(content, compresslevel=9, mtime=0)


@dataclass
class TinyDataset:
    """Four generated IDX files (train 12, test 6 images of 4x4), their arrays and checksums."""

    arrays: dict[str, np.ndarray]
    contents: dict[str, bytes]            # decompressed IDX bytes, by file name
    gzipped: dict[str, bytes] = field(default_factory=dict)

    def write(self, directory: Path, compressed: bool = True) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        for name, content in self.contents.items():
            if compressed:
                (directory / name).write_bytes(self.gzipped[name])
            else:
                (directory / name[: -len(".gz")]).write_bytes(content)
        return directory

    def info(self, name: str = "tiny", mirrors: tuple[str, ...] = (), content_hashes: bool = True,
             md5s: bool = True) -> DatasetInfo:
        roles = {"train-images-idx3-ubyte.gz": ("train_images", (None, 4, 4)),
                 "train-labels-idx1-ubyte.gz": ("train_labels", (None,)),
                 "t10k-images-idx3-ubyte.gz": ("test_images", (None, 4, 4)),
                 "t10k-labels-idx1-ubyte.gz": ("test_labels", (None,))}
        files = tuple(
            IdxFile(filename, role, shape,
                    hashlib.md5(self.gzipped[filename]).hexdigest() if md5s else None,
                    hashlib.sha256(self.contents[filename]).hexdigest() if content_hashes else None)
            for filename, (role, shape) in roles.items()
        )
        return DatasetInfo(name=name, title=f"Tiny test set ({name})", class_names=TINY_CLASSES, files=files,
                           mirrors=mirrors, system_dirs=(), apt_package=None)


def make_tiny(seed: int = 0) -> TinyDataset:
    generator = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte.gz": generator.integers(0, 256, (12, 4, 4), dtype=np.uint8),
        "train-labels-idx1-ubyte.gz": np.arange(12, dtype=np.uint8) % 3,
        "t10k-images-idx3-ubyte.gz": generator.integers(0, 256, (6, 4, 4), dtype=np.uint8),
        "t10k-labels-idx1-ubyte.gz": np.arange(6, dtype=np.uint8) % 3,
    }
    contents = {name: idx_bytes(array) for name, array in arrays.items()}
    return TinyDataset(arrays, contents, {name: gz(content) for name, content in contents.items()})


class MirrorServer:
    """A local HTTP server on 127.0.0.1 with four behaviours under four prefixes, counting requests.

    /good/NAME  the file;  /bad/NAME  other bytes (a valid IDX of the wrong content);  /error/NAME  HTTP 503;
    /cut/NAME   announces the whole length, sends half, closes the connection.
    """

    def __init__(self, files: dict[str, bytes], wrong_files: dict[str, bytes]):
        self.files, self.wrong_files = files, wrong_files
        self.requests: list[str] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):   # keep test output clean
                pass

            def do_GET(self):
                server.requests.append(self.path)
                _, kind, name = self.path.split("/", 2)
                if kind == "error" or name not in server.files:
                    self.send_error(503 if kind == "error" else 404)
                    return
                body = server.wrong_files[name] if kind == "bad" else server.files[name]
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if kind == "cut":
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def url(self, kind: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{kind}/"

    def __enter__(self) -> "MirrorServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
