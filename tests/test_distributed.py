"""Distributed training through the real torchrun (gloo on the CPU, two processes of one thread each): the same weights
as one process with the same global batch, exact evaluation counts, resume, a killed rank, Ctrl-C, and two "nodes"
against one rendezvous on 127.0.0.1. Every launch has a timeout; the data is a small streamed folder, decoded once."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from convolab import distributed
from convolab.cli import main
from convolab.errors import TrainingError

pytestmark = pytest.mark.slow

MODEL = "conv4x3-relu,maxpool2,flatten,dense"
LAUNCH_TIMEOUT = 240          # seconds for one torchrun job, start to end, on a busy 2-core machine
# 300 images, 240 for training after the stratified split, 192 after the validation split; batches of 45 leave a last
# batch of 12 and parts of 23 and 22 images: unequal shares, which the gradient weighting must get right.
TRAIN_FLAGS = ["--stream", "--image-size", "12,12", "--batch-size", "45", "--learning-rate", "0.01",
               "--validation-split", "0.2",
               "--threads", "1", "--quiet"]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A folder of 3 classes x 100 small PNGs whose cache is built once here, and the environment every rank gets."""
    root = tmp_path_factory.mktemp("distributed")
    folder = root / "shapes"
    generator = np.random.default_rng(0)
    for label, name in enumerate(("dark", "mid", "light")):
        (folder / name).mkdir(parents=True)
        for index in range(100):
            pixels = generator.normal(60 + 60 * label, 40, (12, 12, 3)).clip(0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / name / f"{index:03d}.png")
    environment = {**os.environ, "XDG_CACHE_HOME": str(root / "cache"), "OMP_NUM_THREADS": "1",
                   "CONVOLAB_DIST_TIMEOUT": "60", "PYTHONUNBUFFERED": "1"}
    subprocess.run([sys.executable, "-m", "convolab", "data", str(folder), "--stream", "--image-size", "12,12"],
                   env=environment, check=True, capture_output=True, timeout=LAUNCH_TIMEOUT)
    return {"root": root, "folder": folder, "env": environment}


def torchrun(lab, *arguments: str, timeout: float = LAUNCH_TIMEOUT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", *arguments], env=lab["env"],
                          cwd=lab["root"], capture_output=True, text=True, timeout=timeout)


def convolab(lab, *arguments: str, timeout: float = LAUNCH_TIMEOUT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "convolab", *arguments], env=lab["env"], cwd=lab["root"],
                          capture_output=True, text=True, timeout=timeout)


def train_arguments(lab, out: Path, epochs: int) -> list[str]:
    return ["train", MODEL, "--data", str(lab["folder"]), "--out", str(out), "--epochs", str(epochs), *TRAIN_FLAGS]


def weights(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "checkpoint.pt", weights_only=True)["model"]


def assert_same_weights(first: Path, second: Path, tolerance: float = 1e-5) -> None:
    a, b = weights(first), weights(second)
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=tolerance, atol=tolerance, msg=key)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def reference(lab):
    """The same training in one process (in this one) and in two through torchrun: 2 epochs each."""
    one, two = lab["root"] / "one-process", lab["root"] / "two-processes"
    threads = torch.get_num_threads()
    previous = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = lab["env"]["XDG_CACHE_HOME"]
    try:
        assert main(train_arguments(lab, one, 2)) == 0
    finally:
        torch.set_num_threads(threads)
        os.environ.pop("XDG_CACHE_HOME") if previous is None else os.environ.update(XDG_CACHE_HOME=previous)
    job = torchrun(lab, "--standalone", "--nproc-per-node", "2", "-m", "convolab", *train_arguments(lab, two, 2))
    assert job.returncode == 0, job.stderr[-3000:]
    return {"one": one, "two": two, "stdout": job.stdout}


def test_two_processes_train_the_weights_one_process_trains(reference):
    assert_same_weights(reference["one"], reference["two"])


def test_evaluation_counts_equal_the_one_process_counts_exactly(reference):
    one, two = (json.loads((reference[key] / "history.json").read_text()) for key in ("one", "two"))
    # 48 validation images: val_accuracy is correct/48, so equal floats are equal counts
    assert [row["val_accuracy"] for row in one] == [row["val_accuracy"] for row in two]
    metrics = [json.loads((reference[key] / "metrics.json").read_text()) for key in ("one", "two")]
    assert metrics[0]["confusion_matrix"] == metrics[1]["confusion_matrix"]
    assert metrics[0]["test_count"] == metrics[1]["test_count"] == 60
    assert metrics[0]["test_accuracy"] > 0.5   # it learned: the counts are not one class everywhere
    config = json.loads((reference["two"] / "config.json").read_text())
    assert config["dataset"]["validation_size"] == 48 and config["dataset"]["train_size"] == 192


def test_only_rank_0_prints_and_writes(reference):
    assert reference["stdout"].count("test loss") == 1   # --quiet: one final line, from rank 0 only
    assert sorted(path.name for path in reference["two"].parent.iterdir() if path.name.startswith("two")) == \
        ["two-processes"]


def test_a_resumed_distributed_run_equals_an_uninterrupted_one(lab, reference):
    run = lab["root"] / "resumed"
    first = convolab(lab, *train_arguments(lab, run, 1), "--nproc", "2")
    assert first.returncode == 0, first.stderr[-3000:]
    second = convolab(lab, "train", "--resume", str(run), "--epochs", "2", "--nproc", "2")
    assert second.returncode == 0, second.stderr[-3000:]
    assert_same_weights(run, reference["two"], tolerance=0)
    assert [row["epoch"] for row in json.loads((run / "history.json").read_text())] == [1, 2]


def two_rendezvous_nodes(lab, out: Path) -> list[subprocess.Popen]:
    endpoint = f"127.0.0.1:{free_port()}"
    command = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1",
               "--rdzv-backend", "c10d", "--rdzv-endpoint", endpoint, "--rdzv-id", "convolab-test",
               "-m", "convolab", *train_arguments(lab, out, 2)]
    return [subprocess.Popen(command, env=lab["env"], cwd=lab["root"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for _ in range(2)]


def test_two_nodes_on_one_rendezvous_train_as_two_processes_on_one(lab, reference):
    out = lab["root"] / "two-nodes"
    nodes = two_rendezvous_nodes(lab, out)
    try:
        outputs = [node.communicate(timeout=LAUNCH_TIMEOUT) for node in nodes]
    finally:
        for node in nodes:
            node.kill()
    assert [node.returncode for node in nodes] == [0, 0], [error[-2000:] for _, error in outputs]
    assert_same_weights(out, reference["two"])


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(child) for child in (task / "children").read_text().split()]
    return found


def rank_of(pid: int) -> int | None:
    environment = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    ranks = [entry.split(b"=", 1)[1] for entry in environment if entry.startswith(b"RANK=")]
    return int(ranks[0]) if ranks else None


def start_long_job(lab, out: Path) -> tuple[subprocess.Popen, list[int]]:
    """`convolab train --nproc 2` for far more epochs than the test waits; returns once a checkpoint is on disk."""
    job = subprocess.Popen([sys.executable, "-m", "convolab", *train_arguments(lab, out, 2000), "--nproc", "2"],
                           env=lab["env"], cwd=lab["root"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, start_new_session=True)
    deadline = time.monotonic() + LAUNCH_TIMEOUT
    while not (out / "checkpoint.pt").is_file():
        if job.poll() is not None or time.monotonic() > deadline:
            job.kill()
            pytest.fail(f"the job ended or never wrote a checkpoint: {job.communicate()[1][-3000:]}")
        time.sleep(0.2)
    workers = [pid for pid in children(job.pid) if rank_of(pid) is not None]
    assert len(workers) == 2
    return job, workers


def wait_for_all(job: subprocess.Popen, workers: list[int], seconds: float) -> tuple[str, float]:
    started = time.monotonic()
    try:
        _, error = job.communicate(timeout=seconds)
    finally:
        os.killpg(job.pid, signal.SIGKILL) if job.poll() is None else None
    for pid in workers:   # no process left behind
        while Path(f"/proc/{pid}").exists() and Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z":
            assert time.monotonic() - started < seconds, f"worker {pid} still running"
            time.sleep(0.1)
    return error, time.monotonic() - started


def test_a_killed_rank_stops_the_job_with_a_message_and_the_checkpoint_is_kept(lab):
    out = lab["root"] / "killed"
    job, workers = start_long_job(lab, out)
    victim = next(pid for pid in workers if rank_of(pid) == 1)
    os.kill(victim, signal.SIGKILL)
    error, seconds = wait_for_all(job, workers, 60)
    assert job.returncode == 1, error[-3000:]
    assert seconds < 30
    assert "the job stopped because the process of rank 1" in error and "killed by signal SIGKILL" in error
    assert "the last checkpoint (after epoch" in error and f"convolab train --resume {out} --nproc 2" in error
    assert torch.load(out / "checkpoint.pt", weights_only=True)["epoch"] >= 1


def test_ctrl_c_stops_every_rank_after_the_same_step_and_saves_a_resumable_checkpoint(lab):
    out = lab["root"] / "interrupted"
    job, workers = start_long_job(lab, out)
    os.killpg(job.pid, signal.SIGINT)   # what the terminal does: the signal goes to the launcher and every worker
    error, seconds = wait_for_all(job, workers, 60)
    assert job.returncode == 130, error[-3000:]
    assert seconds < 30
    assert "every process stopped" in error and f"--resume {out} --nproc 2" in error
    assert error.count("interrupted at epoch") == 1   # rank 0 says it, rank 1 stops quietly
    checkpoint = torch.load(out / "checkpoint.pt", weights_only=True)
    assert checkpoint["status"] == "interrupted"


# --- the pieces, without processes -------------------------------------------------------------------------------

def test_parts_cover_every_item_once():
    for count in (0, 1, 7, 48):
        parts = [distributed.part_of(count, distributed.DistributedContext(rank, 3, rank)) for rank in range(3)]
        assert sum((list(range(count))[part] for part in parts), []) == list(range(count))


def test_a_batch_too_small_to_share_is_refused():
    distributed.check_batch_size(count=192, batch_size=45, world_size=2)
    with pytest.raises(TrainingError, match="at least one image per process"):
        distributed.check_batch_size(count=181, batch_size=45, world_size=2)   # the last batch holds 1 image
    with pytest.raises(TrainingError, match="--batch-size"):
        distributed.check_batch_size(count=100, batch_size=1, world_size=2)


def test_the_environment_torchrun_sets_is_read():
    assert distributed.context_from_environment({}) is None
    context = distributed.context_from_environment({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"})
    assert context == distributed.DistributedContext(rank=3, world_size=4, local_rank=1) and not context.is_main
    with pytest.raises(TrainingError, match="expected integers"):
        distributed.context_from_environment({"RANK": "x", "WORLD_SIZE": "2"})


def test_nproc_is_taken_off_the_line_the_processes_run():
    assert distributed.strip_nproc(["train", "cnn", "--nproc", "2", "--epochs", "3"]) == ["train", "cnn", "--epochs", "3"]
    assert distributed.strip_nproc(["train", "--nproc=4", "cnn"]) == ["train", "cnn"]


def test_the_root_cause_is_the_process_that_was_not_stopped_by_the_others():
    from types import SimpleNamespace

    failures = {0: SimpleNamespace(exitcode=-signal.SIGTERM, timestamp=1, pid=10),
                1: SimpleNamespace(exitcode=-signal.SIGKILL, timestamp=2, pid=11),
                2: SimpleNamespace(exitcode=1, timestamp=0, pid=12)}
    assert distributed.root_cause(failures)[0] == 1
    assert distributed.root_cause({0: failures[0], 2: failures[2]})[0] == 2


def test_a_rank_ends_with_its_status_its_output_and_its_exit_handlers_but_without_the_final_teardown(tmp_path):
    # end_rank_process: what a rank's `python -m convolab` does after main() (the teardown could abort it)
    marker = tmp_path / "atexit-ran"
    script = ("import atexit, sys\n"
              f"atexit.register(lambda: open({str(marker)!r}, 'w').write('yes'))\n"
              "print('done, unflushed', end='')\n"
              "class Teardown:\n"
              "    def __del__(self): print(' and torn down', end='')\n"
              "kept = Teardown()\n"
              "from convolab.distributed import end_rank_process\n"
              "end_rank_process(3)\n")
    ended = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert (ended.returncode, ended.stdout) == (3, "done, unflushed"), ended.stderr
    assert marker.read_text() == "yes"
