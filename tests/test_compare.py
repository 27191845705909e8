"""compare: several models on the same data and seed, reused runs, epochs to a target, the table."""
from __future__ import annotations

from pathlib import Path

import pytest

from convolab.compare import (Comparison, ComparisonRow, compare_models, epochs_to_target, render_comparison)
from convolab.callbacks import StopAtTarget
from convolab.experiment import DataSelection
from convolab.train import QuietProgress, TrainConfig
from train_fixtures import fashion, train_tiny_run

GOLDEN = Path(__file__).parent / "golden"
SELECTION = DataSelection(options={"source": "fashion-mnist", "offline": True}, train_limit=320, test_limit=200)


def test_two_models_are_trained_on_the_same_data_and_seed_with_their_costs(tmp_path):
    config = TrainConfig(epochs=2, validation_split=0.25, device="cpu")
    comparison = compare_models(["flatten,dense8,dense", "flatten,dense16,dense"], fashion(), config, tmp_path,
                                selection=SELECTION, stop_at="loss<50", progress=QuietProgress())
    small, large = comparison.rows
    # Parameters as Keras counts them: 784*8+8 + 8*10+10 and 784*16+16 + 16*10+10; multiply-adds without the biases.
    assert (small.params, small.macs) == (6370, 784 * 8 + 8 * 10)
    assert (large.params, large.macs) == (12730, 784 * 16 + 16 * 10)
    assert small.epochs_to_target == 1 and small.epochs == 1        # the target stops training
    assert small.best_val_accuracy is not None and 0 <= small.test_accuracy <= 1
    table = render_comparison(comparison)
    assert "epochs to loss<50" in table and "12,730" in table
    # the second time, the finished runs of the same settings are reused, not retrained
    again = compare_models(["flatten,dense8,dense", "flatten,dense16,dense"], fashion(), config, tmp_path,
                           selection=SELECTION, stop_at="loss<50", progress=QuietProgress())
    assert [row.reused for row in again.rows] == [True, True] and not again.results
    assert [row.test_accuracy for row in again.rows] == [row.test_accuracy for row in comparison.rows]


def test_a_reused_run_stopped_before_its_pictures_gets_them_drawn(tmp_path):
    from convolab.plots import write_run_pictures

    config, specs = TrainConfig(epochs=1, device="cpu"), ["flatten,dense8,dense"]
    compare_models(specs, fashion(), config, tmp_path, selection=SELECTION, progress=QuietProgress(),
                   on_train_end=[write_run_pictures])
    [run] = [path.parent for path in tmp_path.glob("*/metrics.json")]
    (run / "confusion.png").unlink()                 # as a Ctrl-C between metrics.json and the pictures leaves it
    again = compare_models(specs, fashion(), config, tmp_path, selection=SELECTION, progress=QuietProgress(),
                           on_train_end=[write_run_pictures])
    assert again.rows[0].reused and (run / "confusion.png").is_file()


def test_a_run_directory_is_reused_and_a_different_setting_is_noted(tmp_path):
    result = train_tiny_run(tmp_path / "old", epochs=1, seed=3)
    comparison = compare_models([str(tmp_path / "old")], fashion(), TrainConfig(epochs=2, device="cpu"),
                                tmp_path / "new", selection=SELECTION, progress=QuietProgress())
    [row] = comparison.rows
    assert row.reused and row.test_accuracy == result.evaluation.accuracy
    assert "seed 3 (here 0)" in comparison.notes[0] and "epochs 1 (here 2)" in comparison.notes[0]


def test_a_run_trained_differently_under_out_is_never_replaced_without_retrain(tmp_path, capsys):
    from convolab.cli import main
    from convolab.errors import RunError

    spec = "flatten,dense8,dense"
    train_tiny_run(tmp_path / "out" / "mine", spec=spec, epochs=2)          # the user's own run, two epochs
    before = (tmp_path / "out" / "mine" / "checkpoint.pt").read_bytes()
    with pytest.raises(RunError, match="holds a run trained differently"):
        compare_models([spec], fashion(), TrainConfig(epochs=1, device="cpu"), tmp_path / "out", selection=SELECTION,
                       progress=QuietProgress(), names=["mine"])
    assert (tmp_path / "out" / "mine" / "checkpoint.pt").read_bytes() == before
    argv = ["compare", spec, "--out", str(tmp_path / "cli"), "--train-limit", "320", "--test-limit", "200",
            "--offline", "--quiet"]
    assert main([*argv, "--epochs", "2"]) == 0
    [run] = [path.parent for path in (tmp_path / "cli").glob("*/checkpoint.pt")]
    first = (run / "checkpoint.pt").read_bytes()
    assert main([*argv, "--epochs", "1"]) == 2 and "--retrain" in capsys.readouterr().err
    assert (run / "checkpoint.pt").read_bytes() == first
    assert main([*argv, "--epochs", "1", "--retrain"]) == 0                 # asked for: trained again in its place
    assert (run / "checkpoint.pt").read_bytes() != first


def test_epochs_to_target_is_the_first_epoch_that_meets_it():
    history = [{"epoch": 1, "accuracy": 0.8}, {"epoch": 2, "accuracy": 0.91}, {"epoch": 3, "accuracy": 0.95}]
    assert epochs_to_target(history, StopAtTarget.parse("acc>=0.9")) == 2
    assert epochs_to_target(history, StopAtTarget.parse("acc>=0.99")) is None
    assert epochs_to_target(history, None) is None


def test_the_table_matches_the_golden_file():
    rows = [ComparisonRow("dnn", "flatten,dense128,dense10-softmax", 101770, 101632, 9.71, 0.8912, None, 0.8687, 5, 5,
                          "runs/lab/dnn", cpu_seconds_per_epoch=18.9),
            ComparisonRow("cnn", "conv64x3,...", 243786, 6_562_176, 38.2, 0.9265, None, 0.9103, 5, None, "runs/lab/cnn",
                          busy_epochs=[3])]
    text = render_comparison(Comparison(rows=rows, stop_at="accuracy>=0.9")) + "\n"
    assert text == (GOLDEN / "compare_table.txt").read_text()


def test_a_one_line_model_longer_than_a_file_name_is_a_model_not_a_path():
    from convolab.compare import is_run_directory, is_run_entry

    line = "conv4x3same," * 30 + "flatten,dense"
    assert not is_run_entry(line) and not is_run_directory(line)


@pytest.mark.parametrize("bad", ["conv8x30,flatten,dense", "cnnn", "conv0x3,flatten,dense"])
def test_every_model_is_checked_before_the_first_one_trains(tmp_path, bad):
    # the last model's window larger than the images (or a typo) used to end the comparison after the others trained
    from convolab.errors import SpecError

    config = TrainConfig(epochs=1, device="cpu")
    with pytest.raises(SpecError) as refused:
        compare_models(["flatten,dense8,dense", bad], fashion(), config, tmp_path, selection=SELECTION,
                       progress=QuietProgress())
    assert ("conv8x30" in refused.value.message) == ("conv8x30" in bad)   # which model: named
    assert list(tmp_path.iterdir()) == []


def test_a_comparison_on_an_image_folder_changed_since_neither_reuses_nor_replaces_its_runs(tmp_path, capsys):
    from convolab.cli import main
    from convolab.data import load_dataset
    from train_fixtures import change_folder, train_folder_run

    folder, run = train_folder_run(tmp_path)
    argv = ["compare", "flatten,dense", "--data", str(folder), "--image-size", "8,8", "--epochs", "1",
            "--out", str(tmp_path / "cmp"), "--quiet"]
    assert main(argv) == 0
    [trained] = [path.parent for path in (tmp_path / "cmp").glob("*/checkpoint.pt")]
    assert main(argv) == 0                                   # unchanged: the finished run is reused
    first = (trained / "checkpoint.pt").read_bytes()
    change_folder(folder, "touch")                           # a copy without the files' times: the same split
    assert main(argv) == 0 and (trained / "checkpoint.pt").read_bytes() == first   # reused, not trained again
    named = change_folder(folder, "remove")
    capsys.readouterr()
    # Was: reused, its accuracy on the old split set beside runs measured on the new one.
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert "before the folder changed (0 files added, 1 removed, 0 changed: " + named in error and "--retrain" in error
    assert (trained / "checkpoint.pt").read_bytes() == first
    assert main([*argv, "--retrain"]) == 0
    # A run named as an entry is the user's choice: in the table, its other test split in the notes.
    comparison = compare_models([str(run)], load_dataset(folder, image_size=(8, 8), progress=False),
                                TrainConfig(epochs=1, device="cpu"), tmp_path / "other", progress=QuietProgress())
    assert comparison.rows[0].reused and "before the folder changed (1 file(s)" in comparison.notes[0]
