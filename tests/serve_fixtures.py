"""Shared pieces for the `convolab serve` tests: a folder of real tiny runs, and a test client with the token."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from train_fixtures import train_tiny_run

TINY_CNN = "conv4x3,pool2,conv4x3,flatten,dense"    # conv 26x26x4, pool 13x13x4, conv 11x11x4: explorable in a blink
TOKEN = "test-token-0123456789"
# A run whose name (in config.json and as its folder) is markup: the page must show it as text.
HOSTILE_NAME = '<img src=x onerror="document.title=\'pwned\'">'


def make_runs(root: Path) -> Path:
    """root/lab/cnn (tiny CNN, 2 epochs), root/lab/dnn (tiny MLP), root/<markup> (a copy of the cnn renamed)."""
    train_tiny_run(root / "lab" / "cnn", spec=TINY_CNN, epochs=2, train=320, test=200)
    train_tiny_run(root / "lab" / "dnn", epochs=1, train=320, test=200)
    hostile = root / "hostile"
    shutil.copytree(root / "lab" / "cnn", hostile)
    config = json.loads((hostile / "config.json").read_text())
    config["name"] = HOSTILE_NAME
    (hostile / "config.json").write_text(json.dumps(config))
    return root


def client(runs: Path, token: str = TOKEN, host: str = "127.0.0.1"):
    from starlette.testclient import TestClient

    from convolab.serve import create_app

    return TestClient(create_app(runs, token, host, {"source": "fashion-mnist", "offline": True}),
                      base_url=f"http://{host}:8000", headers={"X-Convolab-Token": token})
