"""The sweep: its presets are the lab's exercises exactly, --vary changes only what it names, and a tiny sweep runs."""
from __future__ import annotations

import json

import pytest

from convolab import cli
from convolab.errors import SpecError
from convolab.runs import read_json
from convolab.spec import (AveragePooling2D, Conv2D, Dense, Dropout, Flatten, MaxPooling2D, ModelSpec, load_spec)
from convolab.sweep import (EXERCISES, GROUPS, exercise_specs, expand_presets, parse_vary, run_sweep, varied_specs)
from convolab.train import TrainConfig, make_progress
from see_fixtures import fashion, selection


def lab_cnn(*blocks) -> tuple:
    """The lab's Keras layers: the given conv/pool blocks, then Flatten, Dense(128, relu), Dense(classes, softmax)."""
    return tuple(blocks) + (Flatten(), Dense(128, activation="relu"), Dense(None, activation="softmax"))


def conv(filters: int) -> Conv2D:
    return Conv2D(filters, (3, 3), activation="relu")


# Each exercise written out as the lab's Keras code would write it.
DEFINITIONS = {
    "cnn16": lab_cnn(conv(16), MaxPooling2D(2, 2), conv(16), MaxPooling2D(2, 2)),
    "cnn32": lab_cnn(conv(32), MaxPooling2D(2, 2), conv(32), MaxPooling2D(2, 2)),
    "cnn64": lab_cnn(conv(64), MaxPooling2D(2, 2), conv(64), MaxPooling2D(2, 2)),
    "no-conv2": lab_cnn(conv(64), MaxPooling2D(2, 2), MaxPooling2D(2, 2)),
    "cnn3conv": lab_cnn(conv(64), MaxPooling2D(2, 2), conv(64), MaxPooling2D(2, 2), conv(64)),
    "cnn1conv": lab_cnn(conv(64), MaxPooling2D(2, 2)),
    "dnn": (Flatten(), Dense(128, activation="relu"), Dense(None, activation="softmax")),
}


def test_every_exercise_equals_its_definition():
    assert list(EXERCISES) == list(DEFINITIONS)
    for name, spec in exercise_specs(["exercises"]):
        assert spec.layers == DEFINITIONS[name], name
        assert spec.name == name


def test_the_exercise_that_only_grows_filters_is_the_lab_cnn():
    assert exercise_specs(["cnn64"])[0][1].layers == load_spec("cnn").layers


def test_groups_expand_in_order_without_repeats():
    assert expand_presets([]) == list(EXERCISES)
    assert expand_presets(["filters"]) == ["cnn16", "cnn32", "cnn64"]
    assert expand_presets(["filters", "depth", "dnn"]) == ["cnn16", "cnn32", "cnn64", "cnn1conv", "no-conv2",
                                                          "cnn3conv", "dnn"]
    assert set(GROUPS["exercises"]) == set(EXERCISES)


def test_an_unknown_preset_names_the_nearest():
    with pytest.raises(SpecError) as raised:
        expand_presets(["filter"])
    assert "unknown sweep preset 'filter'" in raised.value.message and "did you mean 'filters'?" in raised.value.fix


def test_vary_filters_changes_every_conv_and_nothing_else():
    spec = load_spec("cnn")
    variants = varied_specs(spec, "filters=16,8", base_name="cnn")
    assert [name for name, _spec in variants] == ["cnn-filters16", "cnn-filters8"]
    for (_name, variant), filters in zip(variants, (16, 8)):
        for original, changed in zip(spec.layers, variant.layers):
            if isinstance(original, Conv2D):
                assert changed == Conv2D(filters, (3, 3), activation="relu")
            else:
                assert changed == original


def test_vary_units_spares_the_output_layer_and_pool_strides_follow_the_size():
    spec = load_spec("conv8x3,pool2,flatten,dense64,dropout0.5,dense32,dense")
    _name, wider = varied_specs(spec, "units=100", "m")[0]
    assert [layer.units for layer in wider.layers if isinstance(layer, Dense)] == [100, 100, None]
    _name, pooled = varied_specs(spec, "pool_size=3", "m")[0]
    assert pooled.layers[1] == MaxPooling2D((3, 3))  # strides 3, Keras's default, not the old 2
    _name, dropped = varied_specs(spec, "rate=0.25", "m")[0]
    assert dropped.layers[4] == Dropout(0.25)
    _name, tanh = varied_specs(spec, "activation=tanh", "m")[0]
    assert [layer.activation for layer in tanh.layers if hasattr(layer, "activation")] == \
        ["tanh", "tanh", "tanh", "softmax"]
    _name, average = varied_specs(load_spec("conv4x3,avgpool2,flatten,dense"), "pool_size=2", "m")[0]
    assert average.layers[1] == AveragePooling2D((2, 2))


@pytest.mark.parametrize("model, vary, message", [
    ("cnn", "depth=3", "expected KEY=V1,V2,... with KEY one of filters"),
    ("cnn", "filters=16,x", "'x' is not a valid filters"),
    ("cnn", "filters=16,16", "expected distinct values"),
    ("cnn", "filters=0", "expected filters to be a positive integer, received: filters=0"),
    ("dnn", "filters=16,32", "has no Conv2D layer whose filters could vary"),
])
def test_bad_vary_is_refused(model, vary, message):
    with pytest.raises(SpecError) as raised:
        varied_specs(load_spec(model), vary)
    assert message in str(raised.value)


def test_parse_vary_types():
    assert parse_vary("kernel-size=3,5") == ("kernel_size", [3, 5])
    assert parse_vary("rate=0.1,0.5") == ("rate", [0.1, 0.5])


def test_a_tiny_sweep_trains_compares_and_draws(tmp_path):
    """Two variants, the same --stop-at for both: every run stops at it, pictures and both charts are written."""
    variants = varied_specs(load_spec("conv2x3,pool2,flatten,dense"), "filters=2,3", "tiny")
    config = TrainConfig(epochs=3, batch_size=64, validation_split=0.25, seed=0, device="cpu")
    result = run_sweep(variants, fashion(), config, tmp_path, selection=selection(200), stop_at="accuracy>=0.0",
                       progress=make_progress("quiet"))
    rows = result.comparison.rows
    assert [row.name for row in rows] == ["tiny-filters2", "tiny-filters3"]
    for row in rows:
        assert row.epochs == 1 and row.epochs_to_target == 1  # the target applied to every run
        run_dir = tmp_path / row.name
        assert read_json(run_dir / "config.json")["callbacks"]["stop_at"] == "accuracy>=0.0"
        assert (run_dir / "curves.png").is_file() and (run_dir / "confusion.png").is_file()
        assert read_json(run_dir / "metrics.json")["test_accuracy"] == row.test_accuracy
    for chart in (result.overlay, result.chart):
        assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert {result.overlay.name, result.chart.name} == {"sweep-overlay.png", "sweep-accuracy-time.png"}
    # A second sweep with the same settings reuses the finished runs instead of training again.
    again = run_sweep(variants, fashion(), config, tmp_path, selection=selection(200), stop_at="accuracy>=0.0",
                      progress=make_progress("quiet"))
    assert [row.reused for row in again.comparison.rows] == [True, True]


def test_sweep_command_on_a_small_budget(tmp_path, capsys):
    out = tmp_path / "sweep"
    code = cli.main(["sweep", "--spec", "conv2x3,pool2,flatten,dense", "--vary", "filters=2,3", "--epochs", "1",
                     "--train-limit", "200", "--test-limit", "40", "--offline", "--quiet", "--out", str(out),
                     "--report"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "model-filters2" in captured.out and "model-filters3" in captured.out
    for name in ("sweep-overlay.png", "sweep-accuracy-time.png", "report.html"):
        assert (out / name).is_file(), name
    assert json.loads((out / "model-filters3" / "config.json").read_text())["train"]["validation_split"] == 0.0   # as train and lab


@pytest.mark.parametrize("argv, message", [
    (["sweep", "--vary", "filters=2,3"], "--spec and --vary go together"),
    (["sweep", "cnn16", "--spec", "cnn", "--vary", "filters=2"], "give either presets (cnn16) or --spec/--vary"),
    (["sweep", "cnn99"], "unknown sweep preset 'cnn99'"),
    (["sweep", "--spec", "dnn", "--vary", "filters=2"], "has no Conv2D layer"),
])
def test_sweep_command_refuses_bad_input_before_training(argv, message, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_user_spec_names_are_kept():
    spec = ModelSpec(load_spec("conv4x3,flatten,dense").layers, name="mine")
    assert [name for name, _ in varied_specs(spec, "kernel_size=3,5", spec.name)] == ["mine-kernelsize3",
                                                                                      "mine-kernelsize5"]
