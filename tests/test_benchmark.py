"""`convolab bench`: a short real run gives every figure (the numbers themselves are not asserted), the table's
layout is golden, bf16 is measured only on bfloat16 hardware, and Keras is skipped with a note without TensorFlow."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from convolab.benchmark import (KERAS_STEP, BenchResult, StepFigure, format_table, keras_rates, measurement_count,
                                plan_rounds, planned_steps, run_bench)
from convolab.cli import main

GOLDEN = Path(__file__).parent / "golden" / "bench_table.txt"


def test_a_short_bench_measures_the_limit_and_each_step_with_bf16_on_bfloat16_hardware(monkeypatch):
    monkeypatch.setattr("convolab.benchmark.find_spec", lambda name: None)   # as on a machine without TensorFlow
    ticks = []
    result = run_bench(seconds=1, advance=ticks.append, flags={"avx512_bf16"})
    assert result.sgemm_flops > 0 and result.flops_per_image > 0 and result.bf16_units == "AVX512-BF16"
    assert sorted((step.name, step.batch, step.precision) for step in result.steps) == [
        ("convolab", 32, "bf16"), ("convolab", 32, "fp32"), ("convolab", 128, "bf16"), ("convolab", 128, "fp32")]
    assert all(step.images_per_s > 0 and step.fraction_of_limit > 0 for step in result.steps)
    assert len(ticks) == measurement_count(1, flags={"avx512_bf16"})
    assert any("TensorFlow is not installed" in note for note in result.notes)
    assert any("a short bench" in note for note in result.notes)


def test_keras_is_skipped_with_a_note_without_tensorflow_and_its_child_script_compiles(monkeypatch):
    monkeypatch.setattr("convolab.benchmark.find_spec", lambda name: None)
    rates, note = keras_rates(1.0, (32,))
    assert rates == {} and "TensorFlow is not installed" in note
    compile(KERAS_STEP, "keras_step", "exec")   # TensorFlow is not installed here: at least the child's code parses


def test_without_bfloat16_hardware_only_float32_steps_are_planned():
    steps, notes = planned_steps({"avx2", "avx512f"})
    assert steps == [(32, "fp32"), (128, "fp32")] and "neither AMX nor AVX512-BF16" in notes[0]
    assert len(planned_steps({"amx_bf16"})[0]) == 4
    assert plan_rounds(60) == (3, 2048) and plan_rounds(2)[0] == 1


def test_the_table_layout_is_golden():
    result = BenchResult(cpu="AMD EPYC 9R14 96-Core Processor", bf16_units="AVX512-BF16", threads=2,
                         load_average=0.42, sgemm_flops=150e9, flops_per_image=35_000_000,
                         steps=[StepFigure("convolab", 32, "fp32", 2571.4, 0.60),
                                StepFigure("convolab", 128, "bf16", 6400.0, 1.49),
                                StepFigure("keras", 32, "fp32", 1900.0, 0.44)],
                         notes=["Keras: TensorFlow 2.20.0"])
    assert format_table(result) == GOLDEN.read_text()


def test_the_command_prints_its_figures_as_json(capsys, monkeypatch):
    monkeypatch.setattr("convolab.benchmark.find_spec", lambda name: None)
    assert main(["bench", "--seconds", "1", "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["sgemm_flops"] > 0 and {step["batch"] for step in figures["steps"]} == {32, 128}
    assert all(step["ms_per_step"] > 0 for step in figures["steps"])


@pytest.mark.parametrize("argv", [["bench", "--seconds", "0"], ["bench", "--seconds", "soon"]])
def test_bad_seconds_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as raised:
        main(argv)
    assert raised.value.code == 2 and "--seconds" in capsys.readouterr().err
