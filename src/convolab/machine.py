"""What this machine can do: the CPU's name and bfloat16 units, and its float32 matrix-multiply rate (the limit).

    cpu_name(), cpu_flags()          -> from /proc/cpuinfo (Linux); "" and an empty set elsewhere
    bf16_units(flags)                -> "AMX" / "AVX512-BF16" / None: hardware that runs bfloat16 matrix work faster
    precision_hint(device, precision, flags) -> one line suggesting --precision bf16, or None
    cores_busy_elsewhere(seconds)    -> how many of this process's cores other programs keep busy now (Linux), or None
    sgemm_flops(size, repeats)       -> float32 FLOP/s of a size x size matmul
    float32_limit()                  -> the faster of that at all threads and at one: the rate a step is judged by
    training_flops_per_image(spec)   -> FLOPs of one image's forward and backward, counted as Keras's layers define them

bench/bench_engine.py and `convolab bench` (benchmark.py) measure with these, so both report the same limit.
"""
from __future__ import annotations

import os
import platform
import statistics
import time
from pathlib import Path

import torch

from convolab.shapes import analyze
from convolab.spec import load_spec

CPUINFO = Path("/proc/cpuinfo")
PROC_STAT = Path("/proc/stat")
# Flags in /proc/cpuinfo naming bfloat16 matrix hardware, best first: Intel's AMX tiles (Sapphire Rapids and later),
# then the AVX-512 bfloat16 dot products (Intel Cooper Lake, AMD Zen 4 and later).
BF16_FLAGS = (("amx_bf16", "AMX"), ("avx512_bf16", "AVX512-BF16"))


def _cpuinfo_field(text: str, name: str) -> str:
    """The first `name : value` line's value in /proc/cpuinfo text ("" when absent)."""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == name:
            return value.strip()
    return ""


def read_cpuinfo(path: Path = CPUINFO) -> str:
    try:
        return path.read_text(encoding="ascii", errors="replace")
    except OSError:
        return ""


def cpu_name(cpuinfo: str | None = None) -> str:
    """The CPU's model name ("AMD EPYC 9R14 96-Core Processor"), or platform's best guess off Linux."""
    text = read_cpuinfo() if cpuinfo is None else cpuinfo
    return _cpuinfo_field(text, "model name") or platform.processor() or platform.machine()


def cpu_flags(cpuinfo: str | None = None) -> set[str]:
    """The CPU's feature flags (x86 `flags`, ARM `Features`); empty when unknown."""
    text = read_cpuinfo() if cpuinfo is None else cpuinfo
    return set((_cpuinfo_field(text, "flags") or _cpuinfo_field(text, "Features")).split())


def bf16_units(flags: set[str]) -> str | None:
    """The bfloat16 matrix hardware the flags announce ("AMX", "AVX512-BF16"), None when there is none."""
    for flag, name in BF16_FLAGS:
        if flag in flags:
            return name
    return None


def precision_hint(device: torch.device, precision: str, flags: set[str]) -> str | None:
    """One line suggesting --precision bf16 on a CPU that has bfloat16 hardware and trains in float32; else None."""
    units = bf16_units(flags)
    if device.type != "cpu" or precision == "bf16" or units is None:
        return None
    return (f"this CPU has {units}: --precision bf16 may train faster (float32 weights, slightly different results; "
            "see `convolab bench`)")


# --- other programs' load ------------------------------------------------------------------------------------------------

def cpu_times(stat_text: str, cpus: set[int]) -> tuple[int, int]:
    """(busy, idle) clock ticks summed over the `cpus` lines (cpu0, cpu1, ...) of /proc/stat text. Busy counts user,
    nice, system, irq, softirq and steal (a virtual machine's core that the host gave to another guest is taken too);
    idle counts idle and iowait."""
    busy = idle = 0
    for line in stat_text.splitlines():
        name, *fields = line.split()
        if not (name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus):
            continue
        ticks = [int(field) for field in fields[:8]] + [0] * (8 - len(fields[:8]))
        user, nice, system, idle_ticks, iowait, irq, softirq, steal = ticks
        busy += user + nice + system + irq + softirq + steal
        idle += idle_ticks + iowait
    return busy, idle


def cores_busy_elsewhere(seconds: float = 0.25, read_stat=lambda: PROC_STAT.read_text(encoding="ascii"),
                         sleep=time.sleep, cpus: set[int] | None = None) -> float | None:
    """How many of this process's cores (its CPU affinity) other programs keep busy now, in cores (1.0: one core's
    worth): the busy share of those cores over `seconds` while this thread sleeps. None where /proc/stat is not
    readable (not Linux). Other threads of this process count as other programs: call it before training starts."""
    try:
        cpus = cpus if cpus is not None else set(os.sched_getaffinity(0))
        before = cpu_times(read_stat(), cpus)
        sleep(seconds)
        after = cpu_times(read_stat(), cpus)
    except (AttributeError, OSError, ValueError):
        return None
    busy, idle = after[0] - before[0], after[1] - before[1]
    if busy + idle <= 0:
        return None
    return len(cpus) * busy / (busy + idle)


# --- the float32 limit ---------------------------------------------------------------------------------------------------

def sgemm_seconds(size: int = 2048, repeats: int = 6) -> float:
    """Seconds for one size x size float32 matmul (median of `repeats`, after one untimed warm-up)."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    out = torch.empty(size, size)
    torch.mm(a, b, out=out)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        torch.mm(a, b, out=out)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def sgemm_flops(size: int = 2048, repeats: int = 6) -> float:
    """float32 FLOP/s of a size x size matmul: 2·size³ multiply-adds' worth per product."""
    return 2 * size ** 3 / sgemm_seconds(size, repeats)


def float32_limit(size: int = 2048, repeats: int = 6) -> float:
    """The SGEMM FLOP/s, the faster of all threads and one (one wins when other jobs hold the cores)."""
    threads = torch.get_num_threads()
    rates = []
    try:
        for count in sorted({threads, 1}):
            torch.set_num_threads(count)
            rates.append(sgemm_flops(size, repeats))
    finally:
        torch.set_num_threads(threads)
    return max(rates)


def training_flops_per_image(line: str, input_shape=(28, 28, 1), classes: int = 10) -> int:
    """Forward 2·MACs per layer; backward 2·MACs for the weight gradient and 2·MACs for the input gradient, except
    the first layer with weights, whose input (the image) needs no gradient."""
    total, first = 0, True
    for report in analyze(load_spec(line), input_shape, classes):
        if report.macs == 0:
            continue
        total += 2 * report.macs * (2 if first else 3)
        first = False
    return total
