"""Validation trials for the recipes (issue 16): a recipe, with some of its settings changed, trained on the first 90%
of Fashion-MNIST's training images and measured on the last 10% (Keras's validation split), never on the test set.

usage: .venv/bin/python bench/recipe_trials.py fast [--seed 0] [--set epochs=5 --set augment=flip ...] [--threads 1]
                                                     [--ema 0.999,0.9995] [--erase 0.5,0.4] [--sgd-nesterov 5e-4]
                                                     [--bn-group 128]

Prints one line per trial: the settings that differ from the recipe, the last epoch's training accuracy (on augmented
images, dropout on), validation accuracy of the final weights without and with test-time flips (each image and its
mirror, logits averaged), training seconds (as history.json records them, each epoch's validation included) and the
load average before and after. --ema also keeps exponential moving averages of the trainable weights (Keras's
use_ema / ema_momentum), one per momentum, updated after every optimizer step beside the training (which they do not
change), and measures each on the validation images too. Three ideas that no recipe uses can be tried without adding
them to convolab: --erase P,AREA (random erasing, Zhong et al. 2017, after the recipe's own augmentation),
--sgd-nesterov DECAY (SGD with Nesterov momentum 0.9 and L2 decay instead of the recipe's optimizer; give the peak rate
with --set learning_rate=...) and --bn-group G (ghost batch normalization, Hoffer et al. 2017: in training, each
BatchNormalization normalises every group of G images of a batch by that group's own statistics; what a shard per
group would compute, so that a model with BatchNormalization could train in shards, shards.py). The chosen settings
go into recipes.py; the test set is measured only then, with `convolab train --recipe NAME --seed S` (BENCHMARKS.md,
"Recipe trials").
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch.optim.swa_utils import get_ema_multi_avg_fn

import convolab.train
from convolab.callbacks import Callback
from convolab.data import load_dataset
from convolab.evaluate import evaluate_model
from convolab.experiment import select_data
from convolab.layers.normalization import BatchNormalizationBlock
from convolab.machine import bf16_units, cpu_flags
from convolab.model import build_model
from convolab.recipes import RECIPES
from convolab.runconfig import DataSelection
from convolab.spec import load_spec
from convolab.train import TrainConfig, fit, make_progress, seed_everything

VALIDATION_SPLIT = 0.1


def parse_setting(text: str, recipe) -> tuple[str, object]:
    """'epochs=5' -> ('epochs', 5), typed as the recipe's field; 'spec=...' takes a one-line spec or preset."""
    name, _, value = text.partition("=")
    fields = {field.name: field for field in dataclasses.fields(recipe)}
    if name not in fields or name in ("name", "goal", "why"):
        raise SystemExit(f"--set {text!r}: expected one of {', '.join(sorted(set(fields) - {'name', 'goal', 'why'}))}")
    current = getattr(recipe, name)
    if isinstance(current, bool):
        return name, value.lower() in ("1", "true", "yes")
    return name, type(current)(value)


def momenta(text: str) -> list[float]:
    """'0.999,0.9995' -> [0.999, 0.9995], each in (0, 1); argparse reports anything else."""
    try:
        values = [float(part) for part in text.split(",") if part]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected momenta such as 0.999,0.9995") from None
    if not all(0 < value < 1 for value in values):
        raise argparse.ArgumentTypeError(f"{text!r}: each momentum must be between 0 and 1, e.g. 0.999")
    return values


def erase_setting(text: str) -> tuple[float, float]:
    """'0.5,0.4' -> (probability 0.5, largest erased area 0.4 of the image); argparse reports anything else."""
    try:
        probability, area = (float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected P,AREA such as 0.5,0.4") from None
    if not (0 < probability <= 1 and 0.02 < area <= 1):
        raise argparse.ArgumentTypeError(f"{text!r}: P must be in (0, 1] and AREA in (0.02, 1], e.g. 0.5,0.4")
    return probability, area


def random_erase(images: torch.Tensor, probability: float, largest_area: float, smallest_area: float = 0.02,
                 aspect: float = 0.3) -> torch.Tensor:
    """Random erasing (Zhong et al. 2017): each image, with `probability`, gets one rectangle of 2% to `largest_area`
    of its area, aspect ratio between `aspect` and 1/aspect, filled with uniform noise in [0, 1) (the images'
    range). Rectangles that would not fit are clipped to the image. images: (N, C, H, W); the same shape back."""
    count, _, height, width = images.shape
    chosen = torch.rand(count) < probability
    area = (smallest_area + (largest_area - smallest_area) * torch.rand(count)) * height * width
    ratio = torch.exp(torch.empty(count).uniform_(math.log(aspect), -math.log(aspect)))
    rows = (area * ratio).sqrt().round().clamp(1, height)                    # (N,) rectangle heights
    cols = (area / ratio).sqrt().round().clamp(1, width)
    top = (torch.rand(count) * (height - rows + 1)).floor()
    left = (torch.rand(count) * (width - cols + 1)).floor()
    row_index, col_index = torch.arange(height), torch.arange(width)
    in_rows = (row_index >= top[:, None]) & (row_index < (top + rows)[:, None])        # (N, H)
    in_cols = (col_index >= left[:, None]) & (col_index < (left + cols)[:, None])      # (N, W)
    inside = (chosen[:, None, None] & in_rows[:, :, None] & in_cols[:, None, :])[:, None]   # (N, 1, H, W)
    return torch.where(inside, torch.rand(images.shape), images)


def decay_setting(text: str) -> float:
    """'5e-4' -> 0.0005, at least 0; argparse reports anything else."""
    try:
        decay = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a decay such as 5e-4") from None
    if not decay >= 0:                           # also refuses nan
        raise argparse.ArgumentTypeError(f"{text!r}: the decay must be 0 or more, e.g. 5e-4")
    return decay


def group_setting(text: str) -> int:
    """'128' -> 128 images per BatchNormalization group, at least 2; argparse reports anything else."""
    if not text.isascii() or not text.isdigit() or int(text) < 2:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a whole number of images of 2 or more, e.g. 128")
    return int(text)


def batch_norm_in_groups(norm: torch.nn.modules.batchnorm._BatchNorm, x: torch.Tensor, group: int) -> torch.Tensor:
    """`norm` in training mode over each group of `group` images of x (the last one may be smaller), each by its own
    mean and variance (ghost batch normalization). The moving mean and variance move by the mean of the groups'
    statistics: each group updates a copy of them as PyTorch would, and the copies are averaged in group order."""
    if not norm.training or x.shape[0] <= group:
        return norm(x)
    outputs, means, variances = [], [], []
    for part in x.split(group):
        mean, variance = norm.running_mean.clone(), norm.running_var.clone()
        outputs.append(F.batch_norm(part, mean, variance, norm.weight, norm.bias, True, norm.momentum, norm.eps))
        means.append(mean)
        variances.append(variance)
    with torch.no_grad():
        norm.running_mean.copy_(sum(means) / len(means))
        norm.running_var.copy_(sum(variances) / len(variances))
        norm.num_batches_tracked.add_(1)
    return torch.cat(outputs)


@contextmanager
def trial_variants(erase: tuple[float, float] | None, sgd_decay: float | None, bn_group: int | None = None):
    """Inside: train.fit augments with random erasing after the recipe's augmentation (erase), builds "sgd" as SGD
    with Nesterov momentum 0.9 and L2 decay sgd_decay, and BatchNormalization layers normalise groups of bn_group
    images (batch_norm_in_groups). Trial-only: convolab itself is put back afterwards."""
    augment, make_optimizer = convolab.train.augment_batch, convolab.train.make_optimizer
    norm_forward = BatchNormalizationBlock.forward

    def augment_then_erase(images: torch.Tensor, kind: str) -> torch.Tensor:
        return random_erase(augment(images, kind), *erase)

    def nesterov_for_sgd(name, parameters, learning_rate, device, weight_decay=0.0, capturable=False):
        if name == "sgd":
            return torch.optim.SGD(list(parameters), lr=learning_rate, momentum=0.9, nesterov=True,
                                   weight_decay=sgd_decay)
        return make_optimizer(name, parameters, learning_rate, device, weight_decay, capturable)

    if erase is not None:
        convolab.train.augment_batch = augment_then_erase
    if sgd_decay is not None:
        convolab.train.make_optimizer = nesterov_for_sgd
    if bn_group is not None:
        BatchNormalizationBlock.forward = lambda block, x: batch_norm_in_groups(block.norm, x, bn_group)
    try:
        yield
    finally:
        convolab.train.augment_batch, convolab.train.make_optimizer = augment, make_optimizer
        BatchNormalizationBlock.forward = norm_forward


class WeightAverages(Callback):
    """Exponential moving averages of the trainable weights, one per momentum, updated after every step."""

    def __init__(self, momenta: list[float]):
        self.updates = {momentum: get_ema_multi_avg_fn(momentum) for momentum in momenta}
        self.averages: dict[float, list[torch.Tensor]] = {}
        self.parameters: list[torch.Tensor] = []

    def on_train_begin(self, state) -> None:
        self.parameters = [parameter.detach() for parameter in state.model.parameters()]
        self.averages = {momentum: [p.clone() for p in self.parameters] for momentum in self.updates}

    def on_step(self, state, totals) -> None:
        for momentum, update in self.updates.items():
            update(self.averages[momentum], self.parameters, None)

    @torch.no_grad()
    def measure(self, measure_model) -> dict[float, object]:
        """measure_model() with each average in place of the weights; the trained weights are put back after."""
        trained = [p.clone() for p in self.parameters]
        results = {}
        for momentum, average in self.averages.items():
            for parameter, value in zip(self.parameters, average):
                parameter.copy_(value)
            results[momentum] = measure_model()
        for parameter, value in zip(self.parameters, trained):
            parameter.copy_(value)
        return results


def run_trial(recipe_name: str, seed: int, changes: dict, *, device: str = "cpu", threads: str = "all",
              ema: list[float] = (), erase: tuple[float, float] | None = None, sgd_decay: float | None = None,
              bn_group: int | None = None, dataset=None, engine: str = "fast") -> dict:
    """One validation trial: the recipe with `changes` (recipe fields) trained on the first 90% of the training images
    on `device`, measured on the last 10% without and with test-time flips; the trial's JSON record. dataset: the
    loaded Fashion-MNIST (loaded here when None; a caller that runs many trials loads it once). engine: "reference"
    trains model.py's modules as they are, in float32 (bfloat16 autocast needs the fast engine)."""
    recipe = RECIPES[recipe_name]
    changes = dict(changes)
    if sgd_decay is not None:
        changes.update(optimizer="sgd", weight_decay=0.0)    # the decay is SGD's own (L2), not AdamW's
    recipe = dataclasses.replace(recipe, **changes)
    load_before = os.getloadavg()[0]
    dataset = dataset or load_dataset("fashion-mnist", offline=True, progress=False)
    train_data, validation_data, _ = select_data(dataset, DataSelection(options={"source": "fashion-mnist"}),
                                                 VALIDATION_SPLIT)
    bf16_hardware = (torch.cuda.is_bf16_supported() if device.startswith("cuda")
                     else bf16_units(cpu_flags()) is not None)
    config = recipe.train_config(TrainConfig(seed=seed, device=device, threads=threads, engine=engine,
                                             validation_split=VALIDATION_SPLIT), bf16_hardware=bf16_hardware)
    if engine != "fast":
        config = dataclasses.replace(config, precision="fp32")
    generator = seed_everything(config.seed)
    network = build_model(load_spec(recipe.spec), dataset.input_shape, dataset.num_classes)
    averages = WeightAverages(list(ema))
    with trial_variants(erase, sgd_decay, bn_group):
        state = fit(network, train_data, config, validation_data=validation_data, generator=generator,
                    progress=make_progress("quiet"), callbacks=[averages] if ema else [])
    names = list(dataset.class_names)

    def measure() -> tuple[float, float]:
        return (evaluate_model(state.model, *validation_data, names).accuracy,
                evaluate_model(state.model, *validation_data, names, test_time_flip=True).accuracy)

    plain, flipped = measure()
    averaged = averages.measure(measure) if ema else {}
    variants = {**({"erase": list(erase)} if erase else {}),
                **({"sgd_nesterov_decay": sgd_decay} if sgd_decay is not None else {}),
                **({"bn_group": bn_group} if bn_group is not None else {})}
    return {"recipe": recipe_name, "seed": seed, "changes": changes, **variants,
            "train_accuracy": state.history[-1]["accuracy"], "val_accuracy": plain, "val_accuracy_flips": flipped,
            "ema": {str(momentum): {"val_accuracy": a, "val_accuracy_flips": b}
                    for momentum, (a, b) in averaged.items()},
            "seconds": round(sum(row["seconds"] for row in state.history), 1), "threads": threads,
            "device": device, "engine": engine, "precision": config.precision, "train_images": len(train_data[1]),
            "load_before": round(load_before, 2), "load_after": round(os.getloadavg()[0], 2),
            "time": time.strftime("%Y-%m-%d %H:%M:%S %Z")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recipe", choices=sorted(RECIPES))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="change a recipe setting")
    parser.add_argument("--threads", default="all", help="as convolab train --threads (default all)")
    parser.add_argument("--json", default=None, help="append the trial as one JSON line to this file")
    parser.add_argument("--ema", type=momenta, default=[], metavar="M1,M2",
                        help="also measure weight averages with these momenta")
    parser.add_argument("--erase", type=erase_setting, default=None, metavar="P,AREA",
                        help="random erasing after the recipe's augmentation: probability P, at most AREA of the image")
    parser.add_argument("--sgd-nesterov", type=decay_setting, default=None, metavar="DECAY",
                        help="SGD with Nesterov momentum 0.9 and L2 decay DECAY instead of the recipe's optimizer")
    parser.add_argument("--bn-group", type=group_setting, default=None, metavar="G",
                        help="BatchNormalization over each group of G images of a batch (ghost batch normalization)")
    args = parser.parse_args()
    recipe = RECIPES[args.recipe]
    changes = dict(parse_setting(text, recipe) for text in args.set)
    trial = run_trial(args.recipe, args.seed, changes, device="cpu", threads=args.threads, ema=args.ema,
                      erase=args.erase, sgd_decay=args.sgd_nesterov, bn_group=args.bn_group)
    changes, variants = trial["changes"], {key: trial[key] for key in ("erase", "sgd_nesterov_decay", "bn_group")
                                           if key in trial}
    plain, flipped, train_seconds = trial["val_accuracy"], trial["val_accuracy_flips"], trial["seconds"]
    load_before = trial["load_before"]
    averaged = {float(momentum): (values["val_accuracy"], values["val_accuracy_flips"])
                for momentum, values in trial["ema"].items()}
    shown = f"{changes or '(as is)'}" + (f" {variants}" if variants else "")
    print(f"trial {args.recipe} seed {args.seed} {shown}: train {trial['train_accuracy']:.4f}, val {plain:.4f}, "
          f"with flips {flipped:.4f}; "
          f"{train_seconds:.1f} s ({trial['train_images']} images, threads {args.threads}); load {load_before:.2f} -> "
          f"{trial['load_after']:.2f}  [{trial['time']}]", flush=True)
    for momentum, (a, b) in averaged.items():
        print(f"  weight average, momentum {momentum}: val {a:.4f}, with flips {b:.4f}", flush=True)
    if args.json:
        with open(args.json, "a") as stream:
            stream.write(json.dumps(trial) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
