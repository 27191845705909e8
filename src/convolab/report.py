"""One self-contained HTML file from one or more run directories: everything convolab can show about them.

Self-contained means: every picture is inside the file as a data: URI, the style sheet is inline, there is no script,
and a Content-Security-Policy forbids the page to load anything from anywhere, so it opens the same offline, from an
e-mail attachment or years later. Text is escaped with html.escape; no template engine is needed for one page.

For one run: the explained summary, the architecture diagram, training curves, test metrics, the confusion matrix,
the most confused examples with their images, the lab's activation grid and the learned filters. For several runs:
first a comparison table, the validation-accuracy overlay and test accuracy against time, then each run as above.
"""
from __future__ import annotations

import base64
import io
import os
import time
from dataclasses import dataclass, field
from html import escape
from pathlib import Path

import numpy as np
import torch

from convolab import __version__
from convolab.activations import LAB_IMAGES, conv_layer_indices, lab_images, visual_layer_indices
from convolab.diagram import architecture_svg
from convolab.errors import ConvolabError, RunError
from convolab.evaluate import evaluate_logits, evaluate_model, predict_logits
from convolab.plots import (accuracy_time_figure, confusion_figure, curves_figure, examples_figure, plt,
                            run_activation_grid, run_kernels_figure, save_figure, sweep_overlay_figure)
from convolab.runs import Run, atomic_write_text, load_run, require_suffix
from convolab.shapes import analyze, totals
from convolab.summary import html_table

LAB_FILTER = 1  # the lab's CONVOLUTION_NUMBER
# No network, no script: only inline styles and data: pictures may be used.
CONTENT_SECURITY_POLICY = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"

STYLE = """
body { font-family: "DejaVu Sans", Helvetica, Arial, sans-serif; color: #222; margin: 0; background: #fafafa; }
main { max-width: 1180px; margin: 0 auto; padding: 16px 28px 60px; background: #fff; }
h1 { font-size: 26px; margin: 12px 0 4px; }
h2 { font-size: 21px; margin: 34px 0 8px; border-bottom: 2px solid #3b75b5; padding-bottom: 4px; }
h3 { font-size: 17px; margin: 24px 0 6px; color: #333; }
p.meta, p.note { color: #555; font-size: 14px; margin: 4px 0; }
nav { font-size: 14px; margin: 10px 0 4px; }
nav a { margin-right: 14px; color: #3b75b5; }
table { border-collapse: collapse; font-size: 13px; margin: 8px 0 12px; max-width: 100%; }
th, td { border-bottom: 1px solid #ddd; padding: 4px 10px; text-align: left; vertical-align: top; }
th { background: #f0f4f9; }
td.number, th.number { text-align: right; font-variant-numeric: tabular-nums; }
tr.why td { color: #555; font-size: 12px; border-bottom: 1px solid #bbb; padding-top: 0; }
tr.why td div { margin: 1px 0 1px 14px; }
tr.best td { background: #eef7ee; }
code { font-size: 13px; background: #f3f3f3; padding: 1px 4px; border-radius: 3px; overflow-wrap: anywhere; }
figure { margin: 10px 0 18px; }
figure img { max-width: 100%; height: auto; border: 1px solid #e4e4e4; }
figcaption { color: #555; font-size: 13px; margin-top: 4px; }
.missing { color: #a33; font-size: 14px; }
.side-by-side { display: flex; flex-wrap: wrap; gap: 16px; }
.side-by-side figure { flex: 1 1 460px; }
"""


@dataclass
class ReportOptions:
    """What the picture sections show; the defaults are the lab's."""

    image_indices: tuple[int, ...] = LAB_IMAGES
    filter_index: int = LAB_FILTER
    confused_pairs: int = 3  # how many (true, predicted) pairs get example images
    examples_per_pair: int = 5


@dataclass
class RunContent:
    """One run and what the report needs about it, computed once."""

    run: Run
    reports: list = field(default_factory=list)  # shapes.analyze's LayerReports
    metrics: dict = field(default_factory=dict)
    test_data: tuple[torch.Tensor, torch.Tensor] | None = None
    data_problem: str | None = None  # why the test images could not be loaded, when they could not


# --- pictures as data: URIs ----------------------------------------------------------------------------------------

def png_data_uri(figure) -> str:
    """A matplotlib figure as a base64 PNG data: URI (the figure is closed)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def svg_data_uri(svg: str) -> str:
    """An SVG document as a base64 data: URI, so that it is an <img> like every other picture."""
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode("utf-8")).decode("ascii")


def picture(uri: str, alt: str, caption: str = "") -> str:
    """A <figure> holding one embedded picture and its caption."""
    caption_html = f"<figcaption>{escape(caption)}</figcaption>" if caption else ""
    return f'<figure><img src="{uri}" alt="{escape(alt)}">{caption_html}</figure>'


def missing(text: str) -> str:
    """A visible note where a section cannot be drawn, saying why."""
    return f'<p class="missing">{escape(text)}</p>'


# --- reading what the report needs ---------------------------------------------------------------------------------

def gather(run: Run, test_sets: dict[str, tuple] | None = None) -> RunContent:
    """The run's layer reports, metrics.json and test images (or why they could not be loaded).

    test_sets: test images already loaded, by the runs' recorded data, so that a sweep's runs load their data once.
    """
    content = RunContent(run=run)
    content.reports = analyze(run.spec, run.input_shape, len(run.class_names))
    if run.metrics is not None and not isinstance(run.metrics, dict):
        raise RunError(f"{run.path / 'metrics.json'}: not the test metrics convolab writes (a JSON object); it holds "
                       f"a {type(run.metrics).__name__}",
                       fix="delete metrics.json and run `convolab evaluate` on the run, then the report again")
    content.metrics = dict(run.metrics or {})
    key = run.config.dataset.key
    test_sets = {} if test_sets is None else test_sets
    run.check_recorded_data()    # a Keras file whose model does not fit the lab's data: said, not half a report
    try:
        if key not in test_sets:
            test_sets[key] = run.test_data()
        content.test_data = test_sets[key]
    except ConvolabError as error:
        content.data_problem = f"the test images could not be loaded again: {error.message}"
    if run.imported and content.test_data is not None:   # a Keras file keeps no metrics: measure them here
        images, labels = content.test_data
        content.metrics = {**evaluate_model(run.model, images, labels, run.class_names).to_dict(),
                           "epochs_trained": 0, "status": "imported"}
    elif run.metrics_problem and content.test_data is not None:   # a damaged metrics.json: measured again, as trained
        images, labels = content.test_data
        content.metrics = {**evaluate_model(run.model, images, labels, run.class_names,
                                            test_time_flip=run.config.train.test_time_flip).to_dict(),
                           "epochs_trained": len(run.history), "status": run.status}
    return content


def format_number(value, digits: int = 4) -> str:
    """A metric for a table cell: rounded floats, '–' for a missing value."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return escape(str(value))


def plural(count, noun: str) -> str:
    """'1 epoch', '3 epochs', '– epochs' when unknown."""
    return f"{format_number(count)} {noun}{'' if count == 1 else 's'}"


def best_validation_accuracy(history: list[dict]) -> float | None:
    values = [row["val_accuracy"] for row in history if isinstance(row.get("val_accuracy"), (int, float))]
    return max(values) if values else None


def training_seconds(history: list[dict]) -> float:
    return float(sum(row.get("seconds") or 0.0 for row in history))


# --- sections ------------------------------------------------------------------------------------------------------

def summary_table(reports: list) -> str:
    """Keras's summary table, each row followed by the arithmetic that explains it (summary.py's HTML form)."""
    return html_table(reports)


def metrics_section(content: RunContent) -> str:
    """Test loss and accuracy, and accuracy per class."""
    metrics = content.metrics
    if "test_accuracy" not in metrics:
        return missing("no test metrics: the run has no metrics.json (training did not finish)")
    head = (f"<p>test accuracy <b>{format_number(metrics.get('test_accuracy'))}</b>, "
            f"test loss {format_number(metrics.get('test_loss'))} on {format_number(metrics.get('test_count'))} "
            f"images; {plural(metrics.get('epochs_trained'), 'epoch')}, status "
            f"{escape(str(metrics.get('status', content.run.status)))}"
            + (f" ({escape(str(metrics['stop_reason']))})" if metrics.get("stop_reason") else "") + ".</p>")
    per_class = metrics.get("per_class_accuracy") or {}
    rows = "".join(f"<tr><td>{escape(name)}</td><td class=number>{format_number(value)}</td></tr>"
                   for name, value in per_class.items())
    table = f"<table><tr><th>class</th><th class=number>accuracy</th></tr>{rows}</table>" if rows else ""
    return head + table


def confused_section(content: RunContent, options: ReportOptions) -> str:
    """Example images of the most confused (true, predicted) pairs, the model's most confident mistakes first."""
    if content.test_data is None:
        return missing(content.data_problem or "no test images")
    images, labels = content.test_data
    run = content.run
    logits = predict_logits(run.model, images)  # (N, classes)
    evaluation = evaluate_logits(logits, labels, run.class_names, top_pairs=options.confused_pairs)
    if not evaluation.most_confused:
        return "<p>No mistakes on the test set: nothing is confused.</p>"
    probabilities = logits.softmax(dim=1)
    predicted = probabilities.argmax(dim=1)
    chosen, captions = [], []
    for pair in evaluation.most_confused:
        where = torch.nonzero((labels == pair.true_class) & (predicted == pair.predicted_class)).flatten()
        confidence = probabilities[where, pair.predicted_class]
        row = where[torch.argsort(confidence, descending=True)][: options.examples_per_pair].tolist()
        for index in row:
            chosen.append(images[index].numpy())
            captions.append(f"#{index} {run.class_names[pair.true_class]}\n→ {run.class_names[pair.predicted_class]}"
                            f" {float(probabilities[index, pair.predicted_class]):.2f}")
        blanks = options.examples_per_pair - len(row)  # a short pair still ends its row
        chosen += [None] * blanks
        captions += [""] * blanks
    pairs = "; ".join(f"{run.class_names[p.true_class]} → {run.class_names[p.predicted_class]}: {p.count} "
                      f"({p.fraction:.1%})" for p in evaluation.most_confused)
    figure = examples_figure(chosen, captions, "most confused: true class → predicted, probability",
                             columns=options.examples_per_pair)
    return (f"<p>Most confused pairs (true → predicted): {escape(pairs)}.</p>"
            + picture(png_data_uri(figure), "most confused examples",
                      "Each row: one confused pair, the model's most confident mistakes first."))


def lab_grid(run: Run, test_data: tuple[torch.Tensor, torch.Tensor], options: ReportOptions):
    """The activation grid of `run` as `options` ask: (figure, image indices, filter index).

    The lab's defaults adapt (images past a small test set dropped, filter 0 when a layer has one filter); numbers
    the user chose are checked and refused with a clear error instead.
    """
    images, labels = test_data
    indices, filter_index = list(options.image_indices), options.filter_index
    if options.image_indices == LAB_IMAGES:
        indices = lab_images(len(images))
    if options.filter_index == LAB_FILTER and min(maps_filters(run)) <= LAB_FILTER:
        filter_index = 0
    figure = run_activation_grid(run.model, run.spec, images, labels, run.class_names, indices, filter_index)
    return figure, indices, filter_index


def activations_section(content: RunContent, options: ReportOptions) -> str:
    """The lab's grid and the learned kernels, when the model has conv/pool layers."""
    run = content.run
    if not visual_layer_indices(run.spec):
        return "<p>This model has no Conv2D or pooling layer: there are no feature maps or kernels to show.</p>"
    if content.test_data is None:
        grid = missing(content.data_problem or "no test images")
    else:
        figure, indices, filter_index = lab_grid(run, content.test_data, options)
        grid = picture(png_data_uri(figure), "activation grid",
                       f"Test images {', '.join(map(str, indices))}: filter {filter_index} of every conv/pool layer, "
                       "one colour scale per column (convolab show).")
    kernels_html = picture(png_data_uri(run_kernels_figure(run.model, run.spec)), "learned filters",
                           "The learned kernels: red weights excite, blue inhibit (convolab filters).") \
        if conv_layer_indices(run.spec) else ""
    return grid + kernels_html


def maps_filters(run: Run) -> list[int]:
    """The channel count of every conv/pool layer's output, from the layer reports (Keras's last axis)."""
    reports = analyze(run.spec, run.input_shape, len(run.class_names))
    return [reports[index].output_shape[-1] for index in visual_layer_indices(run.spec)]


def run_section(content: RunContent, options: ReportOptions, heading: int = 2) -> str:
    """Everything about one run, its subsections under <h{heading}>."""
    run = content.run
    sub = f"h{heading}"
    total = totals(content.reports)["params"]
    anchor = f"run-{escape(run.name)}"
    dataset = run.config.dataset
    parts = [
        f'<section id="{anchor}">' if heading == 3 else "<section>",
        f"<h2>{escape(run.name)}</h2>" if heading == 3 else "",
        f"<p class=meta>model <code>{escape(run.spec.to_line())}</code> · {total:,} parameters · data "
        f"{escape(dataset.name)} "
        + (f"(a Keras model file, trained outside convolab) · file <code>{escape(str(run.path))}</code></p>"
           if run.imported else f"({escape(str(dataset.sizes.get('train_size', '?')))} training images) · "
           f"run directory <code>{escape(str(run.path))}</code></p>"),
        f"<{sub}>Model</{sub}>",
        picture(svg_data_uri(architecture_svg(content.reports, run.name)), "architecture diagram",
                "The architecture: each block with its output shape (height × width × channels) and parameters."),
        summary_table(content.reports),
        f"<{sub}>Training</{sub}>",
        picture(png_data_uri(curves_figure(run.history, title=f"{run.name}: training")), "training curves",
                "Loss and accuracy per epoch, " + ("training and validation." if best_validation_accuracy(run.history)
                                                  is not None else "training only (no validation split)."))
        if run.history else missing("no epochs"),
        f"<{sub}>Test results</{sub}>",
        metrics_section(content),
    ]
    if "confusion_matrix" in content.metrics:
        matrix = np.array(content.metrics["confusion_matrix"])
        parts.append(picture(png_data_uri(confusion_figure(matrix, run.class_names, f"{run.name}: test")),
                             "confusion matrix", "Rows: the true class; columns: the predicted class."))
    parts += [f"<{sub}>Most confused examples</{sub}>", confused_section(content, options),
              f"<{sub}>Inside the network</{sub}>", activations_section(content, options), "</section>"]
    return "\n".join(part for part in parts if part)


def comparison_section(contents: list[RunContent]) -> str:
    """The runs side by side: a table, the validation-accuracy overlay, test accuracy against training time."""
    best = max((content.metrics.get("test_accuracy") or -1.0) for content in contents)
    rows = ["<table><tr><th>run</th><th>model</th><th class=number>parameters</th><th class=number>epochs</th>"
            "<th class=number>seconds</th><th class=number>best val. accuracy</th>"
            "<th class=number>test accuracy</th><th class=number>test loss</th></tr>"]
    for content in contents:
        run, metrics = content.run, content.metrics
        marked = ' class="best"' if metrics.get("test_accuracy") == best else ""
        rows.append(
            f'<tr{marked}><td><a href="#run-{escape(run.name)}">{escape(run.name)}</a></td>'
            f"<td><code>{escape(run.spec.to_line())}</code></td>"
            f"<td class=number>{totals(content.reports)['params']:,}</td><td class=number>{len(run.history)}</td>"
            f"<td class=number>{training_seconds(run.history):.1f}</td>"
            f"<td class=number>{format_number(best_validation_accuracy(run.history))}</td>"
            f"<td class=number>{format_number(metrics.get('test_accuracy'))}</td>"
            f"<td class=number>{format_number(metrics.get('test_loss'))}</td></tr>")
    rows.append("</table>")
    overlay = sweep_overlay_figure({content.run.name: content.run.history for content in contents})
    points = [(content.run.name, training_seconds(content.run.history), content.metrics["test_accuracy"])
              for content in contents if "test_accuracy" in content.metrics]
    parts = ["<section id=comparison><h2>Comparison</h2>", "".join(rows), '<div class="side-by-side">',
             picture(png_data_uri(overlay), "accuracy overlay", overlay_caption([c.run.history for c in contents]))]
    if points:
        parts.append(picture(png_data_uri(accuracy_time_figure(points)), "test accuracy against seconds",
                             "Test accuracy against training time (seconds, validation included)."))
    parts.append("</div></section>")
    return "\n".join(parts)


def page(title: str, body: str, nav: list[tuple[str, str]]) -> str:
    """The whole HTML document around `body`."""
    links = "".join(f'<a href="#{escape(anchor)}">{escape(text)}</a>' for anchor, text in nav)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f'<meta http-equiv="Content-Security-Policy" content="{CONTENT_SECURITY_POLICY}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<main>\n"
        f"<h1>{escape(title)}</h1>\n"
        f"<p class=meta>made by convolab {escape(__version__)} on {escape(time.strftime('%Y-%m-%d %H:%M'))}</p>\n"
        + (f"<nav>{links}</nav>\n" if links else "") + body + "\n</main>\n</body>\n</html>\n"
    )


def render_report(runs: list[Run], options: ReportOptions | None = None) -> str:
    """The report's HTML for one run, or for several runs with their comparison first."""
    options = options or ReportOptions()
    test_sets: dict[str, tuple] = {}
    contents = [gather(run, test_sets) for run in runs]
    if len(contents) == 1:
        content = contents[0]
        return page(f"convolab report: {content.run.name}", run_section(content, options, heading=2), [])
    body = [comparison_section(contents)] + [run_section(content, options, heading=3) for content in contents]
    nav = [("comparison", "comparison")] + [(f"run-{content.run.name}", content.run.name) for content in contents]
    return page(f"convolab report: {len(contents)} runs", "\n".join(body), nav)


def overlay_caption(histories: list[list[dict]]) -> str:
    """Say what the overlay plots: validation accuracy, training accuracy (dashed) where a run has no validation."""
    with_validation = [any(row.get("val_accuracy") is not None for row in history) for history in histories]
    if all(with_validation):
        return "Validation accuracy per epoch, every run."
    if not any(with_validation):
        return "Training accuracy per epoch, every run (no run held out a validation split)."
    return "Validation accuracy per epoch; training accuracy, dashed, for runs without a validation split."


def write_html(path: Path, html: str) -> Path:
    """Write the page atomically (with the permissions any new file of the user's gets)."""
    return atomic_write_text(path, html)


def check_report_name(out: str | Path) -> None:
    """ArgumentError unless `out` is named as a web page (.html, .htm): a report is never written under another kind
    of name (`--out RUN/config.json` would have replaced the run's own file)."""
    require_suffix(out, (".html", ".htm"), "the report is a web page", "page",
                   fix_extra=", or give a folder to write report.html in")


def write_report(run_paths: list[str | Path], out: str | Path | None = None,
                 options: ReportOptions | None = None) -> Path:
    """Read the run directories, write the report, return its path. Default `out`: report.html in the run's directory
    for one run, in the runs' common folder for several."""
    if out is not None:
        check_report_name(out)
    runs = [load_run(path) for path in run_paths]
    if out is None:
        folder = Path(os.path.commonpath([str(run.path.resolve()) for run in runs])) if len(runs) > 1 else None
        out = folder / "report.html" if folder is not None else runs[0].output_path("report.html")
    return write_html(Path(out), render_report(runs, options))


def lab_pictures(run_dirs: list[str | Path], out: str | Path, options: ReportOptions | None = None) -> list[Path]:
    """The lab's end: for each convolutional run its activation grid (activations.png) and kernels (filters.png),
    then one report of all the runs at `out`. Returns the paths written."""
    options = options or ReportOptions()
    runs = [load_run(path) for path in run_dirs]
    written = []
    for run in runs:
        if not conv_layer_indices(run.spec):
            continue
        figure, _indices, _filter = lab_grid(run, run.test_data(), options)
        written.append(save_figure(figure, run.path / "activations.png"))
        written.append(save_figure(run_kernels_figure(run.model, run.spec), run.path / "filters.png"))
    return written + [write_html(Path(out), render_report(runs, options))]
