"""Cross-check convolab against real Keras 3 (torch backend): output shapes, parameter counts and forward values of
random specs, with convolab's weights copied into the Keras model. Not part of the test suite (Keras is not a
dependency); run by hand after changing spec/shapes/model:

    pip install --target /tmp/kerascheck --no-deps keras absl-py namex optree ml-dtypes h5py
    KERAS_PATH=/tmp/kerascheck .venv/bin/python tests/keras_crosscheck.py 300

Last run (Keras 3.15.1): 300 specs, shapes and counts all equal; values equal except AveragePooling2D 'same' with
asymmetric padding, where Keras's torch backend pads by replication and counts the copies, while TensorFlow (and
convolab) average only the real values.
"""
import os
import sys
from pathlib import Path

os.environ["KERAS_BACKEND"] = "torch"
sys.path.insert(0, os.environ.get("KERAS_PATH", "/tmp/kerascheck"))
sys.path.insert(0, str(Path(__file__).parent))
import numpy as np, torch, keras
from convolab.model import build_model
from convolab.shapes import analyze, totals
from convolab import spec as S
from spec_fixtures import random_specs

def keras_layer(layer):
    if isinstance(layer, S.Conv2D):
        return keras.layers.Conv2D(layer.filters, layer.kernel_size, strides=layer.strides, padding=layer.padding,
                                   activation=layer.activation, use_bias=layer.use_bias)
    if isinstance(layer, S.MaxPooling2D):
        return keras.layers.MaxPooling2D(layer.pool_size, strides=layer.strides, padding=layer.padding)
    if isinstance(layer, S.AveragePooling2D):
        return keras.layers.AveragePooling2D(layer.pool_size, strides=layer.strides, padding=layer.padding)
    if isinstance(layer, S.GlobalAveragePooling2D): return keras.layers.GlobalAveragePooling2D()
    if isinstance(layer, S.Flatten): return keras.layers.Flatten()
    if isinstance(layer, S.Dense): return keras.layers.Dense(layer.units, activation=layer.activation, use_bias=layer.use_bias)
    if isinstance(layer, S.Dropout): return keras.layers.Dropout(layer.rate)
    if isinstance(layer, S.BatchNormalization): return keras.layers.BatchNormalization(momentum=layer.momentum, epsilon=layer.epsilon)

def copy_weights(net, kmodel):
    for block, klayer in zip(net.blocks, kmodel.layers):
        if hasattr(block, "conv"):
            w = [block.conv.weight.detach().permute(2, 3, 1, 0).numpy()]
            if block.conv.bias is not None: w.append(block.conv.bias.detach().numpy())
            klayer.set_weights(w)
        elif hasattr(block, "linear"):
            w = [block.linear.weight.detach().T.numpy()]
            if block.linear.bias is not None: w.append(block.linear.bias.detach().numpy())
            klayer.set_weights(w)
        elif hasattr(block, "norm"):
            n = block.norm
            klayer.set_weights([n.weight.detach().numpy(), n.bias.detach().numpy(), n.running_mean.numpy(), n.running_var.numpy()])

count = int(sys.argv[1]) if len(sys.argv) > 1 else 200
mismatch = 0
avg_same = 0
for i, (spec, shapes, tr, ntr) in enumerate(random_specs(count, seed=11)):
    reports = analyze(spec)
    kmodel = keras.Sequential([keras.Input(spec.input_shape)] + [keras_layer(l) for l in spec.layers])
    kshapes = [tuple(l.output.shape[1:]) for l in kmodel.layers]
    ktr = sum(int(np.prod(w.shape)) for w in kmodel.trainable_weights)
    kntr = sum(int(np.prod(w.shape)) for w in kmodel.non_trainable_weights)
    t = totals(reports)
    if kshapes != [r.output_shape for r in reports] or (ktr, kntr) != (t["trainable_params"], t["non_trainable_params"]):
        mismatch += 1; print("SHAPE/COUNT MISMATCH", spec.to_line(), kshapes, (ktr, kntr)); continue
    net = build_model(spec).eval()
    with torch.no_grad():
        for n in net.modules():
            if isinstance(n, torch.nn.modules.batchnorm._BatchNorm):
                n.running_mean.uniform_(-1, 1); n.running_var.uniform_(0.5, 2); n.weight.uniform_(0.5, 2); n.bias.uniform_(-1, 1)
    copy_weights(net, kmodel)
    h, w, c = spec.input_shape
    x = np.random.RandomState(i).rand(3, h, w, c).astype("float32")
    ours = net.probabilities(torch.from_numpy(x).permute(0, 3, 1, 2)).detach().numpy()
    theirs = np.asarray(keras.ops.convert_to_numpy(kmodel(x, training=False)))
    # the last Dense's softmax: convolab applies it in probabilities(); compare probabilities when softmax
    if net.output_activation != "softmax":
        ours = net(torch.from_numpy(x).permute(0, 3, 1, 2)).detach().numpy()
    if not np.allclose(ours, theirs, atol=1e-4, rtol=1e-3):
        asym = any(isinstance(l, S.AveragePooling2D) and l.padding == "same" for l in spec.layers)
        if asym:
            avg_same += 1
        else:
            mismatch += 1
            print("VALUE MISMATCH", spec.to_line(), np.abs(ours - theirs).max())
print(f"checked {count} random specs against Keras {keras.__version__} (torch backend): {mismatch} mismatches; "
      f"{avg_same} value differences all in AveragePooling2D 'same' (Keras's torch backend pads by replication)")
