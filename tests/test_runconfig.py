"""RunConfig: config.json as a typed record. An old run directory (a committed fixture written before the record had a
version) still loads; the round trip keeps every field; a damaged file is refused naming the field, never a KeyError."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from convolab.cli import main
from convolab.errors import RunError
from convolab.model import build_model
from convolab.runconfig import CONFIG_VERSION, RunConfig
from convolab.runs import RunDirectory, load_run

# Written by `convolab train flatten,dense16-relu,dense --epochs 1 --train-limit 320 --test-limit 100 --offline
# --engine reference --threads 1` before config.json carried a version: config, history and metrics, no weights.
OLD_RUN = Path(__file__).parent / "fixtures" / "run_v1_tiny"


def old_run_with_weights(tmp_path: Path) -> Path:
    """The fixture copied, with a checkpoint of freshly built weights (no weights are committed)."""
    run_dir = Path(shutil.copytree(OLD_RUN, tmp_path / "tiny"))
    config = RunDirectory(run_dir).read_config()
    model = build_model(config.spec, config.dataset.input_shape, len(config.dataset.class_names))
    history = json.loads((run_dir / "history.json").read_text())
    RunDirectory(run_dir).save_checkpoint({"model": model.state_dict(), "epoch": 1, "step": 0, "history": history,
                                           "status": "finished"})
    return run_dir


def test_an_old_run_config_reads_as_version_1_with_every_field():
    raw = json.loads((OLD_RUN / "config.json").read_text())
    assert "version" not in raw
    config = RunConfig.from_json(raw, OLD_RUN / "config.json")
    assert config.name == "tiny" and config.spec.to_line() == raw["spec_line"]
    assert config.dataset.name == "fashion-mnist" and config.dataset.input_shape == (28, 28, 1)
    assert config.dataset.class_names[9] == "Ankle boot" and config.dataset.sizes["train_size"] == 320
    assert config.dataset.selection.train_limit == 320 and config.dataset.selection.test_limit == 100
    assert config.dataset.selection.options["offline"] is True
    assert config.train.epochs == 1 and config.train.threads == "1" and config.train.engine == "reference"
    assert (config.stop_at, config.early_stopping) == (None, None)


def test_the_json_round_trip_keeps_everything_and_adds_the_version():
    raw = json.loads((OLD_RUN / "config.json").read_text())
    config = RunConfig.from_json(raw)
    written = config.to_json()
    assert written["version"] == CONFIG_VERSION
    # Settings TrainConfig gained after the fixture was written come back at their defaults (old runs train as before)
    added = {key: value for key, value in written["train"].items() if key not in raw["train"]}
    assert added == {"precision": "auto", "test_time_flip": False}
    written["train"] = {key: value for key, value in written["train"].items() if key not in added}
    assert {key: value for key, value in written.items() if key not in ("format", "version")} == raw
    assert RunConfig.from_json(json.loads(json.dumps(written))) == config


def test_a_tuple_option_comes_back_a_tuple():
    raw = json.loads((OLD_RUN / "config.json").read_text())
    raw["dataset"]["options"]["image_size"] = [32, 32]
    config = RunConfig.from_json(raw)
    assert config.dataset.selection.options["image_size"] == (32, 32)
    assert config.dataset.load_options(data_dir="/elsewhere")["data_dir"] == "/elsewhere"


@pytest.mark.usefixtures("needs_fashion")
def test_an_old_run_directory_loads_and_hands_out_its_spec_config_and_test_data(tmp_path):
    run_dir = old_run_with_weights(tmp_path)
    run = load_run(run_dir)
    assert run.name == "tiny" and run.input_shape == (28, 28, 1) and run.class_names[0] == "T-shirt/top"
    assert RunDirectory(run_dir).spec().to_line() == run.spec.to_line()
    images, labels = run.test_data()
    assert images.shape == (100, 1, 28, 28) and labels[:5].tolist() == [9, 2, 1, 1, 6]   # Fashion-MNIST's first tests
    assert main(["evaluate", str(run_dir), "--offline", "--json"]) == 0


@pytest.fixture
def needs_fashion():
    if not Path("/usr/share/datasets/fashion-mnist").is_dir():
        pytest.skip("Debian's dataset-fashion-mnist is not installed")


@pytest.mark.parametrize("damage, message", [
    (lambda raw: [raw], "config.json: the file is a JSON list; expected a JSON object"),
    (lambda raw: {**raw, "dataset": "fashion-mnist"}, "dataset is a string; expected a JSON object"),
    (lambda raw: {key: value for key, value in raw.items() if key != "train"}, "lacks train"),
    (lambda raw: {**raw, "train": {**raw["train"], "epochs": 0}}, "train: epochs=0; expected a positive integer"),
    (lambda raw: {**raw, "train": {**raw["train"], "warmup": 3}}, "settings this convolab does not know: warmup"),
    (lambda raw: {**raw, "dataset": {**raw["dataset"], "input_shape": [28, 28]}}, "dataset.input_shape [28, 28]"),
    (lambda raw: {**raw, "version": CONFIG_VERSION + 1}, f"version {CONFIG_VERSION + 1}; this convolab reads up to"),
])
def test_a_damaged_config_is_refused_naming_the_field(tmp_path, capsys, damage, message):
    # Issue 9, cause 20: a config.json that was a JSON list said "lacks list indices must be integers or slices".
    run_dir = old_run_with_weights(tmp_path)
    raw = json.loads((run_dir / "config.json").read_text())
    (run_dir / "config.json").write_text(json.dumps(damage(raw)))
    with pytest.raises(RunError) as raised:
        load_run(run_dir)
    assert message in str(raised.value)
    assert main(["evaluate", str(run_dir), "--offline"]) == 2
    error = capsys.readouterr().err
    assert message in error and "fix:" in error and "internal error" not in error


def test_an_image_folder_run_records_its_files_and_its_data_record_warns_once_they_change(tmp_path, recwarn):
    from convolab.runconfig import FolderChangedWarning
    from train_fixtures import change_folder, train_folder_run

    folder, run = train_folder_run(tmp_path)
    files = json.loads((run / "config.json").read_text())["dataset"]["files"]
    assert files["count"] == 8 and len(files["sha256"]) == 64 and sorted(files["files"])[0] == "dark/0.png"
    record = load_run(run).config.dataset
    assert record.files == files                             # read back as written
    record.test_data()
    assert not [warning for warning in recwarn if warning.category is FolderChangedWarning]
    change_folder(folder, "touch")
    with pytest.warns(FolderChangedWarning, match="0 files added, 0 removed, 1 changed: light/1.png"):
        load_run(run).test_data()                             # what show, report and predict measure on


def test_a_named_datasets_run_records_no_files(tmp_path):
    from train_fixtures import train_tiny_run

    train_tiny_run(tmp_path / "run", train=64, test=32)
    assert "files" not in json.loads((tmp_path / "run" / "config.json").read_text())["dataset"]
