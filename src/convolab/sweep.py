"""The lab's exercises as one experiment: every variant trained on the same data and seed, one table, two charts.

The lab ends with exercises: change the convolutions' 64 filters to 16 or 32, remove the second convolution, add a
third, keep only the first, and compare with the Dense network. `convolab sweep` trains them all through
`compare.compare_models` (so each is a normal run directory, reused when already trained with the same settings),
prints the comparison table and draws validation accuracy per epoch (overlay) and test accuracy against training
seconds. `--vary filters=16,32,64` does the same for the user's own spec.
"""
from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from convolab.compare import Comparison, compare_models
from convolab.data import Dataset
from convolab.errors import SpecError
from convolab.experiment import DataSelection
from convolab.plots import accuracy_time_figure, save_figure, sweep_overlay_figure, write_run_pictures
from convolab.runs import HISTORY_JSON, read_json
from convolab.layers import KINDS
from convolab.spec import PRESETS, ModelSpec, load_spec, parse_line
from convolab.train import Progress, TrainConfig

# name -> (one-line spec, what the exercise changes). `dense` alone is the dataset's class count.
EXERCISES: dict[str, tuple[str, str]] = {
    "cnn16": (PRESETS["cnn16"], "16 filters in both convolutions"),
    "cnn32": (PRESETS["cnn32"], "32 filters in both convolutions"),
    "cnn64": (PRESETS["cnn64"], "64 filters in both convolutions: the lab's CNN"),
    "no-conv2": (PRESETS["no-conv2"], "the second convolution removed, its pooling kept"),
    "cnn3conv": (PRESETS["cnn3conv"], "a third convolution added"),
    "cnn1conv": (PRESETS["cnn1conv"], "only the first convolution (and its pooling) kept"),
    "dnn": (PRESETS["dnn"], "the Dense network: no convolution at all"),
}
GROUPS: dict[str, tuple[str, ...]] = {
    "exercises": tuple(EXERCISES),
    "filters": ("cnn16", "cnn32", "cnn64"),
    "depth": ("cnn1conv", "no-conv2", "cnn64", "cnn3conv"),
}

# --vary KEY: the type of its values; it changes every layer that has the argument KEY (see varied_specs).
VARIABLE_ARGUMENTS: dict[str, type] = {
    "filters": int, "kernel_size": int, "activation": str, "units": int, "pool_size": int, "rate": float,
}


def kinds_with_argument(key: str) -> list[type]:
    """The registered layer kinds that take the argument `key`, in registry order."""
    return [kind for kind in KINDS if key in {field.name for field in dataclasses.fields(kind)}]


def describe_presets() -> str:
    """The exercises and groups, one per line, for --help and error messages."""
    lines = [f"  {name:<10} {description}: {line}" for name, (line, description) in EXERCISES.items()]
    lines += [f"  {name:<10} = {' '.join(members)}" for name, members in GROUPS.items()]
    return "\n".join(lines)


def expand_presets(names: Sequence[str]) -> list[str]:
    """Exercise and group names -> exercise names in order, each once; SpecError for an unknown name."""
    chosen: list[str] = []
    for name in names or ("exercises",):
        key = name.strip().lower()
        if key in GROUPS:
            members = GROUPS[key]
        elif key in EXERCISES:
            members = (key,)
        else:
            known = list(EXERCISES) + list(GROUPS)
            nearest = difflib.get_close_matches(key, known, n=1, cutoff=0.5)
            raise SpecError(f"unknown sweep preset {name!r}; expected one of {', '.join(known)}",
                            fix=f"did you mean {nearest[0]!r}?" if nearest else "convolab sweep --help lists them")
        chosen += [member for member in members if member not in chosen]
    return chosen


def exercise_specs(names: Sequence[str]) -> list[tuple[str, ModelSpec]]:
    """(run name, spec) for each exercise or group name (default: every exercise)."""
    return [(name, parse_line(EXERCISES[name][0], name=name)) for name in expand_presets(names)]


def parse_vary(text: str) -> tuple[str, list]:
    """'filters=16,32,64' -> ('filters', [16, 32, 64]); SpecError naming what is wrong."""
    key, separator, values_text = text.partition("=")
    key = key.strip().lower().replace("-", "_")
    if not separator or key not in VARIABLE_ARGUMENTS:
        raise SpecError(f"--vary {text!r}: expected KEY=V1,V2,... with KEY one of {', '.join(VARIABLE_ARGUMENTS)}",
                        fix="for example --vary filters=16,32,64")
    kind = VARIABLE_ARGUMENTS[key]
    values = []
    for item in (part.strip() for part in values_text.split(",")):
        try:
            values.append(kind(item))
        except ValueError:
            raise SpecError(f"--vary {text!r}: {item!r} is not a valid {key} (expected {kind.__name__} values)",
                            fix="for example --vary filters=16,32,64") from None
    if not values or len(set(values)) != len(values):
        raise SpecError(f"--vary {text!r}: expected distinct values separated by commas",
                        fix="for example --vary filters=16,32,64")
    return key, values


def varied_specs(spec: ModelSpec, vary: str, base_name: str = "model") -> list[tuple[str, ModelSpec]]:
    """One (name, spec) per value of `vary`, that value set on every layer it applies to.

    `units` leaves the last Dense alone (it is the class count); `activation` leaves the output layer's alone.
    """
    key, values = parse_vary(vary)
    layer_types = tuple(kinds_with_argument(key))
    outputs = [index for index, layer in enumerate(spec.layers) if layer.takes_output_activation]
    last_output = outputs[-1] if outputs else -1
    targets = [index for index, layer in enumerate(spec.layers) if isinstance(layer, layer_types)
               and not (key in ("units", "activation") and index == last_output)]
    if not targets:
        first, *others = [kind.__name__ for kind in layer_types]
        nor = f", nor another layer with {key} ({', '.join(others)})" if others else ""
        raise SpecError(f"--vary {key}: the model {spec.to_line()!r} has no {first} layer whose {key} could vary{nor}",
                        fix=f"vary something the model has, for example --vary filters=16,32 on a model with Conv2D")
    variants = []
    for value in values:
        layers = list(spec.layers)
        for index in targets:
            changes = {key: value}
            if key == "pool_size" and layers[index].strides == layers[index].pool_size:
                changes["strides"] = None  # Keras's default stride is the pool size: it follows the new size
            layers[index] = dataclasses.replace(layers[index], **changes)  # validated again by the layer
        name = f"{base_name}-{key.replace('_', '')}{value}"
        variants.append((name, ModelSpec(tuple(layers), spec.input_shape, name)))
    return variants


@dataclass
class SweepResult:
    """The comparison and the two charts' paths."""

    comparison: Comparison
    overlay: Path
    chart: Path


def sweep_histories(comparison: Comparison) -> dict[str, list[dict]]:
    """Each row's history, read back from its run directory (trained now or reused)."""
    return {row.name: read_json(Path(row.run_dir) / HISTORY_JSON) for row in comparison.rows if row.run_dir}


def run_sweep(variants: Sequence[tuple[str, ModelSpec]], dataset: Dataset, config: TrainConfig, out_root: str | Path,
              *, selection: DataSelection | None = None, stop_at: str | None = None, retrain: bool = False,
              progress: Progress | None = None,
              on_train_end: Sequence[Callable[[Path], None]] = (write_run_pictures,)) -> SweepResult:
    """Train (or reuse) every variant under out_root/NAME, then write sweep-overlay.png and sweep-accuracy-time.png.

    stop_at: the same target for every run ("val_accuracy>=0.9"). on_train_end: per-run hooks (its pictures).
    """
    out_root = Path(out_root)
    comparison = compare_models([spec for _name, spec in variants], dataset, config, out_root, selection=selection,
                                stop_at=stop_at, retrain=retrain, progress=progress, on_train_end=on_train_end,
                                names=[name for name, _spec in variants])
    overlay = save_figure(sweep_overlay_figure(sweep_histories(comparison)), out_root / "sweep-overlay.png")
    points = [(row.name, row.seconds_per_epoch * row.epochs, row.test_accuracy) for row in comparison.rows]
    chart = save_figure(accuracy_time_figure(points), out_root / "sweep-accuracy-time.png")
    return SweepResult(comparison=comparison, overlay=overlay, chart=chart)


def user_variants(model: str, vary: str) -> list[tuple[str, ModelSpec]]:
    """--spec MODEL --vary KEY=VALUES: the user's spec in each variant, named after the spec."""
    spec = load_spec(model)
    base = spec.name or "model"
    return varied_specs(spec, vary, base_name=base)
