"""Real Keras 3 (torch backend, no TensorFlow) as the reference for layer kinds: the same spec built both ways, the
weights copied through each kind's Keras layout, outputs compared. Import this before anything imports keras."""
from __future__ import annotations

import os

os.environ["KERAS_BACKEND"] = "torch"  # keras reads it once, at import

import numpy as np
import pytest
import torch

keras = pytest.importorskip("keras")

from convolab.model import build_model  # noqa: E402
from convolab.shapes import analyze, totals  # noqa: E402


def keras_model(spec):
    """keras.Sequential of `spec` (resolved: input shape set, every Dense sized), each layer from its keras_config."""
    layers = [getattr(keras.layers, type(layer).__name__)(**layer.keras_config()) for layer in spec.layers]
    return keras.Sequential([keras.Input(spec.input_shape)] + layers)


def randomized_model(spec, input_shape=None, num_classes=None, seed: int = 0):
    """A ConvNet in inference mode whose BatchNormalization statistics and γ/β are not the initial ones, so that
    BatchNormalization is really checked."""
    torch.manual_seed(seed)
    model = build_model(spec, input_shape, num_classes).eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.running_mean.uniform_(-1, 1)
                module.running_var.uniform_(0.5, 2)
                module.weight.uniform_(0.5, 2)
                module.bias.uniform_(-1, 1)
    return model


def twin(spec, input_shape=None, num_classes=None, seed: int = 0):
    """(convolab ConvNet, Keras model with the ConvNet's weights), both in inference mode."""
    model = randomized_model(spec, input_shape, num_classes, seed)
    reference = keras_model(model.spec)
    for layer, block, keras_layer in zip(model.spec.layers, model.blocks, reference.layers):
        weights = layer.keras_weights(block)
        assert [w.shape for w in weights] == [tuple(w.shape) for w in keras_layer.get_weights()], type(layer).__name__
        keras_layer.set_weights(weights)
    return model, reference


def keras_shapes_and_counts(reference):
    shapes = [tuple(layer.output.shape[1:]) for layer in reference.layers]
    trainable = sum(int(np.prod(w.shape)) for w in reference.trainable_weights)
    non_trainable = sum(int(np.prod(w.shape)) for w in reference.non_trainable_weights)
    return shapes, trainable, non_trainable


def convolab_shapes_and_counts(model):
    reports = analyze(model.spec)
    summed = totals(reports)
    return [report.output_shape for report in reports], summed["trainable_params"], summed["non_trainable_params"]


def outputs(model, reference, images_nhwc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(convolab's probabilities, Keras's output) for the same images."""
    with torch.no_grad():
        ours = model.probabilities(torch.from_numpy(images_nhwc).permute(0, 3, 1, 2)).numpy()
    theirs = np.asarray(keras.ops.convert_to_numpy(reference(images_nhwc, training=False)))
    return ours, theirs
