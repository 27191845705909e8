"""`convolab serve`: the lab as a live local web page (Starlette + uvicorn), for any run under RUNS_DIR.

The page (src/convolab/web/: plain HTML, CSS and JavaScript, no build step, nothing fetched from the network) asks
this server for JSON; every number comes from the library: runs.load_run, shapes.analyze and summary.summary_dict,
activations.capture / value_origin / kernels, evaluate, images.load_image, experiment.train_run / resume_run (through
live.py, in a process of its own), diagram.architecture_svg.

Security, as a local server must (Jupyter's model):
  - it binds 127.0.0.1 unless --host says otherwise (then it warns);
  - a request whose Host header is not the bound host is refused (DNS rebinding: a web page whose name resolves to
    127.0.0.1 cannot read the API);
  - every /api request carries the random token printed in the start-up URL (header X-Convolab-Token), compared in
    constant time; the page keeps it in sessionStorage and removes it from the address bar;
  - uploads are size-limited while they are read, images are checked for their pixel count before decoding;
  - run names are resolved inside RUNS_DIR and refused if they would leave it; spec input never names a file;
  - a Content-Security-Policy allows only this origin: no inline script, no request elsewhere.
"""
from __future__ import annotations

import contextlib
import errno
import hmac
import json
import os
import re
import secrets
import socket
import threading
import webbrowser
from collections import OrderedDict
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from convolab.errors import ConvolabError, RunError
from convolab.images import image_lists

WEB = Path(__file__).with_name("web")
TOKEN_HEADER = "x-convolab-token"
MAX_UPLOAD_BYTES = 8 * 1024 * 1024       # a phone photo fits; anything bigger is not an image to classify
MAX_UPLOAD_PIXELS = 40_000_000           # checked from the header, before decoding (decompression bombs)
MAX_IMAGES = 64                          # images per request in the explorer
RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
LOOPBACK = ("127.0.0.1", "localhost", "::1")
CONTENT_SECURITY_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
                           "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
                           "frame-ancestors 'none'")


class RequestError(ConvolabError):
    """A request the page (or anyone) sent that cannot be served; `status` is the HTTP status it gets."""

    def __init__(self, message: str, fix: str | None = None, status: int = 400):
        super().__init__(message, fix)
        self.status = status


def require_dependencies() -> None:
    """ConvolabError saying how to install the web server when the `serve` extra is missing."""
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as error:
        raise ConvolabError(f"convolab serve needs the web server packages ({error.name} is not installed)",
                            fix="pip install 'convolab[serve]'") from None


# --- request arguments ------------------------------------------------------------------------------------------------

def int_argument(value: Any, name: str, low: int | None = None, high: int | None = None,
                 default: int | None = None) -> int:
    """An integer argument from a query string or JSON, within [low, high]; RequestError naming it otherwise."""
    if value is None or value == "":
        if default is None:
            raise RequestError(f"{name} is missing; expected an integer", fix=f"add {name}=N")
        return default
    try:
        number = int(value) if not isinstance(value, bool) and str(value).strip().lstrip("-").isdigit() else None
    except (TypeError, ValueError):
        number = None
    if number is None:
        raise RequestError(f"{name}={str(value)[:40]!r}; expected an integer", fix=f"give {name} as a whole number")
    if (low is not None and number < low) or (high is not None and number > high):
        raise RequestError(f"{name}={number} is out of range; expected {low} to {high}",
                           fix=f"pick {name} between {low} and {high}")
    return number


def int_list_argument(text: str | list | None, name: str, high: int, default: list[int]) -> list[int]:
    """'0,23,28' (or a JSON list [0, 23, 28]) -> [0, 23, 28], each in 0..high-1, at most MAX_IMAGES."""
    if not text:
        return default
    parts = ([str(part) for part in text] if isinstance(text, list)
             else [part for part in str(text).replace(" ", "").split(",") if part])
    if len(parts) > MAX_IMAGES:
        raise RequestError(f"{name}: {len(parts)} values; at most {MAX_IMAGES}", fix="choose fewer images")
    return [int_argument(part, name, 0, high - 1) for part in parts]


def float_argument(value: Any, name: str, default: float) -> float:
    if value is None or value == "":
        return default
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise RequestError(f"{name}={str(value)[:40]!r}; expected a number", fix=f"e.g. {name}={default}") from None
    if not np.isfinite(number):
        raise RequestError(f"{name}={value!r}; expected a finite number", fix=f"e.g. {name}={default}")
    return number


def finite_json(value: Any) -> Any:
    """`value` with every NaN or infinity replaced by None: JSON has no such numbers (a diverged run's loss is one),
    and the page's JSON.parse would refuse the whole response."""
    if isinstance(value, float):
        return value if np.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite_json(item) for item in value]
    return value


# The training form's labels for the command-line flags that the library's messages name (train.py's and callbacks.py's
# checks serve both): on the page, "set "batch size" to 32" instead of "use --batch-size 32". Flags the page has no
# field for (--data, --device, ...) are the server's settings and stay as they are.
PAGE_FIELDS = {"--epochs": "epochs", "--batch-size": "batch size", "--learning-rate": "learning rate",
               "--stop-at": "stop at", "--train-limit": "training images", "--validation-split": "validation split"}
_PAGE_FLAG = "|".join(re.escape(flag) for flag in PAGE_FIELDS)
_USE_FLAG = re.compile(rf"\b(?:use|add) ({_PAGE_FLAG}) ([^\s,;)]+)")
_FLAG = re.compile(rf"({_PAGE_FLAG})(?![\w-])")
# The messages name a flag and its Python argument ("use --epochs 5, say (epochs=5 in Python)"); the page has neither
_IN_PYTHON = re.compile(r" \(\w+=[^()]* in Python\)")


def in_page_words(text: str) -> str:
    """A message of the library's in the training form's words: each flag the form has a field for named by its label,
    the Python argument that the message names beside it left out."""
    text = _IN_PYTHON.sub("", text)
    text = _USE_FLAG.sub(lambda match: f'set "{PAGE_FIELDS[match[1]]}" to {match[2]}', text)
    return _FLAG.sub(lambda match: f'"{PAGE_FIELDS[match[1]]}"', text)


def printable(text: str) -> str:
    """`text` as valid UTF-8: a lone surrogate (from a JSON escape such as \\ud800) shown escaped, not a failed reply."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


# --- runs under RUNS_DIR ----------------------------------------------------------------------------------------------

def resolve_run(runs_dir: Path, run_id: str | None) -> Path:
    """The run directory named `run_id` ('lab/cnn') inside runs_dir; RequestError if it would leave it or is no run."""
    if not run_id:
        raise RequestError("no run given; expected run=NAME", fix="pick a run on the Runs page")
    relative = Path(run_id)
    if relative.is_absolute() or ".." in relative.parts or "\\" in run_id or "\x00" in run_id:
        raise RequestError(f"run {run_id[:80]!r} is outside the runs folder", fix="give a run name as listed on the Runs page",
                           status=404)
    root = runs_dir.resolve()
    target = (root / relative).resolve()
    if target != root and root not in target.parents:   # a symbolic link pointing out of RUNS_DIR
        raise RequestError(f"run {run_id[:80]!r} is outside the runs folder", fix="give a run name as listed on the Runs page",
                           status=404)
    path = runs_dir / relative       # as find_runs names it: inside runs_dir as given (relative, '.', or via a link)
    if not ((path / "config.json").is_file() and (path / "checkpoint.pt").is_file()):
        raise RequestError(f"no run named {run_id[:80]!r} in {runs_dir}", fix="give a run name as listed on the Runs page",
                           status=404)
    return path


def find_runs(runs_dir: Path, depth: int = 3) -> list[Path]:
    """Every run directory (config.json and checkpoint.pt) under runs_dir, up to `depth` folders down, sorted; not
    those a symbolic link puts outside it (resolve_run refuses them, so the page could not open them)."""
    found: list[Path] = []
    root = runs_dir.resolve()

    def inside(folder: Path) -> bool:
        target = folder.resolve()
        return target == root or root in target.parents

    def walk(folder: Path, level: int) -> None:
        if (folder / "config.json").is_file() and (folder / "checkpoint.pt").is_file():
            found.append(folder)
            return
        if level >= depth:
            return
        try:
            children = sorted(child for child in folder.iterdir()
                              if child.is_dir() and not child.name.startswith(".") and inside(child))
        except OSError:
            return
        for child in children:
            walk(child, level + 1)

    walk(runs_dir, 0)
    return found


def run_listing(runs_dir: Path, path: Path) -> dict:
    """One row of the Runs page, from the run's small files only (config, history, metrics; no weights)."""
    from convolab.runs import RunDirectory, read_json

    row: dict[str, Any] = {"id": path.relative_to(runs_dir).as_posix() or ".", "folder": path.name}
    try:
        config = RunDirectory(path).read_config()
        history = read_json(path / "history.json") if (path / "history.json").is_file() else []
        metrics = read_json(path / "metrics.json") if (path / "metrics.json").is_file() else {}
    except ConvolabError as error:
        return {**row, "name": path.name, "error": error.message}
    if not (isinstance(history, list) and all(isinstance(entry, dict) for entry in history)):
        return {**row, "name": path.name, "error": f"{path / 'history.json'} is not a list of epochs"}
    if not isinstance(metrics, dict):
        return {**row, "name": path.name, "error": f"{path / 'metrics.json'} is not an object of test metrics"}
    if not metrics:   # no test yet: running, or stopped from the page (resumable); the checkpoint says which
        from convolab.runs import read_checkpoint

        try:
            metrics = {"status": read_checkpoint(path / "checkpoint.pt").get("status", "unknown")}
        except ConvolabError as error:
            metrics = {"status": f"unreadable checkpoint: {error.message}"}
    seconds = [entry.get("seconds") for entry in history if isinstance(entry.get("seconds"), (int, float))]
    return {**row, "name": str(config.name or path.name), "spec": config.spec.to_line(),
            "dataset": config.dataset.name, "epochs": len(history), "planned_epochs": config.train.epochs,
            "status": metrics.get("status") or "finished",
            "test_accuracy": metrics.get("test_accuracy"), "test_loss": metrics.get("test_loss"),
            "seconds_per_epoch": (sum(seconds) / len(seconds)) if seconds else None,
            "train": asdict(config.train), "history": history, "created": config.created}


class LoadedRun:
    """A run with what the pages need of it, computed once: the model, its test set, the test logits."""

    def __init__(self, path: Path):
        from convolab.activations import visual_layer_indices
        from convolab.runs import load_run
        from convolab.shapes import analyze

        self.run = load_run(path)
        self.images, self.labels = self.run.test_data()
        self.reports = analyze(self.run.spec, self.run.input_shape, len(self.run.class_names))
        self.visual = visual_layer_indices(self.run.spec)
        self.stamp = (path / "checkpoint.pt").stat().st_mtime_ns    # a newer checkpoint means: load again
        self._logits: torch.Tensor | None = None
        self._maps: OrderedDict[tuple[int, ...], Any] = OrderedDict()

    @property
    def logits(self) -> torch.Tensor:
        from convolab.evaluate import predict_logits

        if self._logits is None:
            self._logits = predict_logits(self.run.model, self.images)
        return self._logits

    @property
    def has_logits(self) -> bool:
        return self._logits is not None

    @property
    def predictions(self) -> torch.Tensor:
        return self.logits.argmax(dim=1)

    def activations(self, indices: tuple[int, ...]):
        """Every conv/pool layer's maps for these test images (all filters), kept for the next filter change."""
        from convolab.activations import capture

        if indices not in self._maps:
            self._maps[indices] = capture(self.run.model, self.run.spec, self.images[list(indices)])
            while len(self._maps) > 8:
                self._maps.popitem(last=False)
        self._maps.move_to_end(indices)
        return self._maps[indices]


class Lab:
    """The server's state: RUNS_DIR, the token, loaded runs (a few, most recent kept), the live training."""

    def __init__(self, runs_dir: Path, token: str, data_options: dict | None = None):
        from convolab.live import LiveTraining

        self.runs_dir = Path(runs_dir)
        self.token = token
        self.data_options = dict(data_options or {"source": "fashion-mnist"})
        self.loaded: OrderedDict[Path, LoadedRun] = OrderedDict()
        self.lock = threading.Lock()     # torch and the caches are used by one request at a time
        self.training = LiveTraining()

    def load(self, run_id: str | None) -> LoadedRun:
        path = resolve_run(self.runs_dir, run_id)
        cached = self.loaded.get(path)
        if cached is None or cached.stamp != (path / "checkpoint.pt").stat().st_mtime_ns:
            cached = LoadedRun(path)
            self.loaded[path] = cached
            while len(self.loaded) > 4:
                self.loaded.popitem(last=False)
        self.loaded.move_to_end(path)
        return cached


# --- what each page asks for --------------------------------------------------------------------------------------------

def layer_label(loaded: LoadedRun, index: int) -> str:
    report = loaded.reports[index]
    return f"{report.name} ({report.kind})"


def maps_payload(loaded: LoadedRun, indices: list[int], filter_index: int) -> dict:
    """The explorer's grid: for each image, every conv/pool map of one filter (clamped to each layer's count)."""
    activations = loaded.activations(tuple(indices))
    layers = []
    for maps in activations.layers:
        channel = min(filter_index, maps.num_filters - 1)
        layers.append({"index": maps.index, "name": layer_label(loaded, maps.index), "kind": maps.kind,
                       "filters": maps.num_filters, "filter": channel,
                       "maps": [np.round(values[:, :, channel], 4).tolist() for values in maps.values]})
    predicted = activations.predictions.tolist()
    names = loaded.run.class_names
    images = [{"index": index, "label": int(loaded.labels[index]), "label_name": names[int(loaded.labels[index])],
               "predicted": int(predicted[position]), "predicted_name": names[int(predicted[position])],
               "pixels": image_lists(loaded.images[index])} for position, index in enumerate(indices)]
    return {"run": loaded.run.name, "filter": filter_index, "layers": layers, "images": images,
            "max_filter": min((layer["filters"] for layer in layers), default=1) - 1}


def image_rows(loaded: LoadedRun, indices: list[int]) -> list[dict]:
    """Number, true and predicted class of some test images (predicting only these unless the whole set is done)."""
    from convolab.evaluate import predict_logits

    names = loaded.run.class_names
    if loaded.has_logits or not indices:
        predicted = loaded.predictions[indices] if indices else torch.zeros(0, dtype=torch.int64)
    else:
        predicted = predict_logits(loaded.run.model, loaded.images[indices]).argmax(dim=1)
    return [{"index": index, "label": names[int(loaded.labels[index])], "predicted": names[int(guess)],
             "correct": bool(guess == loaded.labels[index])} for index, guess in zip(indices, predicted)]


def choose_images(loaded: LoadedRun, by: str, class_index: int | None, start: int, limit: int) -> list[int]:
    """Test image indices: from `start` (by index), of one true class, or among the misclassified (of a class)."""
    count = len(loaded.labels)
    if by == "index":
        return list(range(start, min(start + limit, count)))
    mask = torch.ones(count, dtype=torch.bool)
    if class_index is not None:
        mask &= loaded.labels == class_index
    if by == "misclassified":
        mask &= loaded.predictions != loaded.labels
    elif by != "class":
        raise RequestError(f"by={by[:40]!r}; expected index, class or misclassified", fix="by=misclassified")
    return torch.nonzero(mask).flatten()[start:start + limit].tolist()


def model_payload(loaded: LoadedRun) -> dict:
    from convolab.diagram import architecture_svg
    from convolab.summary import row_explanations, summary_dict, total_lines

    summary = summary_dict(loaded.run.spec.name or loaded.run.name, loaded.reports)
    for row, report in zip(summary["layers"], loaded.reports):
        row["explained"] = row_explanations(report)
    return {"run": loaded.run.name, "summary": summary, "totals_text": total_lines(loaded.reports),
            "svg": architecture_svg(loaded.reports, loaded.run.name), "image": image_lists(loaded.images[0]),
            "class_names": loaded.run.class_names,
            "spec": loaded.run.spec.to_line()}


def evaluation_payload(loaded: LoadedRun) -> dict:
    from convolab.evaluate import evaluate_logits

    evaluation = evaluate_logits(loaded.logits, loaded.labels, loaded.run.class_names, top_k_losses=12)
    data = evaluation.to_dict()
    for entry, item in zip(data["top_losses"], evaluation.top_losses):
        entry["pixels"] = image_lists(loaded.images[item.index])
    return {"run": loaded.run.name, **data}


def predict_payload(loaded: LoadedRun, body: bytes, invert: str, filter_index: int) -> dict:
    """An uploaded or drawn image: what the model receives, the top-3 classes, every conv/pool map of one filter."""
    from convolab.activations import capture
    from convolab.images import load_image
    from convolab.predict import top_classes

    image = load_image(body, loaded.run.input_shape, invert={"auto": "auto", "yes": True, "no": False}[invert],
                       max_pixels=MAX_UPLOAD_PIXELS)
    activations = capture(loaded.run.model, loaded.run.spec, image.unsqueeze(0))
    probabilities = torch.from_numpy(activations.logits).softmax(dim=1)
    top = top_classes(probabilities, loaded.run.class_names, 3)[0]
    layers = []
    for maps in activations.layers:
        channel = min(filter_index, maps.num_filters - 1)
        layers.append({"index": maps.index, "name": layer_label(loaded, maps.index), "kind": maps.kind,
                       "filter": channel, "maps": [np.round(maps.values[0][:, :, channel], 4).tolist()]})
    return {"input": image_lists(image), "top": [{"class": name, "probability": value} for name, value in top],
            "layers": layers}


def filters_payload(loaded: LoadedRun, image: int, layer: int) -> dict:
    """Every filter's map of one layer for one image, with each filter's activity (variance) to sort by."""
    from convolab.activations import check_layer

    check_layer(loaded.run.spec, layer)
    maps = loaded.activations((image,)).layer(layer)
    values = maps.values[0]                                       # (H, W, C)
    activity = values.reshape(-1, values.shape[-1]).var(axis=0)
    return {"layer": layer, "name": layer_label(loaded, layer), "image": image,
            "maps": [np.round(values[:, :, channel], 3).tolist() for channel in range(values.shape[-1])],
            "activity": [float(value) for value in activity]}


# --- training from the page -------------------------------------------------------------------------------------------

def names_a_file(text: str) -> bool:
    """Whether `text` names something in the server's working directory (a name the OS refuses names nothing)."""
    try:
        return os.path.lexists(text)
    except (OSError, ValueError):
        return False


def model_text(text: Any) -> str:
    """A preset, an exercise or a one-line spec from the page; never a file path (the page must not read files)."""
    from convolab.keras_files import is_keras_file
    from convolab.spec import PRESETS
    from convolab.sweep import EXERCISES

    if text is not None and not isinstance(text, str):
        raise RequestError(f"model={str(text)[:40]} (a JSON {type(text).__name__}); expected text: a preset (cnn), an "
                           "exercise (cnn16) or a one-line spec", fix=f"e.g. {PRESETS['cnn']}")
    if text is None or not text.strip():
        raise RequestError("model is missing; expected a preset (cnn), an exercise (cnn16) or a one-line spec",
                           fix=f"e.g. {PRESETS['cnn']}")
    text = text.strip()
    if text.lower() in EXERCISES and text.lower() not in PRESETS:
        return EXERCISES[text.lower()][0]
    # load_spec reads a Keras file or any existing file by its bare name too, relative to where the server runs
    if text.lower() not in PRESETS and ("/" in text or "\\" in text or is_keras_file(text) or names_a_file(text)
                                        or text.lower().endswith((".yaml", ".yml", ".json"))):
        raise RequestError(f"model {text[:80]!r} looks like a file; the page takes presets and one-line specs",
                           fix="train a spec file with `convolab train FILE --out RUNS_DIR/NAME`")
    return text


def training_job(lab: Lab, body: Any) -> Any:
    """A checked TrainingJob from the page's form; RequestError or the library's errors for anything wrong."""
    from convolab.callbacks import StopAtTarget
    from convolab.data import load_dataset
    from convolab.live import TrainingJob
    from convolab.runs import RunDirectory
    from convolab.shapes import analyze
    from convolab.spec import load_spec
    from convolab.train import TrainConfig, metric_names

    if not isinstance(body, dict):
        raise RequestError("expected a JSON object with model, name, epochs, ...", fix="send the form again")
    name = str(body.get("name") or "").strip()
    if not RUN_NAME.fullmatch(name):
        raise RequestError(f"run name {name[:80]!r}; expected letters, digits, '.', '_' or '-' (at most 64, no '/')",
                           fix="e.g. cnn-live")
    out = lab.runs_dir / name
    if RunDirectory(out).has_run():
        raise RequestError(f"a run named {name!r} already exists in {lab.runs_dir}", fix="choose another name",
                           status=409)
    if out.is_symlink() or (out.exists() and lab.runs_dir.resolve() not in out.resolve().parents):
        raise RequestError(f"{name!r} in {lab.runs_dir} is a link to another folder: the run would not be in the runs "
                           "folder, and the page could not open it", fix="choose another name", status=409)
    text = model_text(body.get("model"))
    spec = load_spec(text)
    dataset = load_dataset(**lab.data_options, progress=False)
    analyze(spec, dataset.input_shape, dataset.num_classes)       # a spec that cannot be built fails here, not later
    config = TrainConfig(epochs=int_argument(body.get("epochs"), "epochs", 1, 1000, 5),
                         batch_size=int_argument(body.get("batch_size"), "batch_size", 1, 65536, 32),
                         learning_rate=float_argument(body.get("learning_rate"), "learning_rate", 0.001),
                         validation_split=float_argument(body.get("validation_split"), "validation_split", 0.0))
    config.validate()
    stop_at = str(body.get("stop_at") or "").strip() or None
    if stop_at:
        StopAtTarget.parse(stop_at).check(metric_names(config.validation_split > 0))
    limit = body.get("train_limit")
    train_limit = int_argument(limit, "train_limit", 1, len(dataset.train_labels)) if limit not in (None, "") else None
    images = int_list_argument(body.get("images"), "images", len(dataset.test_labels), [0, 23, 28])
    return TrainingJob(out=str(out), model=text, config=asdict(config), data_options=lab.data_options,
                       train_limit=train_limit, stop_at=stop_at, images=images,
                       filter_index=int_argument(body.get("filter"), "filter", 0, 4096, 1))


def resume_job(lab: Lab, body: Any) -> Any:
    from convolab.live import TrainingJob
    from convolab.runs import RunDirectory, read_checkpoint

    if not isinstance(body, dict):
        raise RequestError("expected a JSON object with run (and epochs)", fix="send the form again")
    path = resolve_run(lab.runs_dir, str(body.get("run") or ""))
    checkpoint = read_checkpoint(path / "checkpoint.pt")
    config = RunDirectory(path).read_config()
    planned = config.train.epochs
    epochs = int_argument(body.get("epochs"), "epochs", 1, 1000, planned)
    if checkpoint.get("status") == "stopped":   # its stop-at goal or early stopping ended it: more epochs change nothing
        raise RequestError(f"run {path.name!r}: nothing to resume: it stopped after epoch {checkpoint.get('epoch')} "
                           "(its stop-at goal or early stopping ended it)",
                           fix="start a new run from the Train page", status=409)
    if checkpoint.get("epoch", 0) >= epochs:
        raise RequestError(f"run {path.name!r}: nothing to resume: it {checkpoint.get('status', 'ended')} after epoch "
                           f"{checkpoint.get('epoch')} of {epochs}", fix="ask for more epochs, or start a new run",
                           status=409)
    options = dict(config.dataset.selection.options) or lab.data_options
    return TrainingJob(out=str(path), resume=True, epochs=epochs, data_options=options,
                       images=int_list_argument(body.get("images"), "images", 10 ** 9, [0, 23, 28]),
                       filter_index=int_argument(body.get("filter"), "filter", 0, 4096, 1))


# --- the app ----------------------------------------------------------------------------------------------------------

def create_app(runs_dir: str | Path, token: str, host: str = "127.0.0.1", data_options: dict | None = None):
    """The Starlette application: static page, JSON API, Host and token checks, security headers."""
    require_dependencies()
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.middleware.trustedhost import TrustedHostMiddleware
    from starlette.requests import Request
    from starlette.responses import FileResponse, JSONResponse, Response
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    lab = Lab(Path(runs_dir), token, data_options)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        lab.training.close()     # a training still running is asked to stop and save its checkpoint

    def api(handler, lock: bool = True):
        """A JSON endpoint: the token checked first; ConvolabError -> {error, fix} with its status."""
        async def endpoint(request: Request) -> Response:
            given = request.headers.get(TOKEN_HEADER, "")
            if not hmac.compare_digest(given.encode("utf-8", "replace"), lab.token.encode("utf-8")):
                return JSONResponse({"error": "missing or wrong token", "fix": "open the URL convolab serve printed, "
                                     "with its ?token=..."}, status_code=403)
            body = None
            if request.method == "POST":
                try:
                    body = await read_body(request)
                except TooLarge as error:
                    return JSONResponse({"error": str(error), "fix": "use a smaller image (at most 8 MB)"},
                                        status_code=413)
            from starlette.concurrency import run_in_threadpool

            def call():
                if lock:
                    with lab.lock:
                        return handler(request, body)
                return handler(request, body)
            try:
                result = await run_in_threadpool(call)
            except RequestError as error:
                return error_response(error.message, error.fix, error.status)
            except ConvolabError as error:        # 400, or the error's own (live.TrainingBusy: 409 Conflict)
                return error_response(error.message, error.fix, getattr(error, "http_status", 400))
            except Exception as error:  # noqa: BLE001 - a bug: the page still gets a message it can show
                return error_response(f"internal error: {type(error).__name__}: {error}",
                                      "this is a bug in convolab; please report it", 500)
            try:
                return JSONResponse(result)
            except ValueError:                     # NaN or infinity somewhere (Starlette refuses them): null instead
                return JSONResponse(finite_json(result))
        return endpoint

    def error_response(message: str, fix: str | None, status: int) -> Response:
        return JSONResponse({"error": printable(in_page_words(message)), "fix": printable(in_page_words(fix or ""))},
                            status_code=status)

    async def read_body(request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > MAX_UPLOAD_BYTES:
            raise_too_large(int(declared))
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_UPLOAD_BYTES:
                raise_too_large(size)
            chunks.append(chunk)
        return b"".join(chunks)

    def raise_too_large(size: int):
        raise TooLarge(f"the request is over {MAX_UPLOAD_BYTES // (1024 * 1024)} MB (at least {size:,} bytes)")

    def json_body(body: bytes) -> Any:
        try:
            parsed = json.loads(body or b"null")
        except (ValueError, RecursionError):       # RecursionError: nested deeper than Python's stack
            raise RequestError("the request body is not JSON", fix="send the form from the page") from None
        try:
            json.dumps(parsed, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:                 # a lone surrogate escape (\\ud800): no file name or spec can hold it
            raise RequestError("the request body holds text that is not valid Unicode (a lone \\u surrogate escape)",
                               fix="send the form from the page") from None
        return parsed

    def query(request: Request, name: str) -> str | None:
        return request.query_params.get(name)

    # handlers: (request, body) -> JSON-ready value
    def info(request, body):
        from convolab.spec import PRESETS
        from convolab.sweep import EXERCISES

        return {"runs_dir": str(lab.runs_dir), "presets": PRESETS,
                "exercises": {name: {"spec": line, "what": what} for name, (line, what) in EXERCISES.items()},
                "data": lab.data_options.get("source", "fashion-mnist")}

    def runs(request, body):
        return {"runs_dir": str(lab.runs_dir), "runs": [run_listing(lab.runs_dir, path) for path in find_runs(lab.runs_dir)]}

    def run_detail(request, body):
        path = resolve_run(lab.runs_dir, query(request, "run"))
        listing = run_listing(lab.runs_dir, path)
        from convolab.runs import read_json

        if "error" in listing:                     # damaged files: the row says which, as on the Runs page
            return listing
        metrics = read_json(path / "metrics.json") if (path / "metrics.json").is_file() else None
        if metrics:
            listing["per_class_accuracy"] = metrics.get("per_class_accuracy")
        return listing

    def model(request, body):
        return model_payload(lab.load(query(request, "run")))

    def images(request, body):
        loaded = lab.load(query(request, "run"))
        classes = len(loaded.run.class_names)
        class_text = query(request, "class")
        class_index = int_argument(class_text, "class", 0, classes - 1) if class_text not in (None, "") else None
        chosen = choose_images(loaded, query(request, "by") or "index", class_index,
                               int_argument(query(request, "start"), "start", 0, 10 ** 9, 0),
                               int_argument(query(request, "limit"), "limit", 1, 200, 12))
        return {"images": image_rows(loaded, chosen), "class_names": loaded.run.class_names,
                "count": len(loaded.labels)}

    def maps(request, body):
        loaded = lab.load(query(request, "run"))
        indices = int_list_argument(query(request, "images"), "images", len(loaded.labels), [0, 23, 28])
        return maps_payload(loaded, indices, int_argument(query(request, "filter"), "filter", 0, 4096, 1))

    def filters(request, body):
        loaded = lab.load(query(request, "run"))
        image = int_argument(query(request, "image"), "image", 0, len(loaded.labels) - 1, 0)
        layer = int_argument(query(request, "layer"), "layer", 0, len(loaded.run.spec.layers) - 1,
                             loaded.visual[0] if loaded.visual else 0)
        return filters_payload(loaded, image, layer)

    def origin(request, body):
        from convolab.activations import value_origin

        loaded = lab.load(query(request, "run"))
        image = int_argument(query(request, "image"), "image", 0, len(loaded.labels) - 1)
        layer = int_argument(query(request, "layer"), "layer", 0, len(loaded.run.spec.layers) - 1)
        return value_origin(loaded.run.model, loaded.run.spec, loaded.images[image], layer,
                            int_argument(query(request, "filter"), "filter", 0, 4096),
                            int_argument(query(request, "row"), "row", 0, 4096),
                            int_argument(query(request, "column"), "column", 0, 4096))

    def evaluation(request, body):
        return evaluation_payload(lab.load(query(request, "run")))

    def pair(request, body):
        loaded = lab.load(query(request, "run"))
        classes = len(loaded.run.class_names)
        true = int_argument(query(request, "true"), "true", 0, classes - 1)
        predicted = int_argument(query(request, "predicted"), "predicted", 0, classes - 1)
        mask = (loaded.labels == true) & (loaded.predictions == predicted)
        chosen = torch.nonzero(mask).flatten()[:int_argument(query(request, "limit"), "limit", 1, MAX_IMAGES, 8)]
        return {"images": image_rows(loaded, chosen.tolist()), "count": int(mask.sum())}

    def predict(request, body):
        loaded = lab.load(query(request, "run"))
        invert = query(request, "invert") or "auto"
        if invert not in ("auto", "yes", "no"):
            raise RequestError(f"invert={invert[:20]!r}; expected auto, yes or no", fix="invert=auto")
        if not body:
            raise RequestError("no image in the request", fix="draw something, or drop a PNG or JPEG file")
        return predict_payload(loaded, body, invert, int_argument(query(request, "filter"), "filter", 0, 4096, 1))

    def train_status(request, body):
        status = lab.training.status(int_argument(query(request, "since"), "since", 0, 10 ** 9, 0))
        return {**status, "message": in_page_words(str(status.get("message") or ""))}

    def train_maps(request, body):
        return {"maps": lab.training.maps()}

    def train_start(request, body):
        lab.training.require_idle()
        lab.training.start(training_job(lab, json_body(body)))
        return lab.training.status()

    def train_resume(request, body):
        lab.training.require_idle()
        lab.training.start(resume_job(lab, json_body(body)))
        return lab.training.status()

    def train_stop(request, body):
        lab.training.stop()
        return {"stopping": True}

    async def index(request: Request) -> Response:
        return FileResponse(WEB / "index.html")

    async def security_headers(request, call_next):
        response = await call_next(request)
        response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["Cache-Control"] = "no-store"
        return response

    routes = [
        Route("/", index),
        Route("/api/info", api(info, lock=False)),
        Route("/api/runs", api(runs, lock=False)),
        Route("/api/run", api(run_detail, lock=False)),
        Route("/api/model", api(model)),
        Route("/api/images", api(images)),
        Route("/api/maps", api(maps)),
        Route("/api/filters", api(filters)),
        Route("/api/origin", api(origin)),
        Route("/api/evaluation", api(evaluation)),
        Route("/api/pair", api(pair)),
        Route("/api/predict", api(predict), methods=["POST"]),
        Route("/api/train", api(train_status, lock=False)),
        Route("/api/train/maps", api(train_maps, lock=False)),
        Route("/api/train/start", api(train_start), methods=["POST"]),
        Route("/api/train/resume", api(train_resume), methods=["POST"]),
        Route("/api/train/stop", api(train_stop, lock=False), methods=["POST"]),
        Mount("/static", app=StaticFiles(directory=WEB), name="static"),
    ]
    from starlette.middleware.base import BaseHTTPMiddleware

    app = Starlette(routes=routes, middleware=[
        Middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts(host)),
        Middleware(BaseHTTPMiddleware, dispatch=security_headers),
    ], lifespan=lifespan)
    app.state.lab = lab
    return app


class TooLarge(Exception):
    """An upload over MAX_UPLOAD_BYTES, stopped while it was being read."""


def allowed_hosts(host: str) -> list[str]:
    """The Host headers accepted: the bound host, and its loopback names when it is loopback."""
    if host in LOOPBACK:
        return list(LOOPBACK) + ["[::1]"]
    if host in ("0.0.0.0", "::", ""):
        return ["*"]       # every interface: no one name to check; the token still guards every request
    return [host]


# --- start-up ---------------------------------------------------------------------------------------------------------

def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (port 0: any free port); ConvolabError when the port is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        if error.errno in (errno.EADDRINUSE, errno.EACCES):      # the port: taken, or below 1024
            fix = "choose another --port (or --port 0 for any free one)"
        else:                                                   # the host: not an address of this machine, or no address
            fix = "give --host an address of this machine (127.0.0.1, the default; 0.0.0.0 for every interface)"
        raise ConvolabError(f"cannot listen on {host}:{port} ({error.strerror or error})", fix=fix) from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def page_url(host: str, port: int, token: str) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else ("[::1]" if host == "::" else host)
    shown = f"[{shown}]" if ":" in shown and not shown.startswith("[") else shown
    return f"http://{shown}:{port}/?token={token}"


def serve(runs_dir: str | Path, host: str = "127.0.0.1", port: int = 8000, open_browser: bool = False,
          data_options: dict | None = None, token: str | None = None) -> None:
    """Start the server and block until Ctrl-C; prints the URL (with its token) first, as Jupyter does."""
    require_dependencies()
    import uvicorn

    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        what = "a file, not a folder of runs" if runs_dir.exists() else "no such folder of runs"
        raise RunError(f"{runs_dir}: {what}", fix="give the folder `convolab lab` or `train --out` "
                       "wrote into, e.g. runs/ (it may be empty: train from the page)")
    source = (data_options or {}).get("source")
    if source is not None:                       # the page trains on it: a wrong name is said now, not at first use
        from convolab.data.registry import DATASETS, dataset_info

        if source not in DATASETS and not Path(source).expanduser().is_dir():
            dataset_info(str(source))            # DataError: unknown dataset, the names convolab knows
    token = token or secrets.token_urlsafe(24)
    if host not in LOOPBACK:
        print(f"convolab serve: warning: listening on {host}, not only on this computer: anyone who can reach it and "
              "has the URL's token can see your runs and start trainings. Use --host 127.0.0.1 unless you mean it.")
    sock = bind(host, port)
    url = page_url(host, sock.getsockname()[1], token)
    app = create_app(runs_dir, token, host, data_options)
    print(f"convolab serve: {len(find_runs(runs_dir))} runs in {runs_dir}\n"
          f"    open this URL in a browser (it holds your access token):\n    {url}\n"
          "    Ctrl-C stops the server", flush=True)
    if open_browser:
        webbrowser.open(url)
    # log_config=None: uvicorn keeps to the logging already set up, rather than binding handlers to the sys.stderr of
    # the moment (a test's captured stream, closed later)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, log_config=None))
    server.run(sockets=[sock])
