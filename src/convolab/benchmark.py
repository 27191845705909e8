"""`convolab bench`: this machine measured in about a minute, the lab's training step against its float32 limit.

    result = run_bench(seconds=60)   -> BenchResult: the SGEMM rate, each step's images/s, Keras's when it can run
    format_table(result)             -> the one table `convolab bench` prints (result.to_dict() for --json)

What is measured, in interleaved rounds so that a burst of other work spreads over every figure alike (medians):
- the float32 limit: a 2048x2048 float32 matmul's FLOP/s, the faster of all threads and one (machine.py; the same
  figure as bench/bench_engine.py's goal 2);
- the lab's CNN training step (forward, cross-entropy, backward, Adam; train.py's own loop on the fast engine) at
  batch 32 and 128, as images/s and as a fraction of the limit (images/s x training FLOPs per image / SGEMM FLOP/s);
- the same step with --precision bf16, when the CPU has bfloat16 hardware (AMX or AVX512-BF16);
- Keras's step on the same network (tf.keras's train_on_batch) when TensorFlow is importable, in a child process
  after the rounds: TensorFlow and PyTorch would otherwise share (and fight over) one thread pool.
All on the CPU: the limit is the CPU's.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from importlib.util import find_spec

import torch

from convolab.engine import prepare_for_training, step_threads
from convolab.machine import bf16_units, cpu_flags, cpu_name, float32_limit, training_flops_per_image
from convolab.model import build_model
from convolab.spec import PRESETS, load_spec
from convolab.train import cross_entropy, make_optimizer, train_one_epoch

LAB_SPEC = PRESETS["cnn"]
BATCHES = (32, 128)
ROUNDS = 3   # interleaved rounds of a full bench (medians)


@dataclass
class StepFigure:
    """One training step's speed: batch, precision, images/s (median over rounds), and its share of the limit."""

    name: str
    batch: int
    precision: str
    images_per_s: float
    fraction_of_limit: float | None = None

    @property
    def ms_per_step(self) -> float:
        return 1000 * self.batch / self.images_per_s if self.images_per_s else float("nan")


@dataclass
class BenchResult:
    cpu: str
    bf16_units: str | None
    threads: int
    load_average: float
    sgemm_flops: float
    flops_per_image: int
    steps: list[StepFigure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        data = asdict(self)
        for step, figure in zip(data["steps"], self.steps):
            step["ms_per_step"] = figure.ms_per_step
        return data


# --- one measurement each ------------------------------------------------------------------------------------------------

class StepTimer:
    """A network (the lab's CNN by default) on the fast engine, stepping on one fixed random batch, as train.py's
    loop steps on each batch: forward, cross-entropy, backward, Adam, the loss read back."""

    def __init__(self, batch: int, precision: str, spec: str = LAB_SPEC):
        torch.manual_seed(0)
        self.batch, self.precision = batch, precision
        self.model = prepare_for_training(build_model(load_spec(spec), (28, 28, 1), 10), "cpu", precision=precision)
        self.optimizer = make_optimizer("adam", self.model.parameters(), 1e-3, torch.device("cpu"))
        self.images = torch.rand(batch, 1, 28, 28)   # (N, 1, 28, 28) floats in [0, 1], as iterate_batches gives
        self.labels = torch.randint(0, 10, (batch,))
        self.run(1)                                  # warm-up: oneDNN picks its kernels, the allocator its blocks

    def run(self, steps: int) -> None:
        with step_threads(self.model):               # as train.fit runs it
            train_one_epoch(self.model, [(self.images, self.labels)] * steps, self.optimizer, cross_entropy)

    def images_per_s(self, seconds: float) -> float:
        """Steps for about `seconds` (at least 2), as images per second."""
        started, steps = time.perf_counter(), 0
        while steps < 2 or time.perf_counter() - started < seconds:
            self.run(1)
            steps += 1
        return self.batch * steps / (time.perf_counter() - started)


# --- Keras, in a child process --------------------------------------------------------------------------------------------

KERAS_STEP = """
import json, sys, time
import numpy as np
import tensorflow as tf
keras = tf.keras
seconds, batches = float(sys.argv[1]), [int(b) for b in sys.argv[2:]]
model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Conv2D(64, 3, activation="relu"),
                          keras.layers.MaxPooling2D(2), keras.layers.Conv2D(64, 3, activation="relu"),
                          keras.layers.MaxPooling2D(2), keras.layers.Flatten(), keras.layers.Dense(128, activation="relu"),
                          keras.layers.Dense(10, activation="softmax")])
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
rates = {}
for batch in batches:
    images = np.random.rand(batch, 28, 28, 1).astype("float32")
    labels = np.random.randint(0, 10, batch)
    model.train_on_batch(images, labels)
    started, steps = time.perf_counter(), 0
    while steps < 2 or time.perf_counter() - started < seconds:
        model.train_on_batch(images, labels)
        steps += 1
    rates[batch] = batch * steps / (time.perf_counter() - started)
print(json.dumps({"version": tf.__version__, "rates": rates}))
"""


def keras_rates(seconds: float, batches: tuple[int, ...]) -> tuple[dict[int, float], str]:
    """Keras's images/s at each batch and a note; ({}, why) when TensorFlow is missing or its run failed."""
    if find_spec("tensorflow") is None:
        return {}, "Keras: skipped (TensorFlow is not installed; pip install tensorflow-cpu to compare)"
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    try:
        done = subprocess.run([sys.executable, "-c", KERAS_STEP, str(seconds), *map(str, batches)], env=environment,
                              capture_output=True, text=True, timeout=120 + 10 * seconds)
        answer = json.loads(done.stdout.strip().splitlines()[-1])
        return {int(batch): rate for batch, rate in answer["rates"].items()}, f"Keras: TensorFlow {answer['version']}"
    except (subprocess.TimeoutExpired, json.JSONDecodeError, IndexError, KeyError, ValueError) as error:
        return {}, f"Keras: its run failed ({type(error).__name__}), so it is left out"


# --- the whole bench -------------------------------------------------------------------------------------------------------

def planned_steps(flags: set[str]) -> tuple[list[tuple[int, str]], list[str]]:
    """The (batch, precision) steps to measure on a CPU with these flags, and a note for what is skipped."""
    if bf16_units(flags):
        return [(batch, precision) for precision in ("fp32", "bf16") for batch in BATCHES], []
    return [(batch, "fp32") for batch in BATCHES], ["bf16: skipped (this CPU has neither AMX nor AVX512-BF16)"]


def plan_rounds(seconds: float) -> tuple[int, int]:
    """(rounds, SGEMM matrix size) for a budget: a short bench (under 10 s) measures once, on a smaller matmul."""
    return (ROUNDS, 2048) if seconds >= 10 else (1, 512)


def measurement_count(seconds: float, with_keras: bool = True, flags: set[str] | None = None) -> int:
    """How many times run_bench calls advance (a progress bar's total)."""
    steps, _ = planned_steps(cpu_flags() if flags is None else flags)
    rounds, _ = plan_rounds(seconds)
    return rounds * (len(steps) + 1) + (1 if with_keras else 0)


def run_bench(seconds: float = 60.0, with_keras: bool = True, advance: Callable[[str], None] | None = None,
              flags: set[str] | None = None) -> BenchResult:
    """Measure for about `seconds` in all; advance(what) after each measurement (a progress bar's tick).

    flags: the CPU's flags (default: this CPU's), deciding whether the bf16 step is measured.
    """
    flags = cpu_flags() if flags is None else flags
    planned, notes = planned_steps(flags)
    rounds, size = plan_rounds(seconds)
    advance = advance or (lambda what: None)
    result = BenchResult(cpu=cpu_name(), bf16_units=bf16_units(flags), threads=torch.get_num_threads(),
                         load_average=os.getloadavg()[0], sgemm_flops=0.0,
                         flops_per_image=training_flops_per_image(LAB_SPEC), notes=notes)
    steps = {(batch, precision): StepTimer(batch, precision) for batch, precision in planned}
    keras_share = 1 if with_keras and find_spec("tensorflow") is not None else 0
    # Each round: the limit, then every step; Keras's share of the time is one round's worth of steps.
    slice_seconds = seconds / ((rounds + keras_share) * (len(steps) + 1))
    limits, rates = [], {key: [] for key in steps}
    for _ in range(rounds):
        limits.append(float32_limit(size, repeats=3))
        advance("float32 limit (SGEMM)")
        for (batch, precision), step in steps.items():
            rates[(batch, precision)].append(step.images_per_s(slice_seconds))
            advance(f"lab step, batch {batch}, {precision}")
    result.sgemm_flops = statistics.median(limits)
    for (batch, precision), values in rates.items():
        rate = statistics.median(values)
        result.steps.append(StepFigure("convolab", batch, precision, rate,
                                       rate * result.flops_per_image / result.sgemm_flops))
    if with_keras:
        keras, note = keras_rates(slice_seconds * len(steps) / len(BATCHES), BATCHES)
        for batch, rate in keras.items():
            result.steps.append(StepFigure("keras", batch, "fp32", rate,
                                           rate * result.flops_per_image / result.sgemm_flops))
        result.notes.append(note)
        advance("Keras")
    if size != 2048:
        result.notes.append(f"a short bench: one round, a {size}x{size} SGEMM (rough figures; the default is 60 s)")
    result.load_average = max(result.load_average, os.getloadavg()[0])
    if result.load_average > (os.cpu_count() or 1) / 2:
        result.notes.append("the machine was busy (load average above half its cores): the figures are low and noisy")
    return result


def format_table(result: BenchResult) -> str:
    """The bench's one table: the limit, then each step as images/s, ms/step and fraction of the limit."""
    lines = [f"CPU: {result.cpu}; {result.threads} threads; bfloat16 hardware: {result.bf16_units or 'none'}; "
             f"load average {result.load_average:.2f}",
             f"float32 limit (SGEMM): {result.sgemm_flops / 1e9:.1f} GFLOP/s; the lab's CNN trains at "
             f"{result.flops_per_image / 1e6:.2f} MFLOP/image",
             "",
             f"{'step (lab CNN, Adam)':<24} {'batch':>5} {'precision':>9} {'images/s':>9} {'ms/step':>8} "
             f"{'of limit':>8}"]
    for step in result.steps:
        fraction = f"{step.fraction_of_limit:.2f}" if step.fraction_of_limit is not None else "-"
        lines.append(f"{step.name:<24} {step.batch:>5} {step.precision:>9} {step.images_per_s:>9,.0f} "
                     f"{step.ms_per_step:>8.2f} {fraction:>8}")
    lines += [""] + result.notes
    return "\n".join(lines) + "\n"
