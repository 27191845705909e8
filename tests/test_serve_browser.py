"""`convolab serve` end to end in real headless Chromium (Debian's /usr/bin/chromium, driven by Playwright).

Every page is opened and used as a learner would: the filter slider moves and the maps change, a map value is
clicked and its sum read, a digit is drawn and predicted, a short training starts, its curve grows, it is stopped and
its checkpoint found. Throughout, the console must log no error and no request may leave 127.0.0.1.
Screenshots of each page go to $CONVOLAB_SCREENSHOTS when set (to look at them), else to the test's tmp folder.
"""
from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("starlette")
pytest.importorskip("playwright")

from serve_fixtures import HOSTILE_NAME, TINY_CNN, TOKEN, make_runs  # noqa: E402

from convolab.runs import read_checkpoint  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium (./dev test installs it)")]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The real server (uvicorn on a free port, in a thread) over a folder of tiny runs; yields (base URL, runs)."""
    import uvicorn

    from convolab.serve import bind, create_app

    runs = make_runs(tmp_path_factory.mktemp("runs"))
    sock = bind("127.0.0.1", 0)
    app = create_app(runs, TOKEN, "127.0.0.1", {"source": "fashion-mnist", "offline": True})
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, log_config=None))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}", runs
    server.should_exit = True
    thread.join(timeout=30)
    sock.close()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--no-first-run"])
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, server):
    """A fresh page on the lab, recording console errors and every request's URL."""
    base, _ = server
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.errors, page.requests = [], []
    page.on("console", lambda message: page.errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: page.errors.append(str(error)))
    page.on("request", lambda request: page.requests.append(request.url))
    page.set_default_timeout(60_000)
    page.goto(f"{base}/?token={TOKEN}#runs")
    page.wait_for_selector("#runs-table tbody tr")
    yield page
    assert page.errors == [], page.errors
    foreign = [url for url in page.requests if not url.startswith(base + "/") and not url.startswith(("data:", "blob:"))]
    assert foreign == [], foreign
    context.close()


def wait_until(page, condition: str, seconds: float = 60.0) -> None:
    """Poll a JavaScript condition with page.evaluate (page.wait_for_function compiles its text with eval, which the
    page's Content-Security-Policy rightly forbids; evaluate calls a function and is not affected)."""
    deadline = time.monotonic() + seconds
    while not page.evaluate(f"() => Boolean({condition})"):
        if time.monotonic() > deadline:
            raise AssertionError(f"not true after {seconds} s: {condition}")
        time.sleep(0.1)


def screenshot(page, name: str, tmp_path: Path) -> None:
    folder = Path(os.environ.get("CONVOLAB_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / f"serve-{name}.png"), full_page=True)


def open_tab(page, name: str) -> None:
    page.click(f"#tabs button[data-page={name}]")
    page.wait_for_selector(f"#page-{name}.active")


def map_pictures(page, grid: str = "#explorer-grid") -> list[str]:
    return page.evaluate(f"() => [...document.querySelectorAll('{grid} canvas:not(.image)')].map(c => c.toDataURL())")


def test_runs_page_lists_runs_escapes_names_and_overlays_curves(page, tmp_path):
    assert "token" not in page.url                                   # taken out of the address bar
    names = page.locator("#runs-table tbody tr td:nth-child(2)").all_text_contents()
    assert HOSTILE_NAME in names                                     # shown as text ...
    assert page.locator("#runs-table img").count() == 0              # ... never as markup
    assert page.title() == "convolab"
    page.click("#runs-table thead th:nth-child(7)")                  # sort by test accuracy
    page.click("#runs-table tbody tr:nth-child(1) td:nth-child(2) a")
    page.wait_for_selector("#run-detail table")
    screenshot(page, "runs", tmp_path)


def test_explorer_slider_changes_maps_and_a_click_explains_a_value(page, tmp_path):
    page.select_option("#run", "lab/cnn")
    open_tab(page, "explorer")
    wait_until(page, "document.querySelector('#explorer-grid').dataset.filter === '1'")
    before = map_pictures(page)
    assert len(before) == 3 * 3                                      # images 0, 23, 28 × conv, pool, conv
    page.eval_on_selector("#explorer-filter", "e => { e.value = 2; e.dispatchEvent(new Event('input')); }")
    wait_until(page, "document.querySelector('#explorer-grid').dataset.filter === '2'")
    after = map_pictures(page)
    assert all(old != new for old, new in zip(before, after))
    assert page.text_content("#explorer-grid thead") .count("filter 2") == 3
    conv = page.locator("#explorer-grid canvas:not(.image)").nth(0)
    conv.click(position={"x": 48, "y": 48})
    page.wait_for_selector("#origin-sum")
    total = float(page.text_content("#origin-sum"))
    formula = page.text_content("#origin .formula")
    assert "+ bias" in formula and "relu(" in formula and abs(total) < 1e6
    page.click("#explorer-misclassified")
    wait_until(page, "document.querySelector('#explorer-images').value !== '0,23,28'")
    page.click("#filters-show")
    page.wait_for_selector("#filters-grid figure")
    assert page.locator("#filters-grid figure").count() == 4
    screenshot(page, "explorer", tmp_path)


def test_clicking_a_separable_or_depthwise_map_explains_its_two_stages(page, server, tmp_path):
    from train_fixtures import train_tiny_run

    _, runs = server
    train_tiny_run(runs / "lab" / "separable", spec="conv4x3,dwconv3m2,sepconv4x3,flatten,dense", epochs=1,
                   train=64, test=32)
    page.reload()
    page.wait_for_selector("#runs-table tbody tr")
    page.select_option("#run", "lab/separable")
    open_tab(page, "explorer")
    wait_until(page, "document.querySelector('#explorer-grid').dataset.filter === '1'")
    assert len(map_pictures(page)) == 3 * 3                          # images 0, 23, 28 × conv, depthwise, separable
    page.locator("#explorer-grid canvas:not(.image)").nth(2).click(position={"x": 40, "y": 40})   # the separable map
    page.wait_for_selector("#origin-sum")
    text = page.text_content("#origin")
    assert "SeparableConv2D" in text and "depthwise values" in text and "× 1×1 weight" in text, text
    assert "sum of the contributions" in page.text_content("#origin .formula:last-of-type")
    screenshot(page, "explorer-separable", tmp_path)
    page.locator("#explorer-grid canvas:not(.image)").nth(1).click(position={"x": 40, "y": 40})   # the depthwise map
    wait_until(page, "document.querySelector('#origin h3').textContent.includes('DepthwiseConv2D')")
    assert "input channel 0 only" in page.text_content("#origin")          # filter 1 of 8 = 4 channels x 2 reads channel 0
    page.select_option("#filters-layer", "2")                               # all filters of the separable layer
    page.click("#filters-show")
    page.wait_for_selector("#filters-grid figure")


def test_drawing_gets_a_prediction_and_maps(page, tmp_path):
    page.select_option("#run", "lab/cnn")
    open_tab(page, "draw")
    box = page.locator("#draw-canvas").bounding_box()
    page.mouse.move(box["x"] + 90, box["y"] + 60)
    page.mouse.down()
    for step in range(12):   # a trouser-like pair of strokes
        page.mouse.move(box["x"] + 90 + step * 2, box["y"] + 60 + step * 16)
    page.mouse.up()
    page.mouse.move(box["x"] + 190, box["y"] + 60)
    page.mouse.down()
    for step in range(12):
        page.mouse.move(box["x"] + 190 - step * 2, box["y"] + 60 + step * 16)
    page.mouse.up()
    wait_until(page, "document.querySelectorAll('#draw-top li').length === 3")
    assert "%" in page.text_content("#draw-top li")
    assert page.locator("#draw-maps canvas").count() == 3
    screenshot(page, "draw", tmp_path)


def test_evaluation_cells_open_their_images_and_model_rows_highlight_layers(page, tmp_path):
    page.select_option("#run", "lab/cnn")
    open_tab(page, "evaluation")
    page.wait_for_selector("#confusion button")
    assert page.locator("#confusion button").count() == 100
    page.click("#confusion tr:nth-child(2) td:nth-child(2) button")    # true 0 predicted 0
    page.wait_for_selector("#pair-grid table.grid, #pair-grid p")
    page.wait_for_selector("#top-losses figure")
    screenshot(page, "evaluation", tmp_path)
    open_tab(page, "model")
    page.wait_for_selector("#diagram svg")
    page.hover("#summary tr.layer-row >> nth=4")                        # conv2d_1's explanation row
    assert page.locator("#diagram g.layer.hl").count() == 1
    assert "conv2d_1" in page.text_content("#diagram g.layer.hl")   # the same layer as the row, not its neighbour
    assert "8×8" in page.text_content("#receptive-text")
    screenshot(page, "model", tmp_path)


def test_a_same_padded_layers_receptive_field_box_starts_in_the_padding_it_reads(page, server, tmp_path):
    """conv 'same' (field 3x3 from row -1), pool 2 (4x4, jump 2), conv 'same' (8x8 from row -3): the value at the
    centre of conv2d_1's 14x14 output, (6, 6), reads rows and columns -3 + 6 x 2 = 9 to 16; a box drawn from
    6 x 2 = 12 (ignoring the padding) would be 3 pixels off."""
    from train_fixtures import train_tiny_run

    _, runs = server
    train_tiny_run(runs / "lab" / "same", spec="conv4x3same,pool2,conv4x3same,flatten,dense", epochs=1, train=64,
                   test=32)
    page.reload()
    page.wait_for_selector("#runs-table tbody tr")
    page.select_option("#run", "lab/same")
    open_tab(page, "model")
    page.wait_for_selector("#diagram svg")
    page.hover("#summary tr.layer-row >> nth=4")                        # conv2d_1's explanation row
    assert "conv2d_1" in page.text_content("#diagram g.layer.hl")
    text = page.text_content("#receptive-text")
    assert "8×8" in text and "rows 9…16, columns 9…16" in text, text
    screenshot(page, "model-same-padding", tmp_path)


def test_a_live_training_grows_its_curve_and_stops_with_a_checkpoint(page, server, tmp_path):
    _, runs = server
    open_tab(page, "train")
    page.fill("#train-spec", TINY_CNN)
    page.fill("#train-name", "browser-live")
    page.fill("#train-epochs", "200")
    page.fill("#train-batch", "16")
    page.fill("#train-limit", "640")
    page.fill("#train-images", "0,23,28")
    page.fill("#train-stop-at", "val_accuracy>=0.99")
    page.click("#train-start")          # a val_ goal without a validation split: the message names the form's field
    wait_until(page, "document.querySelector('#message').textContent.includes('set \"validation split\" to 0.1')")
    assert "--" not in page.text_content("#message")
    assert [error for error in page.errors if "400 (Bad Request)" not in error] == []
    page.errors.clear()                 # Chromium logs the refused request itself; that one was asked for
    screenshot(page, "train-message", tmp_path)
    page.fill("#train-validation", "0.25")
    page.click("#train-start")
    wait_until(page, "Number(document.querySelector('#train-loss').dataset.points || 0) > 0", 120)
    first = int(page.get_attribute("#train-loss", "data-points"))
    wait_until(page, f"Number(document.querySelector('#train-loss').dataset.points) > {first}")
    page.wait_for_selector("#train-maps table.grid", timeout=120_000)
    screenshot(page, "train", tmp_path)
    page.click("#train-stop")
    wait_until(page, "document.querySelector('#train-status').dataset.state === 'interrupted'", 120)
    assert read_checkpoint(runs / "browser-live" / "checkpoint.pt")["status"] == "interrupted"
    assert json.loads((runs / "browser-live" / "config.json").read_text())["train"]["validation_split"] == 0.25
    wait_until(page, "[...document.querySelectorAll('#resume-run option')].some(o => o.value === 'browser-live')")
