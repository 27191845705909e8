"""TensorBoard event files for a run: what every tracker reads (TensorBoard, W&B's sync, Aim's converter).

    writer = TensorBoardWriter(run_dir)       a training callback: scalars per epoch and every N steps, weight
                                              histograms per epoch (and the weights as images: write_images=True)
    writer.finish_run(run_dir)                the hook after testing: the activation grid and the confusion matrix as
                                              images, and the hyperparameters with the final metrics as ONE hparams
                                              record in the same directory
    keras.callbacks.TensorBoard(log_dir)      the same from Keras's fit (hparams with the last epoch's metrics)

The writer is torch.utils.tensorboard's, which needs the `tensorboard` package: an optional extra
(pip install "convolab[tensorboard]"); without it, asking for TensorBoard says how to install it.
The hparams record is written here by hand: torch's add_hparams puts each call in a new subdirectory
(pytorch/pytorch #32651), which would split a run in two in TensorBoard's list.
"""
from __future__ import annotations

import importlib.util
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from convolab.callbacks import Callback
from convolab.errors import TrainingError

DEFAULT_UPDATE_FREQ = 100   # steps between the step scalars: the lab's epoch has 1,875
INSTALL = 'pip install "convolab[tensorboard]"   (or: pip install tensorboard)'
SEPARATOR = (0.85, 0.2, 0.2)   # RGB of the line between weight images: no grey, which would read as a weight


def require_tensorboard() -> None:
    """Raise TrainingError saying how to install the writer, unless the `tensorboard` package is there."""
    if importlib.util.find_spec("tensorboard") is None:
        raise TrainingError("TensorBoard logging needs the tensorboard package, which is not installed",
                            fix=INSTALL)


def plain_hparams(config: dict) -> dict:
    """Hyperparameters as TensorBoard takes them: numbers, strings and booleans only."""
    return {key: value for key, value in config.items() if isinstance(value, (int, float, str, bool))}


class TensorBoardWriter(Callback):
    """Event files in `log_dir` (a run directory): epoch/... scalars per epoch, step/... every `update_freq` steps,
    weights/... histograms every `histogram_freq` epochs (0: none)."""

    def __init__(self, log_dir: str | Path, update_freq: int = DEFAULT_UPDATE_FREQ, histogram_freq: int = 1,
                 close_at_train_end: bool = False, write_images: bool = False):
        require_tensorboard()
        if int(update_freq) < 1 or int(histogram_freq) < 0:
            raise TrainingError(f"update_freq={update_freq}, histogram_freq={histogram_freq}; expected a step count "
                                "of at least 1 and an epoch count of at least 0", fix="update_freq=100, histogram_freq=1")
        self.log_dir = Path(log_dir)
        self.update_freq, self.histogram_freq = int(update_freq), int(histogram_freq)
        self.close_at_train_end = close_at_train_end
        self.write_images = bool(write_images)
        self.writer = None
        self.global_step = 0
        self.config: dict = {}

    def _open(self):
        if self.writer is None:
            from torch.utils.tensorboard import SummaryWriter

            from convolab.runs import make_directory

            make_directory(self.log_dir)     # a file in the way, a read-only disk: its WriteError, before training
            quiet_event_writer_threads()
            self.writer = SummaryWriter(log_dir=str(self.log_dir))
        return self.writer

    @contextmanager
    def _writes(self):
        """A failed write of the event files (a full disk) as one WriteError naming the folder, not an OSError."""
        from convolab.runs import write_failure

        try:
            yield
        except OSError as error:
            raise write_failure(self.log_dir, error) from None

    def on_train_begin(self, state: Any) -> None:
        self._open()
        self.config = plain_hparams(vars(state.config))
        self.global_step = state.steps_done   # a resumed run's step scalars go on from where it stopped

    def on_step(self, state: Any, totals: Any) -> None:
        self.global_step += 1
        if self.global_step % self.update_freq == 0:
            metrics = totals.metrics()
            with self._writes():
                self.writer.add_scalar("step/loss", metrics["loss"], self.global_step)
                self.writer.add_scalar("step/accuracy", metrics["accuracy"], self.global_step)

    def on_epoch_end(self, state: Any) -> str | None:
        with self._writes():
            self._write_epoch(state)
        return None

    def _write_epoch(self, state: Any) -> None:
        for key, value in state.logs.items():
            if key != "epoch" and isinstance(value, (int, float)):
                self.writer.add_scalar(f"epoch/{key}", value, state.epoch)
        if self.histogram_freq and state.epoch % self.histogram_freq == 0:
            for name, parameter in state.model.named_parameters():
                values = parameter.detach().float().cpu()
                self.writer.add_histogram(f"weights/{name}", values, state.epoch)
                if self.write_images:
                    self.writer.add_images(f"weights/{name}/image", weight_images(values), state.epoch,
                                           dataformats="NCHW")
        self.writer.flush()

    def on_train_end(self, state: Any) -> None:
        if self.close_at_train_end:
            final = {f"final/{key}": value for key, value in state.logs.items()
                     if key not in ("epoch", "seconds", "cpu_seconds") and isinstance(value, (int, float))}
            self.write_hparams({**self.config, "epochs_trained": state.epoch}, final)
            self.close()

    def write_hparams(self, hparams: dict, metrics: dict) -> None:
        """One hparams record (the experiment, the session's values, its end) and the metrics it lists, all in
        this writer's own directory."""
        from torch.utils.tensorboard.summary import hparams as hparams_summaries

        writer = self._open()
        experiment, session_start, session_end = hparams_summaries(plain_hparams(hparams), metrics)
        with self._writes():
            for summary in (experiment, session_start, session_end):
                writer.file_writer.add_summary(summary)
            for key, value in metrics.items():
                writer.add_scalar(key, value, 0)
            writer.flush()

    def finish_run(self, run_dir: str | Path) -> None:
        """After testing (train_run's on_train_end hook): the lab's activation grid and the confusion matrix as
        images, then the hyperparameters with the test metrics; closes the files."""
        import numpy as np

        from convolab.activations import conv_layer_indices
        from convolab.plots import confusion_figure
        from convolab.report import ReportOptions, lab_grid
        from convolab.runs import load_run

        run = load_run(run_dir)
        writer = self._open()
        step = len(run.history)
        metrics = run.metrics or {}
        with self._writes():
            if "confusion_matrix" in metrics:
                writer.add_figure("pictures/confusion_matrix", confusion_figure(
                    np.array(metrics["confusion_matrix"]), run.class_names,
                    title=f"{run.name}: test confusion matrix"), step)
            if conv_layer_indices(run.spec):
                figure, _images, _filter = lab_grid(run, run.test_data(), ReportOptions())
                writer.add_figure("pictures/activations", figure, step)
        final = {f"final/{key}": float(metrics[key]) for key in ("test_loss", "test_accuracy") if key in metrics}
        if run.history:
            final.update({f"final/{key}": float(value) for key, value in run.history[-1].items()
                          if key not in ("epoch", "seconds", "cpu_seconds") and isinstance(value, (int, float))})
        hparams = {**plain_hparams(vars(run.config.train)), "model": run.spec.to_line(), "epochs_trained": step}
        self.write_hparams(hparams, final)
        self.close()

    def close(self) -> None:
        if self.writer is not None:
            writer, self.writer = self.writer, None
            with self._writes():
                writer.close()


def quiet_event_writer_threads() -> None:
    """Leave unprinted what TensorBoard's event-writer thread raises (once per process). That thread re-raises a
    failed write (a full disk) on its own, where Python prints the traceback, and the training's next write raises
    the same error, which TensorBoardWriter reports as one message: the traceback would only say it twice."""
    from tensorboard.summary.writer.event_file_writer import _AsyncWriterThread

    previous = threading.excepthook
    if getattr(previous, "convolab_event_writer", False):
        return

    def excepthook(args) -> None:
        if not isinstance(args.thread, _AsyncWriterThread):
            previous(args)

    excepthook.convolab_event_writer = True
    threading.excepthook = excepthook


def weight_images(weights: torch.Tensor) -> torch.Tensor:
    """A parameter as images (N, 3, H + 1, W + 1) in [0, 1], shaped as Keras's write_images shapes them: a vector one
    row, a matrix one image (its units across), a convolution kernel (out, in, h, w) one h x w image per filter and
    input channel. Grey for the values (0 mid-grey, the largest magnitude black or white) and a red line on the right
    and bottom of each, so that TensorBoard's grid of them (it lays them side by side) shows where each ends."""
    if weights.dim() == 1:
        grey = weights.view(1, 1, 1, -1)
    elif weights.dim() == 2:
        grey = weights.t().unsqueeze(0).unsqueeze(0)
    else:
        grey = weights.reshape(-1, 1, *weights.shape[-2:])
    grey = (grey / (2 * grey.abs().max().clamp_min(1e-12)) + 0.5).clamp(0.0, 1.0)
    count, _, height, width = grey.shape
    images = torch.tensor(SEPARATOR).view(1, 3, 1, 1).repeat(count, 1, height + 1, width + 1)
    images[:, :, :height, :width] = grey
    return images


class TensorBoard(TensorBoardWriter):
    """keras.callbacks.TensorBoard(log_dir="logs", histogram_freq=0, update_freq="epoch"): event files from fit."""

    def __init__(self, log_dir="logs", histogram_freq: int = 0, write_graph: bool = True, write_images: bool = False,
                 update_freq="epoch", **keras_arguments):
        from convolab.keras.surface import check_arguments

        check_arguments("keras.callbacks.TensorBoard", keras_arguments,
                        ["log_dir", "histogram_freq", "write_graph", "write_images", "update_freq"],
                        ("write_steps_per_second", "profile_batch", "embeddings_freq", "embeddings_metadata"))
        # write_graph is accepted and not written: convolab draws its model in its report instead. write_images, as in
        # Keras, draws the weights as images on the epochs that log histograms (histogram_freq > 0).
        steps = 10**12 if update_freq == "epoch" else update_freq if isinstance(update_freq, int) else None
        if steps is None:
            raise TrainingError(f"keras.callbacks.TensorBoard: update_freq={update_freq!r}; expected 'epoch' or a "
                                "number of steps", fix="update_freq='epoch' or update_freq=100")
        super().__init__(log_dir, update_freq=steps, histogram_freq=histogram_freq, close_at_train_end=True,
                         write_images=write_images)
