"""Streamed image folders: the cache is built once, reused, rebuilt when a file changes, and gives exactly what the
in-memory folder loader gives (same images, same stratified split, same files left out); training on it equals
training on the in-memory tensors."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from PIL import Image

from convolab.data import streaming
from convolab.data import describe_dataset, load_dataset, load_image_folder
from convolab.errors import DataError, WriteError
from convolab.experiment import train_run
from convolab.data.streaming import CachedImages, needs_streaming, parse_memory_size
from convolab.train import TrainConfig, make_progress
from idx_fixtures import isolated_cache  # noqa: F401 - autouse: every test gets its own empty cache

CLASSES = {"cat": 13, "dog": 11, "eel": 9}   # unequal on purpose: the split must be stratified per class


def make_folder(root, gray: bool = False, size: int = 20):
    """CLASSES' counts of random PNGs (sizes vary, so resizing matters), one damaged JPEG and one text file."""
    generator = np.random.default_rng(0)
    for name, count in CLASSES.items():
        (root / name).mkdir(parents=True)
        for index in range(count):
            shape = (size + index % 5, size) if gray else (size + index % 5, size, 3)
            pixels = generator.integers(0, 256, shape, dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{index:03d}.png")
    (root / "cat" / "broken.jpg").write_bytes(b"not a jpeg")
    (root / "dog" / "notes.txt").write_text("not an image")
    return root


@pytest.fixture
def folder(tmp_path):
    return make_folder(tmp_path / "pets")


def built_lines(lines):
    return [line for line in lines if line.startswith("decoding ")]


@pytest.mark.parametrize("in_process_below", [0, 10**6], ids=["worker processes", "in process"])
def test_a_streamed_folder_equals_the_in_memory_one(folder, monkeypatch, in_process_below):
    monkeypatch.setattr(streaming, "IN_PROCESS_BELOW", in_process_below)
    lines: list[str] = []
    streamed = load_image_folder(folder, image_size=(12, 12), stream=True, report=lines.append)
    memory = load_image_folder(folder, image_size=(12, 12), stream=False)
    assert isinstance(streamed.train_images, CachedImages)
    assert streamed.train_images.shape == memory.train_images.shape and streamed.input_shape == (12, 12, 3)
    assert torch.equal(streamed.train_images.to("cpu"), memory.train_images)
    assert torch.equal(streamed.test_images.to("cpu"), memory.test_images)
    assert torch.equal(streamed.train_labels, memory.train_labels)
    assert torch.equal(streamed.test_labels, memory.test_labels)
    # stratified: round(n * 0.2) of every class held out
    assert torch.bincount(streamed.test_labels).tolist() == [round(count * 0.2) for count in CLASSES.values()]
    # the bad files are listed, as the in-memory loader lists them
    assert sorted(streamed.skipped_files) == sorted(memory.skipped_files) and len(streamed.skipped_files) == 2
    assert any("broken.jpg: cannot read as an image" in reason for reason in streamed.skipped_files)
    assert any("notes.txt: not an image type" in reason for reason in streamed.skipped_files)
    # the class balance is reported, and described
    assert any(line.startswith("train images per class: cat 10, dog 9, eel 7") for line in lines)
    decoding = built_lines(lines)[0]
    assert "worker processes" in decoding and ("(no worker" in decoding) == (in_process_below > 0)
    assert "streamed from the cache" in describe_dataset(streamed) and "broken.jpg" in describe_dataset(streamed)


def test_indexing_reads_the_rows_asked_in_the_order_asked(folder):
    streamed = load_image_folder(folder, image_size=(8, 8), stream=True)
    memory = load_image_folder(folder, image_size=(8, 8), stream=False).train_images
    images = streamed.train_images
    index = torch.tensor([5, 0, 1, 2, 5, 20, 3])   # out of order, a repeat, a run of consecutive rows
    assert torch.equal(images[index], memory[index])
    assert torch.equal(images[[4, 2]], memory[[4, 2]]) and torch.equal(images[7], memory[7])
    assert torch.equal(images[torch.tensor(3)], memory[3])
    assert torch.equal(images[3:9].to("cpu"), memory[3:9]) and len(images[3:9]) == 6
    assert torch.equal(images[3:9][[1, 0]], memory[[4, 3]])


def test_the_cache_is_reused_then_rebuilt_when_a_file_changes(folder):
    first: list[str] = []
    load_image_folder(folder, image_size=(8, 8), stream=True, report=first.append)
    assert len(built_lines(first)) == 1
    again: list[str] = []
    load_image_folder(folder, image_size=(8, 8), stream=True, report=again.append)
    assert built_lines(again) == [] and any(line.startswith("reading 34 decoded images") for line in again)
    # touching one file (a new modification time) rebuilds; the old data file is removed
    target = folder / "eel" / "000.png"
    stat = target.stat()
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    touched: list[str] = []
    load_image_folder(folder, image_size=(8, 8), stream=True, report=touched.append)
    assert len(built_lines(touched)) == 1
    # a new file rebuilds too, and is in the data
    Image.fromarray(np.zeros((9, 9, 3), dtype=np.uint8)).save(folder / "eel" / "new.png")
    added: list[str] = []
    dataset = load_image_folder(folder, image_size=(8, 8), stream=True, report=added.append)
    assert len(built_lines(added)) == 1
    assert len(dataset.train_labels) + len(dataset.test_labels) == sum(CLASSES.values()) + 1
    directory = dataset.train_images.path.parent
    assert len(list(directory.glob("images-*.u8"))) == 1 and not list(directory.glob(".*tmp"))


def test_a_truncated_cache_file_is_rebuilt(folder):
    dataset = load_image_folder(folder, image_size=(8, 8), stream=True)
    data = dataset.train_images.path
    with open(data, "r+b") as file:
        file.truncate(100)
    lines: list[str] = []
    rebuilt = load_image_folder(folder, image_size=(8, 8), stream=True, report=lines.append)
    assert len(built_lines(lines)) == 1
    assert torch.equal(rebuilt.train_images.to("cpu"), load_image_folder(folder, image_size=(8, 8)).train_images)


def test_a_gray_folder_streams_as_one_channel(tmp_path):
    folder = make_folder(tmp_path / "gray", gray=True)
    streamed = load_image_folder(folder, image_size=(8, 8), stream=True)
    memory = load_image_folder(folder, image_size=(8, 8), stream=False)
    assert streamed.input_shape == (8, 8, 1) and streamed.train_images[[0, 1]].shape == (2, 1, 8, 8)
    assert torch.equal(streamed.train_images.to("cpu"), memory.train_images)


def test_a_folder_larger_than_the_budget_streams_by_itself(folder, monkeypatch):
    monkeypatch.setenv("CONVOLAB_MEMORY_BUDGET", "1K")   # 34 images of 28x28x3 are 80 KB: over the budget
    assert isinstance(load_dataset(str(folder), progress=False).train_images, CachedImages)
    monkeypatch.setenv("CONVOLAB_MEMORY_BUDGET", "1G")
    assert isinstance(load_dataset(str(folder), progress=False).train_images, torch.Tensor)
    assert needs_streaming(10, (28, 28, 3), stream=None, memory_budget=100)
    assert not needs_streaming(10**9, (28, 28, 3), stream=False, memory_budget=100)


@pytest.mark.parametrize("text, expected", [("512", 512), ("2K", 2048), ("1.5M", 1572864), ("4G", 4 * 2**30),
                                            ("3gb", 3 * 2**30)])
def test_memory_sizes_parse(text, expected):
    assert parse_memory_size(text) == expected


@pytest.mark.parametrize("text", ["lots", "-1G", "0"])
def test_a_bad_memory_budget_is_a_clear_error(text, folder, monkeypatch):
    monkeypatch.setenv("CONVOLAB_MEMORY_BUDGET", text)
    with pytest.raises(DataError, match="memory budget") as error:
        load_dataset(str(folder), progress=False)
    assert "CONVOLAB_MEMORY_BUDGET" in error.value.fix


def test_training_on_a_streamed_folder_equals_training_in_memory(folder):
    config = TrainConfig(epochs=2, batch_size=8, validation_split=0.2, threads="1")
    results = []
    for stream in (True, False):
        dataset = load_image_folder(folder, image_size=(12, 12), stream=stream)
        results.append(train_run("conv4x3-relu,maxpool2,flatten,dense", dataset, config, out=None,
                                 progress=make_progress("quiet")))
    streamed, memory = results
    for key, value in memory.model.state_dict().items():
        assert torch.equal(streamed.model.state_dict()[key], value), key
    timings = ("seconds", "cpu_seconds")   # the clock, not the training
    assert ([{key: value for key, value in row.items() if key not in timings} for row in streamed.history]
            == [{key: value for key, value in row.items() if key not in timings} for row in memory.history])
    assert streamed.evaluation.confusion.tolist() == memory.evaluation.confusion.tolist()


def test_the_cache_is_keyed_by_folder_and_shape(folder, tmp_path):
    assert streaming.cache_directory(folder, (3, 8, 8)) != streaming.cache_directory(folder, (3, 9, 8))
    assert streaming.cache_directory(folder, (3, 8, 8)) != streaming.cache_directory(tmp_path, (3, 8, 8))


def test_a_class_with_no_readable_image_is_a_clear_error(tmp_path):
    folder = make_folder(tmp_path / "pets")
    for path in (folder / "eel").iterdir():
        path.write_bytes(b"damaged")
    with pytest.raises(DataError, match="no readable training images for class") as error:
        load_image_folder(folder, image_size=(8, 8), stream=True)
    assert "eel" in error.value.message and "replace the unreadable files" in error.value.fix


def test_the_data_command_streams_on_request_and_reports_the_cache(folder, capsys):
    from convolab.cli import main

    assert main(["data", str(folder), "--stream", "--image-size", "8,8"]) == 0
    captured = capsys.readouterr()
    assert "streamed from the cache" in captured.out and "files left out: 2" in captured.out
    assert captured.err.startswith("decoding 34 images from") and "train images per class: cat 10" in captured.err


def test_a_cache_that_cannot_be_written_is_a_clear_error(folder, tmp_path, monkeypatch, capsys):
    from convolab.cli import main

    (tmp_path / "not-a-folder").write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "not-a-folder"))   # was: "internal error: NotADirectoryError"
    with pytest.raises(WriteError, match=r"not-a-folder/convolab/folders/\w+: cannot write the image cache there "
                                         r"\(Not a directory; it needs 6,528 bytes\)") as refused:
        load_image_folder(folder, image_size=(8, 8), stream=True)
    assert "XDG_CACHE_HOME" in refused.value.fix
    assert main(["data", str(folder), "--stream", "--image-size", "8,8"]) == 2
    assert "cannot write the image cache" in capsys.readouterr().err
