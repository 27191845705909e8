"""The lab's recipe, Keras against convolab, side by side in one run: seconds per epoch and the ratio.

usage: .venv/bin/python bench/bench_lab.py [--model cnn] [--epochs 1] [--train-n 60000] [--rounds 1]
       [--keras-python /tmp/keras-venv/bin/python] [--convolab-args "--engine fast"]

Each round runs bench/keras_lab.py (the course notebook's model.fit: Adam, batch 32, sparse categorical
cross-entropy) with Keras/TensorFlow, then `convolab train MODEL` on the same epochs and the same first N training images,
one after the other on the same machine. Seconds per epoch are each program's own training time divided by the epochs
(Keras: model.fit's wall time; convolab: the mean of history.json's per-epoch seconds), so data loading and the test
pass count for neither. Rounds alternate the order, so slow drift on a shared machine favours neither side.

Seen here (2 cores, AMD EPYC, shared with other engineers' jobs; PyTorch 2.13 CPU, fast engine; Keras 3 on TF 2.21;
`bench_lab.py --epochs 1 --train-n 60000 --rounds 2`, twice, 2026-11-27):
| run | load avg at start | keras s/epoch | convolab s/epoch | note |
|---|---|---|---|---|
| 21:28 | 3.25 | 42.1, 41.9 | 37.6, 68.2 | another engineer's 5-epoch engine benchmark ran throughout |
| 21:39 | 1.61 | 20.7, 41.9 | 29.6, 37.2 | round 1 on a nearly idle machine: Keras faster (ratio 1.43) |
| 22:20 | 0.76 | 42.23, 42.02 | 15.18, 13.13 | a quiet machine, after the engine's cropping and channels-last gradients landed |
The first two medians (ratio 1.26 and 1.07) mean little: the same command varied by 2x with the neighbours' load. The
third, on a quiet machine with the engine as it is now, is 0.336. Keras's single epoch includes its graph tracing and
compilation; over 5 epochs it averages 19.5 s/epoch here (bench_engine.py, BENCHMARKS.md), and convolab 15.6 (0.80).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
KERAS_LAB = REPO / "bench" / "keras_lab.py"
CONVOLAB = REPO / ".venv" / "bin" / "convolab"


def run_keras(python: str, model: str, epochs: int, train_n: int) -> dict:
    """keras_lab.py's one line, parsed: s_per_epoch, train_acc, test_acc."""
    completed = subprocess.run([python, str(KERAS_LAB), model, str(epochs), str(train_n)], capture_output=True,
                               text=True, check=False)
    if completed.returncode != 0:
        raise SystemExit(f"keras_lab.py failed ({completed.returncode}):\n{completed.stderr[-2000:]}")
    line = completed.stdout.strip().splitlines()[-1]
    fields = dict(re.findall(r"(\w+)=([\d.]+)", line))
    return {"s_per_epoch": float(fields["s_per_epoch"]), "train_acc": float(fields["train_acc"]),
            "test_acc": float(fields["test_acc"]), "line": line}


def run_convolab(model: str, epochs: int, train_n: int, extra: list[str], program: list[str] | None = None) -> dict:
    """`convolab train` into a temporary run directory; seconds per epoch from its history.

    program: the command that stands for `convolab` (default the venv's entry point)."""
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / model
        command = [*(program or [str(CONVOLAB)]), "train", model, "--epochs", str(epochs), "--train-limit", str(train_n),
                   "--out", str(out), "--device", "cpu", "--quiet", "--offline", *extra]
        started = time.perf_counter()
        completed = subprocess.run(command, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - started
        if completed.returncode != 0:
            raise SystemExit(f"convolab train failed ({completed.returncode}):\n{completed.stderr[-2000:]}")
        history = json.loads((out / "history.json").read_text())
        metrics = json.loads((out / "metrics.json").read_text())
        precision = json.loads((out / "config.json").read_text())["train"]["precision"]
    seconds = [row["seconds"] for row in history]
    return {"s_per_epoch": sum(seconds) / len(seconds), "epoch_seconds": seconds, "train_acc": history[-1]["accuracy"],
            "test_acc": metrics["test_accuracy"], "precision": precision, "wall": wall, "command": shlex.join(command)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=("cnn", "dnn"), default="cnn")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--train-n", type=int, default=60000)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--keras-python", default="/tmp/keras-venv/bin/python")
    parser.add_argument("--convolab-args", default="", help="extra flags for convolab train, e.g. '--engine fast'")
    args = parser.parse_args()
    if not KERAS_LAB.is_file():
        raise SystemExit(f"{KERAS_LAB} not found")
    print(f"bench_lab: {args.model}, {args.epochs} epoch(s), first {args.train_n} training images, batch 32, Adam 0.001; "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}", flush=True)
    keras_times, convolab_times = [], []
    for round_index in range(args.rounds):
        order = ("keras", "convolab") if round_index % 2 == 0 else ("convolab", "keras")
        for side in order:
            if side == "keras":
                result = run_keras(args.keras_python, args.model, args.epochs, args.train_n)
                keras_times.append(result["s_per_epoch"])
                print(f"  round {round_index + 1} keras    {result['s_per_epoch']:7.2f} s/epoch  "
                      f"train acc {result['train_acc']:.4f}  test acc {result['test_acc']:.4f}   [{result['line']}]",
                      flush=True)
            else:
                result = run_convolab(args.model, args.epochs, args.train_n, shlex.split(args.convolab_args))
                convolab_times.append(result["s_per_epoch"])
                print(f"  round {round_index + 1} convolab {result['s_per_epoch']:7.2f} s/epoch  "
                      f"train acc {result['train_acc']:.4f}  test acc {result['test_acc']:.4f}   "
                      f"epochs {', '.join(f'{s:.1f}' for s in result['epoch_seconds'])} s   [{result['command']}]",
                      flush=True)
    keras, convolab = statistics.median(keras_times), statistics.median(convolab_times)
    print(f"median s/epoch: keras {keras:.2f}  convolab {convolab:.2f}  ratio convolab/keras {convolab / keras:.3f} "
          f"({'convolab faster' if convolab < keras else 'keras faster'}); load average now {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
