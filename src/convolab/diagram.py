"""The architecture as an SVG picture drawn in plain Python: one block per layer, each with its output shape.

No Graphviz, no pydot (Keras's plot_model needs both, keras #10935): the SVG is a string built from `shapes.analyze`'s
reports. Top to bottom: the input, then each layer as a coloured box (Keras name, kind and settings, output shape, parameters) with a
glyph on its left whose size follows the output: a square for an image (side by height, layers by channels), a bar for
a vector (length by units).
"""
from __future__ import annotations

import math
from html import escape
from pathlib import Path

from convolab.shapes import LayerReport, analyze

WIDTH = 720
BLOCK_WIDTH = 440
BLOCK_HEIGHT = 48
GAP = 22  # vertical space between blocks, where the arrow goes
TOP = 56
GLYPH_CENTER_X = 100
BLOCK_LEFT = 200
FONT = "DejaVu Sans, Helvetica, Arial, sans-serif"

# The input's fill and border; each layer kind brings its own (LayerKind.colors), light enough for dark text.
INPUT_COLORS = ("#eeeeee", "#888888")


def pair_text(value) -> str:
    """(3, 3) -> '3×3'; 2 -> '2×2': Keras accepts both forms."""
    if isinstance(value, (tuple, list)):
        return "×".join(str(part) for part in value)
    return f"{value}×{value}"


def layer_settings(layer) -> str:
    """The layer's settings in a few words, from the layer: '64 filters 3×3, relu', 'pool 2×2', '128 units, relu'."""
    return layer.settings()


def shape_text(shape: tuple[int, ...]) -> str:
    """(26, 26, 64) -> '26 × 26 × 64', Keras's order."""
    return " × ".join(str(size) for size in shape)


def glyph(shape: tuple[int, ...], center_y: float, largest_side: int, stroke: str, fill: str) -> str:
    """A small picture of a tensor of `shape`: stacked squares for (H, W, C), a bar for (units,)."""
    if len(shape) == 3:
        height, width, channels = shape
        side = 8 + 30 * math.sqrt(max(height, width) / max(largest_side, 1))
        layers = 1 + min(5, int(math.log2(max(channels, 1))) // 2)  # 1 channel: one sheet; 64 channels: four
        parts = []
        for sheet in reversed(range(layers)):
            x = GLYPH_CENTER_X - side / 2 + sheet * 4
            y = center_y - side / 2 - sheet * 4
            parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{side:.1f}" height="{side:.1f}" '
                         f'fill="{fill}" stroke="{stroke}" stroke-width="1"/>')
        return "".join(parts)
    units = shape[0] if shape else 1
    length = 6 + 6 * math.log2(max(units, 1))  # 10 units: ~26 px; 3,136 units: ~76 px
    length = min(length, BLOCK_HEIGHT + GAP - 4)
    return (f'<rect x="{GLYPH_CENTER_X - 4}" y="{center_y - length / 2:.1f}" width="8" height="{length:.1f}" '
            f'fill="{fill}" stroke="{stroke}" stroke-width="1"/>')


def block(top: float, title: str, settings: str, output: str, params: str, colors: tuple[str, str],
          shape: tuple[int, ...], largest_side: int) -> str:
    """One layer: its glyph, its box with kind and settings on the left, output shape and parameters on the right."""
    fill, stroke = colors
    center_y = top + BLOCK_HEIGHT / 2
    right = BLOCK_LEFT + BLOCK_WIDTH - 12
    return (
        f'<g class="layer">'
        f'{glyph(shape, center_y, largest_side, stroke, fill)}'
        f'<rect x="{BLOCK_LEFT}" y="{top}" width="{BLOCK_WIDTH}" height="{BLOCK_HEIGHT}" rx="7" '
        f'fill="{fill}" stroke="{stroke}" stroke-width="1.5"/>'
        f'<text x="{BLOCK_LEFT + 12}" y="{top + 20}" font-size="14" font-weight="bold">{escape(title)}</text>'
        f'<text x="{BLOCK_LEFT + 12}" y="{top + 38}" font-size="12" fill="#333333">{escape(settings)}</text>'
        f'<text x="{right}" y="{top + 20}" font-size="14" text-anchor="end">{escape(output)}</text>'
        f'<text x="{right}" y="{top + 38}" font-size="12" text-anchor="end" fill="#555555">{escape(params)}</text>'
        f'</g>'
    )


def arrow(top: float) -> str:
    """A downward arrow in the gap above the block starting at `top`."""
    x = BLOCK_LEFT + BLOCK_WIDTH / 2
    start, end = top - GAP + 3, top - 2
    return (f'<line x1="{x}" y1="{start}" x2="{x}" y2="{end - 6}" stroke="#666666" stroke-width="1.5"/>'
            f'<path d="M {x - 5} {end - 7} L {x + 5} {end - 7} L {x} {end} Z" fill="#666666"/>')


def architecture_svg(reports: list[LayerReport], title: str = "model") -> str:
    """The whole model as a standalone SVG document (xmlns, width, height), input at the top, logits at the bottom."""
    input_shape = tuple(reports[0].input_shape) if reports else ()
    shapes = [input_shape] + [tuple(report.output_shape) for report in reports]
    largest_side = max([max(shape[0], shape[1]) for shape in shapes if len(shape) == 3] or [1])
    total_params = sum(report.params for report in reports)
    rows = 1 + len(reports)
    height = TOP + rows * BLOCK_HEIGHT + (rows - 1) * GAP + 44
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" font-family="{FONT}" role="img">',
        f'<title>{escape(title)}: architecture</title>',
        f'<rect x="0" y="0" width="{WIDTH}" height="{height}" fill="#ffffff"/>',
        f'<text x="{BLOCK_LEFT}" y="30" font-size="16" font-weight="bold">{escape(title)}</text>',
        f'<text x="{BLOCK_LEFT + BLOCK_WIDTH}" y="30" font-size="12" text-anchor="end" fill="#555555">'
        f'output shape (H × W × C) · parameters</text>',
    ]
    top = TOP
    channels = input_shape[-1] if input_shape else 0
    picture = {1: "gray images", 3: "RGB images"}.get(channels, f"images of {channels} channels")
    parts.append(block(top, "input", picture, shape_text(input_shape), "", INPUT_COLORS, input_shape, largest_side))
    for report in reports:
        top += BLOCK_HEIGHT + GAP
        parts.append(arrow(top))
        kind = type(report.layer).__name__
        settings = layer_settings(report.layer)
        params = f"{report.params:,} params" if report.params else "no parameters"
        parts.append(block(top, report.name or kind, f"{kind} · {settings}" if settings else kind,
                           shape_text(tuple(report.output_shape)), params, report.layer.colors,
                           tuple(report.output_shape),
                           largest_side))
    parts.append(f'<text x="{BLOCK_LEFT + BLOCK_WIDTH}" y="{height - 16}" font-size="13" text-anchor="end">'
                 f'total: {total_params:,} parameters</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def write_diagram(spec, input_shape, num_classes: int | None, path: str | Path) -> Path:
    """Analyze `spec` on `input_shape` and write its architecture SVG to `path` (folders made as needed)."""
    from convolab.runs import atomic_write_text   # one writer: a failed write is one message naming the file

    return atomic_write_text(path, architecture_svg(analyze(spec, input_shape, num_classes), spec.name or "model"))
