"""Callbacks: the stop-at-target parser (acc for accuracy), metric names checked first, early stopping, checkpoints."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from convolab.callbacks import Checkpoint, EarlyStopping, StopAtTarget, canonical_metric
from convolab.errors import TrainingError
from convolab.runs import RunDirectory, read_checkpoint
from convolab.train import QuietProgress, TrainConfig, fit
from train_fixtures import fashion, tiny_mlp

METRICS = {"loss", "accuracy", "val_loss", "val_accuracy"}


@pytest.mark.parametrize("text, metric, comparison, target", [
    ("accuracy>=0.998", "accuracy", ">=", 0.998),
    ("acc>=0.998", "accuracy", ">=", 0.998),              # the course's own callback breaks on exactly this
    (" val_acc > 0.9 ", "val_accuracy", ">", 0.9),
    ("loss<0.4", "loss", "<", 0.4),
    ("val_loss<=1e-1", "val_loss", "<=", 0.1),
])
def test_stop_at_target_parses_the_lab_forms(text, metric, comparison, target):
    stop = StopAtTarget.parse(text)
    assert (stop.metric, stop.comparison, stop.target) == (metric, comparison, target)


@pytest.mark.parametrize("text", ["accuracy", "accuracy=>0.9", ">=0.9", "accuracy>=high", "accuracy>=nan", ""])
def test_stop_at_target_rejects_malformed_text(text):
    with pytest.raises(TrainingError, match="--stop-at"):
        StopAtTarget.parse(text)


def test_an_unknown_metric_is_an_error_listing_the_valid_names_before_training():
    with pytest.raises(TrainingError) as raised:
        StopAtTarget.parse("accurcy>=0.9").check({"loss", "accuracy"})
    assert "'accurcy'" in str(raised.value) and "use one of: accuracy, loss" in str(raised.value)
    with pytest.raises(TrainingError, match="--validation-split"):
        StopAtTarget.parse("val_acc>=0.9").check({"loss", "accuracy"})


def test_fit_checks_metric_names_before_the_first_step():
    model = tiny_mlp()
    before = {key: value.clone() for key, value in model.state_dict().items()}
    full = fashion()
    with pytest.raises(TrainingError, match="val_accuracy"):
        fit(model, (full.train_images[:64], full.train_labels[:64]), TrainConfig(epochs=1, device="cpu"),
            callbacks=[StopAtTarget.parse("val_acc>=0.5")], progress=QuietProgress())
    assert all(torch.equal(before[key], value) for key, value in model.state_dict().items())   # nothing trained


def test_stop_at_target_stops_training_at_the_first_epoch_that_reaches_it():
    full = fashion()
    state = fit(tiny_mlp(), (full.train_images[:320], full.train_labels[:320]), TrainConfig(epochs=5, device="cpu"),
                callbacks=[StopAtTarget.parse("acc>=0.0")], progress=QuietProgress())
    assert state.epoch == 1 and "reached accuracy" in state.stop_reason


def _state(model, epoch, **logs):
    return SimpleNamespace(model=model, epoch=epoch, logs=logs, run=None)


def test_early_stopping_waits_patience_epochs_then_restores_the_best_weights():
    model = torch.nn.Linear(1, 1)
    stopping = EarlyStopping(patience=2)
    stopping.check(METRICS)
    with torch.no_grad():
        model.weight.fill_(1.0)
    assert stopping.on_epoch_end(_state(model, 1, val_loss=0.50)) is None
    with torch.no_grad():
        model.weight.fill_(2.0)
    assert stopping.on_epoch_end(_state(model, 2, val_loss=0.40)) is None    # better: remember weight 2
    with torch.no_grad():
        model.weight.fill_(3.0)
    assert stopping.on_epoch_end(_state(model, 3, val_loss=0.45)) is None    # worse, wait 1 of 2
    reason = stopping.on_epoch_end(_state(model, 4, val_loss=0.41))          # worse, wait 2 of 2: stop
    assert "did not improve for 2 epochs" in reason and "epoch 2" in reason
    assert float(model.weight.detach()) == 2.0


def test_early_stopping_on_an_accuracy_wants_it_higher_and_state_round_trips():
    stopping = EarlyStopping(patience=1, monitor="val_acc", restore_best_weights=False)
    model = torch.nn.Linear(1, 1)
    assert stopping.monitor == "val_accuracy"
    assert stopping.on_epoch_end(_state(model, 1, val_accuracy=0.8)) is None
    copy = EarlyStopping(patience=1, monitor="val_accuracy", restore_best_weights=False)
    copy.load_state_dict(stopping.state_dict())
    assert copy.on_epoch_end(_state(model, 2, val_accuracy=0.79)) is not None


def test_early_stopping_needs_a_validation_metric_and_a_positive_patience():
    with pytest.raises(TrainingError, match="--validation-split"):
        EarlyStopping(patience=2).check({"loss", "accuracy"})
    with pytest.raises(TrainingError, match="at least 1"):
        EarlyStopping(patience=0)


def test_checkpoint_writes_best_only_when_the_monitored_metric_improves(tmp_path):
    run = RunDirectory(tmp_path)
    checkpoint = Checkpoint(monitor="accuracy")
    model = torch.nn.Linear(1, 1)
    for epoch, accuracy in ((1, 0.5), (2, 0.7), (3, 0.6)):
        checkpoint.on_epoch_end(SimpleNamespace(model=model, epoch=epoch, logs={"accuracy": accuracy}, run=run))
    best = read_checkpoint(tmp_path / "best.pt")
    assert (best["epoch"], best["value"], best["monitor"]) == (2, 0.7, "accuracy")


def test_metric_aliases():
    assert canonical_metric("acc") == "accuracy" and canonical_metric("val_acc") == "val_accuracy"
    assert canonical_metric("loss") == "loss"


def test_stop_at_a_percentage_is_caught_with_the_fraction_to_write():
    with pytest.raises(TrainingError, match="looks like a percentage") as raised:
        StopAtTarget.parse("accuracy>=99.8")
    assert '"accuracy>=0.998"' in raised.value.fix
    assert StopAtTarget.parse("val_loss<2.5").target == 2.5          # losses may exceed 1


def test_a_target_never_reached_says_so_with_the_best_value():

    target = StopAtTarget.parse("accuracy>=0.998")
    history = [{"epoch": 1, "accuracy": 0.9931}, {"epoch": 2, "accuracy": 0.9975}, {"epoch": 3, "accuracy": 0.9970}]
    state = SimpleNamespace(history=history, epoch=3)
    assert target.closing_note(state) == "--stop-at accuracy>=0.998: not reached after 3 epochs (best 0.9975)"
    history.append({"epoch": 4, "accuracy": 0.999})
    assert target.closing_note(state) is None
