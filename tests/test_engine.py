"""The fast engine computes the reference's function: outputs and gradients equal model.py's ConvNet's (and stock
torch.nn's), for every layer kind, both paddings and strides; it shares the reference's parameters; its step and
batches add no host synchronisation and lose no sample."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from convolab import engine
from convolab.engine import (
    BlockStep, ConvPoolStep, CropStep, FastConvNet, PaddedConvStep, Window, autocast_dtype, crop, fast_model,
    keep_freed_memory, output_count, prepare_for_training,
)
from convolab.errors import TrainingError
from convolab.model import build_model
from convolab.spec import load_spec

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from train_step import TrainStep, make_optimizer_for  # noqa: E402 - the benchmark's step lives beside the benchmark

CPU = torch.device("cpu")

# Every layer kind, both paddings, strides 1 and 2, windows 2, 3 and 5, overlapping pools, odd sizes that pooling
# floors away, activations that commute with max (pooled first) and ones that do not (kept first).
SPECS = [
    "cnn",
    "conv8x3,pool2,conv8x3,pool2,flatten,dense16,dense",
    "conv6x3same,pool2,conv6x5s2same-tanh,pool3same,flatten,dense",
    "conv6x5s2-sigmoid,pool2s1,conv4x2,maxpool3s2,flatten,dense12-tanh,dense",
    "conv6x3-leaky_relu,pool3,conv5x2same-relu6,pool2same,gap,dense",
    "conv6x3-linear,bn,pool2,dropout0.25,conv4x2,avgpool2,gap,dense",
    "conv5x3s2same,avgpool2same,conv4x3,avgpool3s2,flatten,bn,dropout0.5,dense",
    "conv4x4x2s2x1-elu,pool2x3,conv4x1,flatten,dense",
    "flatten,dense16,dense",
    "conv8x3,pool2,bn,conv8x3same,conv8x3,pool2,bn,flatten,dropout0.3,dense16,dense",   # the best recipe's shape
    "conv6x4s2same-tanh,conv4x3,maxpool2,flatten,dense",    # a strided 'same' conv, its padding uneven
]


def pair(line: str, input_shape=(28, 28, 1), dtype=torch.float64, seed: int = 0):
    """A reference ConvNet and the FastConvNet over the same parameters."""
    torch.manual_seed(seed)
    reference = build_model(load_spec(line), input_shape, 10).to(dtype)
    return reference, fast_model(reference)


def outputs_and_gradients(model: nn.Module, images: torch.Tensor, seed: int = 1):
    """Logits and the gradients of a fixed function of them w.r.t. the images and every parameter."""
    images = images.clone().requires_grad_(True)
    torch.manual_seed(seed)                          # the same dropout masks for both models
    logits = model(images)
    weights = torch.linspace(-1.0, 1.0, logits.numel(), dtype=logits.dtype).view_as(logits)
    (logits * weights).sum().backward()
    gradients = [images.grad] + [parameter.grad.clone() for parameter in model.parameters()]
    model.zero_grad(set_to_none=True)
    return logits.detach(), gradients


def assert_engine_is_exact(line: str, input_shape, batch: int) -> None:
    """The fast engine's outputs and gradients equal the reference's in float64, in train and in eval mode."""
    reference, fast = pair(line, input_shape)
    images = torch.randn(batch, input_shape[2], input_shape[0], input_shape[1], dtype=torch.float64)
    for mode in (True, False):                       # train (BatchNormalization's batch statistics, dropout) and eval
        reference.train(mode)
        expected, expected_gradients = outputs_and_gradients(reference, images)
        got, got_gradients = outputs_and_gradients(fast, images)
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
        for got_gradient, expected_gradient in zip(got_gradients, expected_gradients, strict=True):
            torch.testing.assert_close(got_gradient, expected_gradient, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("line", SPECS)
@pytest.mark.parametrize("input_shape", [(28, 28, 1), (19, 21, 3)])
def test_outputs_and_gradients_equal_the_reference_in_float64(line, input_shape):
    assert_engine_is_exact(line, input_shape, batch=5)


@pytest.mark.parametrize("line", SPECS[:4])
def test_float32_channels_last_matches_the_reference_to_float32_tolerance(line):
    reference, fast = pair(line, dtype=torch.float32)
    fast = prepare_for_training(fast, CPU)           # oneDNN kernels on NHWC memory: a different summation order
    images = torch.randn(8, 1, 28, 28)
    expected, expected_gradients = outputs_and_gradients(reference, images)
    got, got_gradients = outputs_and_gradients(fast, images)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    for got_gradient, expected_gradient in zip(got_gradients, expected_gradients, strict=True):
        torch.testing.assert_close(got_gradient, expected_gradient, rtol=1e-4, atol=1e-5)


def test_the_labs_cnn_matches_a_network_of_stock_torch_nn_layers():
    # The independent reference: nn.Conv2d/ReLU/MaxPool2d/Linear with the same tensors, Keras's flatten order.
    reference, fast = pair("cnn", dtype=torch.float32)
    fast = prepare_for_training(fast, CPU)
    blocks = reference.blocks
    stock = nn.Sequential(blocks[0].conv, nn.ReLU(), nn.MaxPool2d(2), blocks[2].conv, nn.ReLU(), nn.MaxPool2d(2),
                          nn.Flatten(), blocks[5].linear, nn.ReLU(), blocks[6].linear)
    images = torch.rand(16, 1, 28, 28)
    with torch.no_grad():
        features = stock[:6](images)                                      # (16, 64, 5, 5)
        expected = stock[7:](features.permute(0, 2, 3, 1).flatten(1))     # Keras's (row, column, channel) order
        torch.testing.assert_close(fast(images), expected, rtol=1e-4, atol=1e-5)


def test_relu_after_the_pool_routes_ties_like_the_reference():
    # Background pixels make every window of a conv output equal (all bias): the first one must get the gradient.
    reference, fast = pair("conv4x3,pool2,flatten,dense", dtype=torch.float64)
    images = torch.zeros(3, 1, 28, 28, dtype=torch.float64)
    images[:, :, 10:14, 9:13] = torch.rand(3, 1, 4, 4, dtype=torch.float64)
    with torch.no_grad():
        reference.blocks[0].conv.bias.copy_(torch.tensor([0.5, -0.5, 0.1, 0.0]))
    expected, expected_gradients = outputs_and_gradients(reference, images)
    got, got_gradients = outputs_and_gradients(fast, images)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    for got_gradient, expected_gradient in zip(got_gradients, expected_gradients, strict=True):
        torch.testing.assert_close(got_gradient, expected_gradient, rtol=0, atol=1e-14)


def test_the_labs_cnn_is_lowered_to_two_fused_steps_that_skip_the_rows_pooling_drops():
    # Pool 2 floors 11 -> 5, so conv 2 needs outputs 0..9 (input 12x12), so pool 1 needs 12 rows, so conv 1 computes
    # 24x24 of its 26x26 (input 26x26 of 28x28).
    _, fast = pair("cnn")
    kinds = [type(step) for step in fast.steps]
    assert kinds == [ConvPoolStep, ConvPoolStep, BlockStep, BlockStep, BlockStep]
    first, second = fast.steps[:2]
    assert (first.out_rows, first.out_cols) == (12, 12)
    assert (second.out_rows, second.out_cols) == (5, 5)
    assert second.input_needed(5, 5) == (12, 12)
    assert first.input_needed(12, 12) == (26, 26)
    assert first.activate_after_pool and second.activate_after_pool
    seen = []
    handle = first.conv.register_forward_hook(lambda *args: None)   # steps call F.conv2d, so watch the input size
    handle.remove()
    original = F.conv2d

    def spy(x, *args, **kwargs):
        seen.append(tuple(x.shape[2:]))
        return original(x, *args, **kwargs)
    try:
        F.conv2d = spy
        fast(torch.rand(2, 1, 28, 28, dtype=torch.float64))
    finally:
        F.conv2d = original
    assert seen == [(26, 26), (12, 12)]


def test_a_same_conv_computes_only_the_rows_the_next_conv_and_pool_read(monkeypatch):
    # The best recipe's middle: conv 'same' 13x13 -> conv 3x3 valid -> pool 2 (floors 11 -> 5). The pool reads 10 of
    # the valid conv's 11 rows, so that conv reads 12 rows, so the 'same' conv computes 12 of its 13 (padding the top
    # and left only), and nothing is cropped any more.
    _, fast = pair("conv8x3,pool2,bn,conv8x3same,conv8x3,pool2,bn,flatten,dense")
    kinds = [type(step) for step in fast.steps]
    assert kinds == [ConvPoolStep, BlockStep, PaddedConvStep, ConvPoolStep, BlockStep, BlockStep, BlockStep]
    same = fast.steps[2]
    assert (same.out_rows, same.out_cols) == (12, 12) and same.input_needed(12, 12) == (13, 13)
    seen, crops, conv2d, leading_crop = [], [], F.conv2d, engine.LeadingCrop.apply

    def spy(x, *args, **kwargs):
        seen.append(tuple(x.shape[2:]))
        return conv2d(x, *args, **kwargs)
    monkeypatch.setattr(F, "conv2d", spy)
    monkeypatch.setattr(engine.LeadingCrop, "apply", lambda *args: crops.append(args[1:]) or leading_crop(*args))
    fast(torch.rand(2, 1, 28, 28, dtype=torch.float64, requires_grad=True)).sum().backward()
    assert seen == [(28, 28), (14, 14), (12, 12)] and crops == []


def test_window_arithmetic_matches_pytorch_shapes():
    for length, size, stride, before, after in [(28, 3, 1, 0, 0), (13, 2, 2, 0, 0), (11, 3, 2, 1, 1), (9, 5, 2, 2, 2)]:
        window = Window(size, stride, before)
        count = output_count(length, window, after)
        real = F.max_pool2d(F.pad(torch.zeros(1, 1, 1, length), (before, after)), (1, size), (1, stride)).shape[-1]
        assert count == real
        assert window.input_needed(count) <= length + after   # never reads past the padded input
        assert window.input_needed(count - 1) < window.input_needed(count)


def test_lowering_keeps_the_activation_first_when_it_does_not_commute_with_max():
    _, fast = pair("conv6x5s2-sigmoid,pool2s1,conv4x2,maxpool3s2,flatten,dense")
    assert [step.activate_after_pool for step in fast.steps if isinstance(step, ConvPoolStep)] == [False, True]
    _, fast = pair("conv6x3-linear,bn,pool2,dropout0.25,conv4x2,avgpool2,gap,dense")
    assert [type(step) for step in fast.steps[:3]] == [CropStep, BlockStep, CropStep]


def test_parameters_and_state_dict_are_the_references():
    reference, fast = pair("conv6x3,bn,pool2,flatten,dense")
    assert list(fast.state_dict()) == list(reference.state_dict())
    for (name, mine), (_, theirs) in zip(fast.state_dict().items(), reference.state_dict().items()):
        assert mine.data_ptr() == theirs.data_ptr(), name
    assert len(list(fast.parameters())) == len(list(reference.parameters()))
    prepare_for_training(fast, CPU)
    fresh = build_model(load_spec("conv6x3,bn,pool2,flatten,dense"), (28, 28, 1), 10).double()
    fresh.load_state_dict(fast.state_dict())          # a checkpoint written from the fast module loads into a ConvNet
    images = torch.rand(2, 1, 28, 28, dtype=torch.float64)
    fresh.eval(), fast.eval()
    torch.testing.assert_close(fresh(images), fast(images))
    assert fast.reference.probabilities(images).shape == (2, 10)
    torch.testing.assert_close(fast.probabilities(images).sum(1), torch.ones(2, dtype=torch.float64))


def test_fast_model_accepts_a_spec_a_convnet_or_itself_and_rejects_anything_else():
    fast = fast_model(load_spec("cnn"), (28, 28, 1), 10)
    assert isinstance(fast, FastConvNet) and fast_model(fast) is fast
    with pytest.raises(TrainingError, match="received Sequential") as error:
        fast_model(nn.Sequential(nn.Flatten(), nn.Linear(784, 10)))
    assert "--engine reference" in error.value.fix


def test_train_step_equals_the_plain_loop_and_reads_metrics_once():
    # Two Adam steps with the fused optimizer through TrainStep, against the textbook loop on the reference.
    torch.manual_seed(0)
    images, labels = torch.rand(64, 1, 28, 28), torch.randint(0, 10, (64,))
    reference, fast = pair("cnn", dtype=torch.float32)
    plain = build_model(load_spec("cnn"), (28, 28, 1), 10)
    plain.load_state_dict(reference.state_dict())
    fast = prepare_for_training(fast, CPU)
    step = TrainStep(fast, make_optimizer_for("adam", fast.parameters(), 1e-3, CPU), CPU)
    assert step.dtype is None and step.capture is False     # CPU: float32, eager
    optimizer = torch.optim.Adam(plain.parameters(), lr=1e-3, eps=1e-7)
    losses, correct = [], 0
    for start in (0, 32):
        x, y = images[start:start + 32], labels[start:start + 32]
        logits = plain(x)
        loss = F.cross_entropy(logits, y)
        losses.append(float(loss.detach()))
        correct += int((logits.argmax(1) == y).sum())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        step(x, y)
    # Adam moves every weight by about lr whatever its gradient's size, so a gradient that float32 rounding puts on
    # the other side of zero may land a weight 2·lr away; all but a handful must agree to float32 precision.
    for mine, theirs in zip(fast.parameters(), plain.parameters()):
        difference = (mine - theirs).detach().abs()
        assert float(difference.max()) <= 2 * 2e-3
        assert float((difference > 1e-5).float().mean()) < 1e-3
    metrics = step.read(reset=True)
    assert metrics["count"] == 64
    assert metrics["loss"] == pytest.approx(sum(losses) / 2, rel=1e-5)
    assert metrics["accuracy"] == correct / 64
    assert step.read()["count"] == 0


def test_process_and_precision_settings():
    assert autocast_dtype(CPU) is None              # float32 on CPU: the engine must equal the reference
    assert keep_freed_memory() in (True, False)
    with pytest.raises(TrainingError, match="optimizer='sgd'"):
        make_optimizer_for("sgd", [nn.Parameter(torch.zeros(1))], 0.1, CPU)


def test_cpu_training_cuts_batches_into_shards_unless_batch_normalization_needs_them_whole(monkeypatch):
    import convolab.engine as engine

    monkeypatch.setattr(engine, "usable_cores", lambda: 2)
    fast = prepare_for_training(pair("cnn", dtype=torch.float32)[1], CPU)
    assert fast.shards == 2 and fast.sharded is not None
    with_norm = prepare_for_training(pair("conv4x3,bn,pool2,flatten,dense", dtype=torch.float32)[1], CPU)
    assert with_norm.shards == 1 and with_norm.sharded is None


def test_mixed_precision_path_gives_float32_logits_close_to_the_reference():
    # The CUDA path runs the steps under bfloat16 autocast; CPU autocast runs the same code, so it is tested here.
    reference, fast = pair("cnn", dtype=torch.float32)
    fast.autocast_dtype = torch.bfloat16
    images = torch.rand(8, 1, 28, 28)
    with torch.no_grad():
        got, expected = fast(images), reference(images)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, expected, rtol=0.05, atol=0.05)   # bfloat16 keeps 8 bits of mantissa
    assert prepare_for_training(fast, CPU).autocast_dtype is None     # never on CPU: there it must be exact


def test_micro_batches_give_the_whole_batchs_gradient():
    torch.manual_seed(0)
    images, labels = torch.rand(48, 1, 28, 28), torch.randint(0, 10, (48,))
    grads = []
    for micro_batch in (None, 16):
        _, fast = pair("cnn", dtype=torch.float64)
        step = TrainStep(fast, torch.optim.SGD(fast.parameters(), lr=0.0), CPU, micro_batch=micro_batch)
        loss = step(images.double(), labels)
        grads.append(([parameter.grad.clone() for parameter in fast.parameters()], float(loss), step.read()))
    for whole, sliced in zip(grads[0][0], grads[1][0]):
        torch.testing.assert_close(sliced, whole, rtol=1e-10, atol=1e-12)
    assert grads[1][1] == pytest.approx(grads[0][1], rel=1e-12)
    assert grads[1][2]["accuracy"] == grads[0][2]["accuracy"] and grads[1][2]["count"] == 48
    assert grads[1][2]["loss"] == pytest.approx(grads[0][2]["loss"], rel=1e-12)
    _, with_norm = pair("conv4x3,bn,pool2,flatten,dense")
    with pytest.raises(TrainingError, match="BatchNormalization"):
        TrainStep(with_norm, torch.optim.SGD(with_norm.parameters(), lr=0.1), CPU, micro_batch=8)


def test_leading_crop_gradient_equals_slicing_and_keeps_channels_last():
    x = torch.randn(2, 3, 5, 6, dtype=torch.float64).contiguous(memory_format=torch.channels_last).requires_grad_(True)
    grad = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    (expected,) = torch.autograd.grad(x[:, :, :4, :4], x, grad)
    cropped = crop(x, 4, 4)
    torch.testing.assert_close(cropped, x[:, :, :4, :4], rtol=0, atol=0)
    (got,) = torch.autograd.grad(cropped, x, grad)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    assert got.is_contiguous(memory_format=torch.channels_last)
    assert crop(x, 5, 6) is x
