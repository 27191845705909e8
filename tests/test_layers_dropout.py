"""Dropout's torch block (layers/regularization.py): a Bernoulli(1 - rate) mask, the kept values scaled by
1 / (1 - rate) as torch's and Keras's dropout scale them, drawn in the order of the input's shape."""
from __future__ import annotations

import math

import torch

from convolab.layers.regularization import DropoutBlock


def test_training_keeps_about_one_minus_rate_and_scales_the_kept_values_as_torch_does():
    block = DropoutBlock(0.3).train()
    x = torch.rand(200, 1000) + 0.5                      # no zeros in the input: a zero in the output was dropped
    torch.manual_seed(0)
    y = block(x)
    kept = y != 0
    n = x.numel()
    assert abs(kept.sum().item() - 0.7 * n) < 5 * math.sqrt(n * 0.7 * 0.3)
    scale = torch.ones(()).div_(0.7)                      # torch's own arithmetic: the mask divided by 1 - rate
    assert torch.equal(y[kept], x[kept] * scale)
    reference_mean = torch.nn.functional.dropout(x, 0.3, training=True).mean()
    assert abs(y.mean() - x.mean()) < 0.01 and abs(reference_mean - x.mean()) < 0.01


def test_the_same_seed_draws_the_same_mask_whatever_the_memory_layout():
    block = DropoutBlock(0.5).train()
    x = torch.rand(4, 3, 6, 5) + 0.5
    torch.manual_seed(7)
    plain = block(x)
    torch.manual_seed(7)
    channels_last = block(x.contiguous(memory_format=torch.channels_last))
    assert torch.equal(plain, channels_last)
    torch.manual_seed(8)
    assert not torch.equal(plain, block(x))


def test_a_given_generator_is_drawn_from_instead_of_the_global_one():
    block = DropoutBlock(0.5).train()
    x = torch.rand(64, 100) + 0.5
    first = block(x, generator=torch.Generator().manual_seed(3))
    torch.manual_seed(0)
    global_state = torch.get_rng_state()
    second = block(x, generator=torch.Generator().manual_seed(3))
    assert torch.equal(first, second)
    assert torch.equal(torch.get_rng_state(), global_state)   # the global generator was not touched


def test_inference_and_rate_zero_change_nothing():
    x = torch.rand(8, 10)
    assert torch.equal(DropoutBlock(0.5).eval()(x), x)
    assert torch.equal(DropoutBlock(0.0).train()(x), x)
