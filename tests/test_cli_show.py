"""`convolab show` and `convolab filters` on a real tiny run: the pictures they write, and each bad input's exit 2."""
from __future__ import annotations

import numpy as np
import pytest

from convolab import cli
from convolab.activations import capture
from convolab.plots import activation_grid_figure, all_filters_figure, filter_pages, kernels_figure, plt
from convolab.runs import load_run
from see_fixtures import TEST_IMAGES, copy_run, fashion


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return copy_run("tinycnn", tmp_path_factory.mktemp("show"))


def png_pixels(path) -> np.ndarray:
    return plt.imread(str(path))


def figure_pixels(figure, tmp_path, name: str) -> np.ndarray:
    path = tmp_path / name
    figure.savefig(path, dpi=100, format="png")
    plt.close(figure)
    return plt.imread(str(path))


@pytest.mark.parametrize("input_shape, classes", [((32, 32, 3), 5), ((28, 28, 1), 5)])
@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")   # inside real Keras's torch backend
def test_show_and_report_refuse_a_keras_file_whose_model_does_not_fit_the_labs_data(tmp_path, capsys, input_shape,
                                                                                    classes):
    """Real Keras 3 files of another input or class count: said before anything is computed (once an internal
    error: a channel mismatch, a target out of bounds), as evaluate says it, with exit 2 and nothing written."""
    from keras_reference import keras   # skips without Keras; sets KERAS_BACKEND=torch

    path = tmp_path / "other.keras"
    keras.Sequential([keras.Input(input_shape), keras.layers.Conv2D(4, 3), keras.layers.GlobalAveragePooling2D(),
                      keras.layers.Dense(classes, activation="softmax")]).save(path)
    height, width, channels = input_shape
    for command in ("show", "report"):
        assert cli.main([command, str(path)]) == 2
        error = capsys.readouterr().err
        assert f"does not fit the model, which takes {input_shape} images in {classes} classes" in error
        assert "internal error" not in error and "(28, 28, 1), 10 classes" in error
        assert f"convolab evaluate {path} --data FOLDER --channels {channels} --image-size {height},{width}" in error
    assert sorted(item.name for item in tmp_path.iterdir()) == ["other.keras"]


def test_show_draws_the_lab_grid_of_the_runs_test_images(run_dir, tmp_path, capsys):
    assert cli.main(["show", str(run_dir)]) == 0
    out = capsys.readouterr().out
    labels = fashion().test_labels
    assert f"show: wrote {run_dir / 'activations.png'} (filter 1; test images #0" in out
    assert "#23 Ankle boot" in out and "#28 Ankle boot" in out  # the lab's three ankle boots
    assert [int(labels[index]) for index in (0, 23, 28)] == [9, 9, 9]
    # The file is the grid of exactly these maps: the same picture drawn from a direct capture.
    run = load_run(run_dir)
    images = fashion().test_images[[0, 23, 28]]
    activations = capture(run.model, run.spec, images)
    expected = activation_grid_figure(images.numpy(), labels[[0, 23, 28]].numpy(), activations, 1, run.class_names,
                                      [0, 23, 28], layer_names={0: "conv2d", 1: "max_pooling2d", 2: "conv2d_1",
                                                                3: "max_pooling2d_1"})
    np.testing.assert_array_equal(png_pixels(run_dir / "activations.png"), figure_pixels(expected, tmp_path, "e.png"))


def test_show_chosen_layers_images_and_out(run_dir, tmp_path, capsys):
    out = tmp_path / "two.png"
    assert cli.main(["show", str(run_dir), "--images", "5", "--filter", "0", "--layers", "conv2d,2",
                     "--out", str(out)]) == 0
    assert f"show: wrote {out} (filter 0; test images #5" in capsys.readouterr().out
    assert png_pixels(out).shape[1] < png_pixels(run_dir / "activations.png").shape[1]  # 3 columns instead of 5


def test_all_filters_paged_and_sorted_by_variance(run_dir, tmp_path, capsys):
    out = tmp_path / "all.png"
    assert cli.main(["show", str(run_dir), "--all-filters", "--layer", "0", "--images", "23", "--sort", "variance",
                     "--per-page", "3", "--out", str(out)]) == 0
    pages = [tmp_path / "all-p1.png", tmp_path / "all-p2.png"]
    assert f"4 filters of layer 0 (conv2d) on test image #23: {pages[0]}, {pages[1]}" in capsys.readouterr().out
    run = load_run(run_dir)
    maps = capture(run.model, run.spec, fashion().test_images[[23]], [0]).layer(0)
    variance = maps.values.reshape(-1, 4).var(axis=0)
    order = sorted(range(4), key=lambda channel: -variance[channel])
    for number, (filters, path) in enumerate(zip(filter_pages(order, 3), pages), start=1):
        figure = all_filters_figure(maps, 0, filters, 23, "Ankle boot", "conv2d", number, 2, variance,
                                    (float(maps.values.min()), float(maps.values.max())))  # one scale, both pages
        np.testing.assert_array_equal(png_pixels(path), figure_pixels(figure, tmp_path, f"p{number}.png"))


def test_filters_draws_every_conv_layers_kernels(run_dir, tmp_path, capsys):
    assert cli.main(["filters", str(run_dir)]) == 0
    assert f"filters: wrote {run_dir / 'filters.png'} (conv2d, conv2d_1)" in capsys.readouterr().out
    run = load_run(run_dir)
    weights = [("0: conv2d", run.model.blocks[0].conv.weight.detach().permute(2, 3, 1, 0).numpy()),
               ("2: conv2d_1", run.model.blocks[2].conv.weight.detach().permute(2, 3, 1, 0).numpy())]
    np.testing.assert_array_equal(png_pixels(run_dir / "filters.png"),
                                  figure_pixels(kernels_figure(weights), tmp_path, "k.png"))
    assert cli.main(["filters", str(run_dir), "--layer", "conv2d_1", "--out", str(tmp_path / "k1.png")]) == 0
    assert (tmp_path / "k1.png").is_file()


@pytest.mark.parametrize("argv, message", [
    (["show", "{missing}"], "no such run directory"),
    (["show", "{run}", "--images", f"0,{TEST_IMAGES}"],
     f"image index {TEST_IMAGES} is out of range: the test set has {TEST_IMAGES} images"),
    (["show", "{run}", "--all-filters", "--layer", "4"], "layer 4 is a Flatten, expected a Conv2D/MaxPooling2D"),
    (["show", "{run}", "--all-filters", "--layer", "9"], "layer 9 does not exist: the model has layers 0 to 6"),
    (["show", "{run}", "--layers", "dense"], "layer 5 is a Dense"),
    (["show", "{run}", "--all-filters"], "--all-filters needs --layer N"),
    (["show", "{run}", "--layer", "0"], "--layer works only with --all-filters"),          # never silently ignored
    (["show", "{run}", "--sort", "variance", "--per-page", "4"], "--sort, --per-page work only with --all-filters"),
    (["show", "{run}", "--filter", "3"], "filter 3 does not exist in layer 2 (Conv2D), which has 3 filters"),
    (["show", "{run}", "--all-filters", "--layer", "1", "--filter", "9"], None),  # --filter is not used there
    (["filters", "{run}", "--layer", "1"], "layer 1 is a MaxPooling2D, expected a Conv2D layer"),
    (["filters", "{missing}"], "no such run directory"),
    (["show", "{dnn}"], "has no Conv2D or pooling layer to look inside"),
    (["filters", "{dnn}"], "has no Conv2D layer, so no kernels to show"),
])
def test_bad_inputs_are_a_clear_message_and_exit_2(argv, message, run_dir, tmp_path, capsys):
    dnn = copy_run("tinydnn", tmp_path)
    argv = [part.format(run=run_dir, missing=tmp_path / "nope", dnn=dnn) for part in argv]
    argv += ["--out", str(tmp_path / "x.png")]
    code = cli.main(argv)
    err = capsys.readouterr().err
    if message is None:
        assert code == 0, err
        return
    assert code == 2
    assert message in err and "fix:" in err and "Traceback" not in err
    assert not (tmp_path / "x.png").exists()


def test_argument_types_refuse_negative_numbers(run_dir, capsys):
    with pytest.raises(SystemExit) as raised:
        cli.main(["show", str(run_dir), "--images", "0,-3"])
    assert raised.value.code == 2 and "image numbers of 0 or more" in capsys.readouterr().err
    with pytest.raises(SystemExit) as raised:
        cli.main(["show", str(run_dir), "--filter", "-1"])
    assert raised.value.code == 2


def test_show_leaves_the_model_file_untouched(run_dir):
    before = (run_dir / "checkpoint.pt").read_bytes()
    assert cli.main(["show", str(run_dir), "--out", str(run_dir / "again.png")]) == 0
    assert (run_dir / "checkpoint.pt").read_bytes() == before


@pytest.mark.parametrize("argv", [["show", "{run}", "--out", "{run}/checkpoint.pt"],
                                  ["show", "{run}", "--all-filters", "--layer", "0", "--out", "{run}/config.json"],
                                  ["filters", "{run}", "--out", "{run}/best.pt"],
                                  ["report", "{run}", "--out", "{run}/config.json"],
                                  ["report", "{run}", "--out", "{run}/notes"],
                                  ["data", "fashion-mnist", "--offline", "--grid", "{run}/history.json"]])
def test_a_picture_or_report_is_never_written_over_a_file_of_another_kind(argv, tmp_path, capsys):
    run = copy_run("tinycnn", tmp_path)
    (run / "notes").write_text("the user's own notes")
    before = {path.name: path.read_bytes() for path in run.iterdir() if path.is_file()}
    assert cli.main([part.format(run=run) for part in argv]) == 2
    err = capsys.readouterr().err
    assert "nothing was written" in err and "fix: name it " in err and "Traceback" not in err
    assert {path.name: path.read_bytes() for path in run.iterdir() if path.is_file()} == before


def test_show_on_a_test_set_smaller_than_the_labs_numbers_draws_what_it_has(tmp_path, capsys):
    from train_fixtures import train_tiny_run

    train_tiny_run(tmp_path / "small", spec="conv4x3,pool2,flatten,dense", epochs=1, train=64, test=20)
    # Was: exit 2, "image index 23 is out of range ... e.g. --images 0,23,28", its own default refused.
    assert cli.main(["show", str(tmp_path / "small")]) == 0, capsys.readouterr().err
    assert "test images #0 " in capsys.readouterr().out and (tmp_path / "small" / "activations.png").is_file()
    assert cli.main(["show", str(tmp_path / "small"), "--images", "0,23"]) == 2
    assert "image index 23 is out of range: the test set has 20 images (0 to 19)" in capsys.readouterr().err
