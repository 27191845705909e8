"""Honest epoch times: the median epoch (wall and CPU seconds) and which epochs a busy machine stretched.

The lab's first exercise asks how the filter count changes training time, and one epoch's wall time on a shared machine
says as much about the other jobs as about the model. The median ignores a stretched epoch; CPU seconds (this process's,
all threads) grow with the work done, not with the waiting; and an epoch far longer than the others is named, so a
reader knows the machine was busy rather than the model slow. Unless its CPU seconds stretched as much: then the
process worked longer rather than waited (a first epoch on a GPU warms up: CUDA's start, cuDNN's choice of kernels),
and the line says that instead.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass

BUSY_RATIO = 1.5   # an epoch this many times the median of the others (and BUSY_MIN_SECONDS longer) is "busy"
BUSY_MIN_SECONDS = 1.0
WORK_SHARE = 0.8   # a stretched epoch whose CPU seconds stretched at least this share as much worked, not waited


@dataclass(frozen=True)
class EpochTiming:
    """The median epoch's wall and CPU seconds, and the epochs far longer than the others, (epoch, seconds, ratio):
    busy_epochs waited (a busy machine), longer_work_epochs computed longer (their CPU seconds stretched as much)."""

    median_seconds: float
    median_cpu_seconds: float | None
    busy_epochs: tuple[tuple[int, float, float], ...]
    longer_work_epochs: tuple[tuple[int, float, float], ...] = ()


def median_or_nan(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def epoch_timing(history: list[dict]) -> EpochTiming:
    """Timing of a history's rows ("seconds", and "cpu_seconds" where recorded)."""
    seconds = [float(row["seconds"]) for row in history if row.get("seconds") is not None]
    cpu = [float(row["cpu_seconds"]) for row in history if row.get("cpu_seconds") is not None]
    busy, working = [], []
    for position, row in enumerate(history):
        others = [value for index, value in enumerate(seconds) if index != position]
        if len(others) < 1 or row.get("seconds") is None:
            continue
        typical = statistics.median(others)
        if row["seconds"] >= BUSY_RATIO * typical and row["seconds"] - typical >= BUSY_MIN_SECONDS:
            stretched = (int(row["epoch"]), float(row["seconds"]), row["seconds"] / typical)
            other_cpu = [float(other["cpu_seconds"]) for other in history
                         if other is not row and other.get("cpu_seconds") is not None]
            worked = (row.get("cpu_seconds") is not None and other_cpu and statistics.median(other_cpu) > 0
                      and row["cpu_seconds"] / statistics.median(other_cpu) >= WORK_SHARE * stretched[2])
            (working if worked else busy).append(stretched)
    return EpochTiming(median_or_nan(seconds), median_or_nan(cpu) if cpu else None, tuple(busy), tuple(working))


def describe_timing(timing: EpochTiming) -> str:
    """'median epoch 14.2 s (27.9 s CPU); epoch 3 took 41.0 s, 2.9x the others: the machine was busy'."""
    text = f"median epoch {timing.median_seconds:.1f} s"
    if timing.median_cpu_seconds is not None:
        text += f" ({timing.median_cpu_seconds:.1f} s CPU)"
    for epoch, seconds, ratio in timing.busy_epochs:
        text += f"; epoch {epoch} took {seconds:.1f} s, {ratio:.1f}x the others: the machine was busy"
    for epoch, seconds, ratio in timing.longer_work_epochs:
        text += (f"; epoch {epoch} took {seconds:.1f} s, {ratio:.1f}x the others, its CPU time as much: more work, "
                 f"not a busy machine{' (the first epoch warms up)' if epoch == 1 else ''}")
    return text
