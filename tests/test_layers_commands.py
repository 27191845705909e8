"""The four kinds added with the layer registry run in every command: summary, train (fast engine), evaluate, show,
filters and report, on a tiny real Fashion-MNIST run."""
from __future__ import annotations

import pytest

from convolab import cli
from convolab.plots import plt

# DepthwiseConv2D, SeparableConv2D, Activation and GlobalMaxPooling2D in one small network.
NEW_KINDS = "conv4x3-linear,relu,dwconv3m2,pool2,sepconv8x3,gmp,dense"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("newkinds") / "run"
    assert cli.main(["train", NEW_KINDS, "--out", str(out), "--epochs", "1", "--train-limit", "256",
                     "--test-limit", "40", "--offline", "--device", "cpu", "--quiet"]) == 0
    return out


def test_summary_lists_the_new_kinds(capsys):
    assert cli.main(["summary", NEW_KINDS]) == 0
    out = capsys.readouterr().out
    for row in ("activation (Activation)", "depthwise_conv2d (DepthwiseConv2D)", "separable_conv2d (SeparableConv2D)",
                "global_max_pooling2d (GlobalMaxPooling2D)"):
        assert row in out


def test_show_filters_and_report_draw_the_new_kinds(run_dir, capsys):
    assert (run_dir / "checkpoint.pt").exists()
    assert cli.main(["evaluate", str(run_dir)]) == 0
    assert cli.main(["show", str(run_dir), "--out", str(run_dir / "grid.png")]) == 0
    assert cli.main(["filters", str(run_dir), "--layer", "depthwise_conv2d,separable_conv2d",
                     "--out", str(run_dir / "kernels.png")]) == 0
    assert "depthwise_conv2d, separable_conv2d" in capsys.readouterr().out
    for picture in ("grid.png", "kernels.png"):
        assert plt.imread(str(run_dir / picture)).shape[0] > 100
    assert cli.main(["report", str(run_dir)]) == 0
    html = (run_dir / "report.html").read_text(encoding="utf-8")
    assert "DepthwiseConv2D" in html and "SeparableConv2D" in html and "GlobalMaxPooling2D" in html
