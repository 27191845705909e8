"""The visible training loop: one epoch, one evaluation, and `fit` orchestrating epochs, callbacks and checkpoints.

    forward_and_backward(model, images, labels, loss_fn) -> (logits, loss), gradients in .grad
    train_one_epoch(model, batches, optimizer, loss_fn) -> {"loss", "accuracy", "steps", "count"}
    evaluate(model, batches, loss_fn) -> {"loss", "accuracy", "count"}
    fit(model, (images, labels), config, ...) -> TrainingState

Models return logits and the loss is cross-entropy on logits (log-softmax inside): a final softmax in a spec is applied
only by ConvNet.probabilities, never twice. The loop takes the model, batches and optimizer as arguments, so a faster
implementation of the same model (engine.py) can be passed in unchanged.

Resume is exact on CPU: a checkpoint holds the model, the optimizer, the global torch RNG state (dropout), the shuffle
generator's state at the start of the current epoch, how many of that epoch's batches were done, and how many shards
each batch was cut into (shards.py). Resuming replays the same permutation, skips the done batches, cuts batches the
same way, and continues, so the final weights equal an uninterrupted run's, however many threads either part had.
"""
from __future__ import annotations

import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from itertools import islice
from typing import Any

import torch
import torch.nn.functional as F

from convolab import distributed
from convolab.callbacks import Callback, Checkpoint
from convolab.data import iterate_batches
from convolab.distributed import DistributedContext
from convolab.errors import TrainingError, WriteError, stopped_by
from convolab.engine import PRECISIONS, FastConvNet, accelerate
from convolab.model import ConvNet
from convolab.recipes import AUGMENTATIONS, SCHEDULES, augment_batch, learning_rate_at, mirror_average
from convolab.runs import RunDirectory
from convolab.machine import cores_busy_elsewhere
from convolab.shards import (ShardPolicy, busy_machine_hint, choose_policy, has_batch_norm, may_suggest_threads,
                             parse_threads, torch_threads, usable_cores)
from convolab.timing import describe_timing, epoch_timing

OPTIMIZERS = ("adam", "sgd", "rmsprop", "adamw")
# Values each optimizer keeps per parameter besides the weight and its gradient (Adam: two running averages).
OPTIMIZER_SLOTS = {"adam": 2, "adamw": 2, "rmsprop": 1, "sgd": 0}
# The checkpoint entries resume reads (restore_state); a checkpoint without one of them cannot be continued.
RESUME_ENTRIES = ("model", "optimizer", "epoch", "step", "history", "totals", "epoch_generator_state",
                  "generator_state", "torch_rng_state")
DEVICES = ("auto", "cpu", "cuda", "mps")
# torch.manual_seed takes -2**63 too, but the command line's --seed starts at 0: Python's seed= the same, so that
# every seed a run records can be given back to `convolab train --seed`.
SEED_RANGE = (0, 2**64 - 1)
ENGINES = ("fast", "reference")
# On a GPU, steps between host reads of the loss: each read waits for the device, and a step of the lab's CNN takes
# well under a millisecond there, so reading every step would leave the GPU idle half the time.
GPU_READ_EVERY = 50


@dataclass
class TrainConfig:
    """Hyperparameters of one training run; the defaults are the lab's (Keras's compile/fit in the course notebook)."""

    epochs: int = 5
    batch_size: int = 32               # Keras's fit default, and the lab's
    optimizer: str = "adam"
    learning_rate: float = 0.001       # Keras's Adam default
    validation_split: float = 0.0      # the lab uses none; Keras holds out the LAST fraction, unshuffled
    seed: int = 0
    device: str = "auto"               # auto: cuda, then mps, then cpu
    engine: str = "fast"               # fast: engine.py computes the same function faster; reference: model.py as is
    # all: one per usable core; N: at most N. With the fast engine on the CPU each batch is cut into that many
    # single-threaded shards (shards.py), so another busy program costs a fair share of the time, not 41x, and the
    # weights do not depend on how many threads ran. "adaptive" is accepted as the former spelling of "all".
    threads: str = "all"
    # auto: bfloat16 autocast on CUDA cards that have it, float32 on CPU (exact); fp32: float32 everywhere; bf16:
    # bfloat16 autocast on CPU too (fast engine; float32 weights, optimizer and logits). Never chosen by itself on CPU.
    precision: str = "auto"
    # The recipes' extras (recipes.py); these defaults are the lab's, which has none of them.
    schedule: str = "constant"         # constant, or onecycle: warm up to learning_rate for 20% of steps, then decay
    label_smoothing: float = 0.0       # mass moved from the true class to all classes (Keras's label_smoothing)
    augment: str = "none"              # none, flip, or crop-flip: mirror images and shifts of up to 2 pixels
    weight_decay: float = 0.0          # AdamW's decoupled weight decay (optimizer adamw only)
    test_time_flip: bool = False       # validation and test on the mean logits of each image and its mirror

    def validate(self) -> None:
        """Raise TrainingError naming the first bad field."""
        if not isinstance(self.epochs, int) or self.epochs < 1:
            raise TrainingError(f"epochs={self.epochs!r}; expected a positive integer",
                                fix="use --epochs 5, say (epochs=5 in Python)")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise TrainingError(f"batch_size={self.batch_size!r}; expected a positive integer",
                                fix="use --batch-size 32, say (batch_size=32 in Python)")
        if self.optimizer not in OPTIMIZERS:
            raise TrainingError(f"optimizer={self.optimizer!r}; expected one of {', '.join(OPTIMIZERS)}",
                                fix="use --optimizer adam (optimizer='adam' in Python)")
        if not (isinstance(self.learning_rate, (int, float)) and self.learning_rate > 0):
            raise TrainingError(f"learning_rate={self.learning_rate!r}; expected a positive number",
                                fix="use --learning-rate 0.001, say (learning_rate=0.001 in Python)")
        if not 0.0 <= self.validation_split < 1.0:
            raise TrainingError(f"validation_split={self.validation_split!r}; expected a fraction in [0, 1)",
                                fix="use --validation-split 0.1, say, or 0 for none (validation_split=0.1 in Python)")
        if self.device not in DEVICES:
            raise TrainingError(f"device={self.device!r}; expected one of {', '.join(DEVICES)}",
                                fix="use --device auto (device='auto' in Python)")
        if self.engine not in ENGINES:
            raise TrainingError(f"engine={self.engine!r}; expected one of {', '.join(ENGINES)}", fix="use --engine fast")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or not SEED_RANGE[0] <= self.seed <= SEED_RANGE[1]:
            raise TrainingError(f"seed={self.seed!r}; expected a whole number from 0 to {SEED_RANGE[1]}",
                                fix="use --seed 0, say (seed=0 in Python)")
        parse_threads(self.threads)
        if self.precision not in PRECISIONS:
            raise TrainingError(f"precision={self.precision!r}; expected one of {', '.join(PRECISIONS)}",
                                fix="use --precision fp32 (exact) or --precision bf16 (precision='fp32' in Python)")
        if self.precision == "bf16" and self.engine != "fast":
            raise TrainingError("precision='bf16' needs the fast engine, received engine='reference'",
                                fix="use --engine fast, or --precision fp32")
        if self.schedule not in SCHEDULES:
            raise TrainingError(f"schedule={self.schedule!r}; expected one of {', '.join(SCHEDULES)}",
                                fix="use constant (the lab's) or onecycle")
        if self.augment not in AUGMENTATIONS:
            raise TrainingError(f"augment={self.augment!r}; expected one of {', '.join(AUGMENTATIONS)}",
                                fix="use none (the lab's) or crop-flip")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise TrainingError(f"label_smoothing={self.label_smoothing!r}; expected a fraction in [0, 1)",
                                fix="use 0.1, say (0 for none)")
        if not isinstance(self.test_time_flip, bool):
            raise TrainingError(f"test_time_flip={self.test_time_flip!r}; expected True or False",
                                fix="use test_time_flip=True (a recipe's) or False (the lab's)")
        if self.weight_decay < 0 or (self.weight_decay > 0 and self.optimizer != "adamw"):
            raise TrainingError(f"weight_decay={self.weight_decay!r} with optimizer={self.optimizer!r}; expected 0, "
                                "or a positive decay with adamw", fix="use --optimizer adamw, or no weight decay")


# --- device, seeds, optimizer, loss ---------------------------------------------------------------------------------

def choose_device(name: str = "auto") -> torch.device:
    """The device to train on, chosen once: "auto" takes cuda, then mps, then cpu; an unavailable one is an error."""
    cuda, mps = torch.cuda.is_available(), bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    if name == "auto":
        return torch.device("cuda" if cuda else "mps" if mps else "cpu")
    if name == "cuda" and not cuda:
        raise TrainingError("device 'cuda' requested, but PyTorch sees no CUDA GPU here", fix="use --device cpu or auto")
    if name == "mps" and not mps:
        raise TrainingError("device 'mps' requested, but PyTorch sees no Apple GPU (MPS) here",
                            fix="use --device cpu or auto")
    if name not in DEVICES:
        raise TrainingError(f"device {name!r}; expected one of {', '.join(DEVICES)}", fix="use --device auto")
    return torch.device(name)


def available_memory(device: torch.device) -> int | None:
    """Bytes the device can still give: the GPU's free memory, or the system's MemAvailable; None if unknown."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return free
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024   # the kernel counts in KiB
    except (OSError, ValueError, IndexError):
        pass
    try:   # other POSIX systems: free physical pages (less than what could be reclaimed, so a looser check)
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def seed_everything(seed: int) -> torch.Generator:
    """Seed torch's global RNG (weights, dropout) and return a separate generator for the shuffle order."""
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def make_optimizer(name: str, parameters: Iterable[torch.nn.Parameter], learning_rate: float,
                   device: torch.device, weight_decay: float = 0.0, capturable: bool = False) -> torch.optim.Optimizer:
    """Keras's optimizers with Keras's defaults (epsilon 1e-7, RMSprop's rho 0.9) in PyTorch.

    Adam and AdamW use the fused kernel on CPU and CUDA: one call updates every tensor. capturable: on CUDA, Adam's
    state stays on the card so that a CUDA graph can replay the step (bench/train_step.py), instead of fused.
    """
    parameters = list(parameters)
    device = torch.device(device)
    adam_options = dict(lr=learning_rate, eps=1e-7)
    if capturable and device.type == "cuda":
        adam_options.update(capturable=True, foreach=True)
    else:
        adam_options.update(fused=device.type in ("cpu", "cuda"))
    if name == "adam":
        return torch.optim.Adam(parameters, **adam_options)
    if name == "adamw":
        return torch.optim.AdamW(parameters, weight_decay=weight_decay, **adam_options)
    if name == "sgd":
        return torch.optim.SGD(parameters, lr=learning_rate)
    if name == "rmsprop":
        return torch.optim.RMSprop(parameters, lr=learning_rate, alpha=0.9, eps=1e-7)
    raise TrainingError(f"optimizer={name!r}; expected one of {', '.join(OPTIMIZERS)}", fix="use --optimizer adam")


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Keras's sparse categorical cross-entropy, computed from logits: log-softmax inside, stable for large logits."""
    return F.cross_entropy(logits, labels)


def is_batch_mean(loss_fn: Callable) -> bool:
    """Whether loss_fn(logits, labels) is the mean over the batch of each image's own loss: cross_entropy, or
    F.cross_entropy with at most label smoothing (fit's two). Then a batch's loss is its parts' means weighted by their
    sizes, and a sharded model may take each part's loss and backward on its own thread (forward_and_backward)."""
    if isinstance(loss_fn, partial):
        return (loss_fn.func in (cross_entropy, F.cross_entropy) and not loss_fn.args
                and set(loss_fn.keywords) <= {"label_smoothing"})
    return loss_fn in (cross_entropy, F.cross_entropy)


# --- one step, one epoch, one evaluation ------------------------------------------------------------------------------

def forward_and_backward(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor,
                         loss_fn: Callable) -> tuple[torch.Tensor, torch.Tensor]:
    """One batch's logits and mean loss, with the loss's gradients added to the parameters' .grad.

    On the CPU's fast engine (a FastConvNet cut into shards) with a batch-mean loss, each shard runs its forward, its
    part of the loss and its backward on its own thread, one hand-off per step (shards.ShardedModel.train_step);
    otherwise, and inside DistributedDataParallel (whose gradient hooks need its own forward), the three plain calls.
    """
    sharded = getattr(model, "sharded", None)
    if sharded is not None and is_batch_mean(loss_fn):
        return sharded.train_step(images, labels, loss_fn)
    logits = model(images)                           # (B, classes)
    loss = loss_fn(logits, labels)                   # mean over the batch
    loss.backward()
    return logits, loss


class NonFiniteLoss(TrainingError):
    """The loss became NaN or infinite; `step` is the 1-based batch of the epoch where it happened."""

    def __init__(self, step: int, value: float, where: str = ""):
        super().__init__(f"the loss became {value} at {where}step {step}",
                         fix="lower --learning-rate, e.g. 0.001 (learning_rate=0.001 in Python), or check the data "
                             "for bad values")
        self.step = step
        self.value = value


@dataclass
class EpochTotals:
    """Running sums for one epoch, kept outside the loop so that an interrupted epoch can be saved and resumed."""

    steps: int = 0
    count: int = 0
    loss_sum: float = 0.0
    correct: int = 0
    seconds: float = 0.0     # wall time spent in this epoch before an interruption

    def metrics(self) -> dict[str, float]:
        """Sample-weighted mean loss and accuracy so far (what Keras prints as the epoch's loss and accuracy)."""
        if self.count == 0:
            return {"loss": float("nan"), "accuracy": float("nan")}
        return {"loss": self.loss_sum / self.count, "accuracy": self.correct / self.count}


def train_one_epoch(model: torch.nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
                    optimizer: torch.optim.Optimizer, loss_fn: Callable = cross_entropy, *,
                    totals: EpochTotals | None = None, on_step: Callable[[EpochTotals], None] | None = None,
                    should_stop: Callable[[], bool] | None = None, read_every: int = 1) -> dict[str, float]:
    """One pass over `batches`: forward, loss, backward (forward_and_backward), step. Returns the epoch's mean loss
    and accuracy.

    totals: running sums to continue (a resumed epoch) and to read back if the epoch is interrupted.
    on_step(totals): after every step (progress bars). should_stop(): checked after every step; True ends the epoch
    early with the model and totals consistent (how Ctrl-C is handled).
    read_every: steps between host reads of the losses and correct counts. With 1 (the default; a read costs nothing
    on the CPU) a NaN or infinite loss raises NonFiniteLoss before its optimizer step, so the weights stay the last
    good ones. On a GPU each read waits for the device to finish, so fit reads every GPU_READ_EVERY steps: the sums
    stay on the device, a non-finite loss is still reported with its step, but up to read_every - 1 updates after it
    have run (the weights in memory are spoiled; the last checkpoint on disk is not). The totals are the same either way.
    """
    totals = totals if totals is not None else EpochTotals()
    unread: list[tuple[torch.Tensor, torch.Tensor, int]] = []   # (loss, correct count, batch size), still on the device

    def read_unread() -> None:
        """One host read for every unread step, folded into totals in step order; raises at a non-finite loss."""
        losses = torch.stack([loss for loss, _, _ in unread]).tolist()
        corrects = torch.stack([correct for _, correct, _ in unread]).tolist()
        for loss_value, correct, (_, _, batch_size) in zip(losses, corrects, unread):
            if not math.isfinite(loss_value):
                raise NonFiniteLoss(totals.steps + 1, loss_value)
            totals.steps += 1
            totals.count += batch_size
            totals.loss_sum += loss_value * batch_size
            totals.correct += int(correct)
        unread.clear()

    model.train()
    for images, labels in batches:
        optimizer.zero_grad(set_to_none=True)
        logits, loss = forward_and_backward(model, images, labels, loss_fn)   # gradients now in .grad
        unread.append((loss.detach(), (logits.argmax(dim=1) == labels).sum(), labels.shape[0]))
        if len(unread) >= read_every:
            read_unread()                            # before this step's update: its loss is known to be finite
        optimizer.step()
        if on_step is not None:
            on_step(totals)
        if should_stop is not None and should_stop():
            break
    if unread:
        read_unread()
    return {**totals.metrics(), "steps": totals.steps, "count": totals.count}


@torch.no_grad()
def evaluate(model: torch.nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
             loss_fn: Callable = cross_entropy, test_time_flip: bool = False) -> dict[str, float]:
    """Mean loss and accuracy over `batches` in eval mode (the model's mode is restored afterwards).
    test_time_flip: on the mean logits of each image and its mirror (recipes.mirror_average), as the test is."""
    was_training = model.training
    model.eval()
    totals = EpochTotals()
    try:
        for images, labels in batches:
            logits = model(images)                   # (B, classes)
            if test_time_flip:
                logits = mirror_average(logits, model(images.flip(3)))
            batch_size = labels.shape[0]
            totals.count += batch_size
            totals.loss_sum += float(loss_fn(logits, labels)) * batch_size
            totals.correct += int((logits.argmax(dim=1) == labels).sum())
    finally:
        model.train(was_training)
    return {**totals.metrics(), "count": totals.count}


# --- progress -------------------------------------------------------------------------------------------------------

def format_epoch_line(epoch: int, epochs: int, logs: dict) -> str:
    """'epoch 1/5  loss 0.4979  accuracy 0.8253  val_loss 0.3871  val_accuracy 0.8610  12.3s'."""
    parts = [f"epoch {epoch}/{epochs}"]
    for name in ("loss", "accuracy", "val_loss", "val_accuracy"):
        if logs.get(name) is not None:
            parts.append(f"{name} {logs[name]:.4f}")
    parts.append(f"{logs['seconds']:.1f}s")
    return "  ".join(parts)


class Progress:
    """How training reports itself; this base prints one plain line per epoch (for logs and pipes)."""

    def __init__(self, stream=None):
        self.stream = stream

    def _print(self, text: str) -> None:
        print(text, file=self.stream or sys.stdout, flush=True)

    def start_epoch(self, epoch: int, epochs: int, steps: int, done: int) -> None:
        """An epoch of `steps` batches begins (`done` of them already done, when resuming mid-epoch)."""

    def step(self, totals: EpochTotals) -> None:
        """A batch finished."""

    def end_epoch(self, epoch: int, epochs: int, logs: dict) -> None:
        self._print(format_epoch_line(epoch, epochs, logs))

    def message(self, text: str) -> None:
        self._print(text)

    def close(self) -> None:
        """Tear down any live display."""


class QuietProgress(Progress):
    """Prints nothing (--quiet); errors still reach stderr."""

    def end_epoch(self, epoch: int, epochs: int, logs: dict) -> None:
        pass

    def message(self, text: str) -> None:
        pass


class RichProgress(Progress):
    """A live bar within each epoch (step, loss, accuracy, rate, time left), then the epoch's line (a terminal)."""

    REFRESH_SECONDS = 0.1   # redraws cost time at batch 32; ten a second reads as live

    def __init__(self, console=None):
        super().__init__()
        from rich.console import Console

        self.console = console or Console()
        self.bar = None
        self.task = None
        self.last_update = 0.0

    def start_epoch(self, epoch: int, epochs: int, steps: int, done: int) -> None:
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress as Bar, TextColumn, TimeRemainingColumn)

        self.close()
        self.bar = Bar(TextColumn(f"epoch {epoch}/{epochs}"), BarColumn(), MofNCompleteColumn(),
                       TextColumn("{task.fields[metrics]}"),
                       TextColumn("{task.fields[rate]:.0f} steps/s"), TimeRemainingColumn(),
                       console=self.console, transient=True)
        self.bar.start()
        self.task = self.bar.add_task("train", total=steps, completed=done, metrics="", rate=0.0)
        self.start_time, self.start_done = time.perf_counter(), done

    def step(self, totals: EpochTotals) -> None:
        now = time.perf_counter()
        if self.bar is None or now - self.last_update < self.REFRESH_SECONDS:
            return
        self.last_update = now
        metrics = totals.metrics()
        rate = (totals.steps - self.start_done) / max(now - self.start_time, 1e-9)
        self.bar.update(self.task, completed=totals.steps, rate=rate,
                        metrics=f"loss {metrics['loss']:.4f}  accuracy {metrics['accuracy']:.4f}")

    def end_epoch(self, epoch: int, epochs: int, logs: dict) -> None:
        self.close()
        self.console.print(format_epoch_line(epoch, epochs, logs), highlight=False, soft_wrap=True)

    def message(self, text: str) -> None:
        (self.bar.console if self.bar is not None else self.console).print(text, highlight=False, soft_wrap=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None


def make_progress(mode: str = "auto") -> Progress:
    """"auto": a live bar on a terminal, a bar and a metrics table in a notebook, plain lines otherwise; "plain";
    "quiet"; "bar"."""
    if mode == "quiet":
        return QuietProgress()
    if mode == "auto" and "IPython" in sys.modules:
        from convolab.notebook import NotebookProgress, in_notebook

        if in_notebook():
            return NotebookProgress()
    if mode == "bar" or (mode == "auto" and sys.stdout.isatty()):
        return RichProgress()
    return Progress()


# --- Ctrl-C ---------------------------------------------------------------------------------------------------------

class InterruptFlag:
    """Turns the first Ctrl-C (SIGINT) or SIGTERM (`kill`, `docker stop`, a job scheduler) into a flag the loop checks
    after each step (so the saved state is consistent); a second one interrupts at once. Only in the main thread, where
    Python delivers signals; the previous handlers are put back on exit. `signal_number` says which signal came.

    In a distributed job (in_job=True) a repeated signal never interrupts at once: the ranks must agree on the step
    they stop after (torchrun sends SIGTERM when a sibling fails or the job is stopped)."""

    def __init__(self, in_job: bool = False):
        self.raised = False
        self.signal_number: int | None = None
        self.signals = distributed.STOP_SIGNALS
        self.immediate_second = not in_job
        self.previous: dict = {}

    def __enter__(self) -> "InterruptFlag":
        if threading.current_thread() is threading.main_thread():
            self.previous = {number: signal.signal(number, self._handle) for number in self.signals}
        return self

    def _handle(self, signum, frame) -> None:
        if self.raised and self.immediate_second:
            raise KeyboardInterrupt
        self.raised = True
        self.signal_number = self.signal_number or signum

    def __exit__(self, *exc) -> None:
        for number, previous in self.previous.items():
            signal.signal(number, previous)


class TrainingInterrupted(TrainingError):
    """Ctrl-C (exit status 130) or SIGTERM (143, 128 + the signal's number, as a shell reports a process it ended):
    a resumable checkpoint was saved (when training writes a run directory)."""

    exit_code = 130

    def __init__(self, message: str, fix: str | None = None, signal_number: int = signal.SIGINT):
        super().__init__(message, fix)
        self.exit_code = 128 + int(signal_number)


# --- fit ------------------------------------------------------------------------------------------------------------

@dataclass
class TrainingState:
    """What callbacks see and checkpoints hold: the model, the optimizer, where training is, and what it recorded."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    config: TrainConfig
    device: torch.device
    generator: torch.Generator
    run: RunDirectory | None = None
    epoch: int = 0                      # epochs completed
    history: list[dict] = field(default_factory=list)
    logs: dict = field(default_factory=dict)   # the last epoch's row
    stop_reason: str | None = None
    status: str = "running"             # running, finished, stopped, interrupted, failed
    epoch_generator_state: torch.Tensor | None = None   # the shuffle generator at the start of the current epoch
    totals: EpochTotals = field(default_factory=EpochTotals)   # the current epoch's progress (mid-epoch checkpoints)
    steps_per_epoch: int = 0            # set by fit: with epoch and totals.steps, the steps trained so far

    @property
    def steps_done(self) -> int:
        """Optimizer steps taken since the run began, a resumed run's earlier ones included."""
        return self.epoch * self.steps_per_epoch + self.totals.steps

    @property
    def metric_names(self) -> set[str]:
        return set(self.history[-1]) - {"epoch", "seconds", "cpu_seconds"} if self.history else set()


def metric_names(has_validation: bool) -> set[str]:
    """The metrics each history row will hold."""
    names = {"loss", "accuracy"}
    return names | {"val_loss", "val_accuracy"} if has_validation else names


def callback_keys(callbacks: Sequence[Callback]) -> list[tuple[str, Callback]]:
    """Each callback's key in a checkpoint: its class name, numbered from the second of a kind ("Checkpoint#2")."""
    seen: dict[str, int] = {}
    keys = []
    for callback in callbacks:
        kind = type(callback).__name__
        seen[kind] = seen.get(kind, 0) + 1
        keys.append((kind if seen[kind] == 1 else f"{kind}#{seen[kind]}", callback))
    return keys


def checkpoint_payload(state: TrainingState, callbacks: Sequence[Callback]) -> dict:
    """Everything resume needs, as tensors, numbers, strings, lists and dicts (loads with weights_only=True)."""
    payload: dict[str, Any] = {
        "model": state.model.state_dict(),
        "optimizer": state.optimizer.state_dict(),
        "epoch": state.epoch,
        "step": state.totals.steps,
        "totals": asdict(state.totals),
        "epoch_generator_state": state.epoch_generator_state,
        "generator_state": state.generator.get_state(),
        "torch_rng_state": torch.get_rng_state(),
        "history": state.history,
        "status": state.status,
        "stop_reason": state.stop_reason,
        "train_config": asdict(state.config),
        "shards": getattr(state.model, "shards", 1),   # how batches were cut: a resumed run cuts them the same way
        "callbacks": {key: callback.state_dict() for key, callback in callback_keys(callbacks)},
    }
    if state.device.type == "cuda":
        payload["cuda_rng_states"] = torch.cuda.get_rng_state_all()
    return payload


def restore_state(state: TrainingState, checkpoint: dict, callbacks: Sequence[Callback]) -> None:
    """Put a checkpoint's model, optimizer, random states, history, epoch progress and callback states back."""
    state.model.load_state_dict(checkpoint["model"])
    state.optimizer.load_state_dict(checkpoint["optimizer"])
    state.epoch = int(checkpoint["epoch"])
    state.history = [dict(row) for row in checkpoint["history"]]
    state.logs = dict(state.history[-1]) if state.history else {}
    state.totals = EpochTotals(**checkpoint["totals"])
    state.epoch_generator_state = checkpoint["epoch_generator_state"]
    state.generator.set_state(checkpoint["generator_state"])
    torch.set_rng_state(checkpoint["torch_rng_state"])
    if state.device.type == "cuda" and "cuda_rng_states" in checkpoint:
        torch.cuda.set_rng_state_all(checkpoint["cuda_rng_states"])
    saved = checkpoint.get("callbacks", {})
    for key, callback in callback_keys(callbacks):
        if key in saved:
            callback.load_state_dict(saved[key])


def _epoch_batches(state: TrainingState, images: torch.Tensor, labels: torch.Tensor,
                   shards: tuple[DistributedContext, distributed.BatchShare] | None = None) -> Iterator:
    """This epoch's batches: the permutation drawn from the shuffle generator at the epoch's start, minus those done.

    shards: in a distributed job, this rank's part of each global batch (distributed.shard_batches)."""
    if state.totals.steps == 0:
        state.epoch_generator_state = state.generator.get_state()
    else:
        state.generator.set_state(state.epoch_generator_state)   # replay the interrupted epoch's permutation
    if shards is not None:
        batches = distributed.shard_batches(images, labels, state.config.batch_size, state.generator, state.device,
                                            *shards)
    else:
        batches = iterate_batches(images, labels, state.config.batch_size, shuffle=True, generator=state.generator,
                                  device=state.device)
    return islice(batches, state.totals.steps, None)


def _recipe_batches(batches: Iterator, state: TrainingState, steps_per_epoch: int) -> Iterator:
    """The recipes' per-step extras on the batch stream: set the scheduled learning rate, augment the images."""
    total_steps = state.config.epochs * steps_per_epoch
    step = state.epoch * steps_per_epoch + state.totals.steps          # where a resumed run stands
    for images, labels in batches:
        if state.config.schedule != "constant":
            for group in state.optimizer.param_groups:
                group["lr"] = learning_rate_at(step, total_steps, state.config.learning_rate, state.config.schedule)
        yield augment_batch(images, state.config.augment), labels
        step += 1


def training_policy(model: torch.nn.Module, config: TrainConfig, device: torch.device,
                    resume_from: dict | None = None) -> ShardPolicy | None:
    """How the fast engine uses the CPU's cores for this run (shards.py); None where it does not apply (another
    device or engine, a model of the caller's own), which leaves PyTorch's threads as `config.threads` sets them.
    A resumed run cuts its batches as the checkpoint records, whatever the cores now."""
    if device.type != "cpu" or config.engine != "fast" or not isinstance(model, (ConvNet, FastConvNet)):
        return None
    recorded = (resume_from or {}).get("shards")
    return choose_policy(config.threads, usable_cores(), has_batch_norm(model), recorded_shards=recorded)


def suggest_threads(policy: ShardPolicy, threads: str, progress: Progress) -> None:
    """A note before a new run on PyTorch's threads when other programs already keep cores busy (shards.py's
    busy_machine_hint). The quarter-second look at the machine is taken only where a note could follow and be seen."""
    if not may_suggest_threads(policy, threads) or isinstance(progress, QuietProgress):
        return
    hint = busy_machine_hint(policy, threads, torch.get_num_threads(), usable_cores(), cores_busy_elsewhere())
    if hint:
        progress.message(f"note: {hint}")


def fit(model: torch.nn.Module, train_data: tuple[torch.Tensor, torch.Tensor], config: TrainConfig, *,
        validation_data: tuple[torch.Tensor, torch.Tensor] | None = None, device: torch.device | None = None,
        optimizer: torch.optim.Optimizer | None = None, loss_fn: Callable = cross_entropy,
        callbacks: Sequence[Callback] = (), run: RunDirectory | None = None, progress: Progress | None = None,
        resume_from: dict | None = None, generator: torch.Generator | None = None,
        distributed_context: DistributedContext | None = None) -> TrainingState:
    """Train `model` for `config.epochs` epochs on uint8 images and int64 labels; returns the final TrainingState.

    device: chosen once by the caller (default: choose_device(config.device)); the model is moved there.
    optimizer: default make_optimizer(config...). callbacks: checked against the metrics before the first step.
    run: where checkpoint.pt (every epoch), best.pt and the history go; None trains in memory only.
    resume_from: a checkpoint dict (runs.read_checkpoint) to continue from. generator: the shuffle generator
    (default: seed_everything(config.seed), which also seeds the global RNG; seed before building the model yourself).
    Raises NonFiniteLoss (the last good checkpoint is kept) and TrainingInterrupted (Ctrl-C; a resumable one is saved).
    distributed_context: this process's place in a torchrun job (process group started): the model trains inside
    DistributedDataParallel on this rank's part of every global batch, metrics are summed over ranks, and the ranks
    stop after the same step. Pass run and progress on rank 0 only (distributed.py explains the arithmetic).
    """
    config.validate()
    device = device or choose_device(config.device)
    progress = progress or make_progress("auto")
    model.to(device)
    policy = training_policy(model, config, device, resume_from)
    if policy is None and parse_threads(config.threads) is not None:
        torch.set_num_threads(parse_threads(config.threads))
    if policy is not None and resume_from is None and distributed_context is None:
        suggest_threads(policy, config.threads, progress)
    if config.engine == "fast":
        # engine.py: the same function and parameters (state_dict), faster kernels
        model = accelerate(model, device, policy, precision=config.precision)
    if config.precision == "bf16" and getattr(model, "autocast_dtype", None) is None:
        raise TrainingError(f"precision='bf16' needs a convolab ConvNet on the fast engine, received a "
                            f"{type(model).__name__}", fix="build the model from a spec, or use precision='fp32'")
    optimizer = optimizer or make_optimizer(config.optimizer, model.parameters(), config.learning_rate, device,
                                            config.weight_decay)
    if config.label_smoothing and loss_fn is cross_entropy:
        loss_fn = partial(F.cross_entropy, label_smoothing=config.label_smoothing)
    generator = generator or torch.Generator().manual_seed(config.seed)
    callbacks = list(callbacks)
    if run is not None and not any(isinstance(callback, Checkpoint) for callback in callbacks):
        callbacks.append(Checkpoint(monitor="val_accuracy" if validation_data is not None else "accuracy"))
    names = metric_names(validation_data is not None)
    for callback in callbacks:
        callback.check(names)

    state = TrainingState(model=model, optimizer=optimizer, config=config, device=device, generator=generator, run=run)
    if resume_from is not None:
        restore_state(state, resume_from, callbacks)
    saved_epoch = state.epoch if resume_from is not None else None   # the epoch of the checkpoint on disk
    images, labels = train_data
    if len(images) == 0:
        raise TrainingError("no training images (0 left after the limits and the validation split)",
                            fix="train on more images: a larger --train-limit or a smaller --validation-split")
    if device.type == "cuda" and isinstance(images, torch.Tensor):   # the whole uint8 dataset on the card once
        images, labels = images.to(device), labels.to(device)        # (not a streamed folder: it stays on disk)
    steps_per_epoch = math.ceil(len(images) / config.batch_size)
    trainer, shards, context = model, None, distributed_context
    if context is not None:
        distributed.check_batch_size(len(images), config.batch_size, context.world_size)
        trainer, share = distributed.wrap(model, device)
        shards = (context, share)
        if resume_from is not None and not context.is_main:   # rank 0 restored the epoch's sums over all ranks
            state.totals = EpochTotals(steps=state.totals.steps, seconds=state.totals.seconds)
    agreed_stop, steps_taken = False, 0

    def should_stop() -> bool:
        """After each step: Ctrl-C? In a job, every rank's answer, agreed (on a GPU every GPU_READ_EVERY steps: the
        agreement waits for the device, as a loss read does)."""
        nonlocal agreed_stop, steps_taken
        steps_taken += 1
        if context is None:
            agreed_stop = interrupt.raised
        elif device.type == "cpu" or steps_taken % GPU_READ_EVERY == 0:
            agreed_stop = distributed.agree(interrupt.raised, device)
        return agreed_stop

    def global_totals() -> EpochTotals:
        """This epoch's sums over every rank (in one process: this one's)."""
        if context is None:
            return state.totals
        loss_sum, correct, count = distributed.reduce_sums(
            [state.totals.loss_sum, state.totals.correct, state.totals.count], device)
        return EpochTotals(steps=state.totals.steps, count=int(count), loss_sum=loss_sum, correct=int(correct),
                           seconds=state.totals.seconds)

    def save(status: str) -> None:
        nonlocal saved_epoch
        state.status = status
        if run is not None:
            run.save_checkpoint(checkpoint_payload(state, callbacks))
            saved_epoch = state.epoch

    def not_saved(error: WriteError) -> TrainingError:
        """A write of the epoch's files failed (a full disk): say what is kept on disk and how to go on."""
        if saved_epoch is None:
            kept = "no checkpoint was saved yet"
            go_on = f"then start again: convolab train MODEL --out {run.path} --overwrite"
        else:
            kept = f"the checkpoint of epoch {saved_epoch} is kept"
            go_on = f"then continue from it: convolab train --resume {run.path}"
        return TrainingError(f"training stopped after epoch {state.epoch}: its files could not be saved: "
                             f"{error.message}; {kept}", fix=f"{error.fix}; {go_on}")

    state.steps_per_epoch = steps_per_epoch
    for callback in callbacks:
        callback.on_train_begin(state)
    stepping = [callback for callback in callbacks if type(callback).on_step is not Callback.on_step]

    def on_step(totals: EpochTotals) -> None:
        progress.step(totals)
        for callback in stepping:
            callback.on_step(state, totals)

    started = time.perf_counter()
    # Sharded, the shards are the parallelism: what runs between them (optimizer, metrics) takes one thread too, so no
    # OpenMP barrier waits on a descheduled thread. PyTorch's setting is restored when training ends.
    with InterruptFlag(in_job=context is not None) as interrupt, \
            torch_threads(policy.torch_threads if policy is not None else None):
        try:
            while state.epoch < config.epochs and state.stop_reason is None:
                epoch = state.epoch + 1
                started = time.perf_counter() - state.totals.seconds   # a resumed epoch counts its first part
                cpu_started = time.process_time()
                progress.start_epoch(epoch, config.epochs, steps_per_epoch, state.totals.steps)
                try:
                    batches = _recipe_batches(_epoch_batches(state, images, labels, shards), state, steps_per_epoch)
                    metrics = train_one_epoch(trainer, batches, optimizer, loss_fn,
                                              totals=state.totals, on_step=on_step if stepping else progress.step,
                                              should_stop=should_stop,
                                              read_every=1 if device.type == "cpu" else GPU_READ_EVERY)
                except NonFiniteLoss as error:
                    progress.close()
                    state.status = "failed"
                    kept = (f"; the last good checkpoint (epoch {state.epoch}) is kept in {run.path}"
                            if run is not None and state.epoch > 0 else "")
                    failure = NonFiniteLoss(error.step, error.value, where=f"epoch {epoch}, ")
                    failure.message += f" of {steps_per_epoch}{kept}"
                    raise failure from None
                if agreed_stop or (context is None and interrupt.raised):
                    raise KeyboardInterrupt
                if context is not None:
                    metrics = global_totals().metrics()
                row = {"epoch": epoch, "loss": metrics["loss"], "accuracy": metrics["accuracy"]}
                if validation_data is not None:
                    part = slice(None) if context is None else distributed.part_of(len(validation_data[1]), context)
                    validation = evaluate(model, iterate_batches(validation_data[0][part], validation_data[1][part],
                                                                 batch_size=max(config.batch_size, 256),
                                                                 device=device), loss_fn,
                                          test_time_flip=config.test_time_flip)
                    if context is not None:
                        validation = distributed.reduce_evaluation(validation, device)
                    row.update(val_loss=validation["loss"], val_accuracy=validation["accuracy"])
                row["seconds"] = round(time.perf_counter() - started, 3)
                row["cpu_seconds"] = round(time.process_time() - cpu_started, 3)   # all threads: the work, not the wait
                state.epoch, state.totals, state.logs = epoch, EpochTotals(), row
                state.history.append(row)
                progress.end_epoch(epoch, config.epochs, row)
                try:
                    if run is not None:
                        run.write_history(state.history)
                    for callback in callbacks:
                        reason = callback.on_epoch_end(state)
                        if reason and state.stop_reason is None:
                            state.stop_reason = reason
                    done = state.stop_reason is not None or state.epoch >= config.epochs
                    save(("stopped" if state.stop_reason else "finished") if done else "running")
                except WriteError as error:
                    state.status = "failed"
                    if run is None:   # a callback's own file: its message says it all
                        raise
                    raise not_saved(error) from None
        except KeyboardInterrupt:
            progress.close()
            if state.totals.steps:
                state.totals.seconds = time.perf_counter() - started
                state.totals = global_totals()   # every rank stopped after the same step (should_stop agreed)
            where = (f"at epoch {state.epoch + 1}, step {state.totals.steps} of {steps_per_epoch}" if state.totals.steps
                     else f"after epoch {state.epoch}")
            # In a job, torchrun's SIGTERM (a sibling failed) stays the job's "interrupted" (130): its launcher reads that
            number = (interrupt.signal_number or signal.SIGINT) if context is None else signal.SIGINT
            how = stopped_by(number)
            if run is not None:
                try:
                    save("interrupted")
                except WriteError as error:
                    raise not_saved(error) from None
                raise TrainingInterrupted(f"{how} {where}; a resumable checkpoint is saved in {run.path}",
                                          fix=f"continue with: convolab train --resume {run.path}",
                                          signal_number=number) from None
            raise TrainingInterrupted(f"{how} {where} (no run directory, nothing saved)", signal_number=number) from None
        finally:
            progress.close()   # never leave a live bar behind an error
    if state.stop_reason:
        progress.message(f"stopped after epoch {state.epoch}: {state.stop_reason}")
    for callback in callbacks:
        note = callback.closing_note(state)
        if note:
            progress.message(note)
    if len(state.history) > 1:
        progress.message(describe_timing(epoch_timing(state.history)))
    for callback in callbacks:
        callback.on_train_end(state)
    return state

