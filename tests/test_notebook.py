"""Notebook display: the summary, runs, evaluations and histories render as compact HTML; pictures as PNG objects
that also save; outside a kernel everything is plain text, printed once."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from convolab import Sequential, keras
from convolab.errors import RunError, WriteError
from convolab.notebook import Page, Picture, history_html, in_notebook
from convolab.spec import load_spec
from convolab.summary import Summary

from idx_fixtures import needs_debian
from train_fixtures import train_tiny_run

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_the_summary_has_an_html_form_with_each_rows_arithmetic_and_the_same_text():
    summary = Summary(load_spec("cnn"), (28, 28, 1), 10)
    bundle = summary._repr_mimebundle_()
    assert set(bundle) == {"text/plain", "text/html"}
    html = bundle["text/html"]
    assert "<table>" in html and "conv2d (Conv2D)" in html and "Total params: 243,786" in html
    assert "64 filters × (3×3×1 weights + 1 bias) = 640" in html           # the arithmetic under the row, not only the number
    assert bundle["text/plain"] == str(summary) and "Total params: 243,786" in str(summary)


def test_outside_a_notebook_summary_prints_text_once(capsys):
    assert not in_notebook()
    Sequential([keras.layers.Flatten(input_shape=(28, 28)), keras.layers.Dense(10)]).summary()
    printed = capsys.readouterr().out
    assert printed.count("Total params: 7,850") == 1 and "<table>" not in printed


def test_an_empty_model_being_built_displays_instead_of_failing():
    import convolab

    model = convolab.Sequential()                  # a notebook shows it before the first model.add(...)
    assert "no layers yet" in repr(model)
    model.add(convolab.Flatten(input_shape=(4, 4, 1)))
    assert "Flatten(input_shape=(4, 4, 1))" in repr(model)


@needs_debian
def test_a_runs_pictures_name_a_bad_argument_instead_of_failing_inside(tmp_path):
    from convolab.errors import ArgumentError, SpecError

    run = train_tiny_run(tmp_path / "cnn", spec="conv4x3,pool2,flatten,dense", epochs=1, train=128, test=64)
    for arguments in ({"images": []}, {"images": ["a"]}, {"images": "0,1"}, {"filter": 1.5}, {"layers": [0.5]}):
        with pytest.raises(ArgumentError, match=next(iter(arguments))):
            run.show(**arguments)
    with pytest.raises(SpecError, match="layer 99 does not exist"):
        run.filters(layers=[99])
    with pytest.raises(SpecError, match="layer 1 is a MaxPooling2D"):
        run.filters(layers=1)
    assert run.show(images=5, layers=["conv2d"]) is not None and run.filters(layers=[0]) is not None


def test_a_small_test_sets_grid_draws_by_default_and_takes_numpy_indices(tmp_path):
    from PIL import Image

    from convolab import Conv2D, Dense, Flatten, MaxPooling2D

    for label, name in enumerate(("dark", "light")):             # 2 x 50 images: a test set of 20
        (tmp_path / "shapes" / name).mkdir(parents=True)
        for index in range(50):
            Image.new("L", (8, 8), 40 + 150 * label + index).save(tmp_path / "shapes" / name / f"{index}.png")
    model = Sequential([Conv2D(2, 3, activation="relu"), MaxPooling2D(2), Flatten(),
                        Dense(2, activation="softmax")])
    run = model.fit(str(tmp_path / "shapes"), epochs=1, verbose=False)
    assert "test images [0], filter 1" in repr(run.show())         # was: "image index 23 is out of range"
    picked = np.where(np.arange(20) % 7 == 0)[0]                  # as np.where(predicted != labels)[0] picks images
    # Was: "images=array([0, 7, 14]); expected a list of whole numbers", and the same for filter=np.int64(1).
    assert "test images [0, 7, 14], filter 1" in repr(run.show(images=picked, filter=np.int64(1)))
    assert "test images [3]" in repr(run.show(images=np.int64(3)))


@needs_debian
def test_a_run_displays_compactly_and_its_pictures_display_and_save(tmp_path):
    run = train_tiny_run(tmp_path / "cnn", spec="conv4x3,pool2,flatten,dense", epochs=1, train=128, test=64)
    assert len(repr(run)) < 600 and "tensor(" not in repr(run) and "test loss" in repr(run)
    html = run._repr_html_()
    assert "<table>" in html and "conv4x3,pool2,flatten,dense" in html and "tensor(" not in html
    assert "tensor(" not in repr(run.evaluation) and "<table>" in run.evaluation._repr_html_()
    pictures = [run.show(images=[0, 23, 28], filter=1), run.filters(), run.curves(), run.confusion()]
    for picture in pictures:
        assert isinstance(picture, Picture) and picture._repr_png_().startswith(PNG_MAGIC)
    (tmp_path / "a-file").write_text("not a folder")
    with pytest.raises(WriteError, match="a part of the path is a file, not a directory"):
        pictures[0].save(tmp_path / "a-file" / "grid.png")
    saved = pictures[0].save(tmp_path / "pictures" / "grid.png")
    assert saved.read_bytes() == pictures[0].png
    report = run.report()
    assert isinstance(report, Page) and report._repr_html_().startswith("<iframe srcdoc=")
    assert "&lt;html" in report._repr_html_()      # the page is quoted inside the frame, its styles kept there
    assert report.save(tmp_path / "report.html").read_text().startswith("<!DOCTYPE html>")


@needs_debian
def test_a_run_in_memory_says_why_it_has_no_report():
    run = train_tiny_run(None, epochs=1, train=64, test=32)
    with pytest.raises(RunError, match="out="):
        run.report()


def test_a_keras_history_is_a_small_table():
    history = keras.callbacks.History()
    for epoch, (loss, accuracy) in enumerate([(0.5, 0.8), (0.4, 0.85)]):
        history.on_epoch_end(epoch, {"loss": loss, "accuracy": accuracy, "acc": accuracy})
    assert history.history == {"loss": [0.5, 0.4], "accuracy": [0.8, 0.85]}
    html = history._repr_html_()
    assert html.count("<tr>") == 3 and "0.8500" in html
    assert "<th>val_loss</th>" not in history_html(history.rows())
    assert np.isclose(history.history["accuracy"][-1], 0.85)


@pytest.mark.skipif(importlib.util.find_spec("nbclient") is None or importlib.util.find_spec("ipykernel") is None,
                    reason="nbclient and ipykernel are in the dev extra")
def test_a_convolab_error_in_a_notebook_shows_its_message_and_fix_not_convolabs_frames():
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("from convolab import Sequential, layers\n"
                                  "Sequential([layers.Conv2D(8, (3, 3))]).fit('no-such-data', epochs=1)"),
        nbformat.v4.new_code_cell("1 / 0")])                     # any other error keeps its whole traceback
    NotebookClient(notebook, timeout=300, kernel_name="python3", allow_errors=True).execute()
    ours, other = (cell.outputs[-1] for cell in notebook.cells)
    assert ours.output_type == "error" and other.output_type == "error"
    assert len(ours.traceback) == 1 and ours.traceback[0].startswith(f"{ours.ename}: ")
    assert "fix:" in ours.traceback[0] and "convolab/" not in "\n".join(ours.traceback)
    assert len(other.traceback) > 1 and other.ename == "ZeroDivisionError"


def test_a_picture_or_page_is_saved_only_under_its_own_kind_of_name(tmp_path):
    # curves().save("notes.txt") wrote a PNG over the user's notes
    mine = tmp_path / "notes.txt"
    mine.write_text("my notes")
    import matplotlib.pyplot as plt

    from convolab.errors import ArgumentError

    with pytest.raises(ArgumentError, match=r"\.txt is not a PNG picture's name, and nothing was written"):
        Picture(plt.figure(figsize=(1, 1)), "a picture").save(mine)
    with pytest.raises(ArgumentError, match=r"\.txt is not a page's name, and nothing was written"):
        Page("<!DOCTYPE html>").save(mine)
    assert mine.read_text() == "my notes"
    assert Page("<!DOCTYPE html>").save(tmp_path / "r.html").read_text() == "<!DOCTYPE html>"


def test_a_runs_grid_numbers_the_images_it_was_tested_on(tmp_path):
    # Was: image 99 of the whole test set drawn for a run tested on 32 images, where `convolab show` refused it.
    from convolab.errors import RunError
    from train_fixtures import train_tiny_run

    result = train_tiny_run(tmp_path / "run", spec="conv4x3,pool2,flatten,dense", train=128, test=32)
    assert "(32 test)" in repr(result)
    with pytest.raises(RunError, match="image index 99 is out of range: the test set has 32 images"):
        result.show(images=[99])
    assert result.show(images=[31]).png.startswith(b"\x89PNG")
