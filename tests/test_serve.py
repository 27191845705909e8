"""`convolab serve`'s API through Starlette's TestClient: every page's data against the library, and every bad input."""
from __future__ import annotations

import io
import json
import os
import shutil
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("starlette")

from serve_fixtures import HOSTILE_NAME, TINY_CNN, TOKEN, client, make_runs  # noqa: E402

from convolab.activations import capture  # noqa: E402
from convolab.cli import main  # noqa: E402
from convolab import serve  # noqa: E402
from convolab.runs import load_run, read_checkpoint  # noqa: E402
from convolab.serve import PAGE_FIELDS, in_page_words  # noqa: E402


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    return make_runs(tmp_path_factory.mktemp("runs"))


@pytest.fixture(scope="module")
def api(runs):
    with client(runs) as test_client:
        yield test_client


def error_of(response, status: int) -> str:
    """The response's message, after checking its status and that it says how to fix it."""
    assert response.status_code == status, response.text
    data = response.json()
    assert data["error"] and "Traceback" not in data["error"]
    return data["error"]


def png_bytes(pixels: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


# --- the page and its guards --------------------------------------------------------------------------------------------

def test_page_and_static_files_are_served_with_a_strict_policy(api):
    page = api.get("/", headers={"X-Convolab-Token": ""})
    assert page.status_code == 200 and "<title>convolab</title>" in page.text
    policy = page.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "script-src 'self'" in policy and "connect-src 'self'" in policy
    for name in ("app.js", "style.css"):
        assert api.get(f"/static/{name}").status_code == 200


def test_the_page_loads_nothing_from_the_network():
    from convolab.serve import WEB

    for path in WEB.iterdir():
        text = path.read_text(encoding="utf-8")
        assert "http://" not in text and "https://" not in text and "//cdn" not in text, path.name
        assert "innerHTML" not in text and "insertAdjacentHTML" not in text and "document.write" not in text, path.name


@pytest.mark.parametrize("host", ["evil.example", "127.0.0.1.evil.example", "localhost.attacker.net"])
def test_a_foreign_host_header_is_refused(api, host):
    """DNS rebinding: a name that resolves to 127.0.0.1 still sends its own Host header."""
    response = api.get("/api/runs", headers={"host": host})
    assert response.status_code == 400
    assert api.get("/", headers={"host": host}).status_code == 400


def test_a_server_bound_elsewhere_accepts_only_its_own_host(runs):
    with client(runs, host="10.1.2.3") as other:
        assert other.get("/api/runs").status_code == 200
        assert other.get("/api/runs", headers={"host": "127.0.0.1:8000"}).status_code == 400


@pytest.mark.parametrize("headers", [{}, {"X-Convolab-Token": "wrong"}, {"X-Convolab-Token": TOKEN[:-1]},
                                     {"X-Convolab-Token": TOKEN + "x"}])
def test_every_api_request_needs_the_token(runs, headers):
    from starlette.testclient import TestClient

    from convolab.serve import create_app

    bare = TestClient(create_app(runs, TOKEN), base_url="http://127.0.0.1:8000")
    for method, path in (("GET", "/api/runs"), ("POST", "/api/train/start"), ("POST", "/api/train/stop"),
                         ("POST", "/api/predict?run=lab/cnn")):
        response = bare.request(method, path, headers=headers, content=b"{}")
        assert response.status_code == 403, (method, path)
        assert "token" in response.json()["error"]


# --- Runs ---------------------------------------------------------------------------------------------------------------

def test_runs_lists_every_run_below_the_folder_with_its_history_and_metrics(api, runs):
    listed = {run["id"]: run for run in api.get("/api/runs").json()["runs"]}
    assert set(listed) == {"lab/cnn", "lab/dnn", "hostile"}
    cnn = listed["lab/cnn"]
    metrics = json.loads((runs / "lab" / "cnn" / "metrics.json").read_text())
    assert cnn["spec"].endswith("conv4x3,pool2,conv4x3,flatten,dense10") and cnn["epochs"] == 2
    assert cnn["test_accuracy"] == metrics["test_accuracy"] and cnn["status"] == "finished"
    assert [row["epoch"] for row in cnn["history"]] == [1, 2]
    assert listed["hostile"]["name"] == HOSTILE_NAME      # JSON carries it as is; the page shows it as text
    detail = api.get("/api/run", params={"run": "lab/cnn"}).json()
    assert detail["per_class_accuracy"] == metrics["per_class_accuracy"]


@pytest.mark.parametrize("run", ["../lab/cnn", "lab/../../etc", "/etc", "/tmp", "lab/cnn/../../..", "lab\\cnn",
                                 "nothing", "lab", "lab/cnn/config.json", "", "lab/cnn\x00"])
def test_run_names_cannot_leave_the_runs_folder_or_name_no_run(api, run):
    message = error_of(api.get("/api/run", params={"run": run}), 404 if run else 400)
    assert "run" in message
    assert api.get("/api/maps", params={"run": run}).status_code in (400, 404)


@pytest.mark.parametrize("file, text, word", [
    ("metrics.json", "[1]", "metrics.json"),
    ("history.json", '{"x": 1}', "history.json"),
    ("history.json", '[{"epoch": 1}, 7]', "history.json"),
])
def test_a_damaged_run_is_one_row_with_its_error_not_a_failed_list(runs, tmp_path, file, text, word):
    folder = tmp_path / "runs"
    shutil.copytree(runs / "lab" / "dnn", folder / "damaged")
    shutil.copytree(runs / "lab" / "cnn", folder / "fine")
    (folder / "damaged" / file).write_text(text)
    with client(folder) as other:
        rows = {row["id"]: row for row in other.get("/api/runs").json()["runs"]}
        assert word in rows["damaged"]["error"] and "error" not in rows["fine"]
        assert word in other.get("/api/run", params={"run": "damaged"}).json()["error"]


def test_a_diverged_run_with_nan_metrics_is_listed_with_nulls(runs, tmp_path):
    folder = tmp_path / "runs"
    shutil.copytree(runs / "lab" / "dnn", folder / "diverged")
    metrics = json.loads((folder / "diverged" / "metrics.json").read_text())
    (folder / "diverged" / "metrics.json").write_text(json.dumps({**metrics, "test_loss": float("nan")}))
    with client(folder) as other:
        response = other.get("/api/runs")
        assert response.status_code == 200, response.text
        row = response.json()["runs"][0]
        assert row["test_loss"] is None and row["test_accuracy"] == metrics["test_accuracy"]


@pytest.mark.parametrize("where", ["relative", "dot", "link"])
def test_a_run_opens_whichever_way_the_runs_folder_was_named(runs, tmp_path, monkeypatch, where):
    if where == "relative":                        # `convolab serve runs`, the default
        monkeypatch.chdir(runs.parent)
        folder = Path(runs.name)
    elif where == "dot":                           # `cd runs; convolab serve .`
        monkeypatch.chdir(runs)
        folder = Path(".")
    else:                                          # a symbolic link to the folder
        folder = tmp_path / "runs-link"
        folder.symlink_to(runs, target_is_directory=True)
    with client(folder) as other:
        assert {row["id"] for row in other.get("/api/runs").json()["runs"]} == {"lab/cnn", "lab/dnn", "hostile"}
        detail = other.get("/api/run", params={"run": "lab/cnn"})
        assert detail.status_code == 200, detail.text
        assert detail.json()["id"] == "lab/cnn"


def test_a_symbolic_link_out_of_the_runs_folder_is_refused(api, runs, tmp_path):
    outside = tmp_path / "outside"
    (outside).mkdir()
    for name in ("config.json", "checkpoint.pt"):
        (outside / name).write_bytes((runs / "lab" / "cnn" / name).read_bytes())
    link = runs / "escape"
    link.symlink_to(outside, target_is_directory=True)
    try:
        assert "outside the runs folder" in error_of(api.get("/api/run", params={"run": "escape"}), 404)
        assert "escape" not in {row["id"] for row in api.get("/api/runs").json()["runs"]}   # nor listed
    finally:
        link.unlink()


# --- Explorer -------------------------------------------------------------------------------------------------------------

def test_maps_are_the_library_capture_for_the_chosen_filter(api, runs):
    data = api.get("/api/maps", params={"run": "lab/cnn", "images": "0,23,28", "filter": 2}).json()
    run = load_run(runs / "lab" / "cnn")
    images, labels = run.test_data()
    expected = capture(run.model, run.spec, images[[0, 23, 28]])
    assert [layer["index"] for layer in data["layers"]] == [0, 1, 2]
    for layer, maps in zip(data["layers"], expected.layers):
        assert layer["filter"] == 2
        np.testing.assert_allclose(np.array(layer["maps"]), maps.values[:, :, :, 2], atol=1e-4)
    assert [image["index"] for image in data["images"]] == [0, 23, 28]
    assert [image["label"] for image in data["images"]] == labels[[0, 23, 28]].tolist()
    assert np.array(data["images"][0]["pixels"]).shape == (28, 28)
    assert data["max_filter"] == 3
    other = api.get("/api/maps", params={"run": "lab/cnn", "images": "0,23,28", "filter": 3}).json()
    assert other["layers"][0]["maps"] != data["layers"][0]["maps"]


@pytest.mark.parametrize("params, word", [({"images": "-1"}, "images"), ({"images": "200"}, "images"),
                                          ({"images": "a,b"}, "integer"), ({"images": ",".join(["1"] * 65)}, "at most"),
                                          ({"filter": "x"}, "integer"), ({"filter": "-3"}, "filter"),
                                          ({"filter": "1e9"}, "integer")])
def test_maps_bad_arguments_get_a_message(api, params, word):
    assert word in error_of(api.get("/api/maps", params={"run": "lab/cnn", **params}), 400)


def test_a_filter_beyond_a_layer_is_clamped_to_its_last(api):
    data = api.get("/api/maps", params={"run": "lab/cnn", "images": "0", "filter": 9}).json()
    assert {layer["filter"] for layer in data["layers"]} == {3}


def test_images_by_class_and_misclassified(api):
    by_class = api.get("/api/images", params={"run": "lab/cnn", "by": "class", "class": 7, "limit": 5}).json()
    assert by_class["images"] and {image["label"] for image in by_class["images"]} == {"Sneaker"}
    wrong = api.get("/api/images", params={"run": "lab/cnn", "by": "misclassified", "limit": 50}).json()["images"]
    assert wrong and not any(image["correct"] for image in wrong)
    assert "by" in error_of(api.get("/api/images", params={"run": "lab/cnn", "by": "random"}), 400)
    assert "class" in error_of(api.get("/api/images", params={"run": "lab/cnn", "by": "class", "class": 10}), 400)


def test_origin_of_a_conv_value_is_its_window_times_weights_plus_bias(api):
    data = api.get("/api/maps", params={"run": "lab/cnn", "images": "23", "filter": 1}).json()
    conv_map = np.array(data["layers"][0]["maps"][0])
    row, column = np.unravel_index(int(conv_map.argmax()), conv_map.shape)
    origin = api.get("/api/origin", params={"run": "lab/cnn", "image": 23, "layer": 0, "filter": 1, "row": int(row),
                                            "column": int(column)}).json()
    window, weights = np.array(origin["window"]), np.array(origin["weights"])
    assert window.shape == weights.shape == (3, 3, 1) and (origin["top"], origin["left"]) == (row, column)
    assert origin["sum"] == pytest.approx(float((window * weights).sum()), abs=1e-5)
    assert origin["pre_activation"] == pytest.approx(origin["sum"] + origin["bias"])
    assert origin["activation"] == "relu"
    assert origin["value"] == pytest.approx(max(origin["pre_activation"], 0.0), abs=1e-5)
    assert origin["value"] == pytest.approx(conv_map[row, column], abs=1e-4)


def test_origin_of_a_pooled_value_is_the_max_of_its_window(api):
    data = api.get("/api/maps", params={"run": "lab/cnn", "images": "0", "filter": 0}).json()
    origin = api.get("/api/origin", params={"run": "lab/cnn", "image": 0, "layer": 1, "filter": 0, "row": 6,
                                            "column": 4}).json()
    assert origin["kind"] == "MaxPooling2D" and (origin["top"], origin["left"]) == (12, 8)
    assert origin["max"] == origin["value"] == pytest.approx(data["layers"][1]["maps"][0][6][4], abs=1e-4)
    assert np.array(origin["window"]).shape == (2, 2)
    below = np.array(data["layers"][0]["maps"][0])
    assert origin["max"] == pytest.approx(below[12:14, 8:10].max(), abs=1e-4)


@pytest.mark.parametrize("params, word", [({"layer": 3}, "Flatten"), ({"layer": 99}, "layer"),
                                          ({"row": 26}, "outside"), ({"filter": 4}, "filter"), ({"image": 200}, "image"),
                                          ({"row": None}, "row is missing")])
def test_origin_bad_arguments_get_a_message(api, params, word):
    query = {"run": "lab/cnn", "image": 0, "layer": 0, "filter": 0, "row": 1, "column": 1, **params}
    assert word in error_of(api.get("/api/origin", params={k: v for k, v in query.items() if v is not None}), 400)


def test_all_filters_of_a_layer_with_their_activity(api):
    data = api.get("/api/filters", params={"run": "lab/cnn", "image": 0, "layer": 2}).json()
    maps = np.array(data["maps"])
    assert maps.shape == (4, 11, 11)
    np.testing.assert_allclose(data["activity"], maps.reshape(4, -1).var(axis=1), rtol=1e-2, atol=1e-4)
    assert "Flatten" in error_of(api.get("/api/filters", params={"run": "lab/cnn", "layer": 3}), 400)


# --- Model, Evaluation ----------------------------------------------------------------------------------------------------

def test_model_has_the_explained_summary_and_the_diagram(api):
    data = api.get("/api/model", params={"run": "lab/cnn"}).json()
    layers = data["summary"]["layers"]
    assert [layer["type"] for layer in layers] == ["Conv2D", "MaxPooling2D", "Conv2D", "Flatten", "Dense"]
    assert layers[0]["params"] == 40 and layers[0]["explained"]
    assert layers[2]["receptive_field"]["size"] == [8, 8]
    assert data["svg"].startswith("<svg") and data["svg"].count('class="layer"') == 6
    assert any(line.startswith("Total params") for line in data["totals_text"])


def test_evaluation_matches_the_runs_metrics_and_pairs_open_their_images(api, runs):
    data = api.get("/api/evaluation", params={"run": "lab/cnn"}).json()
    metrics = json.loads((runs / "lab" / "cnn" / "metrics.json").read_text())
    assert data["confusion_matrix"] == metrics["confusion_matrix"]
    assert data["test_accuracy"] == pytest.approx(metrics["test_accuracy"])
    assert len(data["top_losses"]) == 12 and np.array(data["top_losses"][0]["pixels"]).shape == (28, 28)
    true, predicted = next((t, p) for t, row in enumerate(data["confusion_matrix"]) for p, count in enumerate(row)
                           if t != p and count)
    pair = api.get("/api/pair", params={"run": "lab/cnn", "true": true, "predicted": predicted}).json()
    assert pair["count"] == data["confusion_matrix"][true][predicted]
    names = data["class_names"]
    assert all(image["label"] == names[true] and image["predicted"] == names[predicted] for image in pair["images"])
    assert "true" in error_of(api.get("/api/pair", params={"run": "lab/cnn", "true": 10, "predicted": 0}), 400)


# --- Draw or upload -------------------------------------------------------------------------------------------------------

def test_a_drawn_image_gets_its_input_top_three_and_maps(api, runs):
    run = load_run(runs / "lab" / "cnn")
    images, _ = run.test_data()
    response = api.post("/api/predict", params={"run": "lab/cnn", "filter": 1}, content=png_bytes(images[23, 0].numpy()),
                        headers={"Content-Type": "image/png"})
    data = response.json()
    assert np.array_equal(np.array(data["input"]), images[23, 0].numpy())
    with torch.no_grad():
        expected = torch.softmax(run.model(images[23:24].float() / 255), dim=1)[0]
    assert data["top"][0]["probability"] == pytest.approx(float(expected.max()), abs=1e-5)
    assert len(data["top"]) == 3 and [len(layer["maps"]) for layer in data["layers"]] == [1, 1, 1]


def bomb_png(width: int, height: int) -> bytes:
    """A valid PNG header claiming width×height pixels, with a tiny (incomplete) body: decoding it would need GBs."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 1000)) + chunk(b"IEND", b"")


@pytest.mark.parametrize("body, status, word", [
    (b"", 400, "no image"),
    (b"this is not an image", 400, "cannot read as an image"),
    (b"this is not an image", 400, "cannot identify image file the upload"),   # not Pillow's <_io.BytesIO ...>
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, 400, "cannot read as an image"),
    (b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>", 400, "cannot read as an image"),
    (bomb_png(100_000, 100_000), 400, "the limit is 40 megapixels"),   # Pillow's own guard, the server's limit
    (bomb_png(30_000, 30_000), 400, "pixels"),
    (bomb_png(7_000, 7_000), 400, "7000x7000 pixels is too large"),   # under Pillow's guard, over the server's 40 MP
    (b"\xff\xd8\xff" + b"\x00" * (9 * 1024 * 1024), 413, "MB"),
])
def test_bad_uploads_get_a_message_not_a_crash(api, body, status, word):
    response = api.post("/api/predict", params={"run": "lab/cnn"}, content=body)
    assert word in error_of(response, status)


def test_a_truncated_photo_and_a_bad_invert_get_a_message(api):
    whole = png_bytes((np.arange(64 * 64).reshape(64, 64) % 255).astype(np.uint8))
    assert "cannot read" in error_of(api.post("/api/predict", params={"run": "lab/cnn"}, content=whole[:-30]), 400)
    assert "invert" in error_of(api.post("/api/predict", params={"run": "lab/cnn", "invert": "maybe"}, content=whole), 400)
    rgb = png_bytes(np.zeros((300, 200, 3), dtype=np.uint8) + 255)   # a white photo: inverted to black, still fine
    assert api.post("/api/predict", params={"run": "lab/cnn"}, content=rgb).status_code == 200


# --- Train live -----------------------------------------------------------------------------------------------------------

GOOD_FORM = {"model": TINY_CNN, "name": "live", "epochs": 2, "batch_size": 32, "learning_rate": 0.001,
             "train_limit": 256, "images": "0,1", "filter": 1}


@pytest.mark.parametrize("change, status, word", [
    ({"name": "../escape"}, 400, "run name"),
    ({"name": "a/b"}, 400, "run name"),
    ({"name": ""}, 400, "run name"),
    ({"name": "lab"}, 400, "run name"),    # placeholder; replaced below by an existing run
    ({"model": "/etc/passwd"}, 400, "looks like a file"),
    ({"model": "../runs/spec.yaml"}, 400, "looks like a file"),
    ({"model": "conv64x3,pool2,conv64x3,pool2,conv64x3,pool2,conv64x3,flatten,dense"}, 400, "layer"),
    ({"model": "conv"}, 400, "conv"),
    ({"model": ""}, 400, "model is missing"),
    ({"epochs": 0}, 400, "epochs"),
    ({"epochs": "five"}, 400, "epochs"),
    ({"batch_size": -1}, 400, "batch_size"),
    ({"learning_rate": "fast"}, 400, "learning_rate"),
    ({"learning_rate": "nan"}, 400, "learning_rate"),
    ({"learning_rate": -0.1}, 400, "learning_rate"),
    ({"stop_at": "accuracy>"}, 400, '"stop at" expects METRIC>=VALUE'),     # the form's label, not the flag --stop-at
    ({"stop_at": "val_accuracy>=0.9"}, 400, "val_accuracy"),
    ({"train_limit": 0}, 400, "train_limit"),
    ({"images": "0,99999"}, 400, "images"),
    ({"images": [0, 99999]}, 400, "images=99999"),          # a JSON list is read as the list it is
])
def test_bad_training_forms_get_a_message_and_start_nothing(api, runs, change, status, word):
    form = {**GOOD_FORM, **change}
    if change == {"name": "lab"}:
        form["name"] = "hostile"        # a run of that name exists
        status, word = 409, "already exists"
    message = error_of(api.post("/api/train/start", json=form), status)
    assert word in message
    assert api.get("/api/train").json()["state"] == "idle"
    assert not (runs / "live").exists()


@pytest.mark.parametrize("name", ["secret.txt", "model.keras", "model.h5"])
def test_the_form_never_reads_a_file_named_without_a_folder(api, runs, tmp_path, monkeypatch, name):
    # load_spec reads a bare file name from the server's working directory: its content showed in the message
    monkeypatch.chdir(tmp_path)
    (tmp_path / name).write_text("secret: [1, 2, 3]\n")
    message = error_of(api.post("/api/train/start", json={**GOOD_FORM, "model": name}), 400)
    assert "looks like a file" in message and "secret" not in message.replace("secret.txt", "")
    assert api.get("/api/train").json()["state"] == "idle"
    assert not (runs / "live").exists()


def test_a_model_that_is_no_text_is_named_as_such(api):
    assert "a JSON int" in error_of(api.post("/api/train/start", json={**GOOD_FORM, "model": 5}), 400)


@pytest.mark.parametrize("text, page_words", [
    ("use --batch-size 32, say", 'set "batch size" to 32, say'),
    ("use --validation-split 0.1, say (0 for none)", 'set "validation split" to 0.1, say (0 for none)'),
    ("(val_ metrics need a validation set: add --validation-split 0.1)",
     '(val_ metrics need a validation set: set "validation split" to 0.1)'),
    ("lower --learning-rate (e.g. 0.001), or check the data", 'lower "learning rate" (e.g. 0.001), or check the data'),
    ("a larger --train-limit or a smaller --validation-split", 'a larger "training images" or a smaller "validation split"'),
    ("--stop-at expects a number after >=", '"stop at" expects a number after >='),
    ("use --epochs 5", 'set "epochs" to 5'),
    ("use --epochs 5, say (epochs=5 in Python)", 'set "epochs" to 5, say'),   # the Python argument is left out
    ("lower --learning-rate, e.g. 0.001 (learning_rate=0.001 in Python), or check the data",
     'lower "learning rate", e.g. 0.001, or check the data'),
    ("use one of: loss; val_ metrics need a validation set: add --validation-split 0.1 (validation_split=0.1 in Python)",
     'use one of: loss; val_ metrics need a validation set: set "validation split" to 0.1'),
    # flags the form has no field for are the server's own settings, and flag-like words are left alone
    ("use --device cpu or auto", "use --device cpu or auto"),
    ("restart convolab serve with --data fashion", "restart convolab serve with --data fashion"),
    ("--epochs-per-save 3", "--epochs-per-save 3"),
])
def test_library_messages_name_the_training_forms_fields(text, page_words):
    assert in_page_words(text) == page_words


def test_the_form_says_which_of_its_fields_to_change(api, runs):
    response = api.post("/api/train/start", json={**GOOD_FORM, "stop_at": "val_accuracy>=0.9"})
    assert "val_accuracy" in error_of(response, 400)
    assert 'set "validation split" to 0.1' in response.json()["fix"] and "--" not in response.json()["fix"]
    response = api.post("/api/train/start", json={**GOOD_FORM, "validation_split": 1.5})
    assert "validation_split=1.5" in error_of(response, 400)
    assert response.json()["fix"] == 'set "validation split" to 0.1, say, or 0 for none'
    assert api.get("/api/train").json()["state"] == "idle"


def test_the_training_form_has_a_field_for_each_label_its_messages_name():
    page = (Path(serve.__file__).with_name("web") / "index.html").read_text(encoding="utf-8")
    for label in PAGE_FIELDS.values():
        assert f"<label>{label} <" in page


def test_training_bodies_that_are_not_forms_get_a_message(api):
    assert "JSON" in error_of(api.post("/api/train/start", content=b"{not json"), 400)
    assert "JSON" in error_of(api.post("/api/train/start", content=b"[" * 200_000), 400)      # deeper than the stack
    for route, field in (("/api/train/start", "model"), ("/api/train/resume", "run")):   # a lone surrogate escape
        assert "Unicode" in error_of(api.post(route, content=b'{"name": "ok1", "%s": "cnn\\ud800"}' % field.encode()), 400)
    assert "JSON object" in error_of(api.post("/api/train/start", json=[1, 2]), 400)
    assert "no training" in error_of(api.post("/api/train/stop"), 400)
    assert "run" in error_of(api.post("/api/train/resume", json={"run": "../x"}), 404)
    assert "nothing to resume" in error_of(api.post("/api/train/resume", json={"run": "lab/cnn"}), 409)


def test_a_new_run_named_like_a_link_out_of_the_runs_folder_is_refused(runs, tmp_path):
    folder, outside = tmp_path / "runs", tmp_path / "outside"
    folder.mkdir()
    outside.mkdir()
    (folder / "esc").symlink_to(outside, target_is_directory=True)
    with client(folder) as other:
        message = error_of(other.post("/api/train/start", json={**GOOD_FORM, "name": "esc"}), 409)
        assert "is a link to another folder" in message
        assert other.get("/api/train").json()["state"] == "idle"
    assert list(outside.iterdir()) == []


def test_a_run_its_stop_at_goal_ended_is_not_resumed_for_more_epochs(runs, tmp_path):
    folder = tmp_path / "runs"
    shutil.copytree(runs / "lab" / "dnn", folder / "stopped")
    checkpoint = torch.load(folder / "stopped" / "checkpoint.pt", weights_only=False)
    torch.save({**checkpoint, "status": "stopped"}, folder / "stopped" / "checkpoint.pt")
    with client(folder) as other:
        response = other.post("/api/train/resume", json={"run": "stopped", "epochs": 100})
        assert "it stopped after epoch 1" in error_of(response, 409)
        assert response.json()["fix"] == "start a new run from the Train page"


def wait_for(api, predicate, seconds: float = 120.0) -> dict:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        status = api.get("/api/train").json()
        if predicate(status):
            return status
        time.sleep(0.3)
    raise AssertionError(f"training did not get there in {seconds} s: {status}")


def test_a_training_started_from_the_page_streams_stops_resumes_and_finishes(runs, tmp_path):
    """One real spawned training: points arrive, Stop leaves a resumable checkpoint, Resume finishes the run."""
    with client(runs) as api:
        form = {**GOOD_FORM, "name": "live-stop", "epochs": 40, "train_limit": 640, "batch_size": 16}
        started = api.post("/api/train/start", json=form)
        assert started.status_code == 200, started.text
        assert "already running" in error_of(api.post("/api/train/start", json={**form, "name": "second"}), 409)
        first = wait_for(api, lambda status: status["total_points"] >= 30 and status["maps_step"] is not None)
        assert all(len(point) == 3 and np.isfinite(point[1]) for point in first["points"])
        assert [point[0] for point in first["points"]] == list(range(1, len(first["points"]) + 1))
        assert api.post("/api/train/stop").status_code == 200
        stopped = wait_for(api, lambda status: status["state"] not in ("running", "starting"))
        assert stopped["state"] == "interrupted", stopped
        checkpoint = read_checkpoint(runs / "live-stop" / "checkpoint.pt")
        assert checkpoint["status"] == "interrupted"
        maps = api.get("/api/train/maps").json()["maps"]
        assert maps["images"] == [0, 1] and np.array(maps["layers"][0]["maps"]).shape == (2, 26, 26)
        listed = {run["id"]: run for run in api.get("/api/runs").json()["runs"]}
        assert listed["live-stop"]["status"] == "interrupted"

        resumed = api.post("/api/train/resume", json={"run": "live-stop", "epochs": checkpoint["epoch"] + 1})
        assert resumed.status_code == 200, resumed.text
        done = wait_for(api, lambda status: status["state"] not in ("running", "starting"))
        assert done["state"] == "finished", done
        assert read_checkpoint(runs / "live-stop" / "checkpoint.pt")["status"] == "finished"
        assert (runs / "live-stop" / "metrics.json").is_file()


# --- the command ----------------------------------------------------------------------------------------------------------

def test_serve_without_the_extra_says_how_to_install(monkeypatch, capsys, tmp_path):
    import sys

    monkeypatch.setitem(sys.modules, "uvicorn", None)   # import uvicorn now raises ImportError
    assert main(["serve", str(tmp_path)]) == 2
    assert "pip install 'convolab[serve]'" in capsys.readouterr().err


@pytest.mark.parametrize("argv, word", [(["serve", "/nonexistent/runs"], "no such folder"),
                                        (["serve", "{tmp}/file"], "a file, not a folder of runs"),
                                        (["serve", "{tmp}", "--data", "bogusds"], "unknown dataset 'bogusds'"),
                                        (["serve", "{tmp}", "--port", "70000"], "--port")])
def test_serve_bad_arguments_exit_2(capsys, tmp_path, argv, word):
    (tmp_path / "file").write_text("not a folder")
    assert main([part.replace("{tmp}", str(tmp_path)) for part in argv]) == 2
    assert word in capsys.readouterr().err


def test_a_port_in_use_is_a_clear_error(tmp_path):
    from convolab.errors import ConvolabError
    from convolab.serve import bind

    taken = bind("127.0.0.1", 0)
    try:
        with pytest.raises(ConvolabError, match="another --port"):
            bind("127.0.0.1", taken.getsockname()[1])
    finally:
        taken.close()
    for host in ("999.1.1.1", "192.0.2.1"):      # not an address at all; an address of no interface here (TEST-NET-1)
        with pytest.raises(ConvolabError, match="give --host an address of this machine") as caught:
            bind(host, 0)
        assert "--port" not in caught.value.fix


def test_start_up_prints_the_url_with_a_token_and_warns_off_loopback(monkeypatch, capsys, tmp_path):
    import uvicorn

    from convolab import serve

    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets=None: [sock.close() for sock in sockets])
    serve.serve(tmp_path, host="127.0.0.1", port=0)
    out = capsys.readouterr().out
    assert "http://127.0.0.1:" in out and "/?token=" in out and "warning" not in out
    serve.serve(tmp_path, host="0.0.0.0", port=0)
    assert "warning: listening on 0.0.0.0" in capsys.readouterr().out


