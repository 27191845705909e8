"""bench/recipe_trials.py's own pieces: its refusals of malformed options, random erasing, and the trial-only
variants that must leave convolab as it found it."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

import convolab.train

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import recipe_trials  # noqa: E402 - the trial script lives beside the other benchmarks


@pytest.mark.parametrize("arguments, complaint", [
    (["--erase", "0.5"], "expected P,AREA"),
    (["--erase", "0.5,0.4,0.3"], "expected P,AREA"),
    (["--erase", "1.5,0.3"], "P must be in (0, 1]"),
    (["--erase", "0.5,0.01"], "AREA in (0.02, 1]"),
    (["--erase", "nan,0.3"], "P must be in (0, 1]"),
    (["--sgd-nesterov", "-1"], "0 or more"),
    (["--sgd-nesterov", "nan"], "0 or more"),
    (["--sgd-nesterov", "x"], "expected a decay"),
    (["--ema", "1.5"], "between 0 and 1"),
])
def test_malformed_options_get_the_usage_error_and_exit_2(monkeypatch, capsys, arguments, complaint):
    monkeypatch.setattr(sys, "argv", ["recipe_trials.py", "best", *arguments])
    with pytest.raises(SystemExit) as stopped:
        recipe_trials.main()                     # refused while parsing: no data is loaded, nothing trains
    assert stopped.value.code == 2
    assert complaint in capsys.readouterr().err


def test_random_erasing_fills_one_rectangle_per_chosen_image_with_noise_and_leaves_the_rest():
    torch.manual_seed(0)
    images = torch.full((200, 1, 28, 28), 2.0)   # outside the noise's [0, 1): every erased pixel shows
    erased = recipe_trials.random_erase(images, probability=1.0, largest_area=0.4)
    assert erased.shape == images.shape
    changed = erased != 2.0
    assert ((erased[changed] >= 0) & (erased[changed] < 1)).all()
    for mask in changed[:, 0]:
        rows, cols = mask.any(dim=1), mask.any(dim=0)
        assert mask.sum() == rows.sum() * cols.sum()         # one filled rectangle
        assert 1 <= mask.sum() <= 0.5 * 28 * 28              # 2-40% of the area, rounded and clipped
    assert torch.equal(recipe_trials.random_erase(images, probability=1e-9, largest_area=0.4), images)


def test_trial_variants_put_convolab_back_even_when_training_fails():
    augment, make_optimizer = convolab.train.augment_batch, convolab.train.make_optimizer
    with pytest.raises(RuntimeError):
        with recipe_trials.trial_variants((0.5, 0.4), 5e-4):
            assert convolab.train.augment_batch is not augment
            parameters = [torch.nn.Parameter(torch.zeros(3))]
            sgd = convolab.train.make_optimizer("sgd", parameters, 0.1, torch.device("cpu"))
            assert sgd.defaults["nesterov"] and sgd.defaults["momentum"] == 0.9
            assert sgd.defaults["weight_decay"] == 5e-4
            raise RuntimeError("a failed trial")
    assert convolab.train.augment_batch is augment and convolab.train.make_optimizer is make_optimizer
