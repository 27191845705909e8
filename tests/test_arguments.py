"""The flags' types: numbers within bounds, plain ASCII digits only, the same words in every command."""
from __future__ import annotations

import argparse
import time

import pytest

from convolab import arguments
from convolab.cli import build_parser, main
from convolab.errors import TrainingError
from convolab.train import DEVICES, TrainConfig


@pytest.mark.parametrize("kind, text, value", [
    (arguments.COUNT, "5", 5), (arguments.FRACTION, "0", 0.0), (arguments.FRACTION, ".25", 0.25),
    (arguments.POSITIVE, "1e-3", 0.001), (arguments.FILTER_INDEX, "0", 0), (arguments.SEED, str(2**64 - 1), 2**64 - 1),
])
def test_numbers_within_bounds_pass(kind, text, value):
    assert kind(text) == value


@pytest.mark.parametrize("kind, text, message", [
    (arguments.COUNT, "0", "0: expected a whole number of at least 1, such as 5"),
    (arguments.COUNT, "²", "'²': expected a whole number"),          # str.isdigit says yes, int() says no
    (arguments.COUNT, "٣", "'٣': expected a whole number"),          # int() would read it as 3
    (arguments.FRACTION, "1", "expected a fraction from 0 up to (not including) 1"),
    (arguments.POSITIVE, "nan", "expected a number above 0"),
    (arguments.POSITIVE, "inf", "expected a number above 0"),
    (arguments.SEED, str(2**64), "expected a seed from 0 to 18446744073709551615"),
    (arguments.SEED, "-1", "expected a seed from 0"),
])
def test_numbers_out_of_bounds_or_not_plain_digits_are_refused(kind, text, message):
    with pytest.raises(argparse.ArgumentTypeError) as raised:
        kind(text)
    assert message in str(raised.value)


@pytest.mark.parametrize("argv, message", [
    # Issue 9, cause 11: '²' passed validation and crashed in int(); a seed beyond 64 bits overflowed in torch.
    (["train", "cnn", "--threads", "²"], "--threads: '²': expected all, adaptive, or a thread count"),
    (["train", "cnn", "--seed", str(2**64)], "--seed: 18446744073709551616: expected a seed from 0 to"),
    (["compare", "cnn", "--seed", "1" * 30], "--seed: 111111111111111111111111111111: expected a seed"),
    (["lab", "--seed", str(2**70)], "expected a seed"),
    # Issue 9, cause 12: --per-class 100000 drew for minutes.
    (["data", "fashion-mnist", "--grid", "g.png", "--per-class", "100000"], "per_class=100000; expected 1 to 32"),
])
def test_the_commands_refuse_them_with_exit_2_at_once(capsys, tmp_path, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    start = time.monotonic()
    try:
        status = main([*argv, "--offline"])
    except SystemExit as exit_:
        status = exit_.code
    error = capsys.readouterr().err
    assert status == 2 and message in error and "internal error" not in error
    assert time.monotonic() - start < 10 and not (tmp_path / "g.png").exists()


def test_the_python_api_refuses_them_too():
    with pytest.raises(TrainingError, match="threads='²'"):
        TrainConfig(threads="²").validate()
    with pytest.raises(TrainingError, match="seed=18446744073709551616"):
        TrainConfig(seed=2**64).validate()
    TrainConfig(threads="2", seed=2**64 - 1).validate()


def test_a_layer_number_in_superscript_is_a_name_that_does_not_exist():
    from convolab.activations import find_layer
    from convolab.errors import SpecError
    from convolab.spec import load_spec

    with pytest.raises(SpecError, match="no layer named '²'"):
        find_layer(load_spec("cnn"), "²")
    assert find_layer(load_spec("cnn"), "2") == 2


def test_every_device_flag_offers_the_one_list():
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    offered = {name: action.choices for name, sub in commands.items() for action in sub._actions
               if "--device" in action.option_strings}
    assert set(offered) == {"train", "evaluate", "compare", "lab", "sweep"}
    assert all(tuple(choices) == DEVICES for choices in offered.values())
