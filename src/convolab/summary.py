"""The explained model summary: Keras's table (Layer (type), Output Shape, Param #, totals with their size) plus, for
every row, the arithmetic behind it, multiply-adds, activation memory and the receptive field. Text, markdown or json.

Built from `shapes.analyze` only; the text is plain (no colour codes), so it reads the same in a terminal, a pipe, a
file and a golden test.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from html import escape
from typing import Any

from convolab.errors import SpecError
from convolab.shapes import LayerReport, analyze, count, output_note, readable_bytes, shape_text, totals
from convolab.spec import DEFAULT_INPUT_SHAPE, DEFAULT_NUM_CLASSES, ModelSpec, sized_by_classes

FORMATS = ("text", "markdown", "json", "html")
BYTES_PER_PARAM = 4  # Keras sizes the totals as float32 weights

# Text columns: (title, narrowest width, align); a column widens to its longest cell so rows always line up.
_COLUMNS = (
    ("Layer (type)", 32, "<"),
    ("Output Shape", 16, "<"),
    ("Param #", 11, ">"),
    ("Mult-adds", 13, ">"),
    ("Memory", 11, ">"),
    ("Receptive field", 17, "<"),
)


def summarize(spec: ModelSpec, input_shape=None, num_classes: int | None = None, format: str = "text") -> str:
    """The summary of `spec` on (height, width, channels) inputs, in `format` (text, markdown or json)."""
    if format not in FORMATS:
        raise SpecError(f"expected a summary format among {', '.join(FORMATS)}, received: {format!r}",
                        fix="--format text")
    reports = analyze(spec, input_shape, num_classes)
    name = spec.name or "sequential"  # Keras's default model name
    return {"text": format_text, "markdown": format_markdown, "json": format_json, "html": format_html}[format](
        name, reports)


def summary_inputs(spec: ModelSpec, input_shape=None, num_classes: int | None = None):
    """(input_shape, num_classes) for a summary, diagram or report of `spec` when the caller gave none: the spec's own
    input shape, else the lab's 28x28x1; the lab's 10 classes when a last Dense leaves its units to the class count."""
    if input_shape is None and spec.input_shape is None:
        input_shape = DEFAULT_INPUT_SHAPE
    if num_classes is not None and (isinstance(num_classes, bool) or not isinstance(num_classes, int)
                                    or num_classes < 1):
        raise SpecError(f"num_classes={num_classes!r}; expected a whole number of classes, 1 or more",
                        fix="e.g. num_classes=10 (the lab's), or leave it out")
    if num_classes is None and any(sized_by_classes(layer) for layer in spec.layers):
        num_classes = DEFAULT_NUM_CLASSES
    return input_shape, num_classes


def row_title(report: LayerReport) -> str:
    """Keras's first column: 'conv2d_1 (Conv2D)'."""
    return f"{report.name} ({report.kind})"


def row_explanations(report: LayerReport) -> list[str]:
    """The lines printed under a row: why the shape and parameters, the multiply-adds, the receptive field's growth."""
    lines = list(report.explanations)
    if report.macs_explanation:
        lines.append(report.macs_explanation)
    if report.layer.windowed:
        lines.append(report.receptive_field_explanation)
    return lines


def total_lines(reports: list[LayerReport]) -> list[str]:
    """Keras's three totals with their float32 size, then multiply-adds and activation memory per image."""
    summed = totals(reports)
    note = output_note(reports)
    return [
        f"Total params: {count(summed['params'])} ({readable_bytes(summed['params'] * BYTES_PER_PARAM)})",
        f"Trainable params: {count(summed['trainable_params'])} "
        f"({readable_bytes(summed['trainable_params'] * BYTES_PER_PARAM)})",
        f"Non-trainable params: {count(summed['non_trainable_params'])} "
        f"({readable_bytes(summed['non_trainable_params'] * BYTES_PER_PARAM)})",
        f"Multiply-adds per image: {count(summed['macs'])} (forward pass)",
        f"Activation memory per image: {readable_bytes(summed['memory_bytes'])} (float32 outputs of every layer)",
    ] + ([note] if note else [])


def _cells(report: LayerReport) -> list[str]:
    return [
        row_title(report), shape_text(report.output_shape), count(report.params), count(report.macs),
        readable_bytes(report.memory_bytes), report.receptive_field.text(),
    ]


def _text_row(cells: list[str], widths: list[int]) -> str:
    parts = [f"{cell:{align}{width}}" for (_, _, align), width, cell in zip(_COLUMNS, widths, cells)]
    return " " + "  ".join(parts).rstrip()


def format_text(name: str, reports: list[LayerReport]) -> str:
    """Keras's table in plain text, each row followed by its arithmetic."""
    rows = [_cells(report) for report in reports]
    widths = [max([minimum, len(title)] + [len(row[column]) for row in rows])
              for column, (title, minimum, _) in enumerate(_COLUMNS)]
    rule_width = sum(widths) + 2 * len(widths) - 1
    lines = [f'Model: "{name}" on input {shape_text(reports[0].input_shape)}', "_" * rule_width]
    lines.append(_text_row([title for title, _, _ in _COLUMNS], widths))
    lines.append("=" * rule_width)
    for position, (report, row) in enumerate(zip(reports, rows)):
        lines.append(_text_row(row, widths))
        lines.extend(f"     {line}" for line in row_explanations(report))
        lines.append("=" * rule_width if position == len(reports) - 1 else "_" * rule_width)
    lines.extend(f" {line}" for line in total_lines(reports))
    lines.append("_" * rule_width)
    lines.append("Shapes are per image, (height, width, channels); Keras prints a leading None for the batch.")
    return "\n".join(lines) + "\n"


def _markdown_cell(text: str) -> str:
    return text.replace("|", "\\|")


def format_markdown(name: str, reports: list[LayerReport]) -> str:
    """The same table in GitHub markdown; the arithmetic goes in a last column, one line per <br>."""
    lines = [
        f"### Model `{name}` on input {shape_text(reports[0].input_shape)}",
        "",
        "| # | Layer (type) | Output Shape | Param # | Mult-adds | Memory | Receptive field | Why |",
        "|--:|---|---|--:|--:|--:|---|---|",
    ]
    for report in reports:
        cells = _cells(report) + ["<br>".join(row_explanations(report))]
        lines.append(f"| {report.index} | " + " | ".join(_markdown_cell(cell) for cell in cells) + " |")
    lines.append("")
    lines.extend(f"- {line}" for line in total_lines(reports))
    lines.append("")
    lines.append("Shapes are per image, (height, width, channels); Keras prints a leading None for the batch.")
    return "\n".join(lines) + "\n"


def summary_dict(name: str, reports: list[LayerReport]) -> dict[str, Any]:
    """Every number and explanation of the summary as plain JSON-ready data."""
    return {
        "name": name,
        "input_shape": list(reports[0].input_shape),
        "layers": [
            {
                "index": report.index,
                "name": report.name,
                "type": report.kind,
                "input_shape": list(report.input_shape),
                "output_shape": list(report.output_shape),
                "params": report.params,
                "trainable_params": report.trainable_params,
                "non_trainable_params": report.non_trainable_params,
                "macs": report.macs,
                "output_values": report.output_values,
                "memory_bytes": report.memory_bytes,
                "receptive_field": {
                    "size": None if report.receptive_field.whole_input else list(report.receptive_field.size),
                    "jump": None if report.receptive_field.whole_input else list(report.receptive_field.jump),
                    "start": None if report.receptive_field.whole_input else list(report.receptive_field.start),
                    "whole_input": report.receptive_field.whole_input,
                },
                "explanations": report.explanations,
                "macs_explanation": report.macs_explanation,
                "memory_explanation": report.memory_explanation,
                "receptive_field_explanation": report.receptive_field_explanation,
            }
            for report in reports
        ],
        "totals": totals(reports),
    }


def format_json(name: str, reports: list[LayerReport]) -> str:
    """The summary as indented JSON (UTF-8 characters kept: ×, −, ⌊ ⌋)."""
    return json.dumps(summary_dict(name, reports), indent=2, ensure_ascii=False) + "\n"


# Inline styles, so that the table reads the same in a notebook, in Colab and inside the report's page.
_NUMBER = 'style="text-align:right"'
_LEFT = 'style="text-align:left"'
_WHY = 'style="color:#555;font-size:90%;padding-left:2em;text-align:left"'


def html_table(reports: list[LayerReport]) -> str:
    """Keras's summary table in HTML, each row followed by the arithmetic that explains it, then the totals."""
    head = "".join(f"<th {_NUMBER if align == '>' else _LEFT}>{escape(title)}</th>" for title, _, align in _COLUMNS)
    rows = [f"<table><tr>{head}</tr>"]
    for report in reports:
        cells = "".join(f"<td {_NUMBER if align == '>' else _LEFT}>{escape(cell)}</td>"
                        for (_, _, align), cell in zip(_COLUMNS, _cells(report)))
        rows.append(f"<tr>{cells}</tr>")
        why = "<br>".join(escape(line) for line in row_explanations(report))
        rows.append(f'<tr><td colspan="{len(_COLUMNS)}" {_WHY}>{why}</td></tr>')
    rows.append("</table>")
    rows.append("<p>" + "<br>".join(escape(line) for line in total_lines(reports)) + "</p>")
    return "".join(rows)


def format_html(name: str, reports: list[LayerReport]) -> str:
    """The summary as an HTML fragment: a heading, the table, the totals."""
    return (f"<div><b>Model &quot;{escape(name)}&quot;</b> on input {escape(shape_text(reports[0].input_shape))}"
            + html_table(reports) + "<p><small>Shapes are per image, (height, width, channels); Keras prints a leading "
            "None for the batch.</small></p></div>")


@dataclass(frozen=True)
class Summary:
    """The explained summary as an object: plain text in a terminal (str), an HTML table in Jupyter and Colab
    (IPython's display protocol), so that a notebook shows it once, as a table, never also as printed text."""

    spec: ModelSpec
    input_shape: tuple[int, int, int] | None = None
    num_classes: int | None = None

    def text(self) -> str:
        return summarize(self.spec, self.input_shape, self.num_classes, format="text")

    def html(self) -> str:
        return summarize(self.spec, self.input_shape, self.num_classes, format="html")

    def __str__(self) -> str:
        return self.text()

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict:
        return {"text/plain": self.text(), "text/html": self.html()}
