"""predict: the user's images prepared like the training data, top-3 classes; an unreadable file named, others go on."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from PIL import Image

from convolab.cli import main
from convolab.evaluate import predict_logits
from convolab.predict import predict_images, top_classes
from convolab.runs import load_run
from train_fixtures import fashion, train_tiny_run


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("predict") / "tiny"
    train_tiny_run(out, epochs=2, train=960)
    return load_run(out)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Test image 0 (an ankle boot, light on dark) as a PNG, and as a photo would have it: dark on white, RGB, 3x larger."""
    folder = tmp_path_factory.mktemp("images")
    pixels = fashion().test_images[0, 0].numpy()                              # (28, 28) uint8
    Image.fromarray(pixels).save(folder / "boot.png")
    light = np.repeat(np.repeat(255 - pixels, 3, axis=0), 3, axis=1)           # (84, 84), light background
    Image.fromarray(np.stack([light] * 3, axis=2)).save(folder / "boot_on_white.jpg", quality=95)
    (folder / "broken.png").write_bytes(b"not an image at all")
    return folder


def test_top_classes_are_sorted_with_their_probabilities():
    ranked = top_classes(torch.tensor([[0.1, 0.6, 0.3]]), ["a", "b", "c"], k=3)
    assert ranked == [[("b", pytest.approx(0.6)), ("c", pytest.approx(0.3)), ("a", pytest.approx(0.1))]]


def test_a_dataset_image_is_predicted_exactly_as_the_model_sees_it(run, images):
    [prediction] = predict_images(run.model, [images / "boot.png"], run.input_shape, run.class_names)
    probabilities = predict_logits(run.model, fashion().test_images[:1]).softmax(dim=1)[0]
    expected = top_classes(probabilities[None], run.class_names)[0]
    assert [name for name, _ in prediction.top] == [name for name, _ in expected]
    assert [p for _, p in prediction.top] == pytest.approx([p for _, p in expected], abs=1e-6)
    assert prediction.top[0][0] == "Ankle boot"


def test_the_python_api_predicts_an_images_bytes_and_names_arrays_it_cannot_take(run, images, tmp_path):
    import convolab
    from convolab.errors import ArgumentError

    model = convolab.load(run.path)
    [from_file] = model.predict(images / "boot.png")
    [from_bytes] = model.predict((images / "boot.png").read_bytes())     # a file's contents, as an upload
    assert from_bytes.path == "image 1" and from_bytes.top == from_file.top
    with pytest.raises(ArgumentError, match=r"this model takes \(N, 1, 28, 28\) images"):
        model.predict(torch.zeros(2, 3, 28, 28, dtype=torch.uint8))
    with pytest.raises(ArgumentError, match="a NumPy array of shape"):
        model.predict(np.zeros((2, 28, 28, 1), dtype=np.uint8))
    for wrong, named in (([[1, 2, 3]], "list [1, 2, 3]"), (5, "int 5"), ([], "list []"), ({"a": 1}, "dict")):
        with pytest.raises(ArgumentError, match=re.escape(f"predict: received {named}")) as refused:
            model.predict(wrong)
        assert "expected an image file's path, its bytes, a list of them, or a tensor" in str(refused.value)
        assert "torch tensor (N, 1, 28, 28)" in refused.value.fix


def test_the_python_api_refuses_tensors_it_would_have_silently_clipped(run, images):
    import convolab
    from convolab.errors import ArgumentError

    model = convolab.load(run.path)
    pixels = fashion().test_images[:2]                                   # uint8 (2, 1, 28, 28)
    expected = model.predict(pixels)
    assert torch.allclose(model.predict(pixels.float() / 255), expected, atol=1e-6)
    # Was: 0..255 floats clipped to 1 (every pixel white), NaN read as 0, int64 pixels clipped to 0 or 1: no error.
    for wrong, said in ((pixels.float(), r"float values from 0 to 255; expected 0 to 1"),
                        (torch.full((1, 1, 28, 28), float("nan")), "NaN or infinite"),
                        (pixels.long(), "a tensor of torch.int64; expected uint8 pixels")):
        with pytest.raises(ArgumentError, match=said) as refused:
            model.predict(wrong)
        assert refused.value.fix
    with pytest.raises(ArgumentError, match=r"a Pillow image \(PngImageFile, L \(28, 28\)\)"):
        model.predict(Image.open(images / "boot.png"))
    for top in (0, -1, 2.5):                                             # was: [] for 0, a RuntimeError for -1
        with pytest.raises(ArgumentError, match=f"top={top}; expected a whole number"):
            model.predict(images / "boot.png", top=top)
    with pytest.raises(ArgumentError, match="invert='yes'"):           # was: every image's own error
        model.predict([images / "boot.png"], invert="yes")


def test_a_light_background_rgb_photo_is_inverted_and_predicted_like_the_original(run, images):
    original, light = predict_images(run.model, [images / "boot.png", images / "boot_on_white.jpg"], run.input_shape,
                                     run.class_names)
    assert light.top[0][0] == original.top[0][0]
    assert light.top[0][1] == pytest.approx(original.top[0][1], abs=0.15)   # resampling and JPEG change a few pixels
    [not_inverted] = predict_images(run.model, [images / "boot_on_white.jpg"], run.input_shape, run.class_names,
                                    invert=False)
    assert not_inverted.top != light.top


def test_an_unreadable_image_is_named_and_the_others_go_on(run, images, capsys):
    code = main(["predict", str(run.path), str(images / "broken.png"), str(images / "boot.png"), "--json"])
    captured = capsys.readouterr()
    assert code == 2
    results = json.loads(captured.out)
    assert "cannot read as an image" in results[0]["error"] and results[1]["top"][0]["class"] == "Ankle boot"
    assert len(results[1]["top"]) == 3
    assert "broken.png" in captured.err


def test_predict_prints_the_top_three(run, images, capsys):
    assert main(["predict", str(run.path), str(images / "boot.png")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith("boot.png:") and len(lines) == 4 and lines[1].strip().endswith("Ankle boot")


def test_the_python_api_evaluate_names_data_it_cannot_take(run):
    import convolab
    from convolab.errors import ArgumentError

    with pytest.raises(ArgumentError, match="evaluate: data=5, a int"):
        convolab.load(run.path).evaluate(5)
