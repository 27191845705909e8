"""`convolab summary`: the issue's figures, formats, the three MODEL forms, exit codes (0 ok, 2 bad input) with a
message and no traceback."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from convolab.cli import main


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["summary", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


ROW = re.compile(r"^ (\w+) \((\w+)\)\s+(\([\d, ]+\))\s+([\d,]+)\s")


def rows(text: str) -> list[list[str]]:
    """[Output Shape, Param #] of each table row: ' conv2d (Conv2D)   (26, 26, 64)   640 ...'."""
    return [[match.group(3), match.group(4)] for match in map(ROW.match, text.splitlines()) if match]


def test_summary_cnn_shows_the_labs_figures(capsys):
    code, out, err = run(capsys, "cnn")
    assert code == 0 and err == ""
    assert rows(out) == [["(26, 26, 64)", "640"], ["(13, 13, 64)", "0"], ["(11, 11, 64)", "36,928"],
                         ["(5, 5, 64)", "0"], ["(1600)", "0"], ["(128)", "204,928"], ["(10)", "1,290"]]
    assert " Total params: 243,786 (952.29 KB)" in out.splitlines()


def test_summary_dnn_shows_the_labs_figures(capsys):
    code, out, _ = run(capsys, "dnn")
    assert code == 0
    assert rows(out) == [["(784)", "0"], ["(128)", "100,480"], ["(10)", "1,290"]]
    assert " Total params: 101,770 (397.54 KB)" in out.splitlines()


def test_line_file_and_preset_give_the_same_table(capsys, tmp_path):
    path = tmp_path / "cnn.json"
    path.write_text(json.dumps({"name": "cnn", "layers": [
        {"type": "Conv2D", "filters": 64, "kernel_size": 3, "activation": "relu"}, {"type": "MaxPooling2D"},
        {"type": "Conv2D", "filters": 64, "kernel_size": 3, "activation": "relu"}, {"type": "MaxPooling2D"},
        {"type": "Flatten"}, {"type": "Dense", "units": 128, "activation": "relu"},
        {"type": "Dense", "units": 10, "activation": "softmax"}]}))
    _, preset, _ = run(capsys, "cnn")
    _, from_file, _ = run(capsys, str(path))
    _, from_line, _ = run(capsys, "conv64x3,pool2,conv64x3,pool2,flatten,dense128,dense10")
    assert preset == from_file == from_line.replace('"sequential"', '"cnn"')


def test_input_shape_classes_and_formats(capsys):
    code, out, _ = run(capsys, "cnn", "--input-shape", "32x32x3", "--classes", "5", "--format", "json")
    data = json.loads(out)
    assert code == 0 and data["input_shape"] == [32, 32, 3] and data["layers"][-1]["output_shape"] == [5]
    assert data["layers"][0]["params"] == 64 * (3 * 3 * 3 + 1)
    code, out, _ = run(capsys, "dnn", "--input-shape", "28,28", "--format", "markdown")
    assert code == 0 and out.startswith("### Model `dnn` on input (28, 28, 1)")


@pytest.mark.parametrize("argv, message", [
    (["cnnn"], "unknown model 'cnnn'"),
    (["conv64x3,pool2,conv64y3"], "layer 3 at column 16"),
    (["conv8x3,pool2,pool2,conv8x3,flatten,dense", "--input-shape", "10,10,1"], "Conv2D #4: 3×3 window on a 2×2"),
    (["conv8x3,dense"], "Dense #2: received a 3-D input"),
    (["flatten,dense5", "--classes", "10"], "ends with 5 scores"),
    (["input28x28x1,flatten,dense", "--input-shape", "32,32,3"], "written for input (28, 28, 1)"),
    (["missing.yaml"], "cannot read the model file"),
])
def test_bad_input_exits_2_with_the_message(capsys, argv, message):
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert err.startswith("convolab summary: error: ") and message in err and "  fix: " in err
    assert "Traceback" not in err


@pytest.mark.parametrize("argv", [["cnn", "--input-shape", "28,0,1"], ["cnn", "--classes", "zero"],
                                  ["cnn", "--format", "yaml"], []])
def test_bad_flags_exit_2(capsys, argv):
    with pytest.raises(SystemExit) as caught:
        main(["summary", *argv])
    assert caught.value.code == 2
    assert "Traceback" not in capsys.readouterr().err


def test_help_documents_the_grammar_and_presets(capsys):
    with pytest.raises(SystemExit) as caught:
        main(["summary", "--help"])
    out = capsys.readouterr().out
    assert caught.value.code == 0
    for text in ("conv32x5s2same-tanh", "avgpool2", "gap", "dropout0.25", "bn", "dense128", "cnn16", "cnn3conv"):
        assert text in out


def test_the_installed_command_prints_plain_text_and_exits_2_without_traceback():
    ok = subprocess.run([sys.executable, "-m", "convolab", "summary", "cnn"], capture_output=True, text=True,
                        timeout=60)
    assert ok.returncode == 0 and "Total params: 243,786" in ok.stdout and "\x1b" not in ok.stdout
    bad = subprocess.run([sys.executable, "-m", "convolab", "summary", "conv64x3,dense"], capture_output=True,
                         text=True, timeout=60)
    assert bad.returncode == 2 and "Dense #2" in bad.stderr and "Traceback" not in bad.stderr


def test_the_sweeps_names_and_a_run_directory_are_models_too(capsys, tmp_path):
    code, out, _ = run(capsys, "no-conv2")                           # a sweep exercise's name, as in `sweep`
    assert code == 0 and 'Model: "no-conv2"' in out and "max_pooling2d_1 (MaxPooling2D)" in out
    code, out, _ = run(capsys, "cnn", "--format", "html")
    assert code == 0 and out.startswith("<div>") and "<table>" in out


def test_summary_takes_a_run_directory(capsys, tmp_path):
    from train_fixtures import train_tiny_run

    if not Path("/usr/share/datasets/fashion-mnist").is_dir():   # the tiny run trains on Debian's copy
        pytest.skip("Debian's dataset-fashion-mnist is not installed")
    train_tiny_run(tmp_path / "tiny", epochs=1, train=64, test=32)
    code, out, _ = run(capsys, str(tmp_path / "tiny"))
    assert code == 0 and "Total params: 12,730" in out and "on input (28, 28, 1)" in out


def test_a_libraries_warning_is_one_line_without_python_source(monkeypatch, capsys):
    import warnings

    from convolab import cli

    def warns(args):
        warnings.warn("Glyph 12354 missing from font(s) DejaVu Sans.", UserWarning)
        return 0

    monkeypatch.setattr(cli, "COMMANDS", [(name, add, warns if name == "summary" else run)
                                          for name, add, run in cli.COMMANDS])
    python_format = warnings.formatwarning
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        # Python's own way of showing a warning (pytest records them instead): formatwarning's text on stderr
        warnings.showwarning = lambda message, category, filename, lineno, file=None, line=None: sys.stderr.write(
            warnings.formatwarning(message, category, filename, lineno, line))
        assert cli.main(["summary", "cnn"]) == 0
    assert capsys.readouterr().err == ("convolab summary: warning: Glyph 12354 missing from font(s) DejaVu Sans. "
                                       "(UserWarning)\n")
    assert warnings.formatwarning is python_format        # the library's own format again afterwards


def test_a_one_line_model_longer_than_a_file_name_is_summarized(capsys):
    # 255 bytes is the longest file name: asking "is this a run directory?" of a deep model's line must not fail
    line = "conv4x3same," * 30 + "flatten,dense"
    code, out, err = run(capsys, line)
    assert code == 0 and err == ""
    assert len(rows(out)) == 32
