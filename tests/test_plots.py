"""What each picture draws is exactly the arrays it was given: read back from the matplotlib figure itself."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from convolab import plots
from convolab.activations import capture, kernels, variance_by_filter
from convolab.errors import ArgumentError
from convolab.model import build_model
from convolab.spec import load_spec

CLASSES = ["zero", "one", "two", "three"]


@pytest.fixture(scope="module")
def network():
    torch.manual_seed(0)
    model = build_model(load_spec("conv5x3,pool2,conv4x3,pool2,flatten,dense"), (14, 14, 1), 4)
    generator = torch.Generator().manual_seed(3)
    batch = torch.randint(0, 256, (3, 1, 14, 14), generator=generator, dtype=torch.uint8)
    return model, batch


def shown(axis) -> np.ndarray:
    """The array an axis displays (its first image)."""
    return np.asarray(axis.images[0].get_array())


def test_grid_rows_are_images_and_columns_are_layers_with_the_chosen_filter(network):
    model, batch = network
    activations = capture(model, model.spec, batch)
    labels = np.array([1, 2, 3])
    figure = plots.activation_grid_figure(batch.numpy(), labels, activations, 2, CLASSES, [0, 23, 28],
                                          layer_names={0: "conv2d", 1: "max_pooling2d"})
    rows, columns = 3, 5
    grid = np.array(figure.axes[: rows * columns]).reshape(rows, columns)
    # Directly: each block by hand, in eval mode.
    x = batch.float() / 255.0
    expected = []
    with torch.no_grad():
        for block in list(model.eval().blocks)[:4]:
            x = block(x)
            expected.append(x[:, 2].numpy())  # filter 2 of every image, (N, H, W)
    for row in range(rows):
        np.testing.assert_array_equal(shown(grid[row, 0]), batch[row, 0].numpy())  # the input, as stored
        assert f"true: {CLASSES[labels[row]]}" in grid[row, 0].get_title()
        predicted = CLASSES[activations.predictions[row]]
        assert f"predicted: {predicted}" in grid[row, 0].get_title()
        for column in range(1, columns):
            np.testing.assert_allclose(shown(grid[row, column]), expected[column - 1][row], atol=1e-6)
    for column in range(1, columns):
        # One colour scale per column: every row shares the column's own min and max.
        limits = {grid[row, column].images[0].get_clim() for row in range(rows)}
        assert limits == {(float(expected[column - 1].min()), float(expected[column - 1].max()))}
    assert grid[0, 1].get_title().startswith("conv2d\n12×12×5")
    assert grid[0, 4].get_title().startswith("3: MaxPooling2D\n2×2×4")  # no name given: position and kind
    colour_bars = figure.axes[rows * columns:]
    assert len(colour_bars) == columns - 1
    plots.plt.close(figure)


def test_gray_input_keeps_its_brightness_and_rgb_shows_in_colour():
    gray = np.full((1, 4, 4), 40, dtype=np.uint8)
    picture, style = plots.image_for_display(gray)
    assert picture.shape == (4, 4) and style == {"cmap": "gray", "vmin": 0.0, "vmax": 255.0}
    rgb = np.zeros((3, 4, 4), dtype=np.uint8)
    rgb[0] = 255
    picture, style = plots.image_for_display(rgb)
    assert picture.shape == (4, 4, 3) and style == {}
    np.testing.assert_array_equal(picture[0, 0], [1.0, 0.0, 0.0])


def test_all_filters_page_shows_every_filter_in_the_given_order(network):
    model, batch = network
    maps = capture(model, model.spec, batch, layer_indices=[0]).layer(0)
    order = [4, 0, 3]
    figure = plots.all_filters_figure(maps, 1, order, 23, "one", "conv2d", 1, 2, variance_by_filter(maps.values))
    for position, filter_index in enumerate(order):
        np.testing.assert_array_equal(shown(figure.axes[position]), maps.values[1, :, :, filter_index])
        assert figure.axes[position].get_title().startswith(f"filter {filter_index}\nvar ")
    assert figure.get_suptitle().endswith("on test image #23 (one): page 1 of 2")
    plots.plt.close(figure)
    assert plots.filter_pages(list(range(10)), 4) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


def test_kernel_mosaic_holds_every_weight_on_a_scale_centred_at_zero(network):
    model, _batch = network
    weights = kernels(model, model.spec, 2)  # (3, 3, 5, 4)
    mosaic, labels = plots.kernel_mosaic(weights, max_inputs=3)
    assert [label[2] for label in labels] == [0, 1, 2, 3]
    # Every shown weight appears exactly once; the rest is NaN (the gaps).
    shown_weights = np.sort(weights[:, :, :3, :].ravel())
    np.testing.assert_array_equal(np.sort(mosaic[~np.isnan(mosaic)]), shown_weights)
    figure = plots.kernels_figure([("conv2d_1", weights)], max_inputs=3)
    image = figure.axes[0].images[0]
    low, high = image.get_clim()
    assert low == -high == -float(np.percentile(np.abs(weights), 99))   # robust: one outlier cannot set it
    assert "red excites, blue inhibits" in figure.axes[1].get_ylabel()   # the legend is on the picture
    assert image.get_cmap().name.startswith(plots.KERNEL_COLORMAP)
    assert "4 filters of 3×3, input channels 0-2 of 5" in figure.axes[0].get_title(loc="left")
    plots.plt.close(figure)


def test_curves_plot_training_and_validation_and_skip_missing_validation():
    history = [{"epoch": 1, "loss": 0.9, "accuracy": 0.7, "val_loss": 0.8, "val_accuracy": 0.72, "seconds": 1.0},
               {"epoch": 2, "loss": 0.5, "accuracy": 0.8, "val_loss": 0.6, "val_accuracy": 0.78, "seconds": 1.0}]
    figure = plots.curves_figure(history)
    loss_axis, accuracy_axis = figure.axes
    lines = {line.get_label(): line for line in accuracy_axis.get_lines()}
    np.testing.assert_array_equal(lines["training"].get_ydata(), [0.7, 0.8])
    np.testing.assert_array_equal(lines["validation"].get_ydata(), [0.72, 0.78])
    np.testing.assert_array_equal([line.get_ydata()[1] for line in loss_axis.get_lines()], [0.5, 0.6])
    plots.plt.close(figure)
    without_validation = [{"epoch": 1, "loss": 0.9, "accuracy": 0.7, "val_loss": None, "val_accuracy": ""}]
    figure = plots.curves_figure([{**row, "val_accuracy": None} for row in without_validation])
    assert [line.get_label() for line in figure.axes[1].get_lines()] == ["training"]
    plots.plt.close(figure)


def test_confusion_image_is_the_matrix_with_its_counts_written():
    matrix = np.array([[5, 1, 0, 0], [2, 7, 0, 1], [0, 0, 9, 0], [0, 3, 0, 4]])
    figure = plots.confusion_figure(matrix, CLASSES)
    axis = figure.axes[0]
    np.testing.assert_array_equal(shown(axis), matrix)
    counts = sorted(int(text.get_text()) for text in axis.texts)
    assert counts == sorted(matrix.ravel().tolist())
    assert "accuracy 78.12% of 32 images" in axis.get_title()
    plots.plt.close(figure)


def test_sweep_overlay_and_accuracy_against_time():
    histories = {"cnn16": [{"epoch": 1, "accuracy": 0.6, "val_accuracy": 0.5}, {"epoch": 2, "accuracy": 0.7,
                                                                              "val_accuracy": 0.65}],
                 "dnn": [{"epoch": 1, "accuracy": 0.55, "val_accuracy": None}]}
    figure = plots.sweep_overlay_figure(histories)
    lines = {line.get_label(): line.get_ydata() for line in figure.axes[0].get_lines()}
    np.testing.assert_array_equal(lines["cnn16"], [0.5, 0.65])
    np.testing.assert_array_equal(lines["dnn (training)"], [0.55])
    plots.plt.close(figure)
    figure = plots.accuracy_time_figure([("cnn16", 12.0, 0.81), ("dnn", 3.0, 0.77)])
    points = [tuple(collection.get_offsets()[0]) for collection in figure.axes[0].collections]
    assert points == [(12.0, 0.81), (3.0, 0.77)]
    assert [text.get_text() for text in figure.axes[0].texts] == ["cnn16", "dnn"]
    plots.plt.close(figure)


def test_examples_show_the_images_with_their_captions(tmp_path):
    images = np.stack([np.full((1, 6, 6), value, dtype=np.uint8) for value in (10, 200, 30, 40)])
    figure = plots.examples_figure(images, ["a → b", "c → d", "e → f", "g → h"], "most confused", columns=3)
    np.testing.assert_array_equal(shown(figure.axes[3]), images[3, 0])
    assert figure.axes[1].get_title() == "c → d"
    assert len(figure.axes) == 6 and not figure.axes[5].axison  # 2 rows of 3; the empty last cells are hidden
    number = figure.number
    path = plots.save_figure(figure, tmp_path / "deep" / "examples.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert number not in plots.plt.get_fignums()  # a saved figure is closed


@pytest.mark.parametrize("name, start", [("a.jpg", b"\xff\xd8\xff"), ("a.JPEG", b"\xff\xd8\xff"), ("a.svg", b"<?xml"),
                                         ("a.pdf", b"%PDF"), ("a.png", b"\x89PNG")])
def test_a_picture_is_written_in_the_format_its_name_asks_for(tmp_path, name, start):
    figure = plots.examples_figure(np.zeros((1, 1, 6, 6), dtype=np.uint8), ["x"], "one", columns=1)
    assert plots.save_figure(figure, tmp_path / name).read_bytes().startswith(start)


@pytest.mark.parametrize("name", ["checkpoint.pt", "config.json", "notes.txt", "a.picture", "grid"])
def test_a_picture_is_never_written_under_another_kind_of_name(tmp_path, name):
    (tmp_path / name).write_bytes(b"the user's own file")
    figure = plots.examples_figure(np.zeros((1, 1, 6, 6), dtype=np.uint8), ["x"], "one", columns=1)
    with pytest.raises(ArgumentError, match="not a picture's name, and nothing was written") as refused:
        plots.save_figure(figure, tmp_path / name)
    assert refused.value.fix == f"name it {Path(name).with_suffix('.png').name}"
    assert (tmp_path / name).read_bytes() == b"the user's own file"
    assert figure.number not in plots.plt.get_fignums()          # freed all the same


def test_training_end_hook_writes_curves_and_confusion_into_the_run(tmp_path):
    history = [{"epoch": 1, "loss": 0.9, "accuracy": 0.7, "val_loss": 0.8, "val_accuracy": 0.72, "seconds": 1.0}]
    (tmp_path / "history.json").write_text(json.dumps(history))
    written = plots.write_run_pictures(tmp_path)
    assert [path.name for path in written] == ["curves.png"]  # no metrics.json yet: no confusion matrix
    metrics = {"class_names": CLASSES, "confusion_matrix": np.eye(4, dtype=int).tolist()}
    (tmp_path / "metrics.json").write_text(json.dumps(metrics))
    written = plots.write_run_pictures(tmp_path)
    assert [path.name for path in written] == ["curves.png", "confusion.png"]
    for path in written:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_an_empty_example_cell_keeps_groups_on_their_rows():
    image = np.full((1, 6, 6), 90, dtype=np.uint8)
    figure = plots.examples_figure([image, None, image, image], ["a", "", "b", "c"], "pairs", columns=2)
    assert [axis.axison for axis in figure.axes] == [True, False, True, True]
    assert figure.axes[2].get_title() == "b"  # the second group starts the second row
    plots.plt.close(figure)


def test_the_activation_grid_refuses_more_rows_than_a_readable_picture_before_any_work():
    from convolab.errors import ConvolabError
    from convolab.plots import MAX_GRID_ROWS, run_activation_grid

    images, labels = torch.zeros((300, 1, 28, 28), dtype=torch.uint8), torch.zeros(300, dtype=torch.int64)
    # Was: 300 rows drawn for minutes into a 69,000-pixel-tall PNG (no model is needed to refuse it now).
    with pytest.raises(ConvolabError, match=f"300 images asked for the grid; expected at most {MAX_GRID_ROWS}"):
        run_activation_grid(None, None, images, labels, ["a"], [0] * 300, filter_index=0)


def test_installed_cjk_fonts_follow_matplotlibs_own_and_missing_ones_are_left_out():
    installed = {"DejaVu Sans", "Droid Sans Fallback", "Noto Sans CJK JP"}
    assert plots.with_installed_fallbacks(["sans-serif"], installed) == [
        "sans-serif", "Noto Sans CJK JP", "Droid Sans Fallback"]                  # CJK_FONTS' order
    assert plots.with_installed_fallbacks(["sans-serif"], {"DejaVu Sans"}) == ["sans-serif"]


@pytest.mark.skipif("Droid Sans Fallback" not in {font.name for font in plots.font_manager.fontManager.ttflist},
                    reason="needs Debian's fonts-droid-fallback (./dev test installs it; if it was installed after "
                           "matplotlib built its font cache, delete ~/.cache/matplotlib)")
def test_class_names_in_chinese_and_japanese_are_drawn_with_an_installed_cjk_font(tmp_path):
    # Was: boxes and a "Glyph ... missing from font(s) DejaVu Sans" warning per character, with a CJK font installed.
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        figure = plots.confusion_figure(np.array([[3, 1], [0, 4]]), ["衬衫", "シャツ"], title="服装")
        plots.save_figure(figure, tmp_path / "confusion.png")
    assert not [str(warning.message) for warning in caught if "missing from font" in str(warning.message)]
    assert (tmp_path / "confusion.png").stat().st_size > 0
