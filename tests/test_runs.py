"""Run directories: what is written, read back as a Run; not-a-run, corrupted and other-spec checkpoints refused."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch

from convolab.errors import RunError
from convolab.experiment import resume_run
from convolab.runs import (RunDirectory, atomic_write_text, history_csv, load_run, next_free_directory,
                           read_checkpoint)
from convolab.train import QuietProgress
from train_fixtures import fashion, train_tiny_run


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "tiny"
    result = train_tiny_run(out, epochs=2)
    return out, result


def test_a_run_directory_holds_the_documented_files(finished):
    out, result = finished
    assert sorted(path.name for path in out.iterdir()) == [
        "best.pt", "checkpoint.pt", "config.json", "history.csv", "history.json", "metrics.json"]
    config = json.loads((out / "config.json").read_text())
    assert config["spec_line"] == result.spec.to_line() and config["train"]["seed"] == 0
    assert config["dataset"]["name"] == "fashion-mnist" and config["dataset"]["input_shape"] == [28, 28, 1]
    assert config["versions"]["torch"] == torch.__version__ and config["device"] == "cpu"
    assert (out / "history.csv").read_text().splitlines()[0] == "epoch,loss,accuracy,val_loss,val_accuracy,seconds,cpu_seconds"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test_count"] == 200 and len(metrics["confusion_matrix"]) == 10


def test_load_run_gives_back_the_model_with_its_weights_history_and_metrics(finished):
    out, result = finished
    run = load_run(out)
    for key, value in result.model.state_dict().items():
        assert torch.equal(run.model.state_dict()[key], value.cpu())
    assert run.history == result.history and run.metrics["test_accuracy"] == result.evaluation.accuracy
    assert run.status == "finished" and run.class_names[9] == "Ankle boot"


def test_checkpoints_load_with_weights_only(finished):
    out, _ = finished
    payload = torch.load(out / "checkpoint.pt", weights_only=True)   # raises if anything but plain data is inside
    assert payload["format"] == "convolab-checkpoint" and payload["epoch"] == 2


@pytest.mark.parametrize("make, expected", [
    (lambda tmp: tmp / "missing", "no such run directory"),
    (lambda tmp: (tmp / "file.txt").write_text("x") and tmp / "file.txt", "it is a file"),
    (lambda tmp: (tmp / "empty").mkdir() or tmp / "empty", "no config.json or checkpoint.pt"),
])
def test_a_path_that_is_not_a_run_is_refused(tmp_path, make, expected):
    with pytest.raises(RunError, match=expected):
        load_run(make(tmp_path))


def test_a_corrupted_checkpoint_is_refused_and_nothing_is_overwritten(finished, tmp_path):
    out, _ = finished
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("config.json", "history.json", "metrics.json"):
        (broken / name).write_bytes((out / name).read_bytes())
    data = (out / "checkpoint.pt").read_bytes()
    (broken / "checkpoint.pt").write_bytes(data[: len(data) // 2])   # a torn file
    before = {path.name: path.read_bytes() for path in broken.iterdir()}
    with pytest.raises(RunError, match="the checkpoint is truncated or damaged"):
        load_run(broken)
    with pytest.raises(RunError, match="the checkpoint is truncated or damaged"):
        resume_run(broken, epochs=3)
    assert {path.name: path.read_bytes() for path in broken.iterdir()} == before


def test_a_truncated_checkpoint_says_so_without_torchs_words_and_points_to_an_intact_best(finished, tmp_path, capsys):
    from convolab.cli import main

    run = copy_of_run(finished[0], tmp_path / "run")
    (run / "best.pt").write_bytes((finished[0] / "best.pt").read_bytes())
    os.truncate(run / "checkpoint.pt", 90_000)   # `truncate -s 90000`: a copy cut short
    with pytest.raises(RunError) as caught:
        load_run(run)
    message = str(caught.value)
    assert "checkpoint.pt: the checkpoint is truncated or damaged (90,000 bytes" in message
    assert "Pytorch" not in message and "miniz" not in message and "central directory" not in message
    assert f"best.pt is intact: read its weights with `convolab evaluate {run} --weights best`" in message
    best = load_run(run, weights="best")   # best.pt alone holds what it needs: the history comes from history.json
    assert best.history == json.loads((run / "history.json").read_text())
    assert main(["evaluate", str(run), "--weights", "best", "--test-limit", "50", "--offline"]) == 0
    assert "50 images" in capsys.readouterr().out
    (run / "best.pt").unlink()   # no intact best.pt: restore the file or train again
    with pytest.raises(RunError, match="restore the file from a copy"):
        load_run(run)


def copy_of_run(out, folder):
    folder.mkdir()
    for name in ("config.json", "history.json", "metrics.json", "checkpoint.pt"):
        (folder / name).write_bytes((out / name).read_bytes())
    return folder


def test_random_bytes_in_a_checkpoint_are_corruption_without_torchs_advice(finished, tmp_path):
    run = copy_of_run(finished[0], tmp_path / "run")
    (run / "checkpoint.pt").write_bytes(bytes(range(256)) * 400)       # not a zip: torch falls back to unpickling
    with pytest.raises(RunError, match="corrupted checkpoint") as caught:
        load_run(run)
    assert "weights_only" not in str(caught.value)                     # never torch's advice to load unsafely


@pytest.mark.parametrize("name", ["config.json", "checkpoint.pt"])
def test_a_run_file_another_user_cannot_read_is_permission_denied_not_corruption(finished, name):
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("reading as another user needs root and setpriv (CI runs the tests as root)")
    folder = Path(tempfile.mkdtemp(prefix="convolab-permission-"))    # outside pytest's 0700 folder: others may enter
    try:
        folder.chmod(0o755)
        run = copy_of_run(finished[0], folder / "run")
        run.chmod(0o755)
        for path in run.iterdir():
            path.chmod(0o644)
        (run / name).chmod(0o600)                                      # root's alone
        as_nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c"]
        if subprocess.run([*as_nobody, "import convolab.runs"], capture_output=True, timeout=120).returncode != 0:
            pytest.skip("another user cannot import convolab from this checkout (its folder is private)")
        code = f"from convolab.runs import load_run\ntry:\n    load_run({str(run)!r})\nexcept Exception as e:\n" \
               f"    print(type(e).__name__, e)"
        result = subprocess.run([*as_nobody, code], capture_output=True, text=True, timeout=120)
        assert "RunError" in result.stdout and "permission denied" in result.stdout, result.stdout + result.stderr
        assert "chmod u+r" in result.stdout and "corrupted" not in result.stdout
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_a_pickled_object_in_a_checkpoint_is_not_loaded(tmp_path):
    torch.save({"format": "convolab-checkpoint", "evil": RunDirectory(tmp_path)}, tmp_path / "checkpoint.pt")
    with pytest.raises(RunError, match="contains code .convolab.runs.RunDirectory.*refuses to run it"):
        read_checkpoint(tmp_path / "checkpoint.pt")


def test_a_checkpoint_from_another_spec_names_the_layers_that_differ(finished, tmp_path):
    out, _ = finished
    other = tmp_path / "other"
    other.mkdir()
    config = json.loads((out / "config.json").read_text())
    config["spec"]["layers"][1]["units"] = 32          # dense16 -> dense32: the checkpoint no longer fits
    (other / "config.json").write_text(json.dumps(config))
    (other / "checkpoint.pt").write_bytes((out / "checkpoint.pt").read_bytes())
    with pytest.raises(RunError) as raised:
        load_run(other)
    message = str(raised.value)
    assert "another model spec" in message
    assert "layer 2 (dense, Dense): blocks.1.linear.weight is (16, 784) in the checkpoint, the model expects (32, 784)" \
        in message
    assert "layer 3 (dense_1, Dense)" in message and "layer 1" not in message


def test_writing_over_a_run_is_refused_unless_asked(finished, tmp_path):
    out, _ = finished
    with pytest.raises(RunError, match="already holds a run"):
        RunDirectory(out).create()
    assert next_free_directory(out) == out.with_name("tiny-2")


def test_resuming_a_finished_run_says_there_is_nothing_to_do(finished):
    out, _ = finished
    with pytest.raises(RunError, match="nothing to resume"):
        resume_run(out)


def test_atomic_write_leaves_no_temporary_files_and_replaces_whole(tmp_path):
    path = tmp_path / "a.json"
    atomic_write_text(path, "one")
    atomic_write_text(path, "two")
    assert path.read_text() == "two" and os.listdir(tmp_path) == ["a.json"]


def test_history_csv_leaves_absent_metrics_empty():
    text = history_csv([{"epoch": 1, "loss": 0.5, "accuracy": 0.8, "seconds": 1.0}])
    assert text.splitlines()[1] == "1,0.5,0.8,,,1.0,"


def test_resume_through_the_cli_path_gives_exactly_the_uninterrupted_weights_for_a_small_cnn(tmp_path):
    # The whole path `convolab train` and `--resume` take (train_run, resume_run), with a convolution and pooling, so
    # whatever engine trains the ConvNet is covered too. Interrupted by a callback after epoch 1 of 2.
    from convolab.callbacks import LambdaCallback
    from convolab.train import TrainingInterrupted

    spec = "conv4x3,pool2,flatten,dense"
    straight = train_tiny_run(tmp_path / "straight", spec=spec, epochs=2, train=256, test=50)

    def interrupt(state):
        if state.epoch == 1:
            raise KeyboardInterrupt
    with pytest.raises(TrainingInterrupted):
        train_tiny_run(tmp_path / "stopped", spec=spec, epochs=2, train=256, test=50,
                       callbacks=[LambdaCallback(on_epoch_end=interrupt)])
    resumed = resume_run(tmp_path / "stopped", dataset=fashion(), progress=QuietProgress())
    for key, value in straight.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[key], value), key
    assert resumed.evaluation.accuracy == straight.evaluation.accuracy
    assert json.loads((tmp_path / "stopped" / "history.json").read_text())[1]["loss"] == straight.history[1]["loss"]


def test_atomic_writes_follow_the_umask_not_mkstemps_0600(tmp_path):
    import stat

    from convolab.runs import atomic_write_text

    previous = os.umask(0o027)
    try:
        path = atomic_write_text(tmp_path / "config.json", "{}")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["config.json"]   # no temporary file left behind


def test_a_run_in_its_first_epoch_names_the_process_training_it_not_a_failure(tmp_path, capsys):
    from convolab.cli import main
    from convolab.runs import RunLock

    out = tmp_path / "run"
    train_tiny_run(out)
    (out / "checkpoint.pt").unlink()   # what a training in its first epoch has written: config.json, no checkpoint
    with RunLock(out):   # this process holds the run's lock as a training does (a flock on RUN/.lock, pid inside)
        for argv in (["evaluate", str(out)], ["show", str(out)], ["train", "--resume", str(out)]):
            assert main(argv) == 2
            error = capsys.readouterr().err
            assert f"process {os.getpid()} is training it right now" in error and "wait for it to finish" in error
            assert "--overwrite" not in error and "killed" not in error, error
    assert main(["evaluate", str(out)]) == 2   # the lock gone with its holder: a run that stopped, as before
    assert "stopped before its first checkpoint" in capsys.readouterr().err


def test_a_config_whose_class_names_were_edited_is_named_as_such_by_load_and_resume(finished, tmp_path):
    out, _ = finished
    copy = tmp_path / "edited"
    shutil.copytree(out, copy)
    config = json.loads((copy / "config.json").read_text())
    config["dataset"]["class_names"] = ["a", "b"]
    (copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(RunError, match="config.json: its model does not fit its own data record") as refused:
        load_run(copy)
    assert "expected 2, one per class" in refused.value.message and "restore config.json" in refused.value.fix
    with pytest.raises(RunError, match="10 classes; config.json records fashion-mnist, \\(28, 28, 1\\), 2 classes"):
        resume_run(copy, dataset=fashion(), epochs=3, progress=QuietProgress())


def test_data_with_as_many_classes_under_other_names_is_named_as_such(finished, tmp_path, capsys):
    from PIL import Image

    from convolab.cli import main

    out, _ = finished
    for digit in range(10):                          # ten classes, as the run's, but digits instead of clothes
        (tmp_path / "digits" / str(digit)).mkdir(parents=True)
        for index in range(2):
            Image.new("L", (28, 28), 20 * digit).save(tmp_path / "digits" / str(digit) / f"{index}.png")
    assert main(["evaluate", str(out), "--data", str(tmp_path / "digits")]) == 2
    # Was: "... 10 classes does not fit the run, which was trained on ... in 10 classes", and no word of the names.
    assert "(its classes: 0, 1, 2, 3, 4, 5, 6, 7, 8, 9; the run's: T-shirt/top, Trouser," in capsys.readouterr().err
