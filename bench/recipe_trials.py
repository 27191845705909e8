"""Validation trials for the recipes (issue 16): a recipe, with some of its settings changed, trained on the first 90%
of Fashion-MNIST's training images and measured on the last 10% (Keras's validation split), never on the test set.

usage: .venv/bin/python bench/recipe_trials.py fast [--seed 0] [--set epochs=5 --set augment=flip ...] [--threads 1]
                                                     [--ema 0.999,0.9995]

Prints one line per trial: the settings that differ from the recipe, the last epoch's training accuracy (on augmented
images, dropout on), validation accuracy of the final weights without and with test-time flips (each image and its
mirror, logits averaged), training seconds (as history.json records them, each epoch's validation included) and the
load average before and after. --ema also keeps exponential moving averages of the trainable weights (Keras's
use_ema / ema_momentum), one per momentum, updated after every optimizer step beside the training (which they do not
change), and measures each on the validation images too. The chosen settings go into recipes.py; the test set is
measured only then, with `convolab train --recipe NAME --seed S` (BENCHMARKS.md, "Recipe trials").
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time

import torch
from torch.optim.swa_utils import get_ema_multi_avg_fn

from convolab.callbacks import Callback
from convolab.data import load_dataset
from convolab.evaluate import evaluate_model
from convolab.experiment import select_data
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recipe", choices=sorted(RECIPES))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="change a recipe setting")
    parser.add_argument("--threads", default="all", help="as convolab train --threads (default all)")
    parser.add_argument("--json", default=None, help="append the trial as one JSON line to this file")
    parser.add_argument("--ema", type=momenta, default=[], metavar="M1,M2",
                        help="also measure weight averages with these momenta")
    args = parser.parse_args()
    recipe = RECIPES[args.recipe]
    changes = dict(parse_setting(text, recipe) for text in args.set)
    recipe = dataclasses.replace(recipe, **changes)
    load_before = os.getloadavg()[0]
    dataset = load_dataset("fashion-mnist", offline=True, progress=False)
    train_data, validation_data, _ = select_data(dataset, DataSelection(options={"source": "fashion-mnist"}),
                                                 VALIDATION_SPLIT)
    config = recipe.train_config(TrainConfig(seed=args.seed, device="cpu", threads=args.threads,
                                             validation_split=VALIDATION_SPLIT),
                                 bf16_hardware=bf16_units(cpu_flags()) is not None)
    generator = seed_everything(config.seed)
    network = build_model(load_spec(recipe.spec), dataset.input_shape, dataset.num_classes)
    averages = WeightAverages(args.ema)
    state = fit(network, train_data, config, validation_data=validation_data, generator=generator,
                progress=make_progress("quiet"), callbacks=[averages] if args.ema else [])
    names = list(dataset.class_names)

    def measure() -> tuple[float, float]:
        return (evaluate_model(state.model, *validation_data, names).accuracy,
                evaluate_model(state.model, *validation_data, names, test_time_flip=True).accuracy)

    plain, flipped = measure()
    averaged = averages.measure(measure) if args.ema else {}
    train_seconds = sum(row["seconds"] for row in state.history)
    trial = {"recipe": args.recipe, "seed": args.seed, "changes": changes, "train_accuracy": state.history[-1]["accuracy"],
             "val_accuracy": plain,
             "val_accuracy_flips": flipped,
             "ema": {str(momentum): {"val_accuracy": a, "val_accuracy_flips": b}
                     for momentum, (a, b) in averaged.items()},
             "seconds": round(train_seconds, 1), "threads": args.threads,
             "load_before": round(load_before, 2), "load_after": round(os.getloadavg()[0], 2),
             "time": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    print(f"trial {args.recipe} seed {args.seed} {changes or '(as is)'}: train {trial['train_accuracy']:.4f}, val {plain:.4f}, "
          f"with flips {flipped:.4f}; "
          f"{train_seconds:.1f} s ({len(train_data[1])} images, threads {args.threads}); load {load_before:.2f} -> "
          f"{trial['load_after']:.2f}  [{trial['time']}]", flush=True)
    for momentum, (a, b) in averaged.items():
        print(f"  weight average, momentum {momentum}: val {a:.4f}, with flips {b:.4f}", flush=True)
    if args.json:
        with open(args.json, "a") as stream:
            stream.write(json.dumps(trial) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
