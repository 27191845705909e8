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
    (["--bn-group", "1"], "2 or more"),
    (["--bn-group", "-4"], "2 or more"),
    (["--bn-group", "x"], "2 or more"),
    (["--bn-group", "\u00b2"], "2 or more"),          # '²' passes str.isdigit, not int()
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


def test_batch_norm_in_groups_normalises_each_group_by_its_own_statistics():
    torch.manual_seed(0)
    norm = torch.nn.BatchNorm2d(3, momentum=0.1).double()
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-0.5, 0.5)
        norm.running_mean.uniform_(-1, 1)
        norm.running_var.uniform_(0.5, 2)
    before_mean, before_var = norm.running_mean.clone(), norm.running_var.clone()
    x = (torch.randn(10, 3, 4, 5, dtype=torch.float64) * 3 + 1).requires_grad_(True)
    out = recipe_trials.batch_norm_in_groups(norm, x, group=4)           # groups of 4, 4 and 2 images
    # By hand: each group by its mean and biased variance over images and positions, then the affine map.
    expected, means, variances = [], [], []
    for part in x.split(4):
        mean = part.mean(dim=(0, 2, 3), keepdim=True)
        variance = part.var(dim=(0, 2, 3), unbiased=False, keepdim=True)
        expected.append((part - mean) / torch.sqrt(variance + norm.eps) * norm.weight.view(1, 3, 1, 1)
                        + norm.bias.view(1, 3, 1, 1))
        means.append(mean.flatten())
        variances.append(part.var(dim=(0, 2, 3), unbiased=True))       # the moving variance tracks the unbiased one
    expected = torch.cat(expected)
    assert torch.allclose(out, expected, atol=1e-12)
    gradient = torch.randn_like(out)
    assert torch.allclose(torch.autograd.grad(out, x, gradient, retain_graph=True)[0],
                          torch.autograd.grad(expected, x, gradient)[0], atol=1e-12)
    assert torch.allclose(norm.running_mean, 0.9 * before_mean + 0.1 * torch.stack(means).mean(0), atol=1e-12)
    assert torch.allclose(norm.running_var, 0.9 * before_var + 0.1 * torch.stack(variances).mean(0), atol=1e-12)
    assert int(norm.num_batches_tracked) == 1


def test_batch_norm_in_groups_is_plain_batch_norm_for_one_group_and_in_eval_mode():
    torch.manual_seed(1)
    plain, grouped = torch.nn.BatchNorm2d(2), torch.nn.BatchNorm2d(2)
    x = torch.randn(6, 2, 3, 3)
    assert torch.equal(recipe_trials.batch_norm_in_groups(grouped, x, group=6), plain(x))
    assert torch.equal(grouped.running_mean, plain.running_mean) and torch.equal(grouped.running_var, plain.running_var)
    plain.eval(), grouped.eval()
    assert torch.equal(recipe_trials.batch_norm_in_groups(grouped, x, group=2), plain(x))   # moving statistics


def test_trial_variants_put_convolab_back_even_when_training_fails():
    augment, make_optimizer = convolab.train.augment_batch, convolab.train.make_optimizer
    norm_forward = recipe_trials.BatchNormalizationBlock.forward
    with pytest.raises(RuntimeError):
        with recipe_trials.trial_variants((0.5, 0.4), 5e-4, bn_group=32):
            assert recipe_trials.BatchNormalizationBlock.forward is not norm_forward
            assert convolab.train.augment_batch is not augment
            parameters = [torch.nn.Parameter(torch.zeros(3))]
            sgd = convolab.train.make_optimizer("sgd", parameters, 0.1, torch.device("cpu"))
            assert sgd.defaults["nesterov"] and sgd.defaults["momentum"] == 0.9
            assert sgd.defaults["weight_decay"] == 5e-4
            raise RuntimeError("a failed trial")
    assert convolab.train.augment_batch is augment and convolab.train.make_optimizer is make_optimizer
    assert recipe_trials.BatchNormalizationBlock.forward is norm_forward
