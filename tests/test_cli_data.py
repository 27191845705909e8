"""`convolab data` and the shared data flags: outputs, the grid picture, exit codes and messages for every bad input.

The Fashion-MNIST report is compared with a golden file; CONVOLAB_UPDATE_GOLDEN=1 rewrites it after a deliberate change.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import pytest

from convolab import data
from convolab.cli import add_data_flags, data_options, main
from idx_fixtures import DEBIAN, gz, idx_bytes, isolated_cache, make_tiny, needs_debian  # noqa: F401

GOLDEN = Path(__file__).parent / "golden"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("CONVOLAB_UPDATE_GOLDEN") == "1":
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
    assert text == path.read_text(), f"output differs from {path}; CONVOLAB_UPDATE_GOLDEN=1 rewrites it"


@needs_debian
def test_fashion_mnist_is_found_verified_counted_and_drawn(capsys, isolated_cache, tmp_path):
    grid = tmp_path / "pictures" / "grid.png"
    status, out, err = run(capsys, "data", "fashion-mnist", "--offline", "--grid", str(grid))
    assert status == 0, err
    report = out.replace(str(isolated_cache), "$XDG_CACHE_HOME")
    check_golden("data_fashion_mnist.out", report.replace(str(grid), "GRID.png"))
    assert "found in: system copy /usr/share/datasets/fashion-mnist" in out and "checksums: verified" in out
    assert grid.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from PIL import Image

    with Image.open(grid) as picture:
        assert picture.width >= 600 and picture.height >= 700   # 10 rows of 8 samples with their names


def test_mnist_offline_says_what_is_missing_and_how_to_get_it(capsys):
    status, out, err = run(capsys, "data", "mnist", "--offline")
    assert status == 2 and out == ""
    assert err.startswith("convolab data: error: no usable copy of MNIST")
    for expected in ("cache ", "system copies: none known", "not tried: offline", "run without --offline",
                     "--data-dir FOLDER", "https://ossci-datasets.s3.amazonaws.com/mnist/train-images-idx3-ubyte.gz",
                     "https://storage.googleapis.com/cvdf-datasets/mnist/"):
        assert expected in err, expected
    assert "Traceback" not in err


def test_an_image_folder_reports_its_unreadable_files(capsys, tmp_path):
    from PIL import Image

    for name in ("cat", "dog"):
        (tmp_path / "pets" / name).mkdir(parents=True)
        for index in range(3):
            Image.new("L", (12, 12), 40 * index).save(tmp_path / "pets" / name / f"{index}.png")
    (tmp_path / "pets" / "dog" / "scan.jpg").write_bytes(b"\xff\xd8\xff junk")
    status, out, err = run(capsys, "data", str(tmp_path / "pets"), "--test-split", "0.34", "--image-size", "16,16")
    assert status == 0, err
    assert "images: 16x16, 1 channel" in out
    assert "files left out: 1" in out and "scan.jpg: cannot read as an image" in out
    assert "checksums: not applicable" in out


def tiny_copy(directory: Path, monkeypatch) -> Path:
    tiny = make_tiny()
    monkeypatch.setitem(data.DATASETS, "tiny", tiny.info())
    return tiny.write(directory)


@pytest.mark.parametrize("damage, message", [
    (lambda d: (d / "train-images-idx3-ubyte.gz").write_bytes((d / "train-images-idx3-ubyte.gz").read_bytes()[:40]),
     "train-images-idx3-ubyte.gz: truncated gzip file"),
    (lambda d: (d / "t10k-labels-idx1-ubyte.gz").write_bytes(gz(b"\x00\x00\x09\x01" + bytes(10))),
     "t10k-labels-idx1-ubyte.gz: wrong magic number"),
    (lambda d: (d / "t10k-labels-idx1-ubyte.gz").write_bytes(gz(idx_bytes(np.zeros(5, np.uint8)))),
     "t10k-labels-idx1-ubyte.gz: checksum mismatch"),
    (lambda d: (d / "train-labels-idx1-ubyte.gz").unlink(), "missing train-labels-idx1-ubyte.gz"),
])
def test_damaged_data_dir_names_the_file_and_exits_2(capsys, tmp_path, monkeypatch, damage, message):
    directory = tiny_copy(tmp_path / "copy", monkeypatch)
    damage(directory)
    status, out, err = run(capsys, "data", "tiny", "--data-dir", str(directory))
    assert status == 2 and message in err and "fix:" in err and "Traceback" not in err


def test_counts_that_disagree_exit_2(capsys, tmp_path, monkeypatch):
    tiny = make_tiny()
    monkeypatch.setitem(data.DATASETS, "tiny", tiny.info(content_hashes=False, md5s=False))
    directory = tiny.write(tmp_path / "copy")
    (directory / "train-labels-idx1-ubyte.gz").write_bytes(gz(idx_bytes(np.zeros(11, np.uint8))))
    status, _, err = run(capsys, "data", "tiny", "--data-dir", str(directory))
    assert status == 2 and "train counts disagree: 12 images but 11 labels" in err


@pytest.mark.parametrize("argv, message", [
    (["data", "cifar10"], "unknown dataset 'cifar10'"),
    (["data", "./no/such/folder"], "no such folder"),
])
def test_bad_dataset_arguments_exit_2(capsys, argv, message):
    status, _, err = run(capsys, *argv)
    assert status == 2 and message in err


def test_one_class_folder_exits_2(capsys, tmp_path):
    from PIL import Image

    (tmp_path / "one" / "only").mkdir(parents=True)
    Image.new("L", (5, 5)).save(tmp_path / "one" / "only" / "a.png")
    status, _, err = run(capsys, "data", str(tmp_path / "one"))
    assert status == 2 and "one class ('only')" in err


@pytest.mark.parametrize("flags, message", [
    (["--channels", "2"], "invalid choice: 2"),
    (["--image-size", "big"], "expected HEIGHT,WIDTH"),
    (["--image-size", "0,5"], "two positive integers"),
    (["--test-split", "1.5"], "expected a fraction"),
])
def test_bad_flags_are_refused_by_the_parser(capsys, flags, message):
    with pytest.raises(SystemExit) as caught:
        main(["data", "mnist", *flags])
    assert caught.value.code == 2 and message in capsys.readouterr().err


def test_shared_flags_become_load_dataset_arguments():
    parser = argparse.ArgumentParser()
    add_data_flags(parser)
    args = parser.parse_args(["--data", "mnist", "--data-dir", "/d", "--offline", "--channels", "3",
                              "--image-size", "32x32", "--test-split", "0.1"])
    assert data_options(args) == {"source": "mnist", "data_dir": "/d", "offline": True, "channels": 3,
                                  "image_size": (32, 32), "test_split": 0.1, "seed": 0}
    defaults = data_options(parser.parse_args([]))
    assert defaults["source"] == "fashion-mnist" and defaults["image_size"] is None and defaults["offline"] is False
    import inspect

    assert set(data_options(args)) <= set(inspect.signature(data.load_dataset).parameters)
