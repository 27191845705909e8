"""machine.py: the CPU's bfloat16 hardware read from /proc/cpuinfo text (fakes for each kind), and the float32 limit."""
from __future__ import annotations

import torch

from convolab.machine import (bf16_units, cpu_flags, cpu_name, precision_hint, read_cpuinfo, sgemm_flops,
                              training_flops_per_image)

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
