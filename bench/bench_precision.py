"""float32 against bfloat16 autocast (--precision bf16) on this CPU, side by side in one run (issue 16, part 4).

usage: .venv/bin/python bench/bench_precision.py [--rounds 5] [--seconds 2] [--threads N]
                                                 [--train-limit 12000] [--epochs 2] [--json results.json]

1. Step time: the lab's CNN and the `fast` and `best` recipes' networks, batch 32 and 128, fp32 and bf16 steps
   interleaved round by round (train.py's loop on the fast engine: forward, cross-entropy, backward, Adam); medians.
2. Accuracy: the lab's recipe (cnn, Adam 0.001, batch 32) for --epochs on the first --train-limit training images,
   tested on all 10,000 test images, once in each precision, the same seed (the same initial weights and order).
The CPU's name, its bfloat16-related flags and the load average are printed first: on a busy machine the step
times are noisy, and the ratio (measured alternately) is the figure to read.
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

from convolab.benchmark import StepTimer
from convolab.data import load_dataset
from convolab.experiment import DataSelection, train_run
from convolab.machine import bf16_units, cpu_flags, cpu_name
from convolab.recipes import RECIPES
from convolab.spec import PRESETS
from convolab.train import QuietProgress, TrainConfig

NETWORKS = {"lab cnn": PRESETS["cnn"], "fast recipe": RECIPES["fast"].spec, "best recipe": RECIPES["best"].spec}
PRECISIONS = ("fp32", "bf16")
SHOWN_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")


def step_times(rounds: int, seconds: float) -> dict:
    """ms per step for every (network, batch, precision), fp32 and bf16 alternating within each round."""
    timers = {(name, batch, precision): StepTimer(batch, precision, spec)
              for name, spec in NETWORKS.items() for batch in (32, 128) for precision in PRECISIONS}
    samples = {key: [] for key in timers}
    for round_index in range(rounds):
        for key, timer in timers.items():
            samples[key].append(1000 * key[1] / timer.images_per_s(seconds))
        print(f"  round {round_index + 1}/{rounds} done, load average {os.getloadavg()[0]:.2f}", flush=True)
    results = {}
    for name in NETWORKS:
        for batch in (32, 128):
            fp32 = statistics.median(samples[(name, batch, "fp32")])
            bf16 = statistics.median(samples[(name, batch, "bf16")])
            results[f"{name}, batch {batch}"] = {"fp32_ms": fp32, "bf16_ms": bf16, "bf16_over_fp32": bf16 / fp32}
            print(f"step: {name:<12} batch {batch:>3}: fp32 {fp32:7.2f} ms, bf16 {bf16:7.2f} ms, "
                  f"bf16/fp32 {bf16 / fp32:.2f}", flush=True)
    return results


def lab_accuracy(train_limit: int, epochs: int) -> dict:
    """The lab's recipe on the first train_limit images, each precision once; test accuracy and training seconds."""
    dataset = load_dataset("fashion-mnist", offline=True, progress=False)
    selection = DataSelection(options={"source": "fashion-mnist", "offline": True}, train_limit=train_limit)
    results = {}
    for precision in PRECISIONS:
        config = TrainConfig(epochs=epochs, device="cpu", seed=0, precision=precision,
                             threads=str(torch.get_num_threads()))
        result = train_run("cnn", dataset, config, None, selection=selection, progress=QuietProgress())
        seconds = sum(row["seconds"] for row in result.history)
        results[precision] = {"test_accuracy": result.evaluation.accuracy, "train_seconds": seconds,
                              "final_loss": result.history[-1]["loss"]}
        print(f"accuracy: lab cnn, {epochs} epochs on {train_limit} images, {precision}: test accuracy "
              f"{result.evaluation.accuracy:.4f} (10,000 test images), training {seconds:.1f} s, last epoch's loss "
              f"{result.history[-1]['loss']:.4f}, load average {os.getloadavg()[0]:.2f}", flush=True)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds of step timings (default 5)")
    parser.add_argument("--seconds", type=float, default=2.0, help="seconds per timing (default 2)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: PyTorch's)")
    parser.add_argument("--train-limit", type=int, default=12000, help="training images for the accuracy runs")
    parser.add_argument("--epochs", type=int, default=2, help="epochs of the accuracy runs (0: skip them)")
    parser.add_argument("--json", default=None, help="also write every figure to this file")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    flags = cpu_flags()
    print(f"bench_precision: {cpu_name()}; bfloat16 hardware: {bf16_units(flags) or 'none'}; flags: "
          f"{' '.join(flag for flag in SHOWN_FLAGS if flag in flags) or '-'}; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}, "
          f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')}", flush=True)
    results: dict = {"cpu": cpu_name(), "flags": sorted(set(SHOWN_FLAGS) & flags),
                     "threads": torch.get_num_threads(), "steps": step_times(args.rounds, args.seconds)}
    if args.epochs:
        results["lab_accuracy"] = lab_accuracy(args.train_limit, args.epochs)
    print(f"load average at the end {os.getloadavg()[0]:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
