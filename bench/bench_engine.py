"""The engine's goals as ratios, each measured side by side in one run on this machine (issue 6).

usage: .venv/bin/python bench/bench_engine.py [--goals 1,2,3] [--keras-python /tmp/keras-venv/bin/python]
                                              [--batch 128] [--rounds 7] [--seeds 0,1,2] [--recipes fast,best]
                                              [--json results.json]
       .venv/bin/python bench/bench_engine.py --goals 3 --seeds 0 --train-n 2000 --recipe-epochs 1   # smoke test

1. The lab's recipe unchanged (cnn, Adam 0.001, batch 32, 5 epochs, all of Fashion-MNIST): `convolab train cnn`
   (engine fast) against bench/keras_lab.py; seconds per epoch, ratio convolab/Keras (goal: <= 1/3), and
   test accuracy (goal: >= 0.905).
2. Throughput of training steps (forward, backward, Adam) at --batch on the lab's CNN against the machine's FLOP limit:
   images/s x training FLOPs per image / SGEMM FLOP/s (goal: >= 0.5). SGEMM (a 2048x2048 float32 matmul) and the
   steps are timed in alternating rounds, medians reported. FLOPs per image count the CNN as Keras defines it
   (forward 2 x multiply-adds, backward twice that, but no input gradient for the first layer); the SGEMM rate is
   the faster of all threads and one thread in that round (one wins when other jobs hold the cores); the engine's own
   count (it skips the rows pooling drops) is printed next to it.
3. Time to accuracy: `convolab train --recipe fast` (goal: test accuracy >= 0.92 in <= 1/4 of Keras's time for the
   lab's 5 epochs) and `--recipe best` (>= 0.94 in <= 2x that time), each on every one of --seeds (default 0,1,2):
   per seed the test accuracy, training seconds (history.json's), the ratio to Keras's 5 epochs and whether each goal
   is met; data loading excluded on both sides.
Goals 1 and 3 share one Keras run (5 epochs). Training runs go through the real command line (bench_lab.py's
helpers), so what is timed is what users run.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_lab import run_convolab, run_keras  # noqa: E402  (the training engineer's side-by-side helpers)

from train_step import TrainStep, make_optimizer_for  # noqa: E402  (the benchmark's own step, beside it)

from convolab.engine import prepare_for_training  # noqa: E402
from convolab.machine import float32_limit, training_flops_per_image  # noqa: E402
from convolab.model import build_model  # noqa: E402
from convolab.recipes import RECIPES  # noqa: E402
from convolab.spec import load_spec  # noqa: E402


# --- FLOPs --------------------------------------------------------------------------------------------------------------

def engine_flops_per_image(line: str, input_shape=(28, 28, 1), classes: int = 10) -> int:
    """The same count for what the engine computes: convs before a valid pool only on the rows the pool reads."""
    reference = build_model(load_spec(line), input_shape, classes)
    fast = prepare_for_training(reference)
    total, first, index = 0, True, 0
    for step in fast.steps:
        blocks = [fast.blocks[index]] + ([fast.blocks[index + 1]] if type(step).__name__ == "ConvPoolStep" else [])
        macs = reference.reports[index].macs
        if type(step).__name__ == "ConvPoolStep" and step.crop:
            conv = step.conv
            rows = step.pool_windows[0].input_needed(step.out_rows)
            cols = step.pool_windows[1].input_needed(step.out_cols)
            macs = rows * cols * conv.out_channels * conv.in_channels * conv.kernel_size[0] * conv.kernel_size[1]
        if macs:
            total += 2 * macs * (2 if first else 3)
            first = False
        index += len(blocks)
    return total


# --- goal 2: throughput against SGEMM -----------------------------------------------------------------------------------

def goal_throughput(batch: int, rounds: int, steps: int, micro_batch: int = 32, warmup: int = 2) -> dict:
    """Images/s of whole training steps at `batch` (one optimizer step per batch), as one piece and in micro-batches;
    each round times `steps` steps after `warmup` untimed ones (the steady state an epoch's steps run in)."""
    torch.manual_seed(0)
    images = torch.rand(batch, 1, 28, 28)
    labels = torch.randint(0, 10, (batch,))
    threads = torch.get_num_threads()
    variants = {}
    for name, micro in (("whole batch", None), (f"micro-batches of {micro_batch}", micro_batch)):
        torch.manual_seed(0)
        fast = prepare_for_training(build_model(load_spec("cnn"), (28, 28, 1), 10))
        optimizer = make_optimizer_for("adam", fast.parameters(), 1e-3, torch.device("cpu"))
        variants[name] = TrainStep(fast, optimizer, torch.device("cpu"), micro_batch=micro)
    for step in variants.values():
        for _ in range(3):
            step(images, labels)
    rates, sgemm = {name: [] for name in variants}, []
    for _ in range(rounds):
        sgemm.append(float32_limit())                # the faster of all cores and one (a busy machine)
        for name, step in variants.items():
            # The first step after the SGEMM measurement (48 MB of matrices through the caches, the lanes asleep for
            # a second) took twice a step's time: once per round here, once per epoch in training. Untimed.
            for _ in range(warmup):
                step(images, labels)
            started = time.perf_counter()
            for _ in range(steps):
                step(images, labels)
            step.read(reset=True)                    # the host reads the metrics once per round, as once per epoch
            rates[name].append(batch * steps / (time.perf_counter() - started))
    torch.set_num_threads(threads)
    flops = training_flops_per_image("cnn")
    executed = engine_flops_per_image("cnn")
    peak = statistics.median(sgemm)
    result = {"batch": batch, "warmup_steps": warmup, "sgemm_flops": peak, "flops_per_image": flops,
              "engine_flops_per_image": executed,
              "limit_images_per_s": peak / flops, "variants": {}}
    print(f"goal 2: SGEMM {peak / 1e9:.1f} GFLOP/s (median of {rounds}); the CNN's training FLOPs {flops / 1e6:.2f} "
          f"M/image -> limit {peak / flops:,.0f} images/s (the engine executes {executed / 1e6:.2f} M/image); "
          f"{steps} timed steps per round after {warmup} untimed", flush=True)
    for name, values in rates.items():
        rate = statistics.median(values)
        fraction = rate * flops / peak
        result["variants"][name] = {"images_per_s": rate, "fraction_of_limit": fraction,
                                    "fraction_executed": rate * executed / peak}
        print(f"goal 2: batch {batch}, {name}: {rate:,.0f} images/s = {fraction:.2f} of the limit (goal >= 0.5); "
              f"counting only what the engine executes: {rate * executed / peak:.2f}", flush=True)
    return result


# --- goals 1 and 3: full trainings through the command line, with Keras in the same run ----------------------------------

def goal_lab_and_recipes(keras_python: str, goals: set[int], seeds: list[int], train_n: int = 60000,
                         recipe_epochs: int | None = None, recipes: tuple[str, ...] = ("fast", "best")) -> dict:
    results = {}
    keras = run_keras(keras_python, "cnn", 5, train_n)
    keras_train_s = keras["s_per_epoch"] * 5
    results["keras"] = keras
    print(f"keras: {keras['line']}", flush=True)
    if 1 in goals:
        lab = run_convolab("cnn", 5, train_n, ["--engine", "fast"])
        results["lab"] = lab
        ratio = lab["s_per_epoch"] / keras["s_per_epoch"]
        print(f"goal 1: lab recipe: convolab {lab['s_per_epoch']:.2f} s/epoch (epochs "
              f"{', '.join(f'{s:.1f}' for s in lab['epoch_seconds'])}), Keras {keras['s_per_epoch']:.2f} s/epoch; "
              f"ratio {ratio:.3f} (goal <= 0.333); test accuracy {lab['test_acc']:.4f} (goal >= 0.905), "
              f"Keras {keras['test_acc']:.4f}  [{lab['command']}]", flush=True)
    if 3 in goals:
        for name, target, budget in (("fast", 0.92, 0.25), ("best", 0.94, 2.0)):
            if name not in recipes:
                continue
            results[name] = recipe_on_seeds(name, target, budget, seeds, keras_train_s, train_n, recipe_epochs)
    return results


def recipe_on_seeds(name: str, target: float, budget: float, seeds: list[int], keras_train_s: float,
                    train_n: int, epochs: int | None) -> dict:
    """Goal 3 for one recipe: `convolab train --recipe NAME --seed S` for each seed; each must meet both goals."""
    epochs = epochs or RECIPES[name].epochs
    runs = {}
    for seed in seeds:
        run = run_convolab(name, epochs, train_n, ["--recipe", name, "--seed", str(seed)])
        seconds = sum(run["epoch_seconds"])
        ratio = seconds / keras_train_s
        run.update(seed=seed, train_seconds=seconds, ratio_to_keras=ratio, accuracy_met=run["test_acc"] >= target,
                   time_met=ratio <= budget, load_average=os.getloadavg()[0])
        runs[str(seed)] = run
        print(f"goal 3: recipe {name}, seed {seed}: test accuracy {run['test_acc']:.4f} (goal >= {target}: "
              f"{'yes' if run['accuracy_met'] else 'NO'}) in {seconds:.1f} s of training; Keras's 5 lab epochs "
              f"{keras_train_s:.1f} s; ratio {ratio:.3f} (goal <= {budget}: {'yes' if run['time_met'] else 'NO'}); "
              f"precision {run['precision']}; load average {run['load_average']:.2f}  [{run['command']}]", flush=True)
    met = all(run["accuracy_met"] and run["time_met"] for run in runs.values())
    lowest = min(run["test_acc"] for run in runs.values())
    slowest = max(run["ratio_to_keras"] for run in runs.values())
    print(f"goal 3: recipe {name} on seeds {', '.join(map(str, seeds))}: lowest test accuracy {lowest:.4f}, largest "
          f"ratio {slowest:.3f}: {'met on every seed' if met else 'NOT met on every seed'}", flush=True)
    return {"seeds": runs, "target_accuracy": target, "time_budget": budget, "lowest_test_accuracy": lowest,
            "largest_ratio": slowest, "met": met}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--goals", default="1,2,3", help="which goals to measure, e.g. 2 or 1,3 (default 1,2,3)")
    parser.add_argument("--keras-python", default="/tmp/keras-venv/bin/python")
    parser.add_argument("--batch", type=int, default=128, help="goal 2's batch size (default 128)")
    parser.add_argument("--rounds", type=int, default=7, help="goal 2's alternating rounds (default 7)")
    parser.add_argument("--steps", type=int, default=20, help="goal 2's training steps per round (default 20)")
    parser.add_argument("--warmup", type=int, default=2,
                        help="goal 2's untimed steps before each round's timed ones (default 2; 0: as before)")
    parser.add_argument("--seeds", default="0,1,2", help="goal 3's seeds, each run of each recipe (default 0,1,2)")
    parser.add_argument("--train-n", type=int, default=60000,
                        help="training images for goals 1 and 3, Keras included (default 60000: all; fewer for a "
                             "smoke test of the script, whose figures mean nothing)")
    parser.add_argument("--recipe-epochs", type=int, default=None,
                        help="goal 3's epochs instead of each recipe's own (a smoke test; default the recipe's)")
    parser.add_argument("--recipes", default="fast,best", help="goal 3's recipes (default fast,best)")
    parser.add_argument("--json", default=None, help="also write every figure to this file")
    args = parser.parse_args()
    goals = {int(goal) for goal in args.goals.split(",")}
    seeds = [int(seed) for seed in args.seeds.split(",")]
    print(f"bench_engine: torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.2f}, {time.strftime('%Y-%m-%d %H:%M:%S %Z')}", flush=True)
    results: dict = {"goals": sorted(goals), "date": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    if 2 in goals:
        results["throughput"] = goal_throughput(args.batch, args.rounds, args.steps, warmup=args.warmup)
    if goals & {1, 3}:
        results.update(goal_lab_and_recipes(args.keras_python, goals, seeds, args.train_n, args.recipe_epochs,
                                            tuple(args.recipes.split(","))))
    print(f"load average at the end {os.getloadavg()[0]:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
