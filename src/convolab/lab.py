"""The classic Fashion-MNIST convolutions lab in one call: the two summaries, both networks trained, one table.

    run_lab() -> LabResult      what `convolab lab` (and the README's first command, ./dev lab) runs

The lab (Coursera's "Introduction to TensorFlow", course 1, week 3): a Dense network (Flatten, Dense 128 relu,
Dense 10 softmax) against a CNN (Conv2D 64 3x3 relu, MaxPooling2D 2, twice, then the same Dense head), 5 epochs, Adam
0.001, batch 32. The course reports about 0.89 / 0.87 train / test accuracy for the DNN and 0.93 / 0.91 for the CNN.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from convolab.compare import Comparison, compare_models, render_comparison
from convolab.data import Dataset, load_dataset
from convolab.experiment import DataSelection
from convolab.plots import write_run_pictures
from convolab.report import lab_pictures
from convolab.spec import load_spec
from convolab.summary import summarize
from convolab.train import Progress, TrainConfig, make_progress

LAB_MODELS = ("dnn", "cnn")
LAB_EPOCHS = 5
COURSE_TEST_ACCURACY = {"dnn": 0.87, "cnn": 0.91}   # what the course notebook prints, for the reader's comparison


@dataclass
class LabResult:
    """The lab's data, its comparison (rows and the trained runs), and where the runs are."""

    dataset: Dataset
    comparison: Comparison
    run_dirs: dict[str, Path]


def run_lab(epochs: int = LAB_EPOCHS, out_root: str | Path = "runs/lab", data_options: dict | None = None,
            train_limit: int | None = None, test_limit: int | None = None, seed: int = 0, device: str = "auto",
            progress: Progress | None = None, print_fn: Callable[[str], object] = print,
            on_train_end: Sequence[Callable[[Path], None]] = (), dataset: Dataset | None = None) -> LabResult:
    """Print the dnn and cnn summaries, train both (`epochs`, the lab's recipe) into out_root/dnn and out_root/cnn,
    print the comparison table; return everything for the steps that follow (pictures).

    data_options: load_dataset's arguments (default Fashion-MNIST). train_limit/test_limit: the first N images only,
    for quick tries. on_train_end: called with each run directory once it is written.
    """
    options = data_options or {"source": "fashion-mnist"}
    progress = progress or make_progress("auto")
    dataset = dataset or load_dataset(**options)
    selection = DataSelection(options=options, train_limit=train_limit, test_limit=test_limit)
    config = TrainConfig(epochs=epochs, seed=seed, device=device)
    for name in LAB_MODELS:
        print_fn(summarize(load_spec(name), dataset.input_shape, dataset.num_classes).rstrip("\n"))
        print_fn("")
    comparison = compare_models(list(LAB_MODELS), dataset, config, out_root, selection=selection, retrain=True,
                                progress=progress, on_train_end=(write_run_pictures, *on_train_end),
                                names=list(LAB_MODELS))
    print_fn("")
    print_fn(render_comparison(comparison))
    print_fn("the course reports test accuracy about " +
             ", ".join(f"{value:.2f} ({name})" for name, value in COURSE_TEST_ACCURACY.items()))
    run_dirs = {row.name: Path(row.run_dir) for row in comparison.rows if row.run_dir}
    result = LabResult(dataset=dataset, comparison=comparison, run_dirs=run_dirs)
    # The lab's end: "visualize the convolutions and pooling" (test images 0, 23, 28, filter 1), then one report.
    for path in lab_pictures(list(run_dirs.values()), Path(out_root) / "report.html"):
        print_fn(f"wrote {path}")
    return result
