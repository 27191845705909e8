"""bench/bench_busy.py's pooling of earlier runs (--pool): what it reads from a run's printed output, the interval it
gives for the median, and its refusal of files that hold no run."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import bench_busy  # noqa: E402 - the benchmark lives beside the others

RUN = """bench_busy: lab CNN, 1 epoch(s) on the first 12000 Fashion-MNIST images, batch 32, Adam 0.001
| convolab | 2.83 | 4.86 | 1.72 | 1.36, 1.38 |
convolab quiet / before quiet, per pair (3 pairs): 0.950, 1.020, 1.100
convolab quiet / before quiet: median of the pairs 1.020 (goal <= 1.05; range 0.950-1.100); \
convolab busy / convolab quiet: 1.72 (goal <= 2)
"""


def test_a_runs_pairs_and_busy_ratio_are_read_from_its_printed_output():
    assert bench_busy.read_run(RUN) == ([0.95, 1.02, 1.1], 1.72)
    ratios, busy = bench_busy.read_run(RUN.replace(" convolab busy / convolab quiet: 1.72 (goal <= 2)", ""))
    assert ratios == [0.95, 1.02, 1.1] and busy is None


@pytest.mark.parametrize("text, complaint", [
    ("no run here\n", "no 'convolab quiet / before quiet, per pair' line"),
    (RUN.replace("(3 pairs)", "(4 pairs)"), "says 4 pairs but lists 3"),
])
def test_text_without_a_well_formed_pairs_line_is_refused(text, complaint):
    with pytest.raises(ValueError, match=complaint.replace("(", r"\(").replace(")", r"\)")):
        bench_busy.read_run(text)


def test_the_medians_interval_uses_the_order_statistics_of_a_binomial_count():
    values = [float(value) for value in range(13, 0, -1)]            # 13 values, unsorted
    assert bench_busy.median_interval(values) == (3.0, 11.0)          # ranks 3 and 11: the textbook pair for n = 13
    assert bench_busy.median_interval([5.0, 1.0, 3.0, 2.0, 4.0]) == (1.0, 5.0)   # n = 5: too few, the whole range
    hundred = bench_busy.median_interval([float(value) for value in range(1, 101)])
    assert hundred == (40.0, 61.0)                                    # n = 100: ranks 40 and 61


def test_pool_reports_every_pair_and_refuses_a_file_with_no_run(tmp_path, capsys):
    first, second, other = tmp_path / "a.txt", tmp_path / "b.txt", tmp_path / "notes.txt"
    first.write_text(RUN, encoding="utf-8")
    second.write_text(RUN.replace("0.950, 1.020, 1.100", "1.000, 1.040, 1.060"), encoding="utf-8")
    other.write_text("nothing measured\n", encoding="utf-8")
    assert bench_busy.pool([str(first), str(second)]) == 0
    printed = capsys.readouterr().out
    assert "pooled, 6 quiet pairs from 2 runs" in printed and "median 1.030" in printed
    assert bench_busy.pool([str(first), str(other)]) == 2
    assert f"cannot use {other}" in capsys.readouterr().err
    assert bench_busy.pool([str(tmp_path / "missing.txt")]) == 2
