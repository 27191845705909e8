"""Training in its own process, watched live: the page of `convolab serve` starts, follows, stops and resumes it.

The server never trains in its own process (a training step holds the CPU; the page would freeze). It starts one
spawned process per training (`multiprocessing`, "spawn": the same on Linux, macOS and Windows, nothing inherited from
the server's threads), which runs `experiment.train_run` or `resume_run` exactly as `convolab train` does, and talks
back through files in a folder of its own:

  progress.jsonl   one JSON object a line: {"batches": [[step, loss, accuracy], ...]} (each batch's own loss and
                   accuracy, written in bunches at most every FLUSH_SECONDS) and {"epoch": {history row}}
  maps.json        the watched images' feature maps for one filter, every MAPS_EVERY steps (written atomically)
  status.json      {"state": "running" | "finished" | "stopped" | "failed", "message", "run"} (atomically)
  stop             created by the server: the worker stops after the current step and saves a resumable checkpoint

Files rather than pipes: a reader never blocks the writer, and what happened survives a server restart.
"""
from __future__ import annotations

import json
import math
import multiprocessing
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from convolab.callbacks import Callback
from convolab.errors import ConvolabError, RunError
from convolab.runs import atomic_write_json
from convolab.train import EpochTotals, Progress

FLUSH_SECONDS = 0.5     # batch points reach the page in bunches: one small write per half second costs nothing
MAPS_EVERY = 200        # steps between feature-map refreshes (ConvNetJS redraws every few hundred steps too)
STOP_CHECK_SECONDS = 0.2


class TrainingBusy(RunError):
    """A training was asked to start while another runs; the web page answers it with 409 Conflict."""

    http_status = 409


@dataclass
class TrainingJob:
    """What the page asked for, already checked by the server: a new run (model) or a resumed one (resume)."""

    out: str                                   # the run directory
    model: str | None = None                   # preset, exercise or one-line spec (None when resuming)
    config: dict = field(default_factory=dict)  # TrainConfig fields
    data_options: dict = field(default_factory=dict)
    train_limit: int | None = None
    test_limit: int | None = None
    stop_at: str | None = None
    resume: bool = False
    epochs: int | None = None                  # resume: train to this many epochs in all
    images: list[int] = field(default_factory=lambda: [0, 23, 28])
    filter_index: int = 1


class LiveProgress(Progress):
    """Writes each batch's loss and accuracy, each epoch's row and, every MAPS_EVERY steps, the watched maps."""

    def __init__(self, folder: Path, watcher: "MapWatcher"):
        super().__init__()
        self.folder = folder
        self.watcher = watcher
        self.pending: list[list[float]] = []
        self.previous = EpochTotals()
        self.steps_before = 0          # steps of earlier epochs: the page's x axis counts every step
        self.last_flush = time.perf_counter()
        self.last_stop_check = 0.0
        self.steps_per_epoch = 0

    def _append(self, record: dict) -> None:
        with open(self.folder / "progress.jsonl", "a", encoding="utf-8") as file:
            file.write(json.dumps(record) + "\n")

    def flush(self) -> None:
        if self.pending:
            self._append({"batches": self.pending})
            self.pending = []
        self.last_flush = time.perf_counter()

    def start_epoch(self, epoch: int, epochs: int, steps: int, done: int) -> None:
        self.steps_before = (epoch - 1) * steps
        self.steps_per_epoch = steps
        self.previous = EpochTotals(steps=done)
        self._append({"start_epoch": epoch, "epochs": epochs, "steps": steps})

    def step(self, totals: EpochTotals) -> None:
        """One batch done: its own loss and accuracy are the differences of the epoch's running sums."""
        count = totals.count - self.previous.count
        if count > 0:
            loss = (totals.loss_sum - self.previous.loss_sum) / count
            accuracy = (totals.correct - self.previous.correct) / count
            step = self.steps_before + totals.steps
            self.pending.append([step, round(loss, 5), round(accuracy, 4)])
            if step % MAPS_EVERY == 0:
                self.watcher.write(step)
        self.previous = EpochTotals(steps=totals.steps, count=totals.count, loss_sum=totals.loss_sum,
                                    correct=totals.correct)
        now = time.perf_counter()
        if now - self.last_flush >= FLUSH_SECONDS:
            self.flush()
        if now - self.last_stop_check >= STOP_CHECK_SECONDS:
            self.last_stop_check = now
            if (self.folder / "stop").exists():
                self.flush()
                # fit treats this as Ctrl-C after a finished step: it saves a resumable checkpoint and says where.
                raise KeyboardInterrupt

    def end_epoch(self, epoch: int, epochs: int, logs: dict) -> None:
        self.flush()
        self._append({"epoch": {key: value for key, value in logs.items()
                                if not (isinstance(value, float) and math.isnan(value))}})
        self.watcher.write(self.steps_before + self.steps_per_epoch)

    def message(self, text: str) -> None:
        self.flush()
        self._append({"message": text})

    def close(self) -> None:
        self.flush()


class MapWatcher(Callback):
    """Holds the training state (on_train_begin) so the progress can draw the watched images' maps mid-epoch.

    The maps come from a separate reference model loaded with the current weights: the training model, its modes and
    its random state are never touched, so watching does not change what is learnt.
    """

    def __init__(self, folder: Path, job: TrainingJob):
        self.folder = folder
        self.job = job
        self.state = None
        self.reference = None
        self.images, self.labels, self.indices = None, None, []

    def on_train_begin(self, state: Any) -> None:
        from convolab.model import build_model
        from convolab.runs import RunDirectory

        self.state = state
        config = RunDirectory(self.job.out).read_config()
        self.spec = config.spec
        self.reference = build_model(self.spec, tuple(config.dataset.input_shape), len(config.dataset.class_names))
        self.class_names = list(config.dataset.class_names)

    def watch(self, images, labels) -> None:
        """The test set the watched image numbers index (the worker's dataset, not loaded twice)."""
        chosen = [index for index in self.job.images if 0 <= index < len(images)]
        self.images, self.labels, self.indices = images[chosen], labels[chosen], chosen

    def write(self, step: int) -> None:
        from convolab.activations import capture, visual_layer_indices

        if self.state is None or not self.indices or not visual_layer_indices(self.spec):
            return
        self.reference.load_state_dict({key: value.detach().to("cpu") for key, value in
                                        self.state.model.state_dict().items()})
        activations = capture(self.reference, self.spec, self.images)
        layers = []
        for maps in activations.layers:
            channel = min(self.job.filter_index, maps.num_filters - 1)
            layers.append({"index": maps.index, "kind": maps.kind, "filter": channel,
                           "maps": [image_maps[:, :, channel].round(4).tolist() for image_maps in maps.values]})
        from convolab.images import image_lists

        atomic_write_json(self.folder / "maps.json", {"step": step, "images": self.indices,
                                                       "labels": self.labels.tolist(), "class_names": self.class_names,
                                                       "pixels": [image_lists(image) for image in self.images],
                                                       "predictions": activations.predictions.tolist(),
                                                       "layers": layers})


def write_status(folder: Path, state: str, message: str, run: str) -> None:
    atomic_write_json(folder / "status.json", {"state": state, "message": message, "run": run})


def train_worker(job: TrainingJob, folder: str) -> None:
    """The spawned process: train (or resume) the job, reporting through `folder`; never raises."""
    from convolab.data import load_dataset
    from convolab.experiment import DataSelection, resume_run, train_run
    from convolab.train import TrainConfig, TrainingInterrupted

    folder = Path(folder)
    watcher = MapWatcher(folder, job)
    progress = LiveProgress(folder, watcher)
    write_status(folder, "running", "loading the data", job.out)
    try:
        dataset = load_dataset(**job.data_options, progress=False)
        watcher.watch(dataset.test_images, dataset.test_labels)
        write_status(folder, "running", "training", job.out)
        if job.resume:
            result = resume_run(job.out, dataset=dataset, epochs=job.epochs, callbacks=[watcher], progress=progress)
        else:
            selection = DataSelection(options=dict(job.data_options), train_limit=job.train_limit,
                                      test_limit=job.test_limit)
            result = train_run(job.model, dataset, TrainConfig(**job.config), job.out, selection=selection,
                               stop_at=job.stop_at, callbacks=[watcher], progress=progress)
        state = "stopped" if result.state.stop_reason else "finished"
        reason = f" ({result.state.stop_reason})" if result.state.stop_reason else ""
        write_status(folder, state, f"{state} after epoch {result.state.epoch}{reason}: test accuracy "
                     f"{result.evaluation.accuracy:.4f}", job.out)
    except TrainingInterrupted as error:
        write_status(folder, "interrupted", error.message, job.out)
    except ConvolabError as error:
        write_status(folder, "failed", str(error), job.out)
    except Exception as error:  # noqa: BLE001 - the page must hear of any failure; the process ends either way
        write_status(folder, "failed", f"{type(error).__name__}: {error}", job.out)
    finally:
        progress.close()


class LiveTraining:
    """The server's side: one training at a time, its folder, and reading what it wrote."""

    def __init__(self):
        # The page polls status() on the server's threads while another request may start a training: the folder
        # swap, the progress offset and the lists are read and changed under this lock only.
        self.lock = threading.RLock()
        self.process: multiprocessing.process.BaseProcess | None = None
        self.folder: Path | None = None
        self.job: TrainingJob | None = None
        self.points: list[list[float]] = []
        self.epochs: list[dict] = []
        self.messages: list[str] = []
        self.plan: dict = {}
        self.offset = 0

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.is_alive()

    def require_idle(self) -> None:
        """TrainingBusy while a training runs: the page trains one model at a time."""
        if self.running and self._final():
            self.process.join(timeout=30)    # its last word is written; the process is only exiting
        if self.running:
            raise TrainingBusy(f"a training is already running ({Path(self.job.out).name}); one at a time",
                               fix="stop it first, or wait until it ends")

    def start(self, job: TrainingJob) -> None:
        with self.lock:
            self.require_idle()
            self._remove_folder()     # the last training's messages; its run directory stays, of course
            self.folder = Path(tempfile.mkdtemp(prefix="convolab-live-"))
            self.job, self.points, self.epochs, self.messages, self.plan, self.offset = job, [], [], [], {}, 0
            write_status(self.folder, "starting", "starting a training process", job.out)
            self.process = multiprocessing.get_context("spawn").Process(
                target=train_worker, args=(job, str(self.folder)), name="convolab-training", daemon=True)
            self.process.start()

    def _final(self) -> bool:
        status = json.loads((self.folder / "status.json").read_text(encoding="utf-8"))
        return status["state"] not in ("starting", "running")

    def stop(self) -> None:
        with self.lock:
            if not self.running:
                raise RunError("no training is running", fix="start one first")
            (self.folder / "stop").touch()

    def _read_progress(self) -> None:
        """Parse the lines appended since the last read (a partial last line waits for the next read)."""
        path = self.folder / "progress.jsonl"
        if not path.exists():
            return
        with open(path, "rb") as file:
            file.seek(self.offset)
            data = file.read()
        complete = data[: data.rfind(b"\n") + 1]
        self.offset += len(complete)
        for line in complete.decode("utf-8").splitlines():
            record = json.loads(line)
            if "batches" in record:
                self.points.extend(record["batches"])
            elif "epoch" in record:
                self.epochs.append(record["epoch"])
            elif "start_epoch" in record:
                self.plan = {"epoch": record["start_epoch"], "epochs": record["epochs"], "steps": record["steps"]}
            elif "message" in record:
                self.messages.append(record["message"])

    def status(self, since: int = 0) -> dict:
        """Everything the page shows: state, the batch points after `since`, epoch rows, the maps' step."""
        with self.lock:
            if self.folder is None:
                return {"state": "idle", "message": "no training started from this page yet", "points": [],
                        "epochs": [], "total_points": 0}
            self._read_progress()
            status = json.loads((self.folder / "status.json").read_text(encoding="utf-8"))
            if status["state"] in ("running", "starting") and not self.running:
                status = {**status, "state": "failed", "message": "the training process ended without a word "
                          f"(exit code {self.process.exitcode})"}
            maps_file = self.folder / "maps.json"
            maps_step = json.loads(maps_file.read_text(encoding="utf-8"))["step"] if maps_file.exists() else None
            return {**status, "run_name": Path(self.job.out).name, "points": self.points[max(since, 0):],
                    "total_points": len(self.points), "epochs": self.epochs, "plan": self.plan,
                    "messages": self.messages[-5:], "maps_step": maps_step, "running": self.running}

    def maps(self) -> dict | None:
        with self.lock:
            if self.folder is None or not (self.folder / "maps.json").exists():
                return None
            return json.loads((self.folder / "maps.json").read_text(encoding="utf-8"))

    def _remove_folder(self) -> None:
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)

    def close(self) -> None:
        """On server exit: ask the training to stop (it saves a checkpoint), wait for it, remove the folder."""
        if self.running:
            (self.folder / "stop").touch()
            self.process.join(timeout=60)
            if self.process.is_alive():
                self.process.terminate()
        self._remove_folder()
