"""Feature maps and kernels equal the model's own intermediate tensors; hooks and train/eval modes are left as found."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from convolab.activations import (capture, check_filter_index, check_image_indices, conv_layer_indices,
                                  filters_by_variance, find_layer, kernels, layer_names, variance_by_filter,
                                  visual_layer_indices)
from convolab.errors import RunError, SpecError
from convolab.model import build_model
from convolab.spec import load_spec

# Every kind of block the grid draws, plus the ones whose train/eval behaviour differs (BatchNormalization, Dropout).
SPEC_LINE = "conv6x3,bn,pool2,dropout0.5,conv5x3same-tanh,avgpool2,flatten,dense12,dense"


@pytest.fixture()
def network():
    torch.manual_seed(0)
    spec = load_spec(SPEC_LINE)
    model = build_model(spec, (12, 12, 1), 10)
    # Non-trivial BatchNormalization statistics, so that eval and train modes give different maps.
    norm = model.blocks[1].norm
    norm.running_mean.uniform_(-0.5, 0.5)
    norm.running_var.uniform_(0.5, 2.0)
    return model.spec, model


def images(count: int, channels: int = 1, size: int = 12, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (count, channels, size, size), generator=generator, dtype=torch.uint8)


def block_outputs_directly(model: torch.nn.Module, batch: torch.Tensor) -> list[torch.Tensor]:
    """The reference: each block applied by hand in eval mode, every output kept (NCHW)."""
    model.eval()
    outputs = []
    x = batch.float() / 255.0
    with torch.no_grad():
        for block in model.blocks:
            x = block(x)
            outputs.append(x.clone())
    return outputs


def test_the_grid_layers_are_the_conv_and_pool_layers(network):
    spec, _model = network
    assert visual_layer_indices(spec) == [0, 2, 4, 5]
    assert conv_layer_indices(spec) == [0, 4]
    assert layer_names(spec)[4] == "conv2d_1" and layer_names(spec)[5] == "average_pooling2d"


def test_captured_maps_equal_the_blocks_outputs_in_keras_order(network):
    spec, model = network
    batch = images(3)
    model.train()
    activations = capture(model, spec, batch)
    reference = block_outputs_directly(model, batch)
    assert [maps.index for maps in activations.layers] == [0, 2, 4, 5]
    for maps in activations.layers:
        expected = reference[maps.index].permute(0, 2, 3, 1).numpy()  # NCHW -> Keras's NHWC
        assert maps.values.shape == expected.shape
        np.testing.assert_allclose(maps.values, expected, rtol=0, atol=1e-6)
    np.testing.assert_allclose(activations.logits, reference[-1].numpy(), rtol=0, atol=1e-6)
    assert activations.layer(4).kind == "Conv2D" and activations.layer(5).values.shape == (3, 2, 2, 5)  # 12 -> 10 -> 5 -> 5 -> 2
    np.testing.assert_array_equal(activations.predictions, reference[-1].argmax(dim=1).numpy())


def test_the_lab_reading_of_one_filter(network):
    """maps.values[i, :, :, f] is what the lab's f1[0, :, :, CONVOLUTION_NUMBER] shows for image i."""
    spec, model = network
    batch = images(2)
    maps = capture(model, spec, batch, layer_indices=[0]).layer(0)
    reference = block_outputs_directly(model, batch)[0]  # (N, C, H, W)
    np.testing.assert_allclose(maps.values[1, :, :, 3], reference[1, 3].numpy(), atol=1e-6)


def test_hooks_are_removed_and_every_mode_restored(network):
    spec, model = network
    model.train()
    model.blocks[3].eval()  # a mixed state must come back exactly as it was
    before = {name: module.training for name, module in model.named_modules()}
    capture(model, spec, images(2))
    assert {name: module.training for name, module in model.named_modules()} == before
    assert all(not module._forward_hooks for module in model.modules())


def test_hooks_are_removed_when_the_forward_pass_fails(network):
    spec, model = network
    model.train()
    with pytest.raises(RuntimeError):
        capture(model, spec, images(2, channels=3))  # the model expects one channel
    assert all(not module._forward_hooks for module in model.modules())
    assert model.training and model.blocks[1].training


def test_eval_mode_is_used_for_the_pass(network):
    """Dropout off and BatchNormalization on running statistics, as Keras's predict: two captures agree."""
    spec, model = network
    model.train()
    batch = images(4)
    first = capture(model, spec, batch)
    second = capture(model, spec, batch)
    np.testing.assert_array_equal(first.logits, second.logits)


def test_rgb_input_keeps_channels_on_the_last_axis():
    torch.manual_seed(0)
    spec = load_spec("conv4x3,pool2,flatten,dense")
    model = build_model(spec, (10, 10, 3), 5)
    batch = images(2, channels=3, size=10)
    maps = capture(model, model.spec, batch).layer(0)
    reference = block_outputs_directly(model, batch)[0]
    assert maps.values.shape == (2, 8, 8, 4)
    np.testing.assert_allclose(maps.values, reference.permute(0, 2, 3, 1).numpy(), atol=1e-6)


def test_kernels_are_the_conv_weights_in_keras_order(network):
    spec, model = network
    weights = kernels(model, spec, 4)
    conv = model.blocks[4].conv.weight.detach()  # (filters, in, kh, kw)
    assert weights.shape == (3, 3, 6, 5)  # Keras: (kh, kw, in, filters)
    np.testing.assert_array_equal(weights[:, :, 2, 4], conv[4, 2].numpy())
    np.testing.assert_array_equal(weights, conv.permute(2, 3, 1, 0).numpy())


def test_filters_sorted_by_variance_hand_computed():
    values = np.zeros((2, 2, 2, 4), dtype=np.float32)
    values[..., 1] = [[[0, 1], [0, 1]], [[0, 1], [0, 1]]]  # variance 0.25
    values[..., 2] = [[[0, 2], [0, 2]], [[0, 2], [0, 2]]]  # variance 1.0
    values[..., 3] = 5.0  # constant: variance 0
    np.testing.assert_allclose(variance_by_filter(values), [0.0, 0.25, 1.0, 0.0])
    assert filters_by_variance(values) == [2, 1, 0, 3]  # ties keep index order


def test_layers_by_number_or_keras_name(network):
    spec, _model = network
    assert find_layer(spec, "4") == 4
    assert find_layer(spec, "conv2d_1") == 4
    assert find_layer(spec, "max_pooling2d") == 2


@pytest.mark.parametrize("text, expected", [
    ("1", "layer 1 is a BatchNormalization, expected a Conv2D/MaxPooling2D/AveragePooling2D layer"),
    ("9", "layer 9 does not exist: the model has layers 0 to 8"),
    ("-1", "layer -1 does not exist"),
    ("dense_7", "no layer named 'dense_7'"),
])
def test_a_layer_that_is_not_conv_or_pool_is_refused_with_the_choices(network, text, expected):
    spec, _model = network
    with pytest.raises(SpecError) as raised:
        find_layer(spec, text)
    assert expected in raised.value.message
    assert "0 = conv2d (Conv2D)" in raised.value.fix and "5 = average_pooling2d (AveragePooling2D)" in raised.value.fix


def test_kernels_only_for_conv_layers(network):
    spec, model = network
    with pytest.raises(SpecError, match="layer 2 is a MaxPooling2D, expected a Conv2D layer"):
        kernels(model, spec, 2)


def test_bad_image_and_filter_indices(network):
    spec, model = network
    with pytest.raises(RunError, match="image index 30 is out of range: the test set has 30 images"):
        check_image_indices([0, 30], 30)
    maps = capture(model, spec, images(1), layer_indices=[4]).layer(4)
    with pytest.raises(SpecError, match=r"filter 5 does not exist in layer 4 \(Conv2D\), which has 5 filters"):
        check_filter_index(5, maps)
    check_filter_index(4, maps)


# --- value_origin: where one value of a map comes from -------------------------------------------------------------

def test_value_origin_explains_strided_same_padded_convolutions_and_pooling():
    """Checked against capture (the forward pass) and against the arithmetic done here by hand."""
    from convolab.activations import value_origin

    spec = load_spec("conv3x3x3s2same-tanh,maxpool2same,avgpool2same,flatten,dense")
    torch.manual_seed(0)
    model = build_model(spec, (9, 9, 2), 4)
    image = torch.randint(0, 256, (2, 9, 9), dtype=torch.uint8)
    maps = capture(model, model.spec, image.unsqueeze(0))
    for row, column in ((0, 0), (2, 3), (4, 4)):
        origin = value_origin(model, model.spec, image, 0, 1, row, column)
        window, weights = np.array(origin["window"]), np.array(origin["weights"])
        assert window.shape == weights.shape == (3, 3, 2)
        assert origin["sum"] == pytest.approx(float((window * weights).sum()), abs=1e-5)
        assert origin["channel_sums"] == pytest.approx((window * weights).sum(axis=(0, 1)).tolist(), abs=1e-5)
        assert origin["value"] == pytest.approx(np.tanh(origin["sum"] + origin["bias"]), abs=1e-5)
        assert origin["value"] == pytest.approx(float(maps.layer(0).values[0, row, column, 1]), abs=1e-5)
        assert (origin["top"], origin["left"]) == (2 * row - 1, 2 * column - 1)   # 'same' pads 1 before, 1 after
    corner = value_origin(model, model.spec, image, 0, 1, 0, 0)
    assert np.array(corner["window"])[0].tolist() == [[0.0, 0.0]] * 3   # the padding row is zeros
    pool = value_origin(model, model.spec, image, 1, 1, 2, 2)            # 5×5 -> 3×3: the last window is half padding
    assert pool["window"][1] == [None, None] and pool["max"] == pool["value"]
    assert pool["value"] == pytest.approx(float(maps.layer(1).values[0, 2, 2, 1]), abs=1e-6)
    average = value_origin(model, model.spec, image, 2, 0, 1, 1)
    assert average["mean"] == pytest.approx(float(maps.layer(2).values[0, 1, 1, 0]), abs=1e-6)


def test_value_origin_explains_depthwise_and_separable_convolutions():
    """Depthwise filter f reads input channel f // depth_multiplier only; a separable filter adds every depthwise
    channel's value times its 1×1 weight. Both checked against the forward pass and against numpy by hand."""
    from convolab.activations import value_origin

    spec = load_spec("conv3x3same-relu,dwconv3m2same-tanh,sepconv4x3m2s2same,flatten,dense")
    torch.manual_seed(0)
    model = build_model(spec, (9, 9, 1), 4)
    image = torch.randint(0, 256, (1, 9, 9), dtype=torch.uint8)
    maps = capture(model, model.spec, image.unsqueeze(0))
    below = maps.layer(0).values[0]                                        # (9, 9, 3): what the depthwise layer reads
    for filter_index, row, column in ((0, 0, 0), (5, 4, 7), (3, 8, 8)):
        origin = value_origin(model, model.spec, image, 1, filter_index, row, column)
        assert origin["kind"] == "DepthwiseConv2D" and origin["input_channels"] == [filter_index // 2]
        window = np.array(origin["window"])[:, :, 0]                       # (3, 3): one input channel
        padded = np.pad(below[:, :, filter_index // 2], 1)
        np.testing.assert_allclose(window, padded[row:row + 3, column:column + 3], atol=1e-6)
        assert origin["sum"] == pytest.approx(float((window * np.array(origin["weights"])[:, :, 0]).sum()), abs=1e-5)
        assert origin["value"] == pytest.approx(np.tanh(origin["pre_activation"]), abs=1e-5)
        assert origin["value"] == pytest.approx(float(maps.layer(1).values[0, row, column, filter_index]), abs=1e-5)
    separable = value_origin(model, model.spec, image, 2, 3, 1, 2)          # stride 2: reads rows 1..3, columns 3..5
    assert separable["kind"] == "SeparableConv2D" and (separable["top"], separable["left"]) == (1, 3)
    assert separable["input_channels"] == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5]   # 6 channels, depth multiplier 2
    products = np.array(separable["products"])                                    # (3, 3, 12)
    assert separable["depthwise_values"] == pytest.approx(products.sum(axis=(0, 1)).tolist(), abs=1e-5)
    contributions = np.array(separable["depthwise_values"]) * np.array(separable["pointwise_weights"])
    assert separable["channel_sums"] == pytest.approx(contributions.tolist(), abs=1e-6)
    assert separable["value"] == pytest.approx(separable["sum"] + separable["bias"], abs=1e-5)   # linear activation
    assert separable["value"] == pytest.approx(float(maps.layer(2).values[0, 1, 2, 3]), abs=1e-5)


@pytest.mark.parametrize("arguments, word", [((3, 0, 0, 0), "Flatten"), ((0, 5, 0, 0), "filter 5"),
                                             ((0, 0, 5, 0), "outside"), ((0, 0, 0, -1), "outside")])
def test_value_origin_bad_positions_name_the_choices(arguments, word):
    from convolab.activations import value_origin

    spec = load_spec("conv3x3x3s2same,maxpool2same,avgpool2same,flatten,dense")
    model = build_model(spec, (9, 9, 2), 4)
    with pytest.raises(SpecError, match=word):
        value_origin(model, model.spec, torch.zeros(2, 9, 9), *arguments)
