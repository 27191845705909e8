"""A run, a Keras file or a spec out to a file other tools open: `.keras` for Keras 3, `.onnx` for onnxruntime and Netron.

    export_model("runs/cnn", "onnx") -> Exported(path, format, max_difference, checked_on)

Both files compute what Keras's model computes: images (N, height, width, channels) as floats in [0, 1] in, the class
probabilities out (scores when the model does not end with a softmax). Every file is written under a temporary name
beside its destination, checked, and only then renamed into place, so a failed export leaves nothing behind:

- `.keras`: read back by this module's own reader (keras_files), every weight compared bit for bit.
- `.onnx`: exported by `torch.onnx.export` with a dynamic batch axis, then run in onnxruntime on real test images
  and compared with PyTorch's output; a file disagreeing by more than ONNX_TOLERANCE is refused.

onnx, onnxscript and onnxruntime are an optional extra (`pip install 'convolab[onnx]'`); Keras is never needed.
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from convolab.errors import ConvolabError, DataError, ModelFileError, interrupted_inside, plain_text
from convolab.keras_files import is_keras_file, keras_file_bytes, read_keras_file
from convolab.model import ConvNet, build_model
from convolab.compare import is_run_directory
from convolab.runconfig import RunConfig
from convolab.runs import atomic_file, load_run, write_failure
from convolab.spec import DEFAULT_INPUT_SHAPE, DEFAULT_NUM_CLASSES, ModelSpec, load_spec, resolve_spec

FORMATS = ("keras", "onnx")
SUFFIXES = {"keras": ".keras", "onnx": ".onnx"}
ONNX_TOLERANCE = 1e-4      # the bound: float32 kernels of two runtimes agree far closer on these models
CHECK_IMAGES = 256         # test images the ONNX file is run on
ONNX_OPSET = 18
ONNX_INSTALL_FIX = "pip install 'convolab[onnx]' (onnx, onnxscript and onnxruntime)"


@dataclass
class Exported:
    """What an export wrote and how it was checked."""

    path: Path
    format: str
    max_difference: float | None     # ONNX: largest |onnxruntime - PyTorch| over the checked images; Keras: 0.0
    checked_on: str

    def describe(self) -> str:
        if self.format == "onnx":
            return (f"export: wrote {self.path} (ONNX, dynamic batch; input 'images' N×H×W×C in [0, 1]); onnxruntime "
                    f"on {self.checked_on}: largest difference from PyTorch {self.max_difference:.2e} "
                    f"(limit {ONNX_TOLERANCE:g})")
        return f"export: wrote {self.path} (Keras 3 .keras; read back: {self.checked_on})"


@dataclass
class Source:
    """The model to export: its spec, network with weights, a name, and where its files go by default."""

    spec: ModelSpec
    model: ConvNet
    name: str
    config: RunConfig | None     # a run's record (its test data), None for a bare spec
    default_stem: Path           # the export path without its suffix


class KerasLayout(nn.Module):
    """The ConvNet as Keras computes it: (N, H, W, C) images in, probabilities out when the model ends in softmax."""

    def __init__(self, network: ConvNet):
        super().__init__()
        self.network = network
        self.softmax = network.output_activation == "softmax"

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        scores = self.network(images.permute(0, 3, 1, 2))   # Keras's channels-last in, PyTorch's NCHW inside
        return torch.softmax(scores, dim=1) if self.softmax else scores


def resolve_source(text: str) -> Source:
    """A run directory, a Keras file (weights kept) or a spec (fresh Keras-style weights, seed 0) to export."""
    if is_keras_file(text) or is_run_directory(text):
        run = load_run(text)
        stem = run.path.with_suffix("") if run.imported else run.path / "model"
        return Source(run.spec, run.model, run.name, run.config, stem)
    spec = load_spec(text)
    spec = resolve_spec(spec, spec.input_shape or DEFAULT_INPUT_SHAPE, DEFAULT_NUM_CLASSES)
    torch.manual_seed(0)
    name = spec.name or "model"
    return Source(spec, build_model(spec).eval(), name, None, Path(name))


def default_path(source: Source, format: str, given: str | Path | None, original: str) -> Path:
    """--out, else beside the source. Beside a Keras file, a .keras export is always NAME-export.keras: NAME.keras
    may be the source itself, or (for NAME.h5) another model of the user's that must not be replaced."""
    path = Path(given) if given is not None else source.default_stem.with_name(
        source.default_stem.name + SUFFIXES[format])
    if given is None and is_keras_file(original) and format == "keras":
        path = path.with_name(f"{path.stem}-export{path.suffix}")
    return path


def export_model(text: str, format: str, out: str | Path | None = None) -> Exported:
    """Export the run, Keras file or spec `text` as `format` (keras or onnx) to `out` (default: beside it)."""
    if format not in FORMATS:
        raise ModelFileError(f"expected an export format among {', '.join(FORMATS)}, received: {format!r}",
                             fix="--format keras or --format onnx")
    wrong = {suffix: name for name, suffix in SUFFIXES.items() if name != format}
    if out is not None and Path(out).suffix.lower() in wrong:      # an ONNX file named .keras, or the other way round
        what = {"keras": "a Keras", "onnx": "an ONNX"}[format]
        raise ModelFileError(f"--out {str(out)!r}: a {Path(out).suffix} name for {what} file",
                             fix=f"name it {Path(out).stem}{SUFFIXES[format]}, or use --format "
                                 f"{wrong[Path(out).suffix.lower()]}")
    if out is not None and Path(out).is_file() and Path(out).suffix.lower() != SUFFIXES[format]:
        raise ModelFileError(f"--out {str(out)!r} exists and is not a {SUFFIXES[format]} file (a run's config or "
                             "checkpoint, or a file of yours): exporting would replace it",
                             fix=f"give a new name ending in {SUFFIXES[format]}")
    source = resolve_source(text)
    path = default_path(source, format, out, text)
    if path.exists() and Path(text).is_file() and os.path.samefile(path, text):
        raise ModelFileError(f"--out {str(out)!r} is the file being exported: writing it would replace the original "
                             "(its compile settings and optimizer state, which an export does not carry)",
                             fix=f"give another name, e.g. --out {path.stem}-export{SUFFIXES[format]}")
    if path.exists() and path.is_dir():
        raise ModelFileError(f"{path}: is a directory", fix=f"give a file name, e.g. --out model{SUFFIXES[format]}")
    return export_network(source.model, path, format, source.config)


def export_network(model: ConvNet, path: str | Path, format: str, config: RunConfig | None = None) -> Exported:
    """Write a network as `format` at `path`; config: the run's config.json, whose test images check an ONNX file."""
    if format == "keras":
        return write_keras(model, path)
    return write_onnx(model, path, *check_images(model.spec, config))


# --- .keras -----------------------------------------------------------------------------------------------------------

def write_keras(model: ConvNet, path: str | Path) -> Exported:
    """Write `model` as a .keras file, read it back, and keep it only if every weight came back bit for bit."""
    path = Path(path)
    data = keras_file_bytes(model, date=time.strftime("%Y-%m-%d@%H:%M:%S"))
    with atomic_file(path) as temporary:
        temporary.write_bytes(data)
        back = read_keras_file(temporary).network
        pairs = [(ours, theirs) for layer, block, other in zip(model.spec.layers, model.blocks, back.blocks)
                 for ours, theirs in zip(layer.keras_weights(block), layer.keras_weights(other))]
        if len(back.blocks) != len(model.blocks) or not all(np.array_equal(a, b) for a, b in pairs):
            raise ModelFileError(f"{path}: the weights read back differ from the model's; nothing written",
                                 fix="this is a bug in convolab's Keras writer; please report it")
    count = sum(int(ours.size) for ours, _theirs in pairs)
    return Exported(path, "keras", 0.0, f"all {count:,} weights equal bit for bit")


# --- ONNX -------------------------------------------------------------------------------------------------------------

def check_images(spec: ModelSpec, config: RunConfig | None) -> tuple[np.ndarray, str]:
    """Up to CHECK_IMAGES real test images (N, H, W, C) floats in [0, 1]: the run's own test set, else the lab's
    Fashion-MNIST when the shapes fit; random images only when no such data is at hand (and the message says so)."""
    from convolab.data import load_dataset

    shape = tuple(spec.input_shape)
    try:
        if config is not None:
            images, _labels = config.dataset.test_data()
            what = config.dataset.name
        else:
            dataset = load_dataset("fashion-mnist", offline=True, progress=False)
            images, what = dataset.test_images, dataset.name
        if tuple(images.shape[2:]) + (images.shape[1],) != shape:
            raise DataError("shapes differ")
        chosen = images[:CHECK_IMAGES].permute(0, 2, 3, 1).float().div(255).numpy()
        return np.ascontiguousarray(chosen), f"{len(chosen)} {what} test images"
    except ConvolabError:
        generator = np.random.default_rng(0)
        chosen = generator.random((32, *shape), dtype=np.float32)
        return chosen, f"{len(chosen)} random images (no test data of shape {shape} at hand)"


def _onnx_modules():
    try:
        import onnx
        import onnxruntime
        import onnxscript  # noqa: F401 - torch.onnx.export's exporter needs it
    except ImportError as error:
        raise ModelFileError(f"exporting to ONNX needs the onnx extra ({error.name} is not installed)",
                             fix=ONNX_INSTALL_FIX) from None
    return onnx, onnxruntime


@contextlib.contextmanager
def _quiet_exporter():
    """torch.onnx.export talks (progress lines, notes about torchvision); the export's own line says what matters."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def write_onnx(model: ConvNet, path: str | Path, images: np.ndarray, checked_on: str) -> Exported:
    """Export to ONNX (dynamic batch), run the file in onnxruntime on `images`, keep it only within ONNX_TOLERANCE."""
    onnx, onnxruntime = _onnx_modules()
    path = Path(path)
    wrapped = KerasLayout(model.cpu().eval()).eval()
    example = torch.from_numpy(images[:2])
    with atomic_file(path) as temporary:
        try:
            with _quiet_exporter():
                torch.onnx.export(wrapped, (example,), str(temporary), input_names=["images"],
                                  output_names=["probabilities" if wrapped.softmax else "scores"],
                                  dynamic_shapes={"images": {0: torch.export.Dim("batch")}}, opset_version=ONNX_OPSET,
                                  dynamo=True, external_data=False)
            document = onnx.load(str(temporary))
            onnx.checker.check_model(document)
            names = getattr(model.spec, "name", None) or "model"
            onnx.helper.set_model_props(document, {"convolab_spec": model.spec.to_line(), "name": names,
                                                   "input_layout": "NHWC, float32 in [0, 1]"})
            onnx.save(document, str(temporary))
        except ConvolabError:
            raise
        except OSError as error:                 # the disk, not the exporter: a full disk, a read-only folder
            if error.errno is None:
                raise ModelFileError(f"{path}: torch.onnx.export failed ({plain_text(str(error))}); nothing written",
                                     fix="report it with the model's spec; --format keras still works") from None
            raise write_failure(path, error) from None
        except Exception as error:  # noqa: BLE001 - the exporter raises many kinds; the user needs one clear line
            interrupt = interrupted_inside(error)
            if interrupt is not None:   # Ctrl-C or SIGTERM, wrapped by the exporter: not its bug (nothing is written)
                raise type(interrupt)() from None
            quoted = plain_text(str(error)).strip()
            raise ModelFileError(f"{path}: torch.onnx.export failed ({type(error).__name__}: "
                                 f"{quoted.splitlines()[0][:300] if quoted else ''}); nothing written",
                                 fix="report it with the model's spec; --format keras still works") from None
        session = onnxruntime.InferenceSession(str(temporary), providers=["CPUExecutionProvider"])
        input_name = session.get_inputs()[0].name
        theirs = np.concatenate([session.run(None, {input_name: images[start:start + 64]})[0]
                                 for start in range(0, len(images), 64)])
        with torch.no_grad():
            ours = wrapped(torch.from_numpy(images)).numpy()
        difference = float(np.abs(theirs - ours).max())
        if not difference <= ONNX_TOLERANCE:
            raise ModelFileError(
                f"{path}: onnxruntime's output differs from PyTorch's by {difference:.2e} on {checked_on}, over the "
                f"limit {ONNX_TOLERANCE:g}; the file was not kept", fix="report it with the model's spec")
    return Exported(path, "onnx", difference, checked_on)
