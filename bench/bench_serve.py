"""`convolab serve`'s two speed goals (issue 14), measured side by side in one run on this machine.

usage: .venv/bin/python bench/bench_serve.py [--run runs/lab/cnn] [--filters 20] [--train-limit 6000] [--rounds 2]
                                             [--no-browser] [--json results.json]

1. A filter change on the lab's CNN redraws the explorer's maps in under 100 ms: the server's time for
   /api/maps?filter=F (images 0, 23, 28; every conv and pool map; JSON included), and, in headless Chromium, the
   page's own time from the slider's move to the redrawn grid (fetch, JSON parsing and drawing the 12 canvases), for
   --filters different filters after one warm-up request (which loads the run and captures the maps once).
2. Live updates slow the training by less than 10%: the lab's CNN (Adam 0.001, batch 32) for one epoch on the first
   --train-limit images, (a) `convolab train --quiet` in a process of its own, and (b) started from the page's API
   (a spawned process writing batch points and, every 200 steps, the watched images' maps) while a client polls
   /api/train every 0.7 s and fetches the maps whenever they change, as the page does. Epoch seconds from each run's
   history (start-up and data loading excluded on both sides), alternating a, b for --rounds rounds; medians.
The machine's load average is printed before and after: other jobs on a shared machine move both sides alike.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from convolab.serve import bind, create_app

TOKEN = "bench-token"
LAB_CNN = "cnn"


def load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def train_cli(out: Path, train_limit: int, epochs: int = 1) -> float:
    """`convolab train cnn` in its own process; the epoch's seconds from its history."""
    subprocess.run([sys.executable, "-m", "convolab", "train", LAB_CNN, "--out", str(out), "--epochs", str(epochs),
                    "--train-limit", str(train_limit), "--offline", "--quiet"], check=True)
    return json.loads((out / "history.json").read_text())[-1]["seconds"]


class Server:
    """The real app on uvicorn in a thread, on a free port of 127.0.0.1."""

    def __init__(self, runs: Path):
        import uvicorn

        self.sock = bind("127.0.0.1", 0)
        self.base = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        app = create_app(runs, TOKEN, "127.0.0.1", {"source": "fashion-mnist", "offline": True})
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, log_config=None))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.thread.start()
        while not self.server.started:
            time.sleep(0.05)
        self.client = httpx.Client(base_url=self.base, headers={"X-Convolab-Token": TOKEN}, timeout=600)

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.sock.close()


def filter_change(server: Server, run_id: str, filters: int, browser: bool) -> dict:
    """Goal 1: server milliseconds per filter change, and the page's when a browser is wanted."""
    query = f"/api/maps?run={run_id}&images=0,23,28"
    started = time.perf_counter()
    server.client.get(f"{query}&filter=0").raise_for_status()
    warm_up = time.perf_counter() - started
    server_ms = []
    for index in range(1, filters + 1):
        started = time.perf_counter()
        server.client.get(f"{query}&filter={index}").raise_for_status()
        server_ms.append(1000 * (time.perf_counter() - started))
    result = {"warm_up_s": warm_up, "server_ms": server_ms}
    if browser:
        result["page_ms"] = page_filter_change(server, run_id, filters)
    return result


def page_filter_change(server: Server, run_id: str, filters: int) -> list[float]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--no-first-run"])
        page = chromium.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{server.base}/?token={TOKEN}#explorer")
        page.wait_for_selector("#run option", state="attached")
        page.select_option("#run", run_id)
        page.wait_for_selector("#explorer-grid canvas")
        times = []
        for index in range(1, filters + 1):
            value = 2 + (index % 60)
            page.eval_on_selector("#explorer-filter", f"e => {{ e.value = {value}; e.dispatchEvent(new Event('input')); }}")
            while page.evaluate(f"() => document.querySelector('#explorer-grid').dataset.filter !== '{value}'"):
                time.sleep(0.005)
            times.append(float(page.evaluate("() => document.querySelector('#explorer-grid').dataset.milliseconds")))
        chromium.close()
    return times


def train_with_page(server: Server, runs: Path, name: str, train_limit: int) -> tuple[float, int]:
    """Goal 2 (b): a training started through the API while a client polls as the page does."""
    response = server.client.post("/api/train/start", json={
        "model": LAB_CNN, "name": name, "epochs": 1, "batch_size": 32, "learning_rate": 0.001,
        "train_limit": train_limit, "images": "0,23,28", "filter": 1})
    response.raise_for_status()
    points, maps_step, polls = 0, None, 0
    while True:
        status = server.client.get(f"/api/train?since={points}").json()
        polls += 1
        points += len(status["points"])
        if status["maps_step"] is not None and status["maps_step"] != maps_step:
            maps_step = status["maps_step"]
            server.client.get("/api/train/maps").raise_for_status()
        if not status["running"] and status["state"] not in ("starting", "running"):
            break
        time.sleep(0.7)
    if status["state"] != "finished":
        raise RuntimeError(f"the live training did not finish: {status}")
    return json.loads((runs / name / "history.json").read_text())[-1]["seconds"], polls


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default=None, help="the lab's CNN run (default: runs/lab/cnn, else a quick one)")
    parser.add_argument("--filters", type=int, default=20)
    parser.add_argument("--train-limit", type=int, default=6000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--no-browser", action="store_true")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    print(f"load average before: {load()}  ({os.cpu_count()} cores)", flush=True)
    work = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    runs = work / "runs"
    run = Path(args.run) if args.run else Path("runs/lab/cnn")
    if not (run / "checkpoint.pt").is_file():
        print("no lab CNN run given: training one quickly (1 epoch, 2000 images)", flush=True)
        run = runs / "lab" / "cnn"
        train_cli(run, 2000)
    else:
        # a copy: the server rightly refuses a link that leads out of its runs folder
        shutil.copytree(run, runs / "lab" / "cnn", ignore=shutil.ignore_patterns("*.png", "*.html"))
    server = Server(runs)
    results: dict = {"load_before": load()}
    try:
        change = filter_change(server, "lab/cnn", args.filters, not args.no_browser)
        results["filter_change"] = change
        print(f"\n1. filter change on the lab's CNN (images 0,23,28; conv, pool, conv, pool maps), goal < 100 ms")
        print(f"   first request (loads the run, captures every map): {change['warm_up_s']:.2f} s")
        print(f"   server, {args.filters} changes: median {statistics.median(change['server_ms']):.1f} ms, "
              f"max {max(change['server_ms']):.1f} ms")
        if "page_ms" in change:
            print(f"   Chromium, slider to redrawn grid: median {statistics.median(change['page_ms']):.1f} ms, "
                  f"max {max(change['page_ms']):.1f} ms")
        plain, live = [], []
        for round_number in range(args.rounds):
            plain.append(train_cli(work / f"plain-{round_number}", args.train_limit))
            seconds, polls = train_with_page(server, runs, f"live-{round_number}", args.train_limit)
            live.append(seconds)
            print(f"   round {round_number + 1}: without the page {plain[-1]:.1f} s, with it {live[-1]:.1f} s "
                  f"({polls} polls)  load {load()}", flush=True)
        ratio = statistics.median(live) / statistics.median(plain)
        results["training"] = {"plain_s": plain, "live_s": live, "ratio": ratio}
        print(f"\n2. one epoch of the lab's CNN on {args.train_limit} images, goal: slowdown < 10%")
        print(f"   without the page: median {statistics.median(plain):.1f} s; with it: {statistics.median(live):.1f} s; "
              f"ratio {ratio:.3f} ({100 * (ratio - 1):+.1f}%)")
    finally:
        server.close()
    results["load_after"] = load()
    print(f"\nload average after: {load()}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
