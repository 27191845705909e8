"""The HTML report: parses, embeds every picture as data:, names no external URL, and renders cleanly in Chromium."""
from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import pytest

from convolab import cli
from convolab.plots import run_activation_grid
from convolab.report import (CONTENT_SECURITY_POLICY, ReportOptions, png_data_uri, render_report, write_report)
from convolab.runs import load_run
from see_fixtures import TEST_IMAGES, copy_run, fashion, tiny_runs

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Attributes through which a page loads or links something.
URL_ATTRIBUTES = {"src", "href", "srcset", "action", "data", "poster", "formaction", "xlink:href"}


class Page(HTMLParser):
    """Every start tag with its attributes, and whether the document's tags balance."""

    VOID = {"meta", "img", "br", "link", "input", "hr", "source", "wbr"}

    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.open: list[str] = []
        self.mismatches: list[str] = []

    def handle_starttag(self, tag, attributes):
        self.tags.append((tag, dict(attributes)))
        if tag not in self.VOID:
            self.open.append(tag)

    def handle_endtag(self, tag):
        if not self.open or self.open[-1] != tag:
            self.mismatches.append(f"</{tag}> closes <{self.open[-1] if self.open else None}>")
            return
        self.open.pop()

    def images(self) -> list[dict]:
        return [attributes for tag, attributes in self.tags if tag == "img"]


def parse(html: str) -> Page:
    page = Page()
    page.feed(html)
    page.close()
    assert page.mismatches == [] and page.open == [], (page.mismatches, page.open)
    return page


def decoded(source: str) -> tuple[str, bytes]:
    """A data: URI's media type and bytes."""
    match = re.fullmatch(r"data:(image/png|image/svg\+xml);base64,([A-Za-z0-9+/=]+)", source)
    assert match, source[:80]
    return match.group(1), base64.b64decode(match.group(2), validate=True)


def assert_self_contained(html: str, page: Page) -> None:
    """No resource or link outside the file: only data: pictures and in-page anchors; no script at all."""
    for tag, attributes in page.tags:
        assert tag not in ("script", "link", "iframe", "object", "embed", "base"), tag
        for name, value in attributes.items():
            if name in URL_ATTRIBUTES:
                assert value.startswith(("data:", "#")), f"<{tag} {name}={value[:60]!r}>"
        assert "url(" not in attributes.get("style", "")
    assert not re.search(r"(https?|ftp)://|//[a-z0-9.-]+\.[a-z]{2,}/", html, flags=re.IGNORECASE)
    assert "url(" not in html  # no CSS resource either
    policy = [attributes["content"] for tag, attributes in page.tags
              if tag == "meta" and attributes.get("http-equiv") == "Content-Security-Policy"]
    assert policy == [CONTENT_SECURITY_POLICY]


@pytest.fixture(scope="module")
def one_run_html() -> str:
    return render_report([load_run(tiny_runs()["tinycnn"])])


@pytest.fixture(scope="module")
def two_runs_html() -> str:
    runs = tiny_runs()
    return render_report([load_run(runs["tinycnn"]), load_run(runs["tinydnn"])])


def test_one_run_embeds_its_six_pictures(one_run_html):
    page = parse(one_run_html)
    assert_self_contained(one_run_html, page)
    alts = [image["alt"] for image in page.images()]
    assert alts == ["architecture diagram", "training curves", "confusion matrix", "most confused examples",
                    "activation grid", "learned filters"]
    for image in page.images():
        kind, data = decoded(image["src"])
        if kind == "image/png":
            assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000
        else:
            assert data.lstrip().startswith(b"<svg") and b"conv2d_1" in data


def test_the_embedded_grid_is_the_picture_show_draws(one_run_html):
    """Byte for byte: the report's grid is the lab's grid of the run's own test images 0, 23 and 28, filter 1."""
    run = load_run(tiny_runs()["tinycnn"])
    dataset = fashion()
    figure = run_activation_grid(run.model, run.spec, dataset.test_images[:TEST_IMAGES],
                                 dataset.test_labels[:TEST_IMAGES], run.class_names, [0, 23, 28], 1)
    grid = [image["src"] for image in parse(one_run_html).images() if image["alt"] == "activation grid"]
    assert grid == [png_data_uri(figure)]


def test_the_summary_metrics_and_confusions_are_the_runs_own(one_run_html):
    run = load_run(tiny_runs()["tinycnn"])
    assert "conv2d_1 (Conv2D)" in one_run_html
    assert "3×3 window, no padding: 28 − 3 + 1 = 26" in one_run_html  # the summary's explanation, escaped as text
    assert f"test accuracy <b>{run.metrics['test_accuracy']:.4f}</b>" in one_run_html
    pair = run.metrics["most_confused"][0]
    assert f"{pair['true']} → {pair['predicted']}: {pair['count']}" in one_run_html


def test_the_overlay_caption_says_which_accuracy_it_plots():
    from convolab.report import overlay_caption

    with_validation, without = [{"accuracy": 0.8, "val_accuracy": 0.7}], [{"accuracy": 0.8}]
    assert overlay_caption([with_validation, with_validation]).startswith("Validation accuracy")
    assert overlay_caption([without, without]).startswith("Training accuracy")
    assert "dashed" in overlay_caption([with_validation, without])


def test_several_runs_get_a_comparison_first(two_runs_html):
    page = parse(two_runs_html)
    assert_self_contained(two_runs_html, page)
    alts = [image["alt"] for image in page.images()]
    assert alts[:2] == ["accuracy overlay", "test accuracy against seconds"]
    assert alts.count("activation grid") == 1  # the Dense network has no feature maps
    assert len(alts) == 2 + 6 + 4
    assert "This model has no Conv2D or pooling layer" in two_runs_html
    for name in ("tinycnn", "tinydnn"):
        metrics = load_run(tiny_runs()[name]).metrics
        assert f'<a href="#run-{name}">{name}</a>' in two_runs_html and f'id="run-{name}"' in two_runs_html
        assert f"<td class=number>{metrics['test_accuracy']:.4f}</td>" in two_runs_html
    for image in page.images():
        decoded(image["src"])


def test_user_chosen_images_are_checked(tmp_path):
    run = tiny_runs()["tinycnn"]
    with pytest.raises(Exception) as raised:
        write_report([run], tmp_path / "r.html", ReportOptions(image_indices=(0, TEST_IMAGES)))
    assert f"image index {TEST_IMAGES} is out of range" in str(raised.value)
    assert not (tmp_path / "r.html").exists()


def test_report_command_writes_next_to_the_run(tmp_path, capsys):
    run = copy_run("tinycnn", tmp_path)
    assert cli.main(["report", str(run)]) == 0
    assert f"report: wrote {run / 'report.html'}" in capsys.readouterr().out
    parse((run / "report.html").read_text(encoding="utf-8"))
    assert cli.main(["report", str(tmp_path / "missing")]) == 2
    assert "no such run directory" in capsys.readouterr().err
    assert cli.main(["report", str(run), "--out", str(tmp_path / "new") + "/"]) == 0    # a folder, by its slash
    assert (tmp_path / "new" / "report.html").is_file()


def chromium(arguments: list[str], page: Path) -> subprocess.CompletedProcess:
    profile = tempfile.mkdtemp(prefix="convolab-chromium-")
    try:
        return subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000",
             *arguments, page.as_uri()],
            capture_output=True, text=True, timeout=120)
    finally:
        shutil.rmtree(profile, ignore_errors=True)


# Run only in the test's copy: the report itself forbids scripts, so the copy's policy allows this one.
IMAGE_CHECK = """<script>window.addEventListener("load", function () {
  var rows = Array.from(document.images).map(function (image) {
    return [image.alt, image.complete, image.naturalWidth, image.naturalHeight]; });
  var out = document.createElement("pre"); out.id = "image-check"; out.textContent = JSON.stringify(rows);
  document.body.appendChild(out); });</script>"""


@pytest.mark.browser
def test_chromium_shows_every_picture_and_logs_no_console_error(tmp_path, two_runs_html):
    if not Path(CHROMIUM).exists():
        pytest.skip(f"headless Chromium is not installed at {CHROMIUM} (Debian: apt install chromium; ./dev test "
                    "installs it)")
    report = tmp_path / "report.html"
    report.write_text(two_runs_html, encoding="utf-8")
    # 1. The report as it is: no console message at all (a blocked load or script error would log one).
    plain = chromium(["--dump-dom"], report)
    assert plain.returncode == 0, plain.stderr[-2000:]
    console = [line for line in plain.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line
               or "Failed to load" in line]
    assert console == []
    assert "<h1>convolab report: 2 runs</h1>" in plain.stdout
    # 2. A copy with a checking script: every <img> decoded to a real picture.
    checked = tmp_path / "checked.html"
    checked.write_text(two_runs_html.replace("style-src 'unsafe-inline'",
                                             "style-src 'unsafe-inline'; script-src 'unsafe-inline'")
                       .replace("</body>", IMAGE_CHECK + "</body>"), encoding="utf-8")
    result = chromium(["--dump-dom"], checked)
    found = re.search(r'<pre id="image-check">(.*?)</pre>', result.stdout)
    assert found, result.stderr[-2000:]
    rows = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert len(rows) == len(parse(two_runs_html).images()) == 12
    broken = [row for row in rows if not (row[1] and row[2] > 0 and row[3] > 0)]
    assert broken == []


def test_a_run_whose_data_is_gone_still_gets_a_report_saying_so(tmp_path):
    run_dir = copy_run("tinycnn", tmp_path)
    config = json.loads((run_dir / "config.json").read_text())
    config["dataset"]["options"] = {"source": str(tmp_path / "moved-away")}
    (run_dir / "config.json").write_text(json.dumps(config))
    html = render_report([load_run(run_dir)])
    page = parse(html)
    assert [image["alt"] for image in page.images()] == ["architecture diagram", "training curves",
                                                         "confusion matrix", "learned filters"]
    assert html.count("the test images could not be loaded again") == 2  # confused examples and the grid


def test_the_report_file_follows_the_umask_not_mkstemps_0600(tmp_path):
    previous = os.umask(0o022)
    try:
        path = write_report([tiny_runs()["tinydnn"]], tmp_path / "shared.html")
    finally:
        os.umask(previous)
    assert path.stat().st_mode & 0o777 == 0o644


def test_a_damaged_metrics_json_is_measured_again_and_blocks_no_command_that_needs_no_metrics(tmp_path, capsys):
    run = copy_run("tinycnn", tmp_path)
    recorded = json.loads((run / "metrics.json").read_text())
    (run / "metrics.json").write_text((run / "metrics.json").read_text()[:40])   # cut off, as by hand or a bad copy
    damaged = load_run(run)
    assert damaged.metrics is None and "metrics.json: cannot be read as JSON" in damaged.metrics_problem
    assert cli.main(["evaluate", str(run), "--json"]) == 0                     # evaluate measures, it never read it
    assert 0 <= json.loads(capsys.readouterr().out)["test_accuracy"] <= 1
    out = tmp_path / "report.html"
    assert cli.main(["report", str(run), "--out", str(out)]) == 0               # the report measures the test again
    assert f"test accuracy <b>{recorded['test_accuracy']:.4f}" in out.read_text()
    assert cli.main(["compare", str(run), "--offline"]) == 2
    error = capsys.readouterr().err
    assert "its test results cannot be read" in error and f"convolab evaluate {run}" in error
