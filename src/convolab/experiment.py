"""One training run end to end: spec and data in; model built, fitted, tested; the run directory written.

    train_run(model, dataset, config, out) -> TrainResult      a new run
    resume_run(path) -> TrainResult                             a stopped run, continued from its checkpoint

This is what `convolab train`, `compare`, `lab` and `Sequential.fit` all call, so they train the same way. It sits
below `evaluate` (it writes metrics.json with the confusion matrix) and above `compare`.
"""
from __future__ import annotations

import numbers
import os
import shlex
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from convolab.callbacks import Callback, EarlyStopping, StopAtTarget
from convolab.data import Dataset, load_dataset, split_validation
from convolab.distributed import DistributedContext
from convolab.errors import ArgumentError, DataError, RunError, TrainingError, stop_signal, stopped_by
from convolab.evaluate import Evaluation, evaluate_model
from convolab.machine import bf16_units, cpu_flags
from convolab.model import build_model
from convolab.runconfig import DataRecord, DataSelection, RunConfig
from convolab.runs import (CHECKPOINT, CONFIG, RUN_PRODUCTS, TRAINING_FILES, ModelWeights, RunDirectory,
                           check_data_fits, folder_name, hardware, load_model_source, load_run, load_weights,
                           locked_run, next_free_directory, python_command, read_checkpoint, require_free_space,
                           require_run, versions)
from convolab.shapes import analyze, readable_bytes, totals, training_memory
from convolab.spec import ModelSpec, resolve_spec
from convolab.timing import epoch_timing
from convolab.train import (OPTIMIZER_SLOTS, RESUME_ENTRIES, Progress, TrainConfig, TrainingState, available_memory,
                            TrainingInterrupted, choose_device, fit, make_progress, metric_names,
                            seed_everything)


def is_whole(value) -> bool:
    """An integer, NumPy's and torch's included (np.int64 from np.where), but not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def whole_numbers(name: str, value, example: str) -> list[int]:
    """A notebook's list of indices (or one index) as a list of ints; ArgumentError naming `name` otherwise.
    A 1-D NumPy array or tensor of integers counts as a list: `np.where(predicted != labels)[0]` picks images."""
    if hasattr(value, "tolist") and getattr(value, "ndim", 0) <= 1:
        value = value.tolist()
    values = [value] if is_whole(value) else value
    if not isinstance(values, (list, tuple)) or not values or not all(is_whole(item) for item in values):
        raise ArgumentError(f"{name}={value!r}; expected a list of whole numbers", fix=f"e.g. {name}={example}")
    return [int(item) for item in values]


def layer_positions(spec: ModelSpec, layers, allowed: tuple[type, ...]) -> list[int] | None:
    """Layers given by position (2) or Keras name ('conv2d_1'), one or a list, as positions of `allowed` kinds
    (activations.find_layer's SpecError names the choices); None stays None (every such layer)."""
    from convolab.activations import find_layer

    if layers is None:
        return None
    items = [layers] if isinstance(layers, (int, str)) and not isinstance(layers, bool) else layers
    if (not isinstance(items, (list, tuple)) or not items
            or any(isinstance(item, bool) or not isinstance(item, (int, str)) for item in items)):
        raise ArgumentError(f"layers={layers!r}; expected layer positions or names", fix="e.g. layers=[0, 2]")
    return [find_layer(spec, str(item), allowed) for item in items]


@dataclass(repr=False)
class TrainResult:
    """A finished training: where it was written, the model, its history, the test evaluation.

    In a notebook it displays as a compact table; its pictures are objects that display inline and `.save(path)`:
    run.show(images=[0, 23, 28], filter=1), run.filters(), run.curves(), run.confusion(), run.report().
    """

    name: str
    spec: ModelSpec
    model: torch.nn.Module
    state: TrainingState
    evaluation: Evaluation
    run_dir: Path | None
    dataset: Dataset
    test_data: tuple | None = None   # the (images, labels) it was tested on: test_limit applied; None: the dataset's

    @property
    def tested(self) -> tuple:
        """The test images (uint8 NCHW) and labels the run was evaluated on, as the CLI's show and report number them."""
        return self.test_data if self.test_data is not None else (self.dataset.test_images, self.dataset.test_labels)

    @property
    def history(self) -> list[dict]:
        return self.state.history

    @property
    def seconds_per_epoch(self) -> float:
        """The median epoch's wall time (validation included), over every session of a resumed run: one epoch
        stretched by a busy machine does not move it (timing.py)."""
        return epoch_timing(self.state.history).median_seconds

    # --- pictures, each a notebook.Picture (inline in a notebook, .save(path) anywhere) -------------------------

    def show(self, images=None, filter: int = 1, layers: list[int] | None = None):
        """The lab's grid: test `images` (rows; default 0, 23, 28, those a smaller test set has) through every
        conv/pool layer (columns), channel `filter`."""
        from convolab.activations import VISUAL_LAYER_TYPES, lab_images
        from convolab.notebook import Picture
        from convolab.plots import run_activation_grid

        test_images, test_labels = self.tested
        images = (lab_images(len(test_images)) if images is None
                  else whole_numbers("images", images, "[0, 23, 28]"))
        if not is_whole(filter):
            raise ArgumentError(f"filter={filter!r}; expected a whole number (a channel of the layers)", fix="e.g. filter=1")
        layers = layer_positions(self.spec, layers, VISUAL_LAYER_TYPES)
        figure = run_activation_grid(self.model, self.spec, test_images, test_labels,
                                     list(self.dataset.class_names), images, filter, layers)
        return Picture(figure, f"{self.name}: test images {images}, filter {filter}")

    def filters(self, layers: list[int] | None = None):
        """The learned kernels of the Conv2D layers (red excites, blue inhibits)."""
        from convolab.activations import KERNEL_LAYER_TYPES
        from convolab.notebook import Picture
        from convolab.plots import run_kernels_figure

        layers = layer_positions(self.spec, layers, KERNEL_LAYER_TYPES)
        return Picture(run_kernels_figure(self.model, self.spec, layers), f"{self.name}: learned kernels")

    def curves(self):
        """Loss and accuracy per epoch (validation too, when held out)."""
        from convolab.notebook import Picture
        from convolab.plots import curves_figure

        return Picture(curves_figure(self.history, title=f"{self.name}: training"), f"{self.name}: curves")

    def confusion(self):
        """The test confusion matrix."""
        from convolab.notebook import Picture
        from convolab.plots import confusion_figure

        figure = confusion_figure(self.evaluation.confusion.numpy(), list(self.evaluation.class_names),
                                  title=f"{self.name}: test confusion matrix")
        return Picture(figure, f"{self.name}: confusion matrix")

    def report(self):
        """The run's HTML report (the same as `convolab report`), shown inline; needs the run written (out=...)."""
        from convolab.notebook import Page
        from convolab.report import render_report
        from convolab.runs import load_run

        if self.run_dir is None:
            raise RunError("this run was trained in memory (no out=), so there is no run directory to report on",
                           fix='train with out="runs/NAME", e.g. model.fit("fashion-mnist", out="runs/cnn")')
        return Page(render_report([load_run(self.run_dir)]), f"convolab report: {self.name}")

    # --- display ----------------------------------------------------------------------------------------------

    def _facts(self) -> list[tuple[str, str]]:
        last = self.history[-1] if self.history else {}
        facts = [("model", self.spec.to_line()), ("data", f"{self.dataset.name} ({len(self.tested[0])} test)"),
                 ("epochs", f"{self.state.epoch} ({self.state.status})")]
        if self.state.stop_reason:
            facts.append(("stopped", self.state.stop_reason))
        if last:
            facts.append(("last epoch", "  ".join(f"{key} {last[key]:.4f}" for key in
                                                  ("loss", "accuracy", "val_loss", "val_accuracy") if key in last)))
        facts.append(("test", f"loss {self.evaluation.loss:.4f}  accuracy {self.evaluation.accuracy:.4f}"))
        facts.append(("s/epoch", f"{self.seconds_per_epoch:.1f}"))
        facts.append(("run directory", str(self.run_dir) if self.run_dir else "none (in memory)"))
        return facts

    def _repr_html_(self) -> str:
        from convolab.notebook import history_html, key_values_html

        return key_values_html(f"run {self.name}", self._facts()) + history_html(self.history)

    def __repr__(self) -> str:
        return f"<TrainResult {self.name}: " + "; ".join(f"{key} {value}" for key, value in self._facts()) + ">"


def load_selection(options: dict, train_limit: int | None = None, test_limit: int | None = None,
                   show_download: bool = True) -> tuple[Dataset, DataSelection]:
    """The dataset `options` (load_dataset's arguments) name, and the selection a run records to load it again."""
    dataset = load_dataset(**options, progress=show_download)
    return dataset, DataSelection(options=options, train_limit=train_limit, test_limit=test_limit)


def build_callbacks(stop_at: str | None, early_stopping: int | None) -> list[Callback]:
    """The callbacks the command-line flags ask for, in a fixed order (a resumed run rebuilds the same list)."""
    callbacks: list[Callback] = []
    if stop_at:
        callbacks.append(StopAtTarget.parse(stop_at))
    if early_stopping is not None:
        callbacks.append(EarlyStopping(patience=early_stopping, monitor="val_loss"))
    return callbacks


def select_data(dataset: Dataset, selection: DataSelection, validation_split: float):
    """(train, validation or None, test) as (images, labels) pairs, subsets and the Keras-style split applied."""
    for name, limit in (("train_limit", selection.train_limit), ("test_limit", selection.test_limit)):
        if limit is not None and limit < 1:
            raise TrainingError(f"{name}={limit}; expected a positive number of images", fix=f"use {name}=5000, say (--{name.replace('_', '-')} 5000 on the command line)")
    train_images, train_labels = dataset.train_images, dataset.train_labels
    if selection.train_limit is not None:
        train_images, train_labels = train_images[: selection.train_limit], train_labels[: selection.train_limit]
    test_images, test_labels = dataset.test_images, dataset.test_labels
    if selection.test_limit is not None:
        test_images, test_labels = test_images[: selection.test_limit], test_labels[: selection.test_limit]
    if len(test_images) == 0:
        # Training would run to its end and then have nothing to measure: refuse before the first step.
        raise DataError(f"{dataset.name}: no test images ({dataset.source}); training could not be measured",
                        fix="add images: each class needs enough for --test-split to hold one out (3 or more at the "
                            "default 0.2, 2 at 0.5), or put a test/ folder next to train/")
    validation = None
    if validation_split > 0:
        (train_images, train_labels), validation = split_validation(train_images, train_labels, validation_split)
    return (train_images, train_labels), validation, (test_images, test_labels)


def check_memory(spec: ModelSpec, input_shape: tuple[int, int, int], num_classes: int, config: TrainConfig,
                 device: torch.device) -> None:
    """TrainingError before anything is built when the summary's arithmetic says training cannot fit in memory."""
    sums = totals(analyze(spec, input_shape, num_classes))
    need = training_memory(sums["params"], sums["memory_bytes"], input_shape[0] * input_shape[1] * input_shape[2],
                           config.batch_size, OPTIMIZER_SLOTS.get(config.optimizer, 2))
    available = available_memory(device)
    if available is not None and need.value > available:
        raise TrainingError(f"this model cannot train in the memory of {device}: {need.text}, and "
                            f"{readable_bytes(available)} are available",
                            fix="use a smaller model (fewer filters or units, pooling before Flatten), a smaller "
                                "--batch-size, or a smaller --image-size")


def checkpoint_bytes(network: torch.nn.Module, optimizer: str) -> int:
    """About how large checkpoint.pt will be: the weights, and the optimizer's slots of each (Adam: two)."""
    weights = sum(tensor.numel() * tensor.element_size() for tensor in network.state_dict().values())
    return weights * (1 + OPTIMIZER_SLOTS.get(optimizer, 2)) + 64 * 1024   # plus the history and random states


def run_config(name: str, spec: ModelSpec, dataset: Dataset, selection: DataSelection, config: TrainConfig,
               device: torch.device, stop_at: str | None, early_stopping: int | None, sizes: dict) -> RunConfig:
    """The record config.json keeps: everything needed to trace a number to how it was made, and to rebuild the run."""
    record = DataRecord(name=dataset.name, selection=selection, input_shape=dataset.input_shape,
                        class_names=tuple(dataset.class_names), source=dataset.source, sizes=sizes, files=dataset.files)
    return RunConfig(name=name, spec=spec, dataset=record, train=config, stop_at=stop_at,
                     early_stopping=early_stopping, device=str(device), hardware=hardware(device), versions=versions(),
                     command=python_command(), created=time.strftime("%Y-%m-%dT%H:%M:%S%z"))


def _finish(name: str, spec: ModelSpec, model: torch.nn.Module, state: TrainingState, dataset: Dataset, test_data,
            run: RunDirectory | None, device: torch.device, progress: Progress,
            on_train_end: Sequence[Callable[[Path], None]]) -> TrainResult:
    """Test the model, write metrics.json, print the test line, call the hooks (pictures) with the run directory."""
    try:
        evaluation = evaluate_model(model, *test_data, class_names=list(dataset.class_names), device=device,
                                    test_time_flip=state.config.test_time_flip)
    except KeyboardInterrupt as interrupt:
        if run is None:
            raise
        number = stop_signal(interrupt)
        raise TrainingInterrupted(f"{stopped_by(number)} while testing the trained model; training is complete and "
                                  f"its checkpoint saved in {run.path}, only the test metrics (metrics.json) and "
                                  "pictures are missing", fix=f"convolab evaluate {run.path} tests it",
                                  signal_number=number) from None
    progress.message(f"test: loss {evaluation.loss:.4f}  accuracy {evaluation.accuracy:.4f}  "
                     f"({evaluation.count} images)")
    result = TrainResult(name=name, spec=spec, model=model, state=state, evaluation=evaluation,
                         run_dir=run.path if run else None, dataset=dataset, test_data=test_data)
    if run is not None:
        run.write_metrics({**evaluation.to_dict(), "epochs_trained": state.epoch, "status": state.status,
                           "stop_reason": state.stop_reason, "seconds_per_epoch": result.seconds_per_epoch})
        for hook in on_train_end:
            hook(run.path)
    return result


def train_run(model: str | ModelSpec, dataset: Dataset, config: TrainConfig, out: str | Path | None, *,
              name: str | None = None, selection: DataSelection | None = None, stop_at: str | None = None,
              early_stopping: int | None = None, callbacks: Sequence[Callback] = (), progress: Progress | None = None,
              overwrite: bool = False, on_train_end: Sequence[Callable[[Path], None]] = (),
              distributed_context: DistributedContext | None = None,
              weights: ModelWeights | None = None) -> TrainResult:
    """Build `model` (a preset, file, one-line spec or ModelSpec) for `dataset`, train it, test it, write `out`.

    A Keras model file (.keras, .h5) as `model` brings its weights: training continues from them. weights: start from
    these (a state_dict and where it came from) instead of fresh ones.

    out: the run directory (None: in memory only). overwrite: replace a run already there (otherwise RunError).
    stop_at: "accuracy>=0.998"-style target. early_stopping: patience in epochs (needs a validation split).
    callbacks: extra Callback objects. on_train_end: functions called with the run directory when all is written.
    distributed_context: this process's place in a torchrun job; only rank 0 writes `out` (distributed.py).
    """
    config.validate()
    selection = selection or DataSelection(options={"source": dataset.name})
    progress = progress or make_progress("auto")
    if isinstance(model, str):
        model, weights = load_model_source(model)
    spec = resolve_spec(model, dataset.input_shape, dataset.num_classes)
    name = name or spec.name or (Path(out).name if out else "model")
    train_data, validation_data, test_data = select_data(dataset, selection, config.validation_split)
    all_callbacks = build_callbacks(stop_at, early_stopping) + list(callbacks)
    for callback in all_callbacks:   # before anything is written: a typo in --stop-at leaves no half-made run
        callback.check(metric_names(validation_data is not None))
    device = choose_device(config.device)
    check_memory(spec, dataset.input_shape, dataset.num_classes, config, device)
    writes = distributed_context is None or distributed_context.is_main   # in a torchrun job, rank 0 only
    run = RunDirectory(out) if out is not None and writes else None
    # The lock is held from the "is there a run already?" check to the last picture: a second training into the same
    # directory is refused instead of mixing its files with this one's.
    with locked_run(out if writes else None):
        if run is not None:
            run.create(overwrite=overwrite)
        generator = seed_everything(config.seed)
        network = build_model(spec, dataset.input_shape, dataset.num_classes)   # after seeding: the same weights
        if weights is not None:
            load_weights(network, spec, weights.state_dict, weights.source)
        if run is not None:   # a full disk refused now, not after an epoch of training
            size = checkpoint_bytes(network, config.optimizer)
            require_free_space(run.path, 3 * size, f"this run's checkpoints ({readable_bytes(size)} each)")
        sizes = {"train_size": len(train_data[0]), "validation_size": len(validation_data[0]) if validation_data else 0,
                 "test_size": len(test_data[0])}
        try:
            if run is not None:
                record = run_config(name, spec, dataset, selection, config, device, stop_at, early_stopping, sizes)
                record.initial_weights = str(weights.source) if weights is not None else None
                run.write_config(record)
            state = fit(network, train_data, config, validation_data=validation_data, device=device,
                        callbacks=all_callbacks, run=run, progress=progress, generator=generator,
                        distributed_context=distributed_context)
        except KeyboardInterrupt as interrupt:   # before fit's own Ctrl-C handling began: no step, no checkpoint
            if run is None or run.file(CHECKPOINT).exists():
                raise
            number = stop_signal(interrupt)
            raise TrainingInterrupted(f"{stopped_by(number)} before the first training step: nothing was trained and "
                                      f"no checkpoint saved ({run.path} holds only its {CONFIG})",
                                      fix=f"start it again with the same command (it reuses {run.path}): "
                                          f"{python_command()}", signal_number=number) from None
        return _finish(name, spec, network, state, dataset, test_data, run, device, progress, on_train_end)


def new_run(model: str | None, config: TrainConfig, data: dict, *, recipe: str | None = None,
            epochs: int | None = None, out: str | Path | None = None, train_limit: int | None = None, test_limit: int | None = None,
            stop_at: str | None = None, early_stopping: int | None = None, overwrite: bool = False,
            progress: Progress | None = None, show_download: bool = True,
            on_train_end: Sequence[Callable[[Path], None]] = (), tensorboard: bool = False,
            distributed_context: DistributedContext | None = None) -> TrainResult:
    """What `convolab train` does for a new run: `model` (a preset, spec file or one-line spec) or a recipe's spec and
    hyperparameters over `config` (epochs: this many instead of the recipe's or config's own), the data loaded from `data` (load_dataset's arguments),
    trained into `out` (default runs/NAME, or runs/NAME-2, ... when that holds a run).
    tensorboard: also write TensorBoard event files into the run (tensorboard.py)."""
    from convolab.recipes import get_recipe

    if recipe is not None:
        chosen = get_recipe(recipe)
        if model not in (None, chosen.name):
            raise TrainingError(f"--recipe {recipe} brings its own model (recipe={recipe!r} in Python), and the model "
                                f"{model!r} was given too",
                                fix=f"give the recipe alone: convolab train --recipe {recipe} (model=None in Python)")
        # bfloat16 hardware on the CPU counts only when the CPU trains (a CUDA card's "auto" precision has its own),
        # with the fast engine (the reference engine runs float32 only)
        cpu_bf16 = (choose_device(config.device).type == "cpu" and config.engine == "fast"
                    and bf16_units(cpu_flags()) is not None)
        config = chosen.train_config(config, epochs, bf16_hardware=cpu_bf16)
        model = chosen.name                                  # its spec is the same-named preset
    elif epochs is not None:
        config = replace(config, epochs=epochs)
    if model is None:
        raise TrainingError("train needs a MODEL (a preset, spec file or one-line spec)",
                            fix="name one, for example cnn (convolab train cnn, or new_run('cnn', ...) in Python)")
    spec, weights = load_model_source(model)   # a Keras file brings its weights: training continues from them
    out = Path(out) if out else next_free_directory(Path("runs") / folder_name(spec.name))
    callbacks, hooks = [], list(on_train_end)
    if tensorboard and (distributed_context is None or distributed_context.is_main):   # rank 0 alone writes the run
        from convolab.tensorboard import TensorBoardWriter

        writer = TensorBoardWriter(out)
        callbacks, hooks = [writer], hooks + [writer.finish_run]   # the pictures and hparams once the test is done
    dataset, selection = load_selection(data, train_limit, test_limit, show_download)
    return train_run(spec, dataset, config, out, name=spec.name or out.name, selection=selection, stop_at=stop_at,
                     early_stopping=early_stopping, progress=progress, overwrite=overwrite, callbacks=callbacks,
                     on_train_end=hooks, distributed_context=distributed_context, weights=weights)


def resume_run(path: str | Path, *, dataset: Dataset | None = None, epochs: int | None = None,
               callbacks: Sequence[Callback] = (), progress: Progress | None = None,
               on_train_end: Sequence[Callable[[Path], None]] = (),
               distributed_context: DistributedContext | None = None) -> TrainResult:
    """Continue a stopped run from its checkpoint.pt; on CPU the final weights equal an uninterrupted run's.

    dataset: the data (default: loaded again as config.json records). epochs: train to this many in all (default: the
    run's own). A corrupted checkpoint raises RunError before anything is written.
    """
    path = require_run(path)
    writes = distributed_context is None or distributed_context.is_main   # in a torchrun job, rank 0 only
    if writes and not os.access(path, os.W_OK):  # a read-only disk or folder: --resume takes no other --out
        copy = path.with_name(f"{path.name}-copy")
        raise RunError(f"{path}: cannot resume it here: the folder cannot be written (read-only, or not yours)",
                       fix=f"copy the run to a folder you may write and resume the copy: cp -r {shlex.quote(str(path))} "
                           f"{shlex.quote(str(copy))} && convolab train --resume {shlex.quote(str(copy))}")
    with locked_run(path if writes else None):   # no second trainer (or resume) of this run while it trains
        return _resume_locked(path, dataset=dataset, epochs=epochs, callbacks=callbacks, progress=progress,
                              on_train_end=on_train_end, distributed_context=distributed_context)


def _resume_locked(path: Path, *, dataset: Dataset | None, epochs: int | None, callbacks: Sequence[Callback],
                   progress: Progress | None, on_train_end: Sequence[Callable[[Path], None]],
                   distributed_context: DistributedContext | None) -> TrainResult:
    """resume_run's work, holding the run's lock."""
    directory = RunDirectory(path)
    saved = directory.read_config()
    run = directory if distributed_context is None or distributed_context.is_main else None   # rank 0 writes
    checkpoint = read_checkpoint(path / "checkpoint.pt", required=RESUME_ENTRIES)
    progress = progress or make_progress("auto")
    config = replace(saved.train) if epochs is None else replace(saved.train, epochs=epochs)
    config.validate()
    finished = checkpoint.get("status") in ("finished", "stopped")
    if checkpoint["epoch"] >= config.epochs or checkpoint.get("status") == "stopped":
        raise RunError(
            f"{path}: nothing to resume: the run {checkpoint.get('status', 'ended')} after epoch {checkpoint['epoch']} "
            f"of {config.epochs}" + (f" ({checkpoint['stop_reason']})" if checkpoint.get("stop_reason") else ""),
            fix="train further with --resume --epochs N (N larger), or start a new run" if not
            checkpoint.get("stop_reason") else "start a new run with another --out",
        )
    recorded = saved.dataset
    dataset = dataset or load_dataset(**recorded.load_options(), progress=False)
    changes = recorded.folder_changes(dataset)
    if changes is not None and changes.moves_the_split:   # the weights would go on learning from other images
        source = recorded.selection.options.get("source")
        raise RunError(f"{path}: cannot resume: its image folder {source} changed since the run trained "
                       f"({changes.describe()}); its train/test split would no longer be the run's",
                       fix=f"restore the {changes.file_count} file(s) in {source} as they were, or train a new run on "
                           "the folder as it is now with another --out")
    recorded.warn_if_changed(dataset)   # files that only changed size or time: the same split, said in one line
    if tuple(dataset.class_names) != recorded.class_names or tuple(dataset.input_shape) != recorded.input_shape:
        raise RunError(f"{path}: the data differs from the run's ({dataset.name}, {dataset.input_shape}, "
                       f"{len(dataset.class_names)} classes; config.json records {recorded.name}, {recorded.input_shape}, "
                       f"{len(recorded.class_names)} classes)",
                       fix="resume with the data the run was trained on; if config.json was edited, restore it from a "
                           "copy of the run")
    selection, spec, stop_at, early_stopping = recorded.selection, saved.spec, saved.stop_at, saved.early_stopping
    train_data, validation_data, test_data = select_data(dataset, selection, config.validation_split)
    all_callbacks = build_callbacks(stop_at, early_stopping) + list(callbacks)
    device = choose_device(config.device)
    check_memory(spec, dataset.input_shape, dataset.num_classes, config, device)
    generator = seed_everything(config.seed)
    network = build_model(spec, dataset.input_shape, dataset.num_classes)
    load_weights(network, spec, checkpoint["model"], path / "checkpoint.pt")   # a clear error for another spec
    if run is not None:
        require_free_space(path, checkpoint_bytes(network, config.optimizer), "the next checkpoint")
    if run is not None and (epochs is not None or finished):
        run.write_config(replace(saved, train=config))
    where = (f"epoch {checkpoint['epoch'] + 1}, step {checkpoint['step'] + 1}" if checkpoint["step"]
             else f"epoch {checkpoint['epoch'] + 1}")
    progress.message(f"resuming {path} at {where} of {config.epochs}")
    # What other commands made from the weights this resume changes (training redraws its own curves at the end).
    outdated = run.remove(*(name for name in RUN_PRODUCTS if name not in TRAINING_FILES)) if run is not None else []
    if outdated:
        progress.message(f"removed {', '.join(outdated)}: made from the weights before this resume "
                         "(`convolab show`, `filters`, `report` and `export` make them again)")
    state = fit(network, train_data, config, validation_data=validation_data, device=device, callbacks=all_callbacks,
                run=run, progress=progress, resume_from=checkpoint, generator=generator,
                distributed_context=distributed_context)
    return _finish(saved.name or path.name, spec, network, state, dataset, test_data, run, device, progress,
                   on_train_end)


def evaluate_run(path: str | Path, data: dict | None = None, *, data_dir: str | None = None, offline: bool = False,
                 weights: str = "final", test_limit: int | None = None, device: str = "auto",
                 top_k_losses: int = 9) -> tuple[Evaluation, Dataset, str]:
    """A run's model on test data: the data the run recorded (data_dir and offline may say where it is now), or
    `data` (load_dataset's arguments) when it fits the run. Returns the evaluation, the dataset it used, and what was
    measured in words ("test", or "every image" of an image folder without train/ and test/).

    A test_split of None in `data` means: the run's own folder's split as it trained (its held-out images), and every
    image of another folder, which the run never saw. A test_split of 0 measures every image of a folder. Other data
    is fitted to the model's input size and channels unless `data` says otherwise."""
    device = choose_device(device)
    run = load_run(path, device=device, weights=weights)
    every_image = False
    if data is None:
        dataset = run.config.dataset.load(data_dir, offline)
    else:
        recorded_options = run.config.dataset.load_options(data_dir, offline)
        recorded = data.get("source") in (None, recorded_options.get("source"))   # the run's own data, maybe reshaped
        if recorded:
            data = {**recorded_options, **{key: value for key, value in data.items()
                                           if value is not None
                                           and key not in ("source", "data_dir", "offline", "seed")}}
        else:                                  # other data, prepared to the model's input as predict prepares images
            height, width, channels = run.input_shape
            data = {**data, "test_split": 0.0 if data.get("test_split") is None else data["test_split"],
                    "image_size": data.get("image_size") or (height, width),
                    "channels": data.get("channels") or channels}
        every_image = data.get("test_split") == 0
        dataset = load_dataset(**data, progress=False)
        if recorded:
            run.config.dataset.warn_if_changed(dataset)
    check_data_fits(run, dataset.name, dataset.input_shape, dataset.class_names,
                    fix=f"give data of that shape, e.g. --channels {run.input_shape[2]} --image-size "
                        f"{run.input_shape[0]},{run.input_shape[1]} (with --data for other data)"
                        if run.imported else "evaluate on the data the model was trained on (leave out --data; "
                                             "data=None in Python)")
    class_names = list(dataset.class_names) if run.imported else run.class_names
    images, labels = dataset.test_images, dataset.test_labels
    measured = "test"
    if every_image and len(labels) == 0:         # a folder without train/ and test/, none held out: all of it
        images, labels, measured = dataset.train_images, dataset.train_labels, "every image"
    if test_limit:
        images, labels = images[:test_limit], labels[:test_limit]
    # A run trained with test-time flips (a recipe's) is evaluated as its training tested it: config.json says so.
    return evaluate_model(run.model, images, labels, class_names, device=device, top_k_losses=top_k_losses,
                          test_time_flip=run.config.train.test_time_flip), dataset, measured
