"""Training on several processes with PyTorch's own engine: torchrun starts them, DistributedDataParallel keeps their
weights equal, and this module holds the few decisions convolab makes on top of the two.

    context_from_environment() -> DistributedContext | None   # torchrun's RANK, WORLD_SIZE, LOCAL_RANK, or None
    start(context, device_name)                              # the process group: gloo on CPU, NCCL on CUDA
    wrap(model, context, device) -> DistributedDataParallel  # gradients summed with each rank's share of the batch
    shard_batches(...)                                        # this rank's part of every global batch of the shuffle
    reduce_sums(values, device) / agree(flag, device)         # totals over all ranks / "does any rank want to stop?"
    launch(argv, nproc, run_dir) -> int                       # `convolab train --nproc N`: torchrun, in this process

Why N processes compute what one does. Every rank draws the same permutation from the same seeded generator (the shuffle
generator's state is part of the checkpoint, which is what `set_epoch` gives a DistributedSampler), cuts it into the
same global batches of `batch_size`, and takes its own contiguous part of each: `tensor_split(world_size)[rank]`, so the
parts cover the batch exactly, without the padding duplicates DistributedSampler adds. One process's gradient is the
mean over the global batch of n images, (1/n) sum_i g_i. Rank r holds the mean over its n_r images, m_r; DDP's
default would average the m_r, which is the global mean only when every n_r is equal (not for a short last batch). So
the gradient hook multiplies m_r by n_r / n before the all-reduce sums: sum_r (n_r / n) m_r = (1/n) sum_i g_i, exactly
the one-process gradient up to the order of float additions. Evaluation sums loss, correct and count over the ranks,
each rank taking a contiguous part of the set, so every image is counted once.

Stopping. Ranks must stop at the same step, or one waits in a collective forever: after every step they all-reduce
"do I want to stop" (Ctrl-C, or the SIGTERM torchrun sends when a sibling dies), so all see the same answer. A rank that
dies makes its peers' next collective fail at once (the connection closes); torchrun then stops the rest (SIGTERM, then
SIGKILL after its shutdown timeout), and collectives time out after CONVOLAB_DIST_TIMEOUT seconds (default 300) in case
a peer hangs without dying. Only rank 0 writes the run directory, so the last checkpoint it wrote is kept.
"""
from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist

from convolab.errors import TrainingError

DEFAULT_TIMEOUT_SECONDS = 300


class DistributedJobFailed(TrainingError):
    """A process of a distributed job stopped, so the whole job stopped; not a user's input error."""

    exit_code = 1


class DistributedJobInterrupted(TrainingError):
    """Ctrl-C (or a stop signal) ended every process of the job; rank 0 saved a resumable checkpoint."""

    exit_code = 130


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands in a torchrun job."""

    rank: int
    world_size: int
    local_rank: int

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes the run directory and prints progress."""
        return self.rank == 0


def context_from_environment(environment: dict[str, str] | None = None) -> DistributedContext | None:
    """The job torchrun started this process in (RANK, WORLD_SIZE, LOCAL_RANK), or None outside torchrun."""
    environment = os.environ if environment is None else environment
    if "RANK" not in environment or "WORLD_SIZE" not in environment:
        return None
    try:
        return DistributedContext(rank=int(environment["RANK"]), world_size=int(environment["WORLD_SIZE"]),
                                  local_rank=int(environment.get("LOCAL_RANK", 0)))
    except ValueError:
        raise TrainingError(f"RANK={environment['RANK']!r}, WORLD_SIZE={environment['WORLD_SIZE']!r}; expected integers",
                            fix="start distributed training with torchrun, which sets them") from None


def timeout_seconds() -> float:
    """How long a collective waits for a silent peer: $CONVOLAB_DIST_TIMEOUT, default 300 s."""
    text = os.environ.get("CONVOLAB_DIST_TIMEOUT", str(DEFAULT_TIMEOUT_SECONDS))
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if value <= 0:
        raise TrainingError(f"CONVOLAB_DIST_TIMEOUT={text!r}; expected a positive number of seconds",
                            fix="set CONVOLAB_DIST_TIMEOUT=300, say")
    return value


def start(context: DistributedContext, device_name: str = "auto") -> None:
    """Join the job's process group: NCCL with one GPU per local rank when training on CUDA, gloo on the CPU."""
    use_cuda = device_name in ("auto", "cuda") and torch.cuda.is_available()
    if device_name == "mps":
        raise TrainingError("distributed training on 'mps'; expected cpu or cuda (PyTorch has no MPS backend for it)",
                            fix="use --device cpu, or train in one process")
    if use_cuda:
        if context.local_rank >= torch.cuda.device_count():
            raise TrainingError(f"local rank {context.local_rank} but {torch.cuda.device_count()} GPU(s) on this node",
                                fix="start at most one process per GPU: --nproc-per-node equal to the GPU count")
        torch.cuda.set_device(context.local_rank)   # "cuda" from here on means this rank's own GPU
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo", timeout=timedelta(seconds=timeout_seconds()))


def stop() -> None:
    """Leave the process group (at the end of a job; a failed job's processes simply exit)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def end_rank_process(status: int) -> None:
    """End a torchrun rank's process with `status` once its command is done, without CPython's final teardown.

    Why: what PyTorch leaves of a job after destroy_process_group (gloo's worker threads, the futures of the gradient
    hook, which hold Python objects) can be destroyed during that teardown, when another thread can no longer take
    the GIL: the thread is ended inside C++ code that may not be unwound, and the process aborts ("terminate called
    without an active exception", SIGABRT) after its work is done. Seen about once in a few hundred jobs, under load;
    torchrun then stops the job and calls it failed. Everything a rank writes is written and closed by now (files
    atomically, the checkpoint and metrics by rank 0), so the buffers are flushed, the atexit handlers run while
    Python is whole, and the process ends there. Only for a rank: a process of its own that torchrun started."""
    import atexit
    import sys

    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):   # a closed pipe: nothing more can be said
            pass
    os._exit(status)


def check_batch_size(count: int, batch_size: int, world_size: int) -> None:
    """Every rank needs at least one image of every global batch, the last (shorter) one included."""
    last = count % batch_size or batch_size
    if min(batch_size, last) < world_size:
        raise TrainingError(
            f"{count} training images in batches of {batch_size} leave a batch of {min(batch_size, last)} for "
            f"{world_size} processes; expected at least one image per process in every batch",
            fix="choose --batch-size (or --train-limit) so that every batch, the last one too, holds at least "
                f"{world_size} images",
        )


# --- gradients: each rank's mean weighted by its share of the global batch ----------------------------------------

class BatchShare:
    """This rank's share of the current global batch, n_r / n: set by shard_batches, read by the gradient hook."""

    def __init__(self):
        self.share = 1.0


def _weighted_sum_hook(state, bucket):
    """DDP communication hook: (n_r / n) * local mean gradient, summed over ranks = the global batch's mean gradient.

    No annotations: DDP checks them against the real classes, and this module's are strings (future annotations)."""
    tensor = bucket.buffer().mul_(state.share)
    return dist.all_reduce(tensor, async_op=True).get_future().then(lambda future: future.value()[0])


def wrap(model: torch.nn.Module, device: torch.device) -> tuple[torch.nn.Module, BatchShare]:
    """`model` in DistributedDataParallel (rank 0's weights broadcast to all), with the weighted-sum gradient hook."""
    share = BatchShare()
    device_ids = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else None
    trainer = torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
    trainer.register_comm_hook(share, _weighted_sum_hook)
    return trainer, share


# --- data: every rank's part of the same shuffle --------------------------------------------------------------------

def shard_batches(images, labels: torch.Tensor, batch_size: int, generator: torch.Generator, device: torch.device,
                  context: DistributedContext, share: BatchShare) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """This rank's part of each global batch of one shuffled epoch (float images / 255 on `device`, labels).

    The permutation is the one `data.iterate_batches` draws in one process (the same call on the same generator), so
    the global batches are the same; each is split into world_size contiguous parts, sizes differing by at most one.
    """
    count = len(labels)
    order = torch.randperm(count, generator=generator)
    for start in range(0, count, batch_size):
        batch = order[start:start + batch_size]
        part = batch.tensor_split(context.world_size)[context.rank]
        share.share = len(part) / len(batch)
        # uint8 crosses to the device and is scaled there, as iterate_batches does
        yield images[part].to(device, non_blocking=True).float().div_(255.0), labels[part].to(device, non_blocking=True)


def part_of(count: int, context: DistributedContext) -> slice:
    """This rank's contiguous part of `count` items (evaluation): the parts cover every item exactly once."""
    return slice(count * context.rank // context.world_size, count * (context.rank + 1) // context.world_size)


def reduce_sums(values: list[float], device: torch.device) -> list[float]:
    """Each value summed over all ranks (float64, exact for counts below 2**53)."""
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.tolist()


def reduce_evaluation(metrics: dict[str, float], device: torch.device) -> dict[str, float]:
    """train.evaluate's mean loss, accuracy and count on this rank's part, turned into the whole set's."""
    count = metrics["count"]
    local = [metrics["loss"] * count if count else 0.0, round(metrics["accuracy"] * count) if count else 0.0, count]
    loss_sum, correct, total = reduce_sums(local, device)
    if total == 0:
        return {"loss": float("nan"), "accuracy": float("nan"), "count": 0}
    return {"loss": loss_sum / total, "accuracy": correct / total, "count": int(total)}


def agree(flag: bool, device: torch.device) -> bool:
    """True on every rank if `flag` is True on any rank (after each step: do we stop here?)."""
    tensor = torch.tensor([1 if flag else 0], dtype=torch.int32, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return bool(tensor.item())


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)   # Ctrl-C, and torchrun's "a sibling failed, stop"


# --- `convolab train --nproc N` -------------------------------------------------------------------------------------

def strip_nproc(argv: list[str]) -> list[str]:
    """The command line without `--nproc N` / `--nproc=N`: what each started process runs."""
    kept, skip = [], False
    for argument in argv:
        if skip:
            skip = False
        elif argument == "--nproc":
            skip = True
        elif not argument.startswith("--nproc="):
            kept.append(argument)
    return kept


def _describe_failure(rank: int, failure) -> str:
    code = failure.exitcode
    if code is not None and code < 0:
        try:
            how = f"was killed by signal {signal.Signals(-code).name}"
        except ValueError:
            how = f"was killed by signal {-code}"
    else:
        how = f"exited with status {code}"
    return f"process of rank {rank} (pid {failure.pid}) {how}"


def root_cause(failures: dict) -> tuple[int, object]:
    """The failure that started it: not a process torchrun stopped (SIGTERM) nor one that stopped because a peer
    vanished (DistributedJobFailed's status 1), if there is such a one; the earliest otherwise."""
    def order(item):
        rank, failure = item
        return (failure.exitcode == -signal.SIGTERM, failure.exitcode == DistributedJobFailed.exit_code,
                failure.timestamp, rank)
    return min(failures.items(), key=order)


def _kept_checkpoint(run_dir: Path | None, nproc: int) -> str:
    if run_dir is None or not (run_dir / "checkpoint.pt").is_file():
        return "no checkpoint was written yet"
    from convolab.runs import read_checkpoint

    try:
        checkpoint = read_checkpoint(run_dir / "checkpoint.pt")
        epoch, step = int(checkpoint["epoch"]), int(checkpoint.get("step") or 0)
    except Exception:  # noqa: BLE001 - a damaged checkpoint is reported by --resume itself
        return f"the checkpoint in {run_dir} is kept"
    where = f"at epoch {epoch + 1}, step {step}" if step else f"after epoch {epoch}"
    return (f"the last checkpoint ({where}) is kept in {run_dir}; continue with: "
            f"convolab train --resume {run_dir} --nproc {nproc}")


def launch(argv: list[str], nproc: int, run_dir: Path | None) -> int:
    """Run `convolab <argv>` in `nproc` processes on this machine through torchrun's own launcher; the exit status.

    A failed process stops every process (torchrun's --max-restarts 0); the failure is told in one paragraph.
    """
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    arguments = get_args_parser().parse_args(["--standalone", f"--nproc-per-node={nproc}", "--max-restarts=0",
                                              "-m", "convolab", *strip_nproc(argv)])
    try:
        run(arguments)
    except ChildFailedError as error:
        codes = {failure.exitcode for failure in error.failures.values()}
        if codes == {130}:
            raise DistributedJobInterrupted(f"interrupted: every process stopped; {_kept_checkpoint(run_dir, nproc)}"
                                            ) from None
        if codes == {2}:
            return 2   # a bad input: every process already printed why
        rank, failure = root_cause(error.failures)
        raise DistributedJobFailed(f"the job stopped because the {_describe_failure(rank, failure)}; every other "
                                   f"process was stopped; {_kept_checkpoint(run_dir, nproc)}") from None
    except SignalException as error:
        raise DistributedJobInterrupted(f"stopped by {signal.Signals(error.sigval).name}: every process stopped; "
                            f"{_kept_checkpoint(run_dir, nproc)}") from None
    return 0
