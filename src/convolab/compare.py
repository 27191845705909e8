"""Several models on the same data and seed, then one side-by-side table: what each costs and what it buys.

    compare_models(["dnn", "cnn", "runs/old"], dataset, config, "runs/compare") -> Comparison
    render_comparison(comparison) -> str

Each entry is a model (preset, spec file or one-line spec: trained now) or a run directory (reused as it is). A model
whose run directory under `out_root` already holds a finished run of the same spec, data and hyperparameters is reused
too, unless `retrain=True`. `convolab compare`, `convolab lab` and `convolab sweep` all call `compare_models`.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from convolab.callbacks import StopAtTarget
from convolab.data import Dataset
from convolab.data.fingerprint import FolderChanges
from convolab.errors import ConvolabError, RunError, SpecError
from convolab.experiment import DataSelection, TrainResult, train_run
from convolab.runconfig import DataRecord, RunConfig
from convolab.runs import (CHECKPOINT, CONFIG, METRICS, ModelWeights, Run, RunDirectory, exists, folder_name,
                           load_model_source, load_run, read_checkpoint, require_run)
from convolab.shapes import analyze, totals
from convolab.spec import ModelSpec, resolve_spec
from convolab.timing import epoch_timing
from convolab.train import Progress, TrainConfig, make_progress


@dataclass
class ComparisonRow:
    """One model's line in the table."""

    name: str
    spec_line: str
    params: int
    macs: int                            # multiply-adds per image, forward pass
    seconds_per_epoch: float             # the median epoch's wall seconds (a busy machine stretches single epochs)
    final_train_accuracy: float
    best_val_accuracy: float | None      # None without a validation split
    test_accuracy: float
    epochs: int                          # epochs trained
    epochs_to_target: int | None         # first epoch meeting --stop-at; None if not reached or not asked
    run_dir: str | None
    reused: bool = False
    cpu_seconds_per_epoch: float | None = None   # the median epoch's CPU seconds (None: a run from before they were kept)
    busy_epochs: list[int] = field(default_factory=list)   # epochs far longer than the others: the machine was busy


@dataclass
class Comparison:
    """The rows, the target they were measured against, and notes (reused runs trained differently, say)."""

    rows: list[ComparisonRow]
    stop_at: str | None = None
    notes: list[str] = field(default_factory=list)
    results: list[TrainResult] = field(default_factory=list)   # the runs trained now (reused ones are not here)


def epochs_to_target(history: list[dict], target: StopAtTarget | None) -> int | None:
    """The first epoch whose row meets `target`, or None."""
    if target is None:
        return None
    return next((row["epoch"] for row in history if target.reached(row)), None)


def _row(name: str, spec: ModelSpec, input_shape, num_classes: int, history: list[dict], test_accuracy: float,
         target: StopAtTarget | None, run_dir: str | None, reused: bool) -> ComparisonRow:
    sums = totals(analyze(spec, input_shape, num_classes))
    validation = [row["val_accuracy"] for row in history if row.get("val_accuracy") is not None]
    timing = epoch_timing(history)
    return ComparisonRow(
        name=name, spec_line=spec.to_line(), params=sums["params"], macs=sums["macs"],
        seconds_per_epoch=timing.median_seconds, cpu_seconds_per_epoch=timing.median_cpu_seconds,
        busy_epochs=[epoch for epoch, _, _ in timing.busy_epochs],
        final_train_accuracy=history[-1]["accuracy"] if history else float("nan"),
        best_val_accuracy=max(validation) if validation else None, test_accuracy=test_accuracy,
        epochs=len(history), epochs_to_target=epochs_to_target(history, target), run_dir=run_dir, reused=reused)


def row_from_result(result: TrainResult, target: StopAtTarget | None = None) -> ComparisonRow:
    """The table row of a run trained just now."""
    return _row(result.name, result.spec, result.dataset.input_shape, result.dataset.num_classes, result.history,
                result.evaluation.accuracy, target, str(result.run_dir) if result.run_dir else None, reused=False)


def row_from_run(run: Run, target: StopAtTarget | None = None) -> ComparisonRow:
    """The table row of a finished run directory (its metrics.json must exist: the run reached its test)."""
    if run.metrics_problem:
        raise RunError(f"{run.path}: its test results cannot be read: {run.metrics_problem}",
                       fix=f"restore {METRICS} from a copy, or train the model again; `convolab evaluate {run.path}` "
                           "measures the run without them")
    if run.metrics is None:
        raise RunError(f"{run.path}: the run has no test results ({METRICS}); it did not finish",
                       fix=f"finish it first: convolab train --resume {run.path}")
    return _row(run.name, run.spec, run.input_shape, len(run.class_names), run.history, run.metrics["test_accuracy"],
                target, str(run.path), reused=True)


def run_name(entry: str, spec: ModelSpec, taken: set[str]) -> str:
    """A directory name for a model: its preset name, else its one-line form made path-safe; unique among `taken`."""
    base = folder_name(spec.name or entry.strip())
    name, number = base, 2
    while name in taken:
        name, number = f"{base}-{number}", number + 1
    taken.add(name)
    return name


def is_run_entry(entry: str) -> bool:
    """Whether a compare entry names a run directory (True) or a model (False); RunError for a path that is neither.

    A name with a slash (or starting with ~) is a path, never a one-line spec: a folder there that is not a run gets
    require_run's reason, and a path to nothing says so instead of being parsed as layers. A bare name ("cnn") is a
    run only when a run is there (a folder named like a preset does not hide the preset).
    """
    path = Path(entry).expanduser()
    looks_like_path = "/" in entry or os.sep in entry or entry.startswith("~")
    if exists(path) and path.is_dir() and (looks_like_path or (path / CONFIG).exists()
                                           or (path / CHECKPOINT).exists()):
        require_run(path)
        return True
    if not exists(path) and looks_like_path:
        raise RunError(f"{entry}: no such run directory or spec file",
                       fix="check the path; a run directory is what `convolab train --out` wrote, e.g. runs/cnn")
    return False


def is_run_directory(entry: str) -> bool:
    """Whether `entry` names an existing run directory (rather than a model)."""
    if not exists(entry):
        return False
    try:
        require_run(entry)
        return True
    except RunError:
        return False


def matching_finished_run(path: Path, spec: ModelSpec, dataset: Dataset, config: TrainConfig,
                          selection: DataSelection, stop_at: str | None) -> bool:
    """Whether `path` holds a finished run of this very spec, data, subset, hyperparameters and target."""
    if not (path / METRICS).is_file() or not same_experiment(path, spec, dataset, config, selection, stop_at):
        return False
    try:
        status = read_checkpoint(path / CHECKPOINT).get("status")
    except ConvolabError:
        return False
    return status in ("finished", "stopped")


def _saved_config(path: Path) -> RunConfig | None:
    """The config of the run at `path`; None when there is no run there, or its config cannot be read."""
    if not is_run_directory(str(path)):
        return None
    try:
        return RunDirectory(path).read_config()
    except ConvolabError:
        return None


def same_experiment(path: Path, spec: ModelSpec, dataset: Dataset, config: TrainConfig, selection: DataSelection,
                    stop_at: str | None) -> bool:
    """Whether the run at `path` was started with this very spec, data, subset, hyperparameters and target (finished
    or not: an interrupted try of this comparison may be trained again in its place)."""
    saved = _saved_config(path)
    if saved is None:
        return False
    recorded = saved.dataset.selection
    return (saved.spec.to_line() == spec.to_line() and saved.train == config and saved.dataset.name == dataset.name
            and recorded.train_limit == selection.train_limit and recorded.test_limit == selection.test_limit
            and saved.stop_at == stop_at)


def _changes_of_same_folder(recorded: DataRecord, dataset: Dataset) -> FolderChanges | None:
    """What changed in the image folder a run trained on, when `dataset` is that folder loaded now; None otherwise."""
    if recorded.selection.options.get("source") != dataset.options.get("source"):
        return None
    return recorded.folder_changes(dataset)


def _folder_changes_since(path: Path, dataset: Dataset) -> FolderChanges | None:
    """The folder changes since the run at `path` trained on `dataset`'s folder; None without a readable run there."""
    saved = _saved_config(path)
    return None if saved is None else _changes_of_same_folder(saved.dataset, dataset)


def _differences(run: Run, dataset: Dataset, config: TrainConfig, selection: DataSelection) -> list[str]:
    """What a reused run did differently from this comparison (the table is fair only without these)."""
    notes = []
    data, train = run.config.dataset, run.config.train
    if data.name != dataset.name:
        notes.append(f"data {data.name} (here {dataset.name})")
    changes = _changes_of_same_folder(data, dataset)
    if changes is not None:   # a run given by name is the user's choice: shown, with its test split called another
        notes.append(f"data {data.name} before the folder changed ({changes.file_count} file(s): "
                     f"{'another test split' if changes.moves_the_split else 'the same split, files edited or copied'})")
    if data.selection.train_limit != selection.train_limit:
        notes.append(f"train_limit {data.selection.train_limit} (here {selection.train_limit})")
    for key in ("seed", "epochs", "batch_size", "optimizer", "learning_rate", "validation_split"):
        if getattr(train, key) != getattr(config, key):
            notes.append(f"{key} {getattr(train, key)} (here {getattr(config, key)})")
    return notes


def checked_model(entry: str | ModelSpec, dataset: Dataset, label: str | None = None
                  ) -> tuple[ModelSpec, ModelWeights | None] | None:
    """A compare entry's model resolved on `dataset` with its shapes checked (SpecError, named by `label` or the
    entry, when it does not fit), and the weights it starts from; None for a run directory (trained already)."""
    if isinstance(entry, str) and is_run_entry(entry):
        return None
    spec, weights = load_model_source(entry) if isinstance(entry, str) else (entry, None)
    try:
        spec = resolve_spec(spec, dataset.input_shape, dataset.num_classes)
        analyze(spec, dataset.input_shape, dataset.num_classes)
    except SpecError as error:   # which of the models it is
        label = label or (entry if isinstance(entry, str) else spec.to_line())
        raise SpecError(f"{label}: {error.message}",
                        fix=error.fix) from None
    return spec, weights


def compare_models(entries: Sequence[str | ModelSpec], dataset: Dataset, config: TrainConfig, out_root: str | Path, *,
                   selection: DataSelection | None = None, stop_at: str | None = None, retrain: bool = False,
                   progress: Progress | None = None, on_train_end: Sequence[Callable[[Path], None]] = (),
                   names: Sequence[str] | None = None) -> Comparison:
    """Train each model (or reuse runs) on the same data and seed, then gather one row per entry.

    entries: presets, spec files, one-line specs, ModelSpecs, or run directories. out_root: where new runs go
    (out_root/NAME). retrain: train again in place of any run already at out_root/NAME (without it, a matching
    finished run is reused, an unfinished try of this comparison trained again, and a run trained differently is
    never replaced: RunError). names: directory names for the entries (default derived). on_train_end: called with
    each new run's directory (pictures).
    """
    progress = progress or make_progress("auto")
    selection = selection or DataSelection(options={"source": dataset.name})
    target = StopAtTarget.parse(stop_at) if stop_at else None
    comparison = Comparison(rows=[], stop_at=str(target) if target else None)
    taken: set[str] = set()
    # Every model is read and fitted to the data before the first one trains: a typo or a window larger than the
    # images in the last entry must not cost the trainings before it.
    models = [checked_model(entry, dataset, names[position] if names else None)
              for position, entry in enumerate(entries)]
    for position, entry in enumerate(entries):
        if models[position] is None:
            run = load_run(entry)
            taken.add(run.name)
            differences = _differences(run, dataset, config, selection)
            if differences:
                comparison.notes.append(f"{run.name} ({entry}) was trained differently: {', '.join(differences)}")
            comparison.rows.append(row_from_run(run, target))
            continue
        spec, weights = models[position]
        name = names[position] if names else run_name(entry if isinstance(entry, str) else (spec.name or "model"),
                                                      spec, taken)
        out = Path(out_root) / name
        # A finished run there trained on the folder before its files changed is neither reused (its test split is
        # another: the table would set numbers on different test images side by side) nor trained over (its results
        # would be lost without a word): the least surprising is to stop and say so, as for a run trained differently.
        # Files that only changed size or time (a copy without their times) keep the split: reused as before.
        changes = None if retrain or not exists(out / METRICS) else _folder_changes_since(out, dataset)
        if changes is not None and changes.moves_the_split:
            raise RunError(f"{out} holds a run trained on {dataset.options.get('source')} before the folder changed "
                           f"({changes.describe()}); its test split is no longer this comparison's",
                           fix="add --retrain to train the models again on the folder as it is now, or give another "
                               "--out")
        # A Keras file's run started from its weights: a finished run of the same spec need not have.
        if not retrain and weights is None and matching_finished_run(out, spec, dataset, config, selection, stop_at):
            progress.message(f"{name}: reusing the finished run in {out} (same spec, data and settings)")
            if not all((out / picture).is_file() for picture in ("curves.png", "confusion.png")):
                for hook in on_train_end:        # a try stopped after its metrics, before its pictures
                    hook(out)
            comparison.rows.append(row_from_run(load_run(out), target))
            continue
        if not retrain and is_run_directory(str(out)) and not same_experiment(out, spec, dataset, config, selection,
                                                                                 stop_at):
            raise RunError(f"{out} holds a run trained differently (another model, data or settings); this comparison "
                           "would replace it", fix="give another --out, or add --retrain to train it again there")
        progress.message(f"{name}: training {spec.to_line()} -> {out}")
        result = train_run(spec, dataset, config, out, name=name, selection=selection, stop_at=stop_at,
                           progress=progress, overwrite=True, on_train_end=on_train_end, weights=weights)
        comparison.results.append(result)
        comparison.rows.append(row_from_result(result, target))
    return comparison


# --- the table ------------------------------------------------------------------------------------------------------

def _millions(value: int) -> str:
    return f"{value / 1e6:.2f}M" if value >= 1e5 else f"{value:,}"


def _accuracy(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def render_comparison(comparison: Comparison) -> str:
    """The side-by-side table as plain text, then notes (reused runs, which trained differently)."""
    headers = ["model", "params", "MACs/image", "s/epoch", "CPU s/epoch", "train acc", "best val acc", "test acc",
               "epochs"]
    if comparison.stop_at:
        headers.append(f"epochs to {comparison.stop_at}")
    table = [headers]
    for row in comparison.rows:
        cells = [row.name + (" (reused)" if row.reused else ""), f"{row.params:,}", _millions(row.macs),
                 f"{row.seconds_per_epoch:.1f}",
                 "-" if row.cpu_seconds_per_epoch is None else f"{row.cpu_seconds_per_epoch:.1f}",
                 _accuracy(row.final_train_accuracy), _accuracy(row.best_val_accuracy),
                 _accuracy(row.test_accuracy), str(row.epochs)]
        if comparison.stop_at:
            cells.append("not reached" if row.epochs_to_target is None else str(row.epochs_to_target))
        table.append(cells)
    widths = [max(len(line[column]) for line in table) for column in range(len(headers))]
    lines = []
    for index, line in enumerate(table):
        lines.append("  ".join(cell.ljust(width) if column == 0 else cell.rjust(width)
                               for column, (cell, width) in enumerate(zip(line, widths))).rstrip())
        if index == 0:
            lines.append("  ".join("-" * width for width in widths))
    lines.append("s/epoch: the median epoch's wall seconds; CPU s/epoch: the median epoch's processor time, all threads")
    lines += [f"note: {row.name}'s epoch {', '.join(map(str, row.busy_epochs))} took far longer than its others: "
              "the machine was busy" for row in comparison.rows if row.busy_epochs]
    lines += [f"note: {note}" for note in comparison.notes]
    return "\n".join(lines)
