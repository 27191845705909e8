"""model.py against PyTorch's real tensors: every block's output shape and the parameter counts equal the spec's
arithmetic (and Keras's formulas) for 250 random specs; Keras's asymmetric 'same' padding, initialization,
BatchNormalization momentum, logits vs probabilities."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from convolab.errors import SpecError
from convolab.model import build_model
from convolab.spec import AveragePooling2D, Conv2D, Dense, Flatten, MaxPooling2D, ModelSpec, load_spec
from spec_fixtures import random_specs


def keras_shape(tensor: torch.Tensor) -> tuple[int, ...]:
    """(N, C, H, W) -> (H, W, C); (N, units) -> (units,)."""
    if tensor.dim() == 4:
        return (tensor.shape[2], tensor.shape[3], tensor.shape[1])
    return tuple(tensor.shape[1:])


def parameter_counts(model: nn.Module) -> tuple[int, int]:
    """(trainable, non-trainable): PyTorch's parameters, and BatchNorm's running mean and variance (Keras's half)."""
    trainable = sum(parameter.numel() for parameter in model.parameters())
    non_trainable = sum(
        module.running_mean.numel() + module.running_var.numel()
        for module in model.modules() if isinstance(module, nn.modules.batchnorm._BatchNorm)
    )
    return trainable, non_trainable


RANDOM_SPECS = random_specs(250, seed=2)


def test_random_specs_cover_every_feature():
    """The generator really exercises strides, 'same', odd sizes, BN, dropout, avgpool, gap, non-square windows."""
    lines = ",".join(spec.to_line() for spec, *_ in RANDOM_SPECS)
    for feature in ("same", "s2", "s3", "bn", "dropout", "avgpool", "gap", "pool", "-nobias", "x3x", "x5x"):
        assert feature in lines, feature


@pytest.mark.parametrize("case", range(0, 250, 25))
def test_random_specs_shapes_and_counts_equal_pytorch(case):
    torch.manual_seed(case)
    for spec, expected_shapes, trainable, non_trainable in RANDOM_SPECS[case:case + 25]:
        model = build_model(spec, num_classes=None)
        model.eval()
        height, width, channels = spec.input_shape
        x = torch.rand(2, channels, height, width)
        with torch.no_grad():
            for block, report, expected in zip(model.blocks, model.reports, expected_shapes):
                x = block(x)
                assert keras_shape(x) == report.output_shape == expected, spec.to_line()
        assert parameter_counts(model) == (trainable, non_trainable), spec.to_line()
        assert sum(report.trainable_params for report in model.reports) == trainable
        assert sum(report.non_trainable_params for report in model.reports) == non_trainable
        assert x.shape == (2, model.num_classes)


def test_lab_cnn_and_dnn_parameter_counts():
    assert parameter_counts(build_model(load_spec("cnn"), (28, 28, 1), 10)) == (243_786, 0)
    assert parameter_counts(build_model(load_spec("dnn"), (28, 28, 1), 10)) == (101_770, 0)
    model = build_model(load_spec("cnn"), (28, 28, 1), 10)
    assert [p.numel() for p in model.parameters()] == [576, 64, 36_864, 64, 204_800, 128, 1_280, 10]


def test_same_padding_with_stride_pads_bottom_right_like_tensorflow():
    # 3×3 input, 2×2 window, stride 2, 'same': out ⌈3 / 2⌉ = 2, one pixel of padding, after (TensorFlow's rule).
    spec = ModelSpec((Conv2D(1, 2, strides=2, padding="same", use_bias=False), Flatten()), (3, 3, 1))
    model = build_model(spec)
    nn.init.ones_(model.blocks[0].conv.weight)
    x = torch.arange(1.0, 10.0).reshape(1, 1, 3, 3)
    out = model.blocks[0](x)[0, 0]
    # [[1+2+4+5, 3+6], [7+8, 9]]: the zeros went on the bottom row and the right column.
    assert out.tolist() == [[12.0, 9.0], [15.0, 9.0]]


def test_same_max_pooling_never_picks_the_padding():
    spec = ModelSpec((MaxPooling2D(2, padding="same"), Flatten()), (3, 3, 1))
    x = -torch.arange(1.0, 10.0).reshape(1, 1, 3, 3)
    out = build_model(spec).blocks[0](x)[0, 0]
    assert out.tolist() == [[-1.0, -3.0], [-7.0, -9.0]]


def test_same_average_pooling_averages_only_real_values():
    # TensorFlow's avg_pool with SAME divides by the number of real values in each window.
    spec = ModelSpec((AveragePooling2D(2, padding="same"), Flatten()), (3, 3, 1))
    x = torch.arange(1.0, 10.0).reshape(1, 1, 3, 3)
    out = build_model(spec).blocks[0](x)[0, 0]
    assert out.tolist() == [[3.0, 4.5], [7.5, 9.0]]


def test_flatten_uses_keras_channels_last_order():
    spec = ModelSpec((Flatten(), Dense(1)), (2, 2, 2))
    model = build_model(spec)
    x = torch.arange(8.0).reshape(1, 2, 2, 2)  # (N, C, H, W): channel 0 is 0..3, channel 1 is 4..7
    assert model.blocks[0](x)[0].tolist() == [0.0, 4.0, 1.0, 5.0, 2.0, 6.0, 3.0, 7.0]


def test_initialization_is_keras_glorot_uniform_with_zero_biases():
    torch.manual_seed(0)
    model = build_model(load_spec("cnn"), (28, 28, 1), 10)
    conv = model.blocks[2].conv  # 64 -> 64, 3×3: fan_in = fan_out = 576
    limit = math.sqrt(6 / (576 + 576))
    assert conv.weight.abs().max() <= limit
    assert conv.weight.abs().max() > 0.95 * limit  # uniform over the whole range, not a narrower default
    assert abs(conv.weight.std().item() - limit / math.sqrt(3)) < 0.002
    dense = model.blocks[5].linear  # 1600 -> 128
    assert dense.weight.abs().max() <= math.sqrt(6 / (1600 + 128))
    for block in (model.blocks[0], model.blocks[2]):
        assert torch.count_nonzero(block.conv.bias) == 0
    assert torch.count_nonzero(dense.bias) == 0


def test_batch_normalization_uses_keras_momentum_and_epsilon():
    model = build_model(load_spec("conv4x3,bn-m0.9-eps0.00001,flatten,bn,dense3"), (8, 8, 1))
    norms = [module for module in model.modules() if isinstance(module, nn.modules.batchnorm._BatchNorm)]
    assert [type(norm).__name__ for norm in norms] == ["BatchNorm2d", "BatchNorm1d"]
    assert norms[0].momentum == pytest.approx(0.1) and norms[0].eps == 1e-5
    assert norms[1].momentum == pytest.approx(0.01) and norms[1].eps == 1e-3
    # Keras: moving_mean = 0.9 · 0 + 0.1 · batch_mean after one training step.
    model.train()
    x = torch.rand(16, 1, 8, 8)
    conv_out = model.blocks[0](x)
    model.blocks[1](conv_out)
    expected = 0.1 * conv_out.mean(dim=(0, 2, 3))
    assert torch.allclose(norms[0].running_mean, expected.detach(), atol=1e-6)


def test_forward_gives_logits_and_probabilities_apply_the_softmax():
    torch.manual_seed(0)
    model = build_model(load_spec("cnn"), (28, 28, 1), 10).eval()
    x = torch.rand(3, 1, 28, 28)
    logits = model(x)
    assert model.output_activation == "softmax"
    assert not torch.allclose(logits.sum(dim=1), torch.ones(3))
    probabilities = model.probabilities(x)
    assert torch.allclose(probabilities, torch.softmax(logits, dim=1))
    assert torch.allclose(probabilities.sum(dim=1), torch.ones(3))


def test_hidden_activations_run_inside_their_blocks():
    model = build_model(load_spec("conv4x3-tanh,flatten,dense5-sigmoid,dense2-linear"), (6, 6, 1)).eval()
    x = torch.randn(2, 1, 6, 6) * 10
    conv_out = model.blocks[0](x)
    assert conv_out.abs().max() <= 1  # tanh
    dense_out = model.blocks[2](model.blocks[1](conv_out))
    assert dense_out.min() >= 0 and dense_out.max() <= 1  # sigmoid


def test_the_model_trains_like_the_lab():
    """A few Adam steps on a fixed batch bring the cross-entropy of the logits down (the blocks are wired to learn)."""
    torch.manual_seed(0)
    model = build_model(load_spec("conv4x3,pool2,flatten,dense16,dense"), (8, 8, 1), 4)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    images, labels = torch.rand(16, 1, 8, 8), torch.randint(0, 4, (16,))
    losses = []
    for _ in range(40):
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(images), labels)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_build_model_checks_the_spec_before_building():
    with pytest.raises(SpecError, match="Conv2D #3: 3×3 window on a 2×2 input"):
        build_model(load_spec("conv4x3,pool2,conv4x3,flatten,dense"), (6, 6, 1), 10)
    with pytest.raises(SpecError, match="expected 10, one per class"):
        build_model(load_spec("flatten,dense5"), (28, 28, 1), 10)


def test_receptive_field_matches_the_gradient_support():
    """An output value's gradient on the input covers exactly its receptive field (positive weights, no clipping)."""
    spec = load_spec("conv2x3-linear,avgpool2,conv2x3s2-linear,avgpool3s1,conv1x2-linear,flatten,dense1-linear")
    model = build_model(spec, (40, 40, 1))
    for parameter in model.parameters():
        nn.init.constant_(parameter, 0.1)
    x = torch.rand(1, 1, 40, 40, requires_grad=True)
    features = x
    for block in model.blocks[:5]:
        features = block(features)  # (1, 1, 4, 4)
    features[0, 0, 1, 1].backward()
    rows, columns = torch.nonzero(x.grad[0, 0], as_tuple=True)
    field = model.reports[4].receptive_field
    assert (rows.max() - rows.min() + 1, columns.max() - columns.min() + 1) == field.size
    # by hand: 3; 3 + 1×1 = 4; 4 + 2×2 = 8; 8 + 2×4 = 16; 16 + 1×4 = 20, jumps 1, 2, 4, 4, 4
    assert field.size == (20, 20) and field.jump == (4, 4)


def test_a_softmax_followed_by_dropout_is_the_output_not_softmaxed_again():
    """issue 9, cause 1: with flatten,dense4,dropout0.5 the output went through softmax twice.

    The rule (Keras's): the model outputs what its last layer outputs. Dropout computes nothing at inference, so the
    output is the Dense's probabilities; forward gives their logarithm, so probabilities() returns them unchanged.
    """
    torch.manual_seed(0)
    model = build_model(load_spec("flatten,dense4,dropout0.5"), (3, 3, 1), 4).eval()
    x = torch.rand(5, 1, 3, 3)
    dense_probabilities = torch.softmax(model.blocks[1].linear(model.blocks[0](x)), dim=1)
    assert model.output_activation == "softmax"
    assert torch.allclose(model.probabilities(x), dense_probabilities, atol=1e-6)
    # a layer that changes values after the softmax makes the output scores (logits) again
    scores = build_model(load_spec("flatten,dense4,bn"), (3, 3, 1), 4)
    assert scores.finish is None and scores.output_activation == "linear"
