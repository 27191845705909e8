"""Honest epoch times: the median epoch, CPU seconds beside wall seconds, and a stretched epoch named as such."""
from __future__ import annotations

import math

from convolab.timing import describe_timing, epoch_timing


def rows(*seconds, cpu=None):
    return [{"epoch": epoch, "seconds": value, **({"cpu_seconds": cpu[epoch - 1]} if cpu else {})}
            for epoch, value in enumerate(seconds, start=1)]


def test_the_median_ignores_one_stretched_epoch_and_names_it():
    timing = epoch_timing(rows(14.0, 14.4, 45.0, 14.2, 13.9, cpu=[27.0, 28.0, 29.0, 27.5, 27.2]))
    assert timing.median_seconds == 14.2 and timing.median_cpu_seconds == 27.5
    assert [(epoch, round(ratio, 1)) for epoch, _, ratio in timing.busy_epochs] == [(3, 3.2)]
    assert describe_timing(timing) == ("median epoch 14.2 s (27.5 s CPU); epoch 3 took 45.0 s, 3.2x the others: "
                                       "the machine was busy")


def test_even_epochs_are_not_flagged_and_old_runs_lack_cpu_seconds():
    timing = epoch_timing(rows(10.0, 11.0, 12.0))
    assert timing.busy_epochs == () and timing.median_cpu_seconds is None
    assert describe_timing(timing) == "median epoch 11.0 s"
    assert epoch_timing(rows(0.2, 0.6)).busy_epochs == ()          # 3x, but less than a second: noise, not a machine
    assert math.isnan(epoch_timing([]).median_seconds)


def test_an_epoch_whose_cpu_time_stretched_as_much_worked_longer_and_is_not_called_busy():
    # An H200's first epoch (CUDA's start, cuDNN's kernel choice): 7.17 s wall, 6.81 s CPU, against 4.69 and 4.68.
    # It was reported as "the machine was busy", which it was not: its CPU time grew as much as its wall time.
    timing = epoch_timing(rows(7.171, 4.687, cpu=[6.813, 4.684]))
    assert timing.busy_epochs == () and [epoch for epoch, _, _ in timing.longer_work_epochs] == [1]
    assert describe_timing(timing).endswith("epoch 1 took 7.2 s, 1.5x the others, its CPU time as much: more work, "
                                            "not a busy machine (the first epoch warms up)")
    waited = epoch_timing(rows(14.0, 30.0, 14.2, cpu=[27.0, 29.0, 27.5]))     # wall 2.1x, CPU 1.05x: it waited
    assert [epoch for epoch, _, _ in waited.busy_epochs] == [2] and waited.longer_work_epochs == ()
