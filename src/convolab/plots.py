"""Every PNG convolab draws: the lab's activation grid, all filters of one layer, kernels, curves, confusion, sweeps.

Each `*_figure` function takes plain arrays, returns a matplotlib Figure and draws nothing it was not given, so a test
can read back exactly what is on screen (`figure.axes[k].images[0].get_array()`). `save_figure` writes a PNG and closes
the figure. The Agg backend is chosen here, before pyplot is imported, so that no display is ever needed.
"""
from __future__ import annotations

import io
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
# Labels are drawn as the plain text they are: a class named "2$^$" would otherwise be parsed as mathtext (and fail).
matplotlib.rcParams["text.parse_math"] = False

import matplotlib.pyplot as plt  # noqa: E402 - the backend must be chosen first
from matplotlib import font_manager  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from convolab.activations import (Activations, LayerMaps, capture, check_filter_index,  # noqa: E402
                                  check_image_indices, conv_layer_indices, filters_by_variance, kernels, layer_names,
                                  variance_by_filter)
from convolab.errors import ConvolabError, SpecError  # noqa: E402
from convolab.runs import HISTORY_JSON, METRICS, atomic_write_bytes, read_json, require_suffix  # noqa: E402

# Class names in Chinese, Japanese or Korean: DejaVu Sans (matplotlib's own) has none of their glyphs, and matplotlib
# falls back glyph by glyph only along font.family's list. So the CJK fonts this machine has installed follow it.
# Only installed ones: a missing family costs a lookup each time. (A font installed after matplotlib built its cache,
# ~/.cache/matplotlib, is found once that folder is deleted.)
CJK_FONTS = ("Noto Sans CJK JP", "Noto Sans CJK SC", "Noto Sans CJK TC", "Noto Sans CJK KR", "Source Han Sans",
             "Source Han Sans SC", "WenQuanYi Zen Hei", "WenQuanYi Micro Hei", "Droid Sans Fallback", "Microsoft YaHei",
             "SimHei", "PingFang SC", "Hiragino Sans", "Yu Gothic", "Meiryo", "MS Gothic", "Malgun Gothic",
             "Apple SD Gothic Neo", "AppleGothic")


def with_installed_fallbacks(families: list[str], installed: set[str], fallbacks: tuple[str, ...] = CJK_FONTS
                             ) -> list[str]:
    """`families` (font.family, "sans-serif" by default) followed by the `fallbacks` that are `installed`."""
    return [*families, *(name for name in fallbacks if name in installed and name not in families)]


matplotlib.rcParams["font.family"] = with_installed_fallbacks(
    list(matplotlib.rcParams["font.family"]), {font.name for font in font_manager.fontManager.ttflist})

FEATURE_COLORMAP = "inferno"  # the lab's own choice for feature maps
KERNEL_COLORMAP = "RdBu_r"  # diverging: red positive, blue negative, white zero
SEPARATOR_COLOR = "#7a7a7a"  # between kernels: a mid gray, unlike any weight's colour (white is zero)
DPI = 100


# The picture formats a file's suffix asks for (matplotlib writes each).
FIGURE_FORMATS = {".png": "png", ".jpg": "jpg", ".jpeg": "jpg", ".svg": "svg", ".pdf": "pdf"}


def picture_format(path: str | Path) -> str:
    """The format `path`'s suffix names; ArgumentError for any other name. A picture is never written under another
    kind of name: `--out RUN/checkpoint.pt` (or notes.txt) would have replaced that file with a PNG."""
    return FIGURE_FORMATS[require_suffix(path, FIGURE_FORMATS, f"a picture is written as {', '.join(FIGURE_FORMATS)}",
                                         "picture")]


def save_figure(figure: Figure, path: str | Path, dpi: int = DPI) -> Path:
    """Write `figure` at `path` in the format its suffix names (.png, .jpg, .svg, .pdf; picture_format refuses any
    other name), folders made as needed, and free it.

    Rendered in memory, then written by runs.atomic_write_bytes: a failed write (full disk, read-only folder) is one
    message naming the file, and the previous picture stays whole.
    """
    buffer = io.BytesIO()
    try:
        figure.savefig(buffer, dpi=dpi, format=picture_format(path))
    finally:
        plt.close(figure)
    return atomic_write_bytes(path, buffer.getvalue())


def image_for_display(image: np.ndarray) -> tuple[np.ndarray, dict]:
    """A (C, H, W) input image -> what imshow wants: (H, W) on a fixed gray scale, or (H, W, 3) RGB in [0, 1].

    The gray scale is fixed (0 black, full intensity white) so that a faint image looks faint, as the model sees it.
    """
    scale = 255.0 if image.dtype == np.uint8 else 1.0
    if image.shape[0] == 1:
        return image[0], {"cmap": "gray", "vmin": 0.0, "vmax": scale}
    return np.transpose(image, (1, 2, 0)).astype(np.float32) / scale, {}


def symmetric_limit(values: np.ndarray) -> float:
    """The largest magnitude in `values` (at least a tiny positive number), for a colour scale centred at zero."""
    limit = float(np.abs(values).max()) if values.size else 0.0
    return limit if limit > 0 else 1e-6


def robust_symmetric_limit(values: np.ndarray, percentile: float = 99.0) -> float:
    """A colour limit centred at zero that one outlier cannot set: the `percentile` of the magnitudes (at least a
    tiny positive number). Larger weights saturate, and the colour bar's pointed ends say so."""
    limit = float(np.percentile(np.abs(values), percentile)) if values.size else 0.0
    return limit if limit > 0 else symmetric_limit(values)


def column_limits(values: np.ndarray) -> tuple[float, float]:
    """The (min, max) of one column's maps: one colour scale per column, so rows compare by eye."""
    low, high = float(values.min()), float(values.max())
    if high <= low:
        high = low + 1e-6
    return low, high


def layer_title(maps: LayerMaps, names: dict[int, str] | None) -> str:
    """'conv2d (26×26×64)': a Keras-style layer name and its output shape."""
    name = names.get(maps.index) if names else None
    name = name or f"{maps.index}: {maps.kind}"
    height, width, channels = maps.values.shape[1:]
    return f"{name}\n{height}×{width}×{channels}"


def activation_grid_figure(images: np.ndarray, labels: np.ndarray, activations: Activations, filter_index: int,
                           class_names: list[str], image_indices: list[int],
                           layer_names: dict[int, str] | None = None) -> Figure:
    """The lab's picture: one row per image (input first), one column per captured layer, filter `filter_index`'s map.

    images: (N, C, H, W) uint8 or float, the same images `activations` was computed on. labels: (N,) true classes.
    Each layer column has one colour scale (its min and max over the rows) and one colour bar under it.
    """
    rows = len(images)
    columns = 1 + len(activations.layers)
    figure = plt.figure(figsize=(2.3 * columns, 2.3 * rows + 1.0), layout="constrained")
    axes = np.atleast_2d(figure.subplots(rows, columns, squeeze=False))
    predictions = activations.predictions
    for row in range(rows):
        picture, style = image_for_display(np.asarray(images[row]))
        axis = axes[row, 0]
        axis.imshow(picture, **style)
        verdict = "✓" if predictions[row] == labels[row] else "✗"
        axis.set_title(f"#{image_indices[row]} true: {class_names[labels[row]]}\n"
                       f"predicted: {class_names[predictions[row]]} {verdict}", fontsize=8)
    for column, maps in enumerate(activations.layers, start=1):
        chosen = maps.values[:, :, :, filter_index]  # (N, H, W)
        low, high = column_limits(chosen)
        for row in range(rows):
            image = axes[row, column].imshow(chosen[row], cmap=FEATURE_COLORMAP, vmin=low, vmax=high)
        axes[0, column].set_title(layer_title(maps, layer_names), fontsize=8)
        figure.colorbar(image, ax=list(axes[:, column]), location="bottom", shrink=0.9, aspect=12)
    for axis in axes.flat:
        axis.set_xticks([])
        axis.set_yticks([])
    figure.suptitle(f"What each conv/pool layer makes of the images: filter {filter_index}", fontsize=10)
    return figure


def filter_pages(order: list[int], per_page: int) -> list[list[int]]:
    """Split filter indices into pages of at most `per_page`."""
    return [order[start:start + per_page] for start in range(0, len(order), per_page)]


def all_filters_figure(maps: LayerMaps, image_position: int, filters: list[int], image_index: int,
                       class_name: str, layer_name: str, page: int, pages: int,
                       variances: np.ndarray | None = None, limits: tuple[float, float] | None = None) -> Figure:
    """Every filter in `filters` of one layer for one image, one colour scale and one colour bar.

    image_position: the image's row in `maps.values`; image_index: its number in the test set (for the title).
    variances: when given, each tile's title shows the filter's activation variance (the sort key).
    limits: the colour scale (default: this page's min and max); give the layer's to compare pages by eye.
    """
    count = len(filters)
    columns = min(8, count)
    rows = math.ceil(count / columns)
    figure = plt.figure(figsize=(1.5 * columns + 0.8, 1.6 * rows + 0.9), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False)
    shown = maps.values[image_position][:, :, filters]  # (H, W, count)
    low, high = limits or column_limits(shown)
    image = None
    for position, axis in enumerate(axes.flat):
        axis.set_xticks([])
        axis.set_yticks([])
        if position >= count:
            axis.set_axis_off()
            continue
        image = axis.imshow(shown[:, :, position], cmap=FEATURE_COLORMAP, vmin=low, vmax=high)
        title = f"filter {filters[position]}"
        if variances is not None:
            title += f"\nvar {variances[filters[position]]:.3g}"
        axis.set_title(title, fontsize=7)
    figure.colorbar(image, ax=axes.ravel().tolist(), shrink=0.8, aspect=30)
    height, width, channels = maps.values.shape[1:]
    figure.suptitle(f"{layer_name} ({height}×{width}×{channels}) on test image #{image_index} ({class_name}): "
                    f"page {page} of {pages}", fontsize=9)
    return figure


def strips_per_row(num_filters: int, strip_tiles: int) -> int:
    """How many filters side by side make the kernel mosaic roughly square."""
    return max(1, min(num_filters, math.ceil(math.sqrt(num_filters / strip_tiles))))


def kernel_mosaic(weights: np.ndarray, max_inputs: int) -> tuple[np.ndarray, list[tuple[float, float, int]]]:
    """Lay kernels (kh, kw, in, filters) out as one image: each filter a strip of its input channels, NaN gaps.

    Returns the mosaic (NaN between tiles, drawn as background) and, per filter, where to write its number.
    """
    kernel_h, kernel_w, inputs, filters = weights.shape
    shown_inputs = min(inputs, max_inputs)
    per_row = strips_per_row(filters, shown_inputs)
    strip_rows = math.ceil(filters / per_row)
    tile_h, tile_w = kernel_h + 1, kernel_w + 1  # one NaN line after each tile
    strip_w = shown_inputs * tile_w + 1  # and one more between filters
    mosaic = np.full((strip_rows * (tile_h + 1), per_row * strip_w), np.nan, dtype=np.float32)
    labels = []
    for filter_index in range(filters):
        top = (filter_index // per_row) * (tile_h + 1) + 1
        left = (filter_index % per_row) * strip_w
        for channel in range(shown_inputs):
            column = left + channel * tile_w
            mosaic[top:top + kernel_h, column:column + kernel_w] = weights[:, :, channel, filter_index]
        labels.append((left - 0.5, top - 1.0, filter_index))
    return mosaic, labels


def kernels_figure(layers: list[tuple[str, np.ndarray]], max_inputs: int = 8) -> Figure:
    """The learned kernels of each (title, weights (kh, kw, in, filters)) layer, one panel and colour bar each.

    A diverging colour map centred at zero shows the sign: red weights excite, blue ones inhibit, white is zero; the
    legend says so on the picture. The scale is symmetric and robust (99th percentile of the magnitudes), so a few
    large weights do not wash the others out to white. Each filter is a strip of its kernels for the first
    `max_inputs` input channels, with gray separators between kernels (white would read as zero weights). Each layer
    is its own subfigure, so that a small first layer is not stretched to the width of a large second one.
    """
    mosaics = [(title, weights, *kernel_mosaic(weights, max_inputs)) for title, weights in layers]
    widest = max(mosaic.shape[1] for _title, _weights, mosaic, _labels in mosaics)
    cell = min(8.0 / widest, 0.2)  # inches per mosaic cell: the widest panel is at most 8 inches
    heights = [mosaic.shape[0] * cell + 0.8 for _title, _weights, mosaic, _labels in mosaics]
    figure = plt.figure(figsize=(widest * cell + 2.2, sum(heights)), layout="constrained")
    subfigures = figure.subfigures(len(mosaics), 1, squeeze=False, height_ratios=heights)[:, 0]
    for subfigure, (title, weights, mosaic, labels) in zip(subfigures, mosaics):
        spare = widest - mosaic.shape[1]
        if spare > 0:  # a narrower layer keeps its own width, left-aligned, its colour bar beside it
            axis, filler = subfigure.subplots(1, 2, width_ratios=[mosaic.shape[1], spare])
            filler.set_axis_off()
        else:
            axis = subfigure.subplots()
        limit = robust_symmetric_limit(weights)
        colormap = plt.get_cmap(KERNEL_COLORMAP).with_extremes(bad=SEPARATOR_COLOR)  # the gaps between kernels
        image = axis.imshow(mosaic, cmap=colormap, vmin=-limit, vmax=limit, interpolation="nearest")
        for x, y, filter_index in labels:
            axis.text(x, y, str(filter_index), fontsize=6, va="top", ha="left", color="white")
        kernel_h, kernel_w, inputs, filters = weights.shape
        shown = f"input channels 0-{min(inputs, max_inputs) - 1} of {inputs}" if inputs > 1 else "1 input channel"
        axis.set_title(f"{title}: {filters} filters of {kernel_h}×{kernel_w}, {shown}", fontsize=9, loc="left")
        axis.set_xticks([])
        axis.set_yticks([])
        subfigure.colorbar(image, ax=axis, shrink=0.9, extend="both",
                           label="weight: red excites, blue inhibits, white 0")
    return figure


def history_series(history: list[dict], key: str) -> tuple[list[int], list[float]]:
    """The epochs and values of `key` in a history, leaving out epochs where it is missing (no validation)."""
    epochs, values = [], []
    for row in history:
        value = row.get(key)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        epochs.append(int(row["epoch"]))
        values.append(float(value))
    return epochs, values


def epoch_ticks(axis, histories: list[list[dict]]) -> None:
    """Whole-number epoch ticks: each epoch when there are few (one epoch is not 0.96 to 1.04), else integer steps."""
    epochs = sorted({int(row["epoch"]) for history in histories for row in history})
    if 0 < len(epochs) <= 15:
        axis.set_xticks(epochs)
    else:
        axis.xaxis.get_major_locator().set_params(integer=True)


def curves_figure(history: list[dict], title: str = "training") -> Figure:
    """Loss and accuracy per epoch, training and (when there is one) validation, side by side."""
    figure, (loss_axis, accuracy_axis) = plt.subplots(1, 2, figsize=(10, 3.8), layout="constrained")
    for axis, metric in ((loss_axis, "loss"), (accuracy_axis, "accuracy")):
        for key, label, style in ((metric, "training", "o-"), (f"val_{metric}", "validation", "s--")):
            epochs, values = history_series(history, key)
            if values:
                axis.plot(epochs, values, style, label=label)
        axis.set_xlabel("epoch")
        axis.set_ylabel(metric)
        axis.set_title(metric)
        axis.grid(alpha=0.3)
        axis.legend()
        epoch_ticks(axis, [history])
    figure.suptitle(title, fontsize=10)
    return figure


def confusion_figure(matrix: np.ndarray, class_names: list[str], title: str = "confusion matrix") -> Figure:
    """Counts of (true class, predicted class), rows true, columns predicted, each cell annotated."""
    matrix = np.asarray(matrix)
    classes = len(class_names)
    size = max(5.0, 0.55 * classes + 2.5)
    figure, axis = plt.subplots(figsize=(size + 1.2, size), layout="constrained")
    image = axis.imshow(matrix, cmap="Blues")
    threshold = matrix.max() / 2 if matrix.size else 0
    for true in range(classes):
        for predicted in range(classes):
            count = int(matrix[true, predicted])
            axis.text(predicted, true, str(count), ha="center", va="center", fontsize=7,
                      color="white" if count > threshold else "#222222")
    axis.set_xticks(range(classes), class_names, rotation=45, ha="right", fontsize=8)
    axis.set_yticks(range(classes), class_names, fontsize=8)
    axis.set_xlabel("predicted class")
    axis.set_ylabel("true class")
    accuracy = np.trace(matrix) / matrix.sum() if matrix.sum() else 0.0
    axis.set_title(f"{title}: accuracy {accuracy:.2%} of {int(matrix.sum())} images", fontsize=10)
    figure.colorbar(image, ax=axis, shrink=0.8, label="images")
    return figure


def sweep_overlay_figure(histories: dict[str, list[dict]]) -> Figure:
    """Validation accuracy per epoch, one line per run (training accuracy, dashed, for runs without validation)."""
    figure, axis = plt.subplots(figsize=(8, 4.5), layout="constrained")
    validated = 0
    for name, history in histories.items():
        epochs, values = history_series(history, "val_accuracy")
        if values:
            axis.plot(epochs, values, "o-", label=name)
            validated += 1
            continue
        epochs, values = history_series(history, "accuracy")
        axis.plot(epochs, values, "o--", label=f"{name} (training)")
    which = "validation" if validated else "training"  # runs without a validation split show what they have
    axis.set_xlabel("epoch")
    axis.set_ylabel(f"{which} accuracy")
    axis.set_title(f"{which} accuracy per epoch" + ("" if validated else " (no validation split)"))
    axis.grid(alpha=0.3)
    epoch_ticks(axis, list(histories.values()))
    axis.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the plot: never over a line
    return figure


def accuracy_time_figure(results: list[tuple[str, float, float]]) -> Figure:
    """Test accuracy against training seconds, one labelled point per (name, seconds, accuracy) run."""
    figure, axis = plt.subplots(figsize=(8, 4.5), layout="constrained")
    for name, seconds, accuracy in results:
        axis.scatter([seconds], [accuracy], s=40)
        axis.annotate(name, (seconds, accuracy), textcoords="offset points", xytext=(5, 4), fontsize=8)
    axis.set_xlabel("training time (seconds)")
    axis.set_ylabel("test accuracy")
    axis.set_title("test accuracy against training time")
    axis.grid(alpha=0.3)
    axis.margins(x=0.2, y=0.15)
    return figure


def examples_figure(images, captions: list[str], title: str, columns: int = 6) -> Figure:
    """A grid of input images, each (C, H, W), with a caption under each: the most confused examples.

    An image given as None leaves its cell empty, so that each row can hold one group (one confused pair).
    """
    count = len(images)
    columns = max(1, min(columns, count))
    rows = max(1, math.ceil(count / columns))
    figure = plt.figure(figsize=(1.9 * columns, 2.1 * rows + 0.4), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False)
    for position, axis in enumerate(axes.flat):
        axis.set_xticks([])
        axis.set_yticks([])
        if position >= count or images[position] is None:
            axis.set_axis_off()
            continue
        picture, style = image_for_display(np.asarray(images[position]))
        axis.imshow(picture, **style)
        axis.set_title(captions[position], fontsize=7)
    figure.suptitle(title, fontsize=10)
    return figure


# --- a dataset's samples --------------------------------------------------------------------------------------------

MAX_GRID_PER_CLASS = 32     # samples per class row: more no longer fit a readable picture
MAX_GRID_CELLS = 1024       # rows x columns: the figure's cost grows with its axes (an image folder may have many classes)


def check_grid_size(per_class: int, num_classes: int = 1) -> None:
    """ConvolabError unless `per_class` samples of `num_classes` classes make a picture drawn in seconds."""
    if not isinstance(per_class, int) or not 1 <= per_class <= MAX_GRID_PER_CLASS:
        raise ConvolabError(f"per_class={per_class!r}; expected 1 to {MAX_GRID_PER_CLASS} samples per class",
                            fix="ask for 8 per class (per_class=8, or --per-class 8 on the command line)")
    if per_class * num_classes > MAX_GRID_CELLS:
        fitting = max(1, MAX_GRID_CELLS // num_classes)
        raise ConvolabError(
            f"{per_class} samples for each of {num_classes} classes is {per_class * num_classes:,} pictures; expected "
            f"at most {MAX_GRID_CELLS:,}",
            fix=f"ask for {fitting} per class (per_class={fitting}, or --per-class {fitting} on the command line)"
            if num_classes <= MAX_GRID_CELLS else "draw a few classes' folders on their own",
        )


def sample_grid_figure(dataset, per_class: int = 8, seed: int = 0) -> Figure:
    """`per_class` training samples per class of a data.Dataset, one row per class, the class name at the left."""
    import torch

    check_grid_size(per_class, dataset.num_classes)
    generator = torch.Generator().manual_seed(seed)
    rows = dataset.num_classes
    figure, axes = plt.subplots(rows, per_class, figsize=(per_class * 0.9 + 1.6, rows * 0.9), squeeze=False)
    for label, name in enumerate(dataset.class_names):
        members = torch.nonzero(dataset.train_labels == label).flatten()
        chosen = members[torch.randperm(len(members), generator=generator)[:per_class]]
        for column in range(per_class):
            axis = axes[label][column]
            axis.set_xticks([])
            axis.set_yticks([])
            for spine in axis.spines.values():
                spine.set_visible(False)
            if column < len(chosen):
                picture, style = image_for_display(dataset.train_images[chosen[column]].numpy())
                axis.imshow(picture, **style)
        axes[label][0].set_ylabel(f"{label}: {name}", rotation=0, ha="right", va="center", fontsize=9)
    shown = min(per_class, int(torch.bincount(dataset.train_labels, minlength=rows).max()))
    figure.suptitle(f"{dataset.name}: {shown} training samples per class", fontsize=11)
    figure.tight_layout()
    return figure


def save_sample_grid(dataset, path: str | Path, per_class: int = 8, seed: int = 0) -> Path:
    """A PNG of `per_class` training samples per class (sample_grid_figure), written to `path`."""
    return save_figure(sample_grid_figure(dataset, per_class, seed), path)


def write_run_pictures(run_dir: str | Path) -> list[Path]:
    """curves.png and confusion.png from a run directory's history and metrics; the hook training calls at its end.

    A run without test metrics (no metrics.json, or no confusion matrix in it) gets only its curves.
    """
    run_dir = Path(run_dir)
    history = read_json(run_dir / HISTORY_JSON)
    name = run_dir.name
    written = [save_figure(curves_figure(history, title=f"{name}: training"), run_dir / "curves.png")]
    metrics_path = run_dir / METRICS
    metrics = read_json(metrics_path) if metrics_path.is_file() else {}
    if "confusion_matrix" in metrics and "class_names" in metrics:
        figure = confusion_figure(np.array(metrics["confusion_matrix"]), list(metrics["class_names"]),
                                  title=f"{name}: test confusion matrix")
        written.append(save_figure(figure, run_dir / "confusion.png"))
    return written


MAX_GRID_ROWS = 32   # images in the activation grid: 230 pixels a row; 300 rows took minutes for a 69,000-pixel PNG


def check_grid_rows(image_indices: list[int]) -> None:
    """ConvolabError unless the activation grid has at most MAX_GRID_ROWS images (rows)."""
    if len(image_indices) > MAX_GRID_ROWS:
        raise ConvolabError(
            f"{len(image_indices)} images asked for the grid; expected at most {MAX_GRID_ROWS}, one row each",
            fix=f"draw them {MAX_GRID_ROWS} at a time, each picture under its own name (--images and --out on the "
                "command line; images= and .save(...) in Python)")


def run_activation_grid(model, spec, test_images, test_labels, class_names: list[str], image_indices: list[int],
                        filter_index: int, layer_indices: list[int] | None = None) -> Figure:
    """The lab's grid for a trained model: test images `image_indices`, filter `filter_index` of each conv/pool layer.

    Raises RunError for an image index outside the test set and SpecError for a filter a layer does not have.
    """
    check_image_indices(image_indices, len(test_images))
    check_grid_rows(image_indices)
    chosen = test_images[image_indices]  # (N, C, H, W) uint8
    activations = capture(model, spec, chosen, layer_indices)
    if not activations.layers:
        raise SpecError(f"the model {spec.to_line()!r} has no Conv2D or pooling layer to look inside",
                        fix="train a convolutional model, e.g. convolab train cnn")
    for maps in activations.layers:
        check_filter_index(filter_index, maps)
    labels = np.asarray(test_labels[image_indices])
    return activation_grid_figure(chosen.numpy(), labels, activations, filter_index, class_names, image_indices,
                                  layer_names=layer_names(spec))


def page_paths(out: str | Path, pages: int) -> list[Path]:
    """FILE.png for one page; FILE-p1.png, FILE-p2.png, ... for several."""
    out = Path(out)
    if pages == 1:
        return [out]
    return [out.with_name(f"{out.stem}-p{page}{out.suffix or '.png'}") for page in range(1, pages + 1)]


def write_all_filters(run, test_images, test_labels, layer: int, image_index: int, sort: str = "index",
                      per_page: int = 32, out: str | Path | None = None) -> tuple[list[Path], int, str]:
    """Every filter of `layer` on test image `image_index`, in pages of `per_page`, ordered by index or by variance
    (most varied first), one colour scale for all pages. `run` is a runs.Run; out defaults to RUN/activations-NAME.png.

    Returns (the pictures written, the layer's filter count, the layer's Keras name).
    """
    if sort not in ("index", "variance"):
        raise ConvolabError(f"sort={sort!r}; expected index or variance", fix="sort by index (--sort index)")
    check_image_indices([image_index], len(test_images))
    maps = capture(run.model, run.spec, test_images[[image_index]], [layer]).layer(layer)
    name = layer_names(run.spec)[layer]
    variances = variance_by_filter(maps.values) if sort == "variance" else None
    order = filters_by_variance(maps.values) if sort == "variance" else list(range(maps.num_filters))
    pages = filter_pages(order, per_page)
    paths = page_paths(out or run.output_path(f"activations-{name}.png"), len(pages))
    limits = column_limits(maps.values[0])
    true_class = run.class_names[int(test_labels[image_index])]
    for page, (filters, path) in enumerate(zip(pages, paths), start=1):
        save_figure(all_filters_figure(maps, 0, filters, image_index, true_class, name, page, len(pages), variances,
                                       limits), path)
    return paths, maps.num_filters, name


def run_kernels_figure(model, spec, layer_indices: list[int] | None = None, max_inputs: int = 8) -> Figure:
    """The learned kernels of the model's Conv2D layers (default: all of them), one panel each."""
    indices = conv_layer_indices(spec) if layer_indices is None else layer_indices
    if not indices:
        raise SpecError(f"the model {spec.to_line()!r} has no Conv2D layer, so no kernels to show",
                        fix="train a convolutional model, e.g. convolab train cnn")
    names = layer_names(spec)
    return kernels_figure([(f"{index}: {names[index]}", kernels(model, spec, index)) for index in indices],
                          max_inputs=max_inputs)
