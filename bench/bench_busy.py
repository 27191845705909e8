"""Training speed on a quiet and on a busy machine, side by side in one run (issue 10).

usage: .venv/bin/python bench/bench_busy.py [--epochs 1] [--train-n 12000] [--rounds 1] [--quiet-pairs 4]
       [--keras-python /tmp/keras-venv/bin/python] [--keras-backend tensorflow] [--sides convolab,before,keras]
       .venv/bin/python bench/bench_busy.py --pool bench/results/bench_busy-*.txt   # earlier runs' pairs, pooled
       .venv/bin/python bench/bench_busy.py --recipe fast   # a BatchNormalization recipe: PyTorch's threads or one

"Busy" is one other program holding one core: `python3 -c "while True: pass"`, which this script starts before each
busy measurement and ends right after it (a laptop's browser or video call, simplified). Each side trains the lab's
CNN (Conv2D 64 3x3, pool, Conv2D 64 3x3, pool, Dense 128, Dense 10; Adam 0.001, batch 32) on the first --train-n
Fashion-MNIST training images for --epochs epochs, quiet then busy, in this order every round:
- convolab: `convolab train cnn` as users run it (the default policy: shards.py's single-threaded shards).
- before: the same command with the engine as it was before shards (PyTorch's OpenMP threads, one per core, each
  batch unsharded): the baseline for "quiet speed within 5% of today's" and for the busy slowdown.
- keras: bench/keras_lab.py (the course notebook's model.fit) on the same images in a separate Python
  (--keras-python; TensorFlow when that Python has it, as the course runs it; KERAS_BACKEND=torch otherwise).
- one-thread: `convolab train ... --threads 1`, what the busy-machine note suggests on 2 cores.
With --recipe fast or best, convolab and one-thread train that recipe instead (`convolab train NAME --recipe NAME`):
its BatchNormalization model is not cut into shards, so convolab runs on PyTorch's threads; before and keras, which
are about the lab's CNN, are not run.
Seconds per epoch are each program's own training time (convolab: history.json's per-epoch seconds; Keras: model.fit's
wall time, its graph tracing included), so loading data and testing count for neither. The report ends with the
ratios busy/quiet, convolab/before (quiet) and convolab/Keras, and records the CPU, the usable cores, the load
average before each measurement and the thread policy. Two quiet epochs of the same side differ by up to 10% on a
shared machine, more than the 5% the quiet goal allows, so --quiet-pairs adds quiet-only pairs of convolab and
before, their order alternating (convolab first, then before first, ...), and the quiet goal is judged on the median
of every pair's ratio (each round's quiet pair included), with its spread. On a machine that other jobs share, "quiet" is only as quiet
as they leave it: the load averages say how quiet it was.

The hour moves a run's median by more than the goal's 5% on this kind of machine (BENCHMARKS.md, "A busy machine"), so
--pool reads the printed output of earlier runs (saved files) instead of measuring, and reports every quiet pair they
hold together: the median, its 95% interval from order statistics (distribution-free), the geometric mean, and each
file's own median and busy/quiet.
"""
from __future__ import annotations

import argparse
import ctypes
import math
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_lab import run_convolab, run_keras  # noqa: E402  (the lab benchmark's runners)

BUSY_PROGRAM = ["python3", "-c", "while True: pass"]
PR_SET_PDEATHSIG = 1
SIDES = ("convolab", "before", "keras", "one-thread")
LAB_SIDES = ("convolab", "before", "keras")
RECIPE_SIDES = ("convolab", "one-thread")

# `convolab train` with the policy that puts every batch in one shard and leaves PyTorch's threads alone: the engine's
# CPU behaviour before shards.py (bench-only; users have no switch for it).
BEFORE_SHARDS = textwrap.dedent("""
    import sys
    import convolab.train
    from convolab.cli import main
    from convolab.shards import ShardPolicy
    convolab.train.choose_policy = lambda *args, **kwargs: ShardPolicy(1, 1, None, "before shards: OpenMP threads")
    sys.exit(main(sys.argv[1:]))
""")

# --- the machine ---------------------------------------------------------------------------------------------------------

def cpu_model() -> str:
    """The CPU's name from /proc/cpuinfo (Linux), else platform's."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> float:
    return os.getloadavg()[0]


def die_with_parent() -> None:
    """In a child before it runs: ask Linux to kill it when this script ends, however it ends (prctl PDEATHSIG)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        pass


def end_on_sigterm() -> None:
    """SIGTERM ends this script through its `with` and `finally` blocks, so the busy program is ended too."""
    def handle(signum, frame):
        raise SystemExit(128 + signum)
    signal.signal(signal.SIGTERM, handle)


class BusyCore:
    """One other program holding one core for the duration of a `with` block; it is always ended afterwards."""

    def __init__(self, busy: bool):
        self.busy, self.process = busy, None

    def __enter__(self) -> "BusyCore":
        if self.busy:
            self.process = subprocess.Popen(BUSY_PROGRAM, preexec_fn=die_with_parent)
            time.sleep(0.5)                  # let it start spinning before the measurement does
        return self

    def __exit__(self, *exc) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()


# --- the sides ------------------------------------------------------------------------------------------------------------

def measure(side: str, args: argparse.Namespace) -> float:
    """Seconds per epoch of one side, once."""
    if side == "keras":
        return run_keras(args.keras_python, "cnn", args.epochs, args.train_n)["s_per_epoch"]
    extra = (["--recipe", args.recipe] if args.recipe else []) + (["--threads", "1"] if side == "one-thread" else [])
    program = [sys.executable, "-c", BEFORE_SHARDS] if side == "before" else None
    return run_convolab(args.recipe or "cnn", args.epochs, args.train_n, extra, program=program)["s_per_epoch"]


def keras_backend_for(python: str) -> str:
    """tensorflow when that Python has it (the course's Keras), else torch."""
    probe = subprocess.run([python, "-c", "import tensorflow"], capture_output=True, check=False)
    return "tensorflow" if probe.returncode == 0 else "torch"


# --- earlier runs, pooled ---------------------------------------------------------------------------------------------

PAIRS_LINE = re.compile(r"^convolab quiet / before quiet, per pair \((\d+) pairs\): (.+)$", re.MULTILINE)
BUSY_LINE = re.compile(r"convolab busy / convolab quiet: ([0-9.]+)")


def read_run(text: str) -> tuple[list[float], float | None]:
    """(the quiet pairs' ratios convolab/before, the run's busy/quiet or None) from one run's printed output; ValueError
    when it holds no pairs line or a malformed one."""
    found = PAIRS_LINE.search(text)
    if found is None:
        raise ValueError("no 'convolab quiet / before quiet, per pair' line "
                         "(a run with both convolab and before among its --sides prints it)")
    ratios = [float(value) for value in found.group(2).split(", ")]
    if len(ratios) != int(found.group(1)):
        raise ValueError(f"the pairs line says {found.group(1)} pairs but lists {len(ratios)}")
    busy = BUSY_LINE.search(text)
    return ratios, float(busy.group(1)) if busy else None


def median_interval(values: list[float], confidence: float = 0.95) -> tuple[float, float]:
    """A distribution-free interval for the median: the k-th smallest and k-th largest values, with k the largest rank
    for which fewer than k of n values fall below the median with probability at most (1 - confidence) / 2 (a
    Binomial(n, 1/2) count). The whole range when n is too small for that."""
    ordered = sorted(values)
    n = len(ordered)
    tail, cumulative, k = (1 - confidence) / 2, 0.0, 0
    for count in range(n + 1):
        cumulative += math.comb(n, count) / 2 ** n          # P(fewer than count + 1 values below the median)
        if cumulative > tail:
            break
        k = count + 1
    k = max(k, 1)
    return ordered[k - 1], ordered[n - k]


def pool(paths: list[str]) -> int:
    """Print the quiet pairs of earlier runs (their saved output), pooled; 2 when a file cannot be read."""
    all_ratios: list[float] = []
    for path in paths:
        try:
            ratios, busy = read_run(Path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as error:
            print(f"bench_busy --pool: cannot use {path}: {error}", file=sys.stderr)
            print("fix: give files that hold a run's printed output (bench/results/bench_busy-*.txt)", file=sys.stderr)
            return 2
        all_ratios.extend(ratios)
        print(f"  {path}: {len(ratios)} pairs, median {statistics.median(ratios):.3f}"
              + (f", busy/quiet {busy:.2f}" if busy is not None else ""))
    low, high = median_interval(all_ratios)
    geometric = math.exp(statistics.fmean(math.log(ratio) for ratio in all_ratios))
    print(f"pooled, {len(all_ratios)} quiet pairs from {len(paths)} runs: convolab quiet / before quiet median "
          f"{statistics.median(all_ratios):.3f} (95% interval {low:.3f}-{high:.3f}, order statistics), geometric mean "
          f"{geometric:.3f} (goal <= 1.05)")
    return 0


# --- main -------------------------------------------------------------------------------------------------------------------

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--train-n", type=int, default=12000)
    parser.add_argument("--rounds", type=int, default=1, help="repeat quiet+busy for every side; medians reported")
    parser.add_argument("--keras-python", default="/tmp/keras-venv/bin/python",
                        help="a Python with keras (and TensorFlow for the course's Keras); default: /tmp/keras-venv, "
                             "else this one")
    parser.add_argument("--keras-backend", default=None, help="tensorflow or torch (default: tensorflow if present)")
    parser.add_argument("--sides", default=None, help=f"which of {','.join(SIDES)} to run (default: "
                        f"{','.join(LAB_SIDES)}; with --recipe {','.join(RECIPE_SIDES)})")
    parser.add_argument("--recipe", choices=("fast", "best"), default=None,
                        help="train this recipe instead of the lab's CNN (sides convolab and one-thread only)")
    parser.add_argument("--quiet-pairs", type=int, default=4,
                        help="extra quiet-only convolab/before pairs, order alternating (default 4; 0: none)")
    parser.add_argument("--pool", nargs="+", metavar="FILE",
                        help="measure nothing: pool the quiet pairs of earlier runs' saved output")
    args = parser.parse_args()
    if args.pool:
        return pool(args.pool)
    end_on_sigterm()
    allowed = RECIPE_SIDES if args.recipe else SIDES
    sides = [side.strip() for side in (args.sides or ",".join(RECIPE_SIDES if args.recipe else LAB_SIDES)).split(",")
             if side.strip()]
    if unknown := set(sides) - set(allowed):
        raise SystemExit(f"--sides: {sorted(unknown)} not possible here; expected some of {','.join(allowed)}")
    if not Path(args.keras_python).is_file():
        args.keras_python = sys.executable
    if "keras" in sides:
        args.keras_backend = args.keras_backend or keras_backend_for(args.keras_python)
        os.environ["KERAS_BACKEND"] = args.keras_backend          # keras_lab.py's Python inherits it

    from convolab.shards import choose_policy, usable_cores
    import torch

    cores = usable_cores()
    what = f"recipe {args.recipe!r}" if args.recipe else "lab CNN"
    print(f"bench_busy: {what}, {args.epochs} epoch(s) on the first {args.train_n} Fashion-MNIST images"
          + ("" if args.recipe else ", batch 32, Adam 0.001") + f"; busy = one `{' '.join(BUSY_PROGRAM)}`")
    print(f"CPU: {cpu_model()}, {os.cpu_count()} cores ({cores} usable); torch {torch.__version__}; "
          f"load average at start {load_average():.2f}")
    print(f"policy (convolab): {choose_policy('all', cores, has_batch_norm=bool(args.recipe)).reason}; "
          f"before: one shard, PyTorch's {torch.get_num_threads()} OpenMP threads; one-thread: --threads 1"
          + (f"; keras: {args.keras_python} with KERAS_BACKEND={args.keras_backend}" if "keras" in sides else ""),
          flush=True)
    times: dict[tuple[str, str], list[float]] = {}
    loads: dict[tuple[str, str], list[float]] = {}
    for round_index in range(args.rounds):
        for side in sides:
            for condition in ("quiet", "busy"):
                load = load_average()
                with BusyCore(condition == "busy"):
                    seconds = measure(side, args)
                times.setdefault((side, condition), []).append(seconds)
                loads.setdefault((side, condition), []).append(load)
                print(f"  round {round_index + 1}  {side:8s} {condition:5s} {seconds:7.2f} s/epoch   "
                      f"(load average before: {load:.2f})", flush=True)
    pairs = []   # (convolab quiet, before quiet): each round's, then the extra quiet-only ones
    if {"convolab", "before"} <= set(sides):
        pairs = list(zip(times[("convolab", "quiet")], times[("before", "quiet")]))
        for pair_index in range(args.quiet_pairs):
            order = ("convolab", "before") if pair_index % 2 == 0 else ("before", "convolab")
            seconds = {}
            for side in order:
                load = load_average()
                seconds[side] = measure(side, args)
                print(f"  pair {pair_index + 1}   {side:8s} quiet {seconds[side]:7.2f} s/epoch   "
                      f"(load average before: {load:.2f})", flush=True)
            pairs.append((seconds["convolab"], seconds["before"]))
    median = {key: statistics.median(values) for key, values in times.items()}
    print(f"\n| side | quiet s/epoch | busy s/epoch | busy/quiet | load avg before (quiet, busy) |")
    print("|---|---|---|---|---|")
    for side in sides:
        quiet, busy = median[(side, "quiet")], median[(side, "busy")]
        print(f"| {side} | {quiet:.2f} | {busy:.2f} | {busy / quiet:.2f} | "
              f"{statistics.median(loads[(side, 'quiet')]):.2f}, {statistics.median(loads[(side, 'busy')]):.2f} |")
    if {"convolab", "before"} <= set(sides):
        ratios = sorted(convolab / before for convolab, before in pairs)
        print(f"convolab quiet / before quiet, per pair ({len(ratios)} pairs): "
              f"{', '.join(f'{ratio:.3f}' for ratio in ratios)}")
        print(f"convolab quiet / before quiet: median of the pairs {statistics.median(ratios):.3f} (goal <= 1.05; "
              f"range {ratios[0]:.3f}-{ratios[-1]:.3f}); convolab busy / convolab quiet: "
              f"{median[('convolab', 'busy')] / median[('convolab', 'quiet')]:.2f} (goal <= 2)")
    if {"convolab", "one-thread"} <= set(sides):
        print(f"one-thread / convolab: quiet {median[('one-thread', 'quiet')] / median[('convolab', 'quiet')]:.2f}, "
              f"busy {median[('one-thread', 'busy')] / median[('convolab', 'busy')]:.2f}; one-thread busy / convolab "
              f"quiet: {median[('one-thread', 'busy')] / median[('convolab', 'quiet')]:.2f}")
    if {"convolab", "keras"} <= set(sides):
        print(f"convolab / keras: quiet {median[('convolab', 'quiet')] / median[('keras', 'quiet')]:.3f}, "
              f"busy {median[('convolab', 'busy')] / median[('keras', 'busy')]:.3f}")
    print(f"load average at the end {load_average():.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
