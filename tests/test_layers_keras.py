"""Every layer kind against real Keras 3 (torch backend): output shapes, parameter counts, and forward passes within
1e-5 with convolab's weights copied through the kind's Keras layout; and the model's output rule (issue 9, cause 1)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from keras_reference import convolab_shapes_and_counts, keras, keras_shapes_and_counts, outputs, twin
from convolab.engine import fast_model
from convolab.spec import load_spec

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Keras's own numpy-2 copy= notices

# (line, input shape, classes): each kind in a small model; a new kind adds its lines here.
CASES = [
    ("conv5x3s2same-tanh,pool2same,conv4x2x3-elu-nobias,avgpool2,flatten,bn,dropout0.25,dense7-sigmoid,dense",
     (17, 19, 3), 4),
    ("conv3x3same,bn,pool3s2,gap,dense", (9, 9, 2), 5),
    ("flatten,dense6-leaky_relu,dense", (4, 4, 1), 3),
]


@pytest.mark.parametrize("line, input_shape, classes", CASES)
def test_shapes_counts_and_outputs_equal_keras(line, input_shape, classes):
    model, reference = twin(load_spec(line), input_shape, classes)
    assert convolab_shapes_and_counts(model) == keras_shapes_and_counts(reference)
    images = np.random.RandomState(0).rand(3, *input_shape).astype("float32")
    ours, theirs = outputs(model, reference, images)
    np.testing.assert_allclose(ours, theirs, atol=1e-5, rtol=0)


@pytest.mark.parametrize("line", ["flatten,dense4,dropout0.5", "flatten,dense6,dense4,dropout0.3,dropout0.1",
                                  "flatten,dense4-linear", "flatten,dense4,bn"])
def test_the_model_outputs_what_its_last_layer_outputs_as_in_keras(line):
    """issue 9, cause 1: a layer after the last Dense no longer makes convolab apply softmax twice."""
    model, reference = twin(load_spec(line), (3, 3, 1), 4)
    images = np.random.RandomState(1).rand(6, 3, 3, 1).astype("float32")
    ours, theirs = outputs(model, reference, images)
    if model.output_activation == "softmax":   # Keras's output is the probabilities: convolab's must be the same
        np.testing.assert_allclose(ours, theirs, atol=1e-5, rtol=0)
        labels = np.array([0, 1, 2, 3, 0, 1])
        keras_loss = float(keras.losses.SparseCategoricalCrossentropy()(labels, theirs))
        with torch.no_grad():
            our_loss = float(F.cross_entropy(model(torch.from_numpy(images).permute(0, 3, 1, 2)),
                                             torch.from_numpy(labels)))
        assert our_loss == pytest.approx(keras_loss, abs=1e-5)
    else:   # scores: read as logits, their softmax are the probabilities (Keras would not normalize them)
        np.testing.assert_allclose(ours, torch.softmax(torch.from_numpy(theirs), 1).numpy(), atol=1e-5, rtol=0)
    fast = fast_model(model)
    x = torch.from_numpy(images).permute(0, 3, 1, 2)
    torch.testing.assert_close(fast.probabilities(x), model.probabilities(x), rtol=0, atol=0)
