"""The SVG architecture: valid standalone XML, one block per layer with its output shape and parameters."""
from __future__ import annotations

import json
import xml.etree.ElementTree as ElementTree

import pytest

from convolab import cli
from convolab.diagram import architecture_svg, layer_settings
from convolab.shapes import analyze
from convolab.spec import load_spec

SVG = "{http://www.w3.org/2000/svg}"


def blocks(svg: str) -> list[list[str]]:
    """The texts of each layer block, top to bottom."""
    root = ElementTree.fromstring(svg)
    return [[text.text or "" for text in group.iter(f"{SVG}text")] for group in root.iter(f"{SVG}g")
            if group.get("class") == "layer"]


def test_the_lab_cnn_block_by_block():
    reports = analyze(load_spec("cnn"), (28, 28, 1), 10)
    svg = architecture_svg(reports, "cnn")
    root = ElementTree.fromstring(svg)
    assert root.tag == f"{SVG}svg" and int(root.get("width")) > 0 and int(root.get("height")) > 0
    found = blocks(svg)
    assert found[0] == ["input", "gray images", "28 × 28 × 1", ""]
    expected = [
        ["conv2d", "Conv2D · 64 filters 3×3, relu", "26 × 26 × 64", "640 params"],
        ["max_pooling2d", "MaxPooling2D · pool 2×2", "13 × 13 × 64", "no parameters"],
        ["conv2d_1", "Conv2D · 64 filters 3×3, relu", "11 × 11 × 64", "36,928 params"],
        ["max_pooling2d_1", "MaxPooling2D · pool 2×2", "5 × 5 × 64", "no parameters"],
        ["flatten", "Flatten", "1600", "no parameters"],
        ["dense", "Dense · 128 units, relu", "128", "204,928 params"],
        ["dense_1", "Dense · 10 units, softmax", "10", "1,290 params"],
    ]
    assert found[1:] == expected
    assert "total: 243,786 parameters" in svg


def test_every_block_shows_what_shapes_analyze_computes():
    spec = load_spec("conv8x3s2same,bn,avgpool3s2,dropout0.25,conv4x5valid-tanh,gap,dense")
    reports = analyze(spec, (32, 32, 3), 7)
    found = blocks(architecture_svg(reports, "odd"))
    assert found[0][1] == "RGB images"
    assert len(found) == 1 + len(reports)
    for block, report in zip(found[1:], reports):
        assert block[0] == report.name
        assert block[2] == " × ".join(str(size) for size in report.output_shape)  # Keras's order, (H, W, C)
        assert block[3] == (f"{report.params:,} params" if report.params else "no parameters")
    assert found[1][1] == "Conv2D · 8 filters 3×3, strides 2×2, same, relu"
    assert found[3][1] == "AveragePooling2D · pool 3×3, strides 2×2"
    assert found[4][1] == "Dropout · rate 0.25"
    assert found[5][1] == "Conv2D · 4 filters 5×5, tanh"


def test_names_are_escaped():
    svg = architecture_svg(analyze(load_spec("dnn"), (28, 28, 1), 10), "a<b & c>")
    ElementTree.fromstring(svg)  # still well-formed XML
    assert "a&lt;b &amp; c&gt;" in svg


def test_layer_settings_of_a_bare_layer():
    assert layer_settings(load_spec("flatten,dense").layers[0]) == ""


def test_summary_writes_the_diagram_and_keeps_json_on_stdout(tmp_path, capsys):
    out = tmp_path / "deep" / "cnn.svg"
    assert cli.main(["summary", "cnn", "--format", "json", "--diagram", str(out)]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["name"] == "cnn"  # the message went to stderr
    assert f"diagram: wrote {out}" in captured.err
    assert blocks(out.read_text())[1][2] == "26 × 26 × 64"


@pytest.mark.parametrize("argv", [["summary", "conv64x3,pool30,flatten,dense", "--diagram", "x.svg"]])
def test_a_spec_that_does_not_fit_writes_nothing(tmp_path, capsys, argv, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli.main(argv) == 2
    assert "error" in capsys.readouterr().err
    assert not (tmp_path / "x.svg").exists()


def test_a_diagram_named_as_another_format_is_refused_before_anything_is_printed(tmp_path, capsys):
    assert cli.main(["summary", "cnn", "--diagram", str(tmp_path / "d.png")]) == 2
    captured = capsys.readouterr()
    assert "the diagram is an SVG picture; .png is not a diagram's name" in captured.err
    assert "name it d.svg" in captured.err
    assert captured.out == "" and not (tmp_path / "d.png").exists()


def test_a_diagram_named_without_a_suffix_never_replaces_that_file(tmp_path, capsys):
    # "--diagram notes" wrote the SVG over the user's file called notes
    mine = tmp_path / "notes"
    mine.write_text("my notes")
    assert cli.main(["summary", "cnn", "--diagram", str(mine)]) == 2
    captured = capsys.readouterr()
    assert "a name without a suffix is not a diagram's name" in captured.err and "name it notes.svg" in captured.err
    assert captured.out == "" and mine.read_text() == "my notes"
