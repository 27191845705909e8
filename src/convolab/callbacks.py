"""Callbacks: small objects that watch each finished epoch and may stop training or save it.

Every callback has the same methods, all optional to override:
  check(metric_names)      before training: raise TrainingError if it names a metric the run will not have
  on_train_begin(state)    once, after a resume too
  on_step(state, totals)   after every training step (TensorBoard's step scalars; Keras's on_batch_end)
  on_epoch_end(state)      after each epoch's history row is written; return a reason (str) to stop, or None
  on_train_end(state)      once, when training ends normally (not on an error or Ctrl-C)
and `state_dict()` / `load_state_dict(d)` so that `--resume` continues them exactly where they stopped.
`state` is the `TrainingState` from `train.py`: model, optimizer, epoch, history, logs (the last row), run directory.
"""
from __future__ import annotations

import copy
import math
import re
from dataclasses import dataclass
from typing import Any

import torch

from convolab.errors import TrainingError

# Keras 1 called it `acc`, Keras 2 `accuracy`; the course's own callback breaks on exactly that (dlaicourse #96).
METRIC_ALIASES = {"acc": "accuracy", "val_acc": "val_accuracy"}

COMPARISONS = {
    ">=": lambda value, target: value >= target,
    ">": lambda value, target: value > target,
    "<=": lambda value, target: value <= target,
    "<": lambda value, target: value < target,
}


def canonical_metric(name: str) -> str:
    """The metric's name as the history records it: `acc` -> `accuracy`, `val_acc` -> `val_accuracy`."""
    name = name.strip()
    return METRIC_ALIASES.get(name, name)


def check_metric(name: str, metric_names: set[str] | list[str], what: str) -> None:
    """Raise TrainingError unless `name` is one of the metrics this run records."""
    if name in metric_names:
        return
    valid = ", ".join(sorted(metric_names))
    fix = f"use one of: {valid}"
    if name.startswith("val_") and not any(known.startswith("val_") for known in metric_names):
        fix += "; val_ metrics need a validation set: add --validation-split 0.1 (validation_split=0.1 in Python)"
    raise TrainingError(f"{what} names the metric {name!r}, which this run does not record", fix=fix)


def higher_is_better(metric: str) -> bool:
    """Accuracies grow as a model improves, losses shrink."""
    return "acc" in metric


class Callback:
    """The do-nothing base: override only what you need."""

    def check(self, metric_names: set[str]) -> None:
        """Raise TrainingError before training if this callback names a metric the run will not record."""

    def on_train_begin(self, state: Any) -> None:
        """Called once before the first epoch (of this session: a resumed run calls it again)."""

    def on_step(self, state: Any, totals: Any) -> None:
        """Called after every training step with the epoch's running totals (only when a callback overrides it)."""

    def on_epoch_end(self, state: Any) -> str | None:
        """Called after every epoch; return a reason to stop training, or None to go on."""
        return None

    def on_train_end(self, state: Any) -> None:
        """Called once when training ends without an error."""

    def closing_note(self, state: Any) -> str | None:
        """A line to print when training ends (a target never reached, say), or None."""
        return None

    def state_dict(self) -> dict:
        """What `--resume` needs to continue this callback (tensors, numbers, strings, lists, dicts only)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore what `state_dict` returned."""


# --- stop at a target -------------------------------------------------------------------------------------------------

TARGET_PATTERN = re.compile(r"^\s*([A-Za-z_]+)\s*(>=|<=|>|<)\s*([-+0-9.eE]+)\s*$")


@dataclass
class StopAtTarget(Callback):
    """Stop as soon as an epoch's metric reaches a target, e.g. "accuracy>=0.998" (the lab's myCallback)."""

    metric: str
    comparison: str
    target: float

    @classmethod
    def parse(cls, text: str) -> "StopAtTarget":
        """Parse "METRIC OP VALUE" with OP one of >=, >, <=, <; `acc` is accepted for `accuracy`."""
        match = TARGET_PATTERN.match(text)
        if match is None:
            raise TrainingError(
                f"--stop-at expects METRIC>=VALUE, received {text!r}",
                fix='write it like "accuracy>=0.998" or "val_loss<0.3" (quote it in the shell)',
            )
        name, comparison, value_text = match.groups()
        try:
            target = float(value_text)
        except ValueError:
            raise TrainingError(
                f"--stop-at expects a number after {comparison}, received {value_text!r}", fix='e.g. "accuracy>=0.998"'
            ) from None
        if not math.isfinite(target):
            raise TrainingError(f"--stop-at expects a finite target, received {value_text!r}", fix='e.g. "accuracy>=0.9"')
        metric = canonical_metric(name)
        if higher_is_better(metric) and target > 1:
            raise TrainingError(f"--stop-at {text.strip()!r}: {metric} is a fraction from 0 to 1, and {value_text} "
                                "looks like a percentage", fix=f'write it as a fraction: "{metric}{comparison}'
                                f'{target / 100:g}"')
        return cls(metric, comparison, target)

    def __str__(self) -> str:
        return f"{self.metric}{self.comparison}{self.target:g}"

    def check(self, metric_names: set[str]) -> None:
        check_metric(self.metric, metric_names, f"--stop-at {self}")

    def reached(self, logs: dict) -> bool:
        """Whether this epoch's logs meet the target."""
        value = logs.get(self.metric)
        return value is not None and COMPARISONS[self.comparison](value, self.target)

    def on_epoch_end(self, state: Any) -> str | None:
        if self.reached(state.logs):
            return f"reached {self.metric} {state.logs[self.metric]:.4f} {self.comparison} {self.target:g}"
        return None

    def closing_note(self, state: Any) -> str | None:
        """'--stop-at accuracy>=0.998: not reached after 20 epochs (best 0.9975)' when no epoch met the target."""
        values = [row[self.metric] for row in state.history if row.get(self.metric) is not None]
        if not values or any(self.reached(row) for row in state.history):
            return None
        best = max(values) if self.comparison.startswith(">") else min(values)
        return f"--stop-at {self}: not reached after {state.epoch} epochs (best {best:.4f})"


# --- early stopping ---------------------------------------------------------------------------------------------------


class EarlyStopping(Callback):
    """Stop when `monitor` has not improved for `patience` epochs, then put back the best epoch's weights."""

    def __init__(self, patience: int, monitor: str = "val_loss", min_delta: float = 0.0, restore_best_weights: bool = True):
        if patience < 1:
            raise TrainingError(f"--early-stopping expects a patience of at least 1 epoch, received {patience}",
                                fix="e.g. --early-stopping 3")
        self.patience = patience
        self.monitor = canonical_metric(monitor)
        self.min_delta = abs(min_delta)
        self.restore_best_weights = restore_best_weights
        self.best: float | None = None
        self.best_epoch = 0
        self.wait = 0
        self.best_weights: dict[str, torch.Tensor] | None = None

    def check(self, metric_names: set[str]) -> None:
        check_metric(self.monitor, metric_names, f"early stopping's monitor {self.monitor!r}")

    def improved(self, value: float) -> bool:
        """Whether `value` beats the best so far by more than min_delta."""
        if self.best is None:
            return True
        if higher_is_better(self.monitor):
            return value > self.best + self.min_delta
        return value < self.best - self.min_delta

    def on_epoch_end(self, state: Any) -> str | None:
        value = state.logs[self.monitor]
        if self.improved(value):
            self.best, self.best_epoch, self.wait = value, state.epoch, 0
            if self.restore_best_weights:
                self.best_weights = copy.deepcopy(state.model.state_dict())
            return None
        self.wait += 1
        if self.wait < self.patience:
            return None
        if self.restore_best_weights and self.best_weights is not None:
            state.model.load_state_dict(self.best_weights)
            return (f"{self.monitor} did not improve for {self.patience} epochs; "
                    f"restored the best weights (epoch {self.best_epoch}, {self.monitor} {self.best:.4f})")
        return f"{self.monitor} did not improve for {self.patience} epochs"

    def state_dict(self) -> dict:
        return {"best": self.best, "best_epoch": self.best_epoch, "wait": self.wait, "best_weights": self.best_weights}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.best_epoch, self.wait = state["best"], state["best_epoch"], state["wait"]
        self.best_weights = state["best_weights"]


# --- checkpoints ------------------------------------------------------------------------------------------------------


class Checkpoint(Callback):
    """Write `checkpoint.pt` (everything `--resume` needs) after every epoch, and `best.pt` when `monitor` improves.

    Both are written atomically by `runs.py`: a crash mid-write leaves the previous file whole.
    """

    def __init__(self, monitor: str = "val_accuracy"):
        self.monitor = canonical_metric(monitor)
        self.best: float | None = None

    def check(self, metric_names: set[str]) -> None:
        check_metric(self.monitor, metric_names, f"the checkpoint's monitor {self.monitor!r}")

    def on_epoch_end(self, state: Any) -> str | None:
        if state.run is None:
            return None
        value = state.logs[self.monitor]
        better = self.best is None or (value > self.best if higher_is_better(self.monitor) else value < self.best)
        if better:
            self.best = value
            state.run.save_best(state.model, epoch=state.epoch, monitor=self.monitor, value=value)
        # The resumable checkpoint itself is written by fit after all callbacks ran, so it holds their updated state.
        return None

    def state_dict(self) -> dict:
        return {"best": self.best}

    def load_state_dict(self, state: dict) -> None:
        self.best = state["best"]


class LambdaCallback(Callback):
    """A callback from plain functions, for tests and quick experiments: LambdaCallback(on_epoch_end=lambda s: ...)."""

    def __init__(self, on_epoch_end=None, on_train_begin=None, on_train_end=None):
        self._on_epoch_end = on_epoch_end
        self._on_train_begin = on_train_begin
        self._on_train_end = on_train_end

    def on_train_begin(self, state: Any) -> None:
        if self._on_train_begin is not None:
            self._on_train_begin(state)

    def on_epoch_end(self, state: Any) -> str | None:
        return self._on_epoch_end(state) if self._on_epoch_end is not None else None

    def on_train_end(self, state: Any) -> None:
        if self._on_train_end is not None:
            self._on_train_end(state)
