"""The failure policy end to end: every bad input or fault one message and exit 2, no run lost, no stale lock.

Each test names the cause of issue 9 it covers. The full-disk and read-only cases use a real tmpfs and a real
read-only bind mount, which need root (CI runs as root); elsewhere they are skipped with the reason.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from convolab.callbacks import Callback
from convolab.cli import main
from convolab.data import load_image_folder
from convolab.errors import TrainingError
from convolab.experiment import DataSelection, train_run
from convolab.train import QuietProgress, TrainConfig
from see_fixtures import copy_run
from train_fixtures import TINY_SPEC, fashion

QUICK = ["--train-limit", "320", "--test-limit", "100", "--offline", "--quiet"]


def fails_with(argv: list[str], expected: str, capsys) -> str:
    """Run the CLI; it must exit 2 with `expected` in its message (and never say 'internal error')."""
    code = main(argv)
    error = capsys.readouterr().err
    assert code == 2, error
    assert expected in error and "internal error" not in error, error
    return error


# --- mounts: a real full disk and a real read-only folder ------------------------------------------------------------

def _mount(*arguments: str) -> None:
    result = subprocess.run(["mount", *arguments], capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"mount {' '.join(arguments)} failed: {result.stderr.strip()}")


@contextlib.contextmanager
def small_tmpfs(path: Path, size: str):
    """A real tmpfs of `size` at `path` (root only), unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("a real tmpfs needs root (CI runs the tests as root)")
    path.mkdir(parents=True, exist_ok=True)
    _mount("-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path))
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


@contextlib.contextmanager
def read_only_view(source: Path, path: Path):
    """`source` seen read-only at `path` through a bind mount (root ignores permissions, not a read-only mount)."""
    if os.geteuid() != 0:
        pytest.skip("a read-only bind mount needs root (CI runs the tests as root)")
    path.mkdir(parents=True, exist_ok=True)
    _mount("--bind", str(source), str(path))
    try:
        _mount("-o", "remount,bind,ro", str(path))
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


# --- cause 2: one training per run directory ------------------------------------------------------------------------

HOLD_LOCK = """
import sys, time
from convolab.runs import RunLock
with RunLock(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(120)
"""


def test_a_second_training_into_a_locked_run_directory_is_refused_naming_the_first(tmp_path, capsys):
    run = copy_run("tinydnn", tmp_path)
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(run)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        before = {path.name: path.read_bytes() for path in run.iterdir() if path.is_file()}
        for argv in (["train", TINY_SPEC, "--out", str(run), "--overwrite", *QUICK],
                     ["train", "--resume", str(run), "--epochs", "3", "--quiet"]):
            error = fails_with(argv, f"another convolab (process {holder.pid}) is training into this run", capsys)
            assert "give another --out" in error
        assert {path.name: path.read_bytes() for path in run.iterdir() if path.is_file()} == before
    finally:
        holder.kill()   # SIGKILL: the lock dies with the process
        holder.wait()
    assert main(["train", "--resume", str(run), "--epochs", "3", "--quiet"]) == 0   # no stale lock
    assert not (run / ".lock").exists()


# --- cause 4: every failed write one message -------------------------------------------------------------------------

class FillDisk(Callback):
    """Fills the run's disk at the end of epoch `epoch` (before the checkpoint callback writes): a full disk."""

    def __init__(self, folder: Path, epoch: int):
        self.folder, self.epoch = folder, epoch

    def on_epoch_end(self, state):
        if state.epoch == self.epoch:
            with open(self.folder / "filler", "wb") as filler, contextlib.suppress(OSError):
                while True:
                    filler.write(b"\0" * (1 << 20))
        return None


def test_a_full_disk_after_an_epoch_keeps_the_previous_checkpoint_and_says_how_much_space(tmp_path):
    with small_tmpfs(tmp_path / "disk", "4m") as disk:
        out = disk / "run"
        config = TrainConfig(epochs=3, device="cpu")
        selection = DataSelection(options={"source": "fashion-mnist", "offline": True}, train_limit=320,
                                  test_limit=100)
        with pytest.raises(TrainingError) as raised:
            train_run(TINY_SPEC, fashion(), config, out, selection=selection, progress=QuietProgress(),
                      callbacks=[FillDisk(disk, epoch=2)])
        message = str(raised.value)
        assert "training stopped after epoch 2" in message and "no space left on the device" in message
        assert "it needs" in message and "the checkpoint of epoch 1 is kept" in message
        assert f"convolab train --resume {out}" in message
        assert torch.load(out / "checkpoint.pt", weights_only=True)["epoch"] == 1   # whole, and resumable
        assert not list(out.glob(".*.tmp"))
        (disk / "filler").unlink()
        assert main(["train", "--resume", str(out), "--quiet"]) == 0   # space freed: the run goes on


def test_a_disk_too_small_for_the_checkpoints_is_refused_before_training(tmp_path, capsys):
    with small_tmpfs(tmp_path / "disk", "1m") as disk:
        error = fails_with(["train", "flatten,dense256,dense", "--out", str(disk / "run"), *QUICK],
                           "not enough free space for this run's checkpoints", capsys)
        assert "free at least" in error and "epoch 1/" not in capsys.readouterr().out


def test_a_name_that_is_not_utf8_is_refused_before_anything_is_written(tmp_path, capsys):
    out = str(tmp_path) + "/bad\udcffname"             # the byte 0xff as Python receives it from the shell
    fails_with(["train", TINY_SPEC, "--out", out, *QUICK], "holds bytes that are not UTF-8 text", capsys)
    assert list(tmp_path.iterdir()) == []


def test_a_metrics_file_that_is_not_an_object_is_named_by_the_report(tmp_path, capsys):
    run = copy_run("tinydnn", tmp_path)
    (run / "metrics.json").write_text("[1, 2]")
    error = fails_with(["report", str(run)], "metrics.json: not the test metrics convolab writes", capsys)
    assert "convolab evaluate" in error
    assert main(["evaluate", str(run)]) == 0            # it measures them again; nothing else needs that file


def test_a_name_too_long_for_the_file_system_is_a_message_in_every_command(tmp_path, capsys):
    run = copy_run("tinycnn", tmp_path)
    long = "x" * 300                             # over the 255 bytes a name may have on ext4 and tmpfs
    # summary's MODEL may be a one-line spec, which has no length limit: a long word is an unknown model
    fails_with(["summary", long], "unknown model 'xxxx", capsys)
    for argv in (["summary", "cnn", "--diagram", str(tmp_path / f"{long}.svg")], ["evaluate", long], ["report", str(run), "--out", str(tmp_path / f"{long}.html")],
                 ["export", str(run), "--format", "keras", "--out", str(tmp_path / f"{long}.keras")],
                 ["train", TINY_SPEC, "--out", str(tmp_path / long), *QUICK]):
        fails_with(argv, "too long for the file system", capsys)


def test_an_onnx_export_onto_a_full_disk_blames_the_disk(tmp_path, capsys):
    pytest.importorskip("onnxruntime", reason="the onnx extra (in dev) installs onnxruntime")
    with small_tmpfs(tmp_path / "disk", "2m") as disk:     # a 3.2 MB Dense layer does not fit
        error = fails_with(["export", "flatten,dense1024,dense", "--format", "onnx", "--out", str(disk / "x.onnx")],
                           "cannot write it (no space left on the device)", capsys)
        assert "fix: free space on that disk" in error and "report it" not in error
        assert list(disk.iterdir()) == []


def test_a_read_only_run_directory_is_one_message_per_command(tmp_path, capsys):
    run = copy_run("tinycnn", tmp_path / "source")
    before = {path.name: path.read_bytes() for path in run.iterdir()}
    with read_only_view(run, tmp_path / "read-only") as view:
        for argv in (["show", str(view)], ["filters", str(view)], ["report", str(view)]):
            error = fails_with(argv, "the file system is read-only", capsys)
            assert "fix: write somewhere else" in error
        # --resume takes no other --out: the fix is a copy to resume
        error = fails_with(["train", "--resume", str(view), "--epochs", "3", "--quiet"],
                           "cannot resume it here: the folder cannot be written", capsys)
        assert f"fix: copy the run to a folder you may write and resume the copy: cp -r {view} {view}-copy && " \
               f"convolab train --resume {view}-copy" in error
    assert {path.name: path.read_bytes() for path in run.iterdir()} == before


def test_an_out_under_a_regular_file_and_a_full_device_are_messages(tmp_path, capsys):
    (tmp_path / "file").write_text("not a folder")
    fails_with(["train", TINY_SPEC, "--out", str(tmp_path / "file" / "run"), *QUICK],
               "a part of the path is a file, not a directory", capsys)
    fails_with(["summary", "cnn", "--diagram", str(tmp_path / "file" / "cnn.svg")], "not a directory", capsys)
    if Path("/dev/full").exists():
        run = copy_run("tinycnn", tmp_path)
        fails_with(["show", str(run), "--out", "/dev/full"], "/dev/full: a picture is written as", capsys)


# --- causes 5, 11, 15: checkpoints that cannot be used ---------------------------------------------------------------

def run_commands(run: Path) -> list[list[str]]:
    """The six commands that read a run's checkpoint."""
    return [["evaluate", str(run)], ["predict", str(run), "x.png"], ["show", str(run)], ["filters", str(run)],
            ["report", str(run)], ["train", "--resume", str(run), "--epochs", "3", "--quiet"]]


def test_a_zero_byte_checkpoint_is_a_message_in_every_run_command(tmp_path, capsys):
    run = copy_run("tinycnn", tmp_path)
    (run / "checkpoint.pt").write_bytes(b"")
    for argv in run_commands(run):
        fails_with(argv, "checkpoint.pt: the checkpoint is empty (0 bytes)", capsys)


def test_a_checkpoint_with_the_marker_but_no_model_is_a_message(tmp_path, capsys):
    run = copy_run("tinycnn", tmp_path)
    payload = torch.load(run / "checkpoint.pt", weights_only=True)
    del payload["model"]
    torch.save(payload, run / "checkpoint.pt")
    for argv in (["evaluate", str(run)], ["train", "--resume", str(run), "--epochs", "3", "--quiet"]):
        fails_with(argv, "a damaged convolab checkpoint: it has convolab's marker but no 'model' entry", capsys)


class RunsCode:
    """What a hostile checkpoint holds: an object whose unpickling runs a shell command."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_checkpoint_that_holds_code_is_called_so_and_never_run(tmp_path, capsys):
    run = copy_run("tinycnn", tmp_path)
    marker = tmp_path / "ran"
    torch.save({"format": "convolab-checkpoint", "version": 1, "model": RunsCode(marker)}, run / "checkpoint.pt")
    error = fails_with(["evaluate", str(run)], "the file contains code (posix.system)", capsys)
    assert "convolab refuses to run it" in error and "did not come from a convolab run" in error
    assert not marker.exists()


# --- cause 6: decompression bombs -------------------------------------------------------------------------------------

def huge_png(path: Path, width: int, height: int) -> Path:
    """A PNG whose header declares width x height gray pixels, in a few hundred bytes (rows of zeros, cut short)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    compressor = zlib.compressobj(9)
    rows = b"".join(compressor.compress(b"\0" * (width + 1)) for _ in range(4)) + compressor.flush()
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b""))
    return path


def write_gray(path: Path, value: int) -> None:
    from PIL import Image

    Image.fromarray(np.full((28, 28), value, dtype=np.uint8)).save(path)


def test_a_decompression_bomb_is_a_message_in_predict_and_skipped_in_a_folder(tmp_path, capsys):
    run = copy_run("tinydnn", tmp_path)
    bomb = huge_png(tmp_path / "bomb.png", 20000, 20000)
    assert main(["predict", str(run), str(bomb)]) == 2
    printed = capsys.readouterr()
    assert "is too large to decode (a decompression bomb guard" in printed.out
    assert "1 of 1 images could not be read" in printed.err and "internal error" not in printed.err
    for name in ("a", "b"):
        (tmp_path / "folder" / name).mkdir(parents=True)
        for index in range(5):
            write_gray(tmp_path / "folder" / name / f"{index}.png", 40 * index)
    huge_png(tmp_path / "folder" / "a" / "bomb.png", 20000, 20000)
    dataset = load_image_folder(tmp_path / "folder")
    assert len(dataset.train_images) + len(dataset.test_images) == 10
    assert any("bomb.png" in reason and "too large to decode" in reason for reason in dataset.skipped_files)


# --- cause 7: class names that are not plain text --------------------------------------------------------------------

def test_class_names_with_mathtext_and_undecodable_bytes_train_and_report(tmp_path, capsys):
    folder = tmp_path / "classes"
    for name in (b"caf\xe9", b"2$^$"):
        os.makedirs(os.path.join(bytes(folder), name))
        for index in range(5):
            write_gray(Path(os.fsdecode(os.path.join(bytes(folder), name, b"%d.png" % index))), 50 * index)
    out = tmp_path / "run"
    assert main(["train", TINY_SPEC, "--data", str(folder), "--epochs", "1", "--out", str(out), "--quiet"]) == 0
    assert json.loads((out / "config.json").read_text())["dataset"]["class_names"] == ["2$^$", "caf\\xe9"]
    assert (out / "confusion.png").is_file()
    assert main(["report", str(out)]) == 0
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "caf\\xe9" in page and "2$^$" in page


def test_class_names_with_line_breaks_and_control_characters_show_as_escapes_on_one_line(tmp_path, capsys):
    # A folder named "a\nb" split every table row its class was in (the hunt's finding); a tab shifted columns.
    folder = tmp_path / "classes"
    for name in ("a\nb", "tab\there", "plain"):
        (folder / name).mkdir(parents=True)
        for index in range(5):
            write_gray(folder / name / f"{index}.png", 50 * index)
    out = tmp_path / "run"
    assert main(["train", TINY_SPEC, "--data", str(folder), "--epochs", "1", "--out", str(out), "--quiet"]) == 0
    assert json.loads((out / "config.json").read_text())["dataset"]["class_names"] == ["a\\nb", "plain", "tab\\there"]
    capsys.readouterr()
    assert main(["evaluate", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "\t" not in printed
    per_class = printed.split("accuracy per class\n")[1].split("\n\n")[0].splitlines()
    assert [line.split()[1] for line in per_class] == ["a\\nb", "plain", "tab\\there"]    # one row each


# --- cause 8: nothing to test ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("per_class, flags", [(5, ["--test-split", "0"]), (1, [])])
def test_no_test_images_is_refused_before_training(tmp_path, capsys, per_class, flags):
    for name in ("a", "b"):
        (tmp_path / "folder" / name).mkdir(parents=True)
        for index in range(per_class):
            write_gray(tmp_path / "folder" / name / f"{index}.png", 40 * index)
    out = tmp_path / "run"
    fails_with(["train", TINY_SPEC, "--data", str(tmp_path / "folder"), "--out", str(out), *flags],
               "no test images", capsys)
    assert not out.exists()


# --- cause 9: out of memory ------------------------------------------------------------------------------------------

def test_a_model_that_cannot_fit_in_memory_is_refused_with_the_figure(tmp_path, capsys):
    error = fails_with(["train", "flatten,dense1000000000,dense", "--out", str(tmp_path / "big"), *QUICK],
                       "this model cannot train in the memory of cpu", capsys)
    assert "795,000,000,010 parameters" in error and "TB" in error and "smaller model" in error
    assert not (tmp_path / "big").exists()


def test_an_allocation_that_fails_anyway_is_a_message(tmp_path, capsys):
    # 70,000 images fitted into 4096x4096: terabytes, far beyond any machine's memory and swap.
    fails_with(["train", "cnn", "--image-size", "4096,4096", "--out", str(tmp_path / "big"), *QUICK],
               "out of memory", capsys)


# --- causes 13, 14, 16: messages that mislead ------------------------------------------------------------------------

def test_a_validation_split_that_leaves_no_training_images_is_refused(tmp_path, capsys):
    fails_with(["train", TINY_SPEC, "--validation-split", "0.9999", "--train-limit", "10", "--offline",
                "--out", str(tmp_path / "run")], "validation_split=0.9999 of 10 images leaves 0 to train on", capsys)


def test_a_run_stopped_before_its_first_checkpoint_is_started_again_in_place(tmp_path, capsys):
    run = copy_run("tinydnn", tmp_path)
    for name in ("checkpoint.pt", "best.pt", "metrics.json", "history.json", "history.csv"):
        (run / name).unlink()
    (run / "notes.txt").write_text("mine")   # a file of the user's: only --overwrite trains there (and keeps it)
    for argv in (["train", "--resume", str(run), "--quiet"], ["train", TINY_SPEC, "--out", str(run), *QUICK],
                 ["evaluate", str(run)]):
        error = fails_with(argv, "stopped before its first checkpoint", capsys)
        assert f"--out {run} --overwrite" in error
    (run / "notes.txt").unlink()   # config.json alone: nothing to lose, the command needs no --overwrite
    for argv in (["train", "--resume", str(run), "--quiet"], ["evaluate", str(run)]):
        assert fails_with(argv, "stopped before its first checkpoint", capsys).endswith(f"--out {run}\n")
    assert main(["train", TINY_SPEC, "--out", str(run), *QUICK]) == 0


def test_compare_says_a_missing_run_directory_is_missing(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fails_with(["compare", "nope/", "dnn", *QUICK], "nope/: no such run directory or spec file", capsys)


# --- cause 19: what a kill -9 mid-write leaves -----------------------------------------------------------------------

def test_temporaries_of_a_killed_write_are_removed_at_the_next_start(tmp_path):
    run = copy_run("tinydnn", tmp_path)
    leftovers = [run / ".checkpoint.pt.k9x2ab_c.tmp", run / ".best.pt.0aZ9_qq1.tmp"]
    for leftover in leftovers:
        leftover.write_bytes(b"\0" * 4096)   # what a writer killed mid-write leaves
    unrelated = run / ".notes.txt.tmp"
    unrelated.write_text("someone else's")
    assert main(["train", "--resume", str(run), "--epochs", "3", "--quiet"]) == 0
    assert not any(leftover.exists() for leftover in leftovers) and unrelated.exists()
