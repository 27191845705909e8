"""Evaluation arithmetic against hand-computed cases, and the printed report against a golden file."""
from __future__ import annotations

import math
import warnings
from pathlib import Path

import pytest
import torch

from convolab.evaluate import (ConfusedPair, confusion_matrix, evaluate_logits, evaluate_model, loss_and_accuracy,
                               most_confused, normalize_rows, per_class_accuracy, predict_logits, render_evaluation,
                               top_losses)
from convolab.model import model_device

GOLDEN = Path(__file__).parent / "golden"

# Hand-made case, 3 classes, 8 samples:
#   true      0 0 0 1 1 2 2 2
#   predicted 0 1 0 1 2 2 2 0
# Counts (rows true, columns predicted):  [[2, 1, 0], [0, 1, 1], [1, 0, 2]]
TRUE = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2])
PREDICTED = torch.tensor([0, 1, 0, 1, 2, 2, 2, 0])
COUNTS = [[2, 1, 0], [0, 1, 1], [1, 0, 2]]


def test_confusion_matrix_against_the_hand_computed_counts():
    assert confusion_matrix(TRUE, PREDICTED, 3).tolist() == COUNTS


def test_rows_normalized_and_per_class_accuracy():
    normalized = normalize_rows(torch.tensor(COUNTS))
    expected = [[2 / 3, 1 / 3, 0], [0, 1 / 2, 1 / 2], [1 / 3, 0, 2 / 3]]
    assert torch.allclose(normalized, torch.tensor(expected, dtype=torch.float64))
    assert per_class_accuracy(torch.tensor(COUNTS)) == pytest.approx([2 / 3, 1 / 2, 2 / 3])


def test_a_class_without_samples_has_no_accuracy_and_a_zero_row():
    counts = confusion_matrix(torch.tensor([0, 0]), torch.tensor([0, 1]), 3)
    assert per_class_accuracy(counts)[1:] == [None, None]
    assert normalize_rows(counts)[2].tolist() == [0.0, 0.0, 0.0]


def test_most_confused_pairs_are_the_largest_off_diagonal_counts():
    # Off-diagonal ones: (0->1) 1 of 3, (1->2) 1 of 2, (2->0) 1 of 3; ties broken by true class.
    pairs = most_confused(torch.tensor(COUNTS), top=2)
    assert pairs == [ConfusedPair(0, 1, 1, 1 / 3), ConfusedPair(1, 2, 1, 1 / 2)]


def test_top_losses_with_true_and_predicted_probabilities():
    # Sample 0: logits (0, ln 3) label 0 -> p = (1/4, 3/4): loss ln 4, predicted 1 with 0.75.
    # Sample 1: logits (ln 9, 0) label 0 -> p = (0.9, 0.1): loss -ln 0.9, predicted 0.
    logits = torch.tensor([[0.0, math.log(3)], [math.log(9), 0.0]])
    worst = top_losses(logits, torch.tensor([0, 0]), top=1)[0]
    assert (worst.index, worst.true_class, worst.predicted_class) == (0, 0, 1)
    assert worst.loss == pytest.approx(math.log(4))
    assert (worst.true_probability, worst.predicted_probability) == pytest.approx((0.25, 0.75))


def test_loss_and_accuracy_from_logits():
    logits = torch.tensor([[0.0, math.log(3)], [math.log(9), 0.0]])
    loss, accuracy = loss_and_accuracy(logits, torch.tensor([0, 0]))
    assert loss == pytest.approx((math.log(4) - math.log(0.9)) / 2)
    assert accuracy == 0.5


def test_the_printed_report_matches_the_golden_file():
    # Logits that predict PREDICTED: a 2.0 logit on the predicted class, zeros elsewhere.
    logits = torch.zeros(8, 3)
    logits[torch.arange(8), PREDICTED] = 2.0
    evaluation = evaluate_logits(logits, TRUE, ["cat", "dog", "bird"], top_k_losses=3)
    assert evaluation.confusion.tolist() == COUNTS
    text = render_evaluation(evaluation) + "\n"
    assert text == (GOLDEN / "evaluate_report.txt").read_text()
    metrics = evaluation.to_dict()
    assert metrics["per_class_accuracy"]["dog"] == 0.5 and metrics["confusion_matrix"] == COUNTS


# --- a run's image folder changed since it trained --------------------------------------------------------------------

@pytest.mark.parametrize("change", ["add", "remove", "touch"])
def test_evaluating_a_run_whose_image_folder_changed_warns_in_one_line_and_still_measures(tmp_path, capsys, change):
    from convolab.cli import main
    from convolab.runconfig import FolderChangedWarning
    from train_fixtures import change_folder, train_folder_run

    folder, run = train_folder_run(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FolderChangedWarning)   # unchanged: not a word
        assert main(["evaluate", str(run)]) == 0
    named = change_folder(folder, change)
    # Was: measured the new split (images the model trained on among them) as if it were the run's test set.
    with warnings.catch_warnings(record=True) as caught:     # the CLI prints each as one "warning:" line
        warnings.simplefilter("always")
        assert main(["evaluate", str(run)]) == 0
    messages = [str(warning.message) for warning in caught if warning.category is FolderChangedWarning]
    assert len(messages) == 1 and "\n" not in messages[0], messages
    consequence = ("the split is the same, but these images may not be the ones the run saw" if change == "touch"
                   else "the test split is no longer the one the run was trained with")
    assert f"{folder}: the folder changed since the run trained" in messages[0] and named in messages[0]
    assert consequence in messages[0], messages[0]
    assert "accuracy" in capsys.readouterr().out              # still measured: the user may want the new folder


def test_a_run_recorded_without_its_folders_files_evaluates_without_a_warning(tmp_path, capsys):
    import json

    from convolab.cli import main
    from convolab.runconfig import FolderChangedWarning
    from train_fixtures import change_folder, train_folder_run

    folder, run = train_folder_run(tmp_path)
    config = json.loads((run / "config.json").read_text())
    del config["dataset"]["files"]                           # as a run written before the record was kept
    (run / "config.json").write_text(json.dumps(config))
    change_folder(folder, "add")
    capsys.readouterr()
    with warnings.catch_warnings():
        warnings.simplefilter("error", FolderChangedWarning)   # would fail the command
        assert main(["evaluate", str(run)]) == 0
    assert "warning" not in capsys.readouterr().err


# --- another folder of labelled images --------------------------------------------------------------------------------

def test_evaluating_on_another_folder_measures_every_image_and_the_runs_own_folder_its_split(tmp_path, capsys):
    # Was: --data NEW_FOLDER measured only the 20% a split would hold out, and --test-split 0 refused ("no test images")
    import shutil

    from convolab.cli import main
    from train_fixtures import train_folder_run

    folder, run = train_folder_run(tmp_path)
    other = tmp_path / "new-photos"
    shutil.copytree(folder, other)

    def first_line(*arguments) -> str:
        capsys.readouterr()
        assert main(["evaluate", str(run), *arguments]) == 0
        return capsys.readouterr().out.splitlines()[0]

    assert f"on photos test: 2 images" in first_line()                          # the run's held-out images
    assert f"on photos test: 2 images" in first_line("--data", str(folder))       # the same folder, named
    assert f"on photos every image: 8 images" in first_line("--data", str(folder), "--test-split", "0")
    assert f"on new-photos every image: 8 images" in first_line("--data", str(other))
    assert f"on new-photos test: 4 images" in first_line("--data", str(other), "--test-split", "0.5")


def test_the_runs_own_folder_named_again_is_split_with_the_runs_own_seed(tmp_path, capsys):
    # Was: evaluate's data flags carried seed 0 (evaluate has no --seed) over the recorded one, so a run trained with
    # --seed 3 was measured on another split of its own folder, training images among them, when --data named it.
    import json

    from convolab.cli import main
    from PIL import Image

    folder = tmp_path / "photos"
    for label, name in enumerate(("dark", "light")):
        (folder / name).mkdir(parents=True)
        for index in range(10):
            Image.new("L", (8, 8), 20 + 100 * label + 9 * index).save(folder / name / f"{index}.png")
    run = tmp_path / "run"
    assert main(["train", "flatten,dense", "--data", str(folder), "--image-size", "8,8", "--epochs", "1", "--seed",
                 "3", "--quiet", "--out", str(run)]) == 0

    def measured(*arguments) -> dict:
        capsys.readouterr()
        assert main(["evaluate", str(run), "--json", *arguments]) == 0
        return json.loads(capsys.readouterr().out)

    recorded = measured()
    assert measured("--data", str(folder)) == recorded
    assert measured("--channels", "1") == recorded


class _ParametersElsewhere(torch.nn.Module):
    """A model whose weights live on PyTorch's "meta" device, standing in for a GPU on a machine without one: it
    records where each batch it is given lives and answers zeros on the CPU."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.empty(3, device="meta"))
        self.batch_devices: list[torch.device] = []

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self.batch_devices.append(images.device)
        return torch.zeros(len(images), 3)


def test_predictions_run_where_the_model_lives_unless_told_otherwise():
    # A model trained on a GPU was measured with its batches on the CPU: evaluate_model(model, ...) after
    # fit(..., device="cuda") failed with "Input type ... and weight type (torch.cuda.FloatTensor) should be the same"
    # (seen on an H200, recipe trials on CUDA).
    images, labels = torch.zeros(5, 1, 4, 4, dtype=torch.uint8), torch.tensor([0, 1, 2, 0, 1])
    model = _ParametersElsewhere()
    assert predict_logits(model, images, batch_size=2).shape == (5, 3)
    assert model.batch_devices == [torch.device("meta")] * 3
    evaluation = evaluate_model(model, images, labels, ["a", "b", "c"], test_time_flip=True)
    assert model.batch_devices[3:] == [torch.device("meta")] * 2       # each image and its mirror, one batch each
    assert evaluation.accuracy == pytest.approx(2 / 5)                  # zeros: class 0 everywhere
    assert model_device(torch.nn.ReLU()) == torch.device("cpu")         # no weights: the CPU
