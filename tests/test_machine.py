"""machine.py: the CPU's bfloat16 hardware read from /proc/cpuinfo text (fakes for each kind), and the float32 limit."""
from __future__ import annotations

import os

import torch

from convolab.machine import (bf16_units, cores_busy_elsewhere, cpu_flags, cpu_name, cpu_times, precision_hint,
                              read_cpuinfo, sgemm_flops, training_flops_per_image)

SAPPHIRE_RAPIDS = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu sse2 avx2 avx512f avx512_bf16 amx_bf16 amx_tile amx_int8
"""
ZEN4 = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 9R14 96-Core Processor
flags\t\t: fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni
"""
SKYLAKE = """processor\t: 0
model name\t: Intel(R) Xeon(R) Gold 6148
flags\t\t: fpu sse2 avx2 avx512f avx512bw
"""
GRAVITON = """processor\t: 0
BogoMIPS\t: 243.75
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 bf16 i8mm
"""
CPU = torch.device("cpu")


def test_bf16_hardware_is_named_from_the_flags_amx_first():
    assert bf16_units(cpu_flags(SAPPHIRE_RAPIDS)) == "AMX"
    assert bf16_units(cpu_flags(ZEN4)) == "AVX512-BF16"
    assert bf16_units(cpu_flags(SKYLAKE)) is None
    assert bf16_units(cpu_flags(GRAVITON)) is None      # ARM's bf16 is not among the units oneDNN speeds up here
    assert bf16_units(cpu_flags("")) is None             # no /proc/cpuinfo (macOS, Windows): no suggestion
    assert cpu_name(ZEN4) == "AMD EPYC 9R14 96-Core Processor"
    assert "bf16" in cpu_flags(GRAVITON)                 # ARM's `Features` line is read as the flags


def test_the_hint_is_one_line_only_for_a_float32_cpu_run_on_bf16_hardware():
    hint = precision_hint(CPU, "auto", cpu_flags(ZEN4))
    assert hint is not None and "AVX512-BF16" in hint and "--precision bf16" in hint and "\n" not in hint
    assert "AMX" in precision_hint(CPU, "fp32", cpu_flags(SAPPHIRE_RAPIDS))
    assert precision_hint(CPU, "bf16", cpu_flags(ZEN4)) is None          # already on
    assert precision_hint(CPU, "auto", cpu_flags(SKYLAKE)) is None       # nothing to gain
    assert precision_hint(torch.device("cuda"), "auto", cpu_flags(ZEN4)) is None   # the GPU decides there


def test_this_machines_cpuinfo_reads_without_error():
    text = read_cpuinfo()
    assert isinstance(cpu_name(text), str) and isinstance(cpu_flags(text), set)


def test_the_float32_limit_and_the_lab_cnns_flops():
    assert sgemm_flops(size=64, repeats=1) > 0
    # conv64x3 on 28x28x1: 26·26·64·9 MACs (forward + weight gradient only), then every later layer x3
    first = 26 * 26 * 64 * 9
    assert training_flops_per_image("conv64x3,flatten,dense") == 2 * first * 2 + 2 * (26 * 26 * 64 * 10 + 0) * 3


# /proc/stat: user nice system idle iowait irq softirq steal guest guest_nice, in clock ticks
STAT_BEFORE = """cpu  300 0 100 1000 0 0 0 0 0 0
cpu0 100 0 50 500 0 0 0 0 0 0
cpu1 200 0 50 500 0 0 0 0 0 0
intr 12345
"""
# over the window: cpu0 25 busy + 75 idle (one program's quarter), cpu1 90 user + 10 steal (all taken)
STAT_AFTER = """cpu  400 0 100 1075 0 0 0 10 0 0
cpu0 125 0 50 575 0 0 0 0 0 0
cpu1 290 0 50 500 0 0 0 10 0 0
intr 23456
"""


def test_cpu_times_sum_the_named_cores_with_steal_as_busy():
    assert cpu_times(STAT_AFTER, {0}) == (175, 575)
    assert cpu_times(STAT_AFTER, {1}) == (350, 500)
    assert cpu_times(STAT_AFTER, {0, 1}) == (525, 1075)
    assert cpu_times("cpu0 1 2 3\n", {0}) == (6, 0)      # an old kernel's shorter line: the missing fields are 0


def test_cores_busy_elsewhere_is_the_busy_share_of_this_process_cores_over_the_window():
    texts, slept = iter([STAT_BEFORE, STAT_AFTER]), []
    busy = cores_busy_elsewhere(0.25, read_stat=lambda: next(texts), sleep=slept.append, cpus={0, 1})
    assert slept == [0.25]
    assert busy == 2 * 125 / 200          # 25 + 100 busy ticks of 200 on 2 cores: 1.25 cores' worth
    texts = iter([STAT_BEFORE, STAT_AFTER])
    assert cores_busy_elsewhere(0.25, read_stat=lambda: next(texts), sleep=slept.append, cpus={1}) == 1.0


def test_cores_busy_elsewhere_is_none_where_proc_stat_cannot_be_read_or_did_not_move():
    def missing():
        raise FileNotFoundError("/proc/stat")
    assert cores_busy_elsewhere(0.0, read_stat=missing, sleep=lambda seconds: None, cpus={0}) is None
    assert cores_busy_elsewhere(0.0, read_stat=lambda: STAT_BEFORE, sleep=lambda seconds: None, cpus={0}) is None
    assert cores_busy_elsewhere(0.0, read_stat=lambda: "garbage x y\n", sleep=lambda seconds: None, cpus={0}) is None
    assert cores_busy_elsewhere(0.0, read_stat=lambda: "cpu0 a b\n", sleep=lambda seconds: None, cpus={0}) is None


def test_cores_busy_elsewhere_reads_this_machine():
    busy = cores_busy_elsewhere(0.05)
    assert busy is None or 0.0 <= busy <= len(os.sched_getaffinity(0))
