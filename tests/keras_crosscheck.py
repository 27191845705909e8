"""Cross-check convolab against real Keras 3 (torch backend) on many random specs: output shapes, parameter counts and
forward values, with convolab's weights copied through each kind's Keras layout (keras_reference.py). The test suite
runs a few fixed specs (tests/test_layers_keras.py); run this by hand after changing a layer kind:

    .venv/bin/python tests/keras_crosscheck.py 300

Values differ only for AveragePooling2D 'same' with asymmetric padding, where Keras's torch backend pads by
replication and counts the copies, while TensorFlow (and convolab) average only the real values.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from keras_reference import convolab_shapes_and_counts, keras, keras_shapes_and_counts, outputs, twin  # noqa: E402
from spec_fixtures import random_specs  # noqa: E402

import numpy as np  # noqa: E402

count = int(sys.argv[1]) if len(sys.argv) > 1 else 200
mismatch = avg_same = 0
for i, (spec, _shapes, _trainable, _non_trainable) in enumerate(random_specs(count, seed=11)):
    model, reference = twin(spec, seed=i)
    if convolab_shapes_and_counts(model) != keras_shapes_and_counts(reference):
        mismatch += 1
        print("SHAPE/COUNT MISMATCH", spec.to_line(), keras_shapes_and_counts(reference))
        continue
    ours, theirs = outputs(model, reference, np.random.RandomState(i).rand(3, *spec.input_shape).astype("float32"))
    if model.output_activation != "softmax":  # scores, read as logits by convolab: compare their softmax
        theirs = np.exp(theirs - theirs.max(1, keepdims=True))
        theirs /= theirs.sum(1, keepdims=True)
    if not np.allclose(ours, theirs, atol=1e-4, rtol=1e-3):
        if any(type(layer).__name__ == "AveragePooling2D" and layer.padding == "same" for layer in spec.layers):
            avg_same += 1
        else:
            mismatch += 1
            print("VALUE MISMATCH", spec.to_line(), np.abs(ours - theirs).max())
print(f"checked {count} random specs against Keras {keras.__version__} (torch backend): {mismatch} mismatches; "
      f"{avg_same} value differences all in AveragePooling2D 'same' (Keras's torch backend pads by replication)")
