"""How a batch shares the CPU cores: a fixed number of single-threaded shards, run on as many threads as can go.

    policy = choose_policy("all", usable_cores(), has_batch_norm=False)   # ShardPolicy(shards=2, ...) on 2 cores
    pool = ShardPool(policy.shards)
    outputs = pool.map(function, items)          # items[0] on the calling thread, the rest on workers, in order
    logits = infer_in_shards(model, images, pool)  # eval-mode forward, shard by shard, concatenated
    logits, loss = sharded.train_step(images, labels, loss_fn)   # a training step's forward, loss, backward: .grad set

Why (measured on this project's 2-core CPU, BENCHMARKS.md "A busy machine"): PyTorch splits each operation over one
OpenMP thread per core, and those threads spin-wait for each other at every barrier. When another program holds one
core, the thread that shares it is descheduled for a whole time slice while its partner spins: one epoch of the lab's
CNN went from 2.1 s to 84.8 s. Fewer threads would avoid that, but the thread count changes the order in which
floats are summed, so a run that adapts its thread count to the load no longer repeats bit for bit.

So the work is divided in a way that does not depend on the thread count: each batch is cut into `shards` equal parts
(a number fixed for the whole run and recorded in its checkpoint), every part runs forward and backward with ONE
OpenMP thread, and the parts' gradients are added in shard order. Whether the shards run one after the other or on
several threads at once, every float is computed the same way: the count can follow the load step by step, and the
weights do not change. Threads that have nothing to do wait on a lock (they sleep), so a busy core costs a fair share
of the time, not a time slice per barrier. PyTorch releases Python's GIL inside its operations, so the shards'
arithmetic runs in parallel.

What cannot be cut: BatchNormalization in training normalises with the whole batch's mean and variance; shards
would each use their own. A model with it trains unsharded (choose_policy), with PyTorch's threads as before.
"""
from __future__ import annotations

import math
import os
import re
import threading
import weakref
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any, Iterator

import torch
from torch import nn

from convolab.errors import TrainingError

# More shards than this costs more in per-operation overhead at batch 32 than the extra cores return (8 images each).
MAX_SHARDS = 4


# --- the policy: pure decisions from a few facts about the machine and the model -------------------------------------

@dataclass(frozen=True)
class ShardPolicy:
    """shards: parts each batch is cut into (fixed for a run). workers: how many of them may run at once now.

    torch_threads: OpenMP threads for what runs outside the shards (1 when sharded: the shards are the parallelism),
    None to leave PyTorch's setting alone. reason: one line for logs and the run's machine record.
    """

    shards: int
    workers: int
    torch_threads: int | None
    reason: str

    @property
    def sharded(self) -> bool:
        return self.shards > 1


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, e.g. under taskset or a container limit), at least 1."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except (AttributeError, OSError):          # not Linux: every core the OS reports
        return max(os.cpu_count() or 1, 1)


def parse_threads(threads: str) -> int | None:
    """The `threads` setting as a number: None for "all" (and "adaptive", its former spelling), N for "N" (4 or "4").

    Plain ASCII digits only: '²' passes str.isdigit and then fails in int().
    """
    text = str(threads)
    if text in ("all", "adaptive"):
        return None
    if re.fullmatch(r"[0-9]{1,4}", text, re.ASCII) and int(text) > 0:
        return int(text)
    raise TrainingError(f"threads={threads!r}; expected all or a positive integer",
                        fix="use --threads all (the default) or --threads 1")


def choose_policy(threads: str, cores: int, has_batch_norm: bool, recorded_shards: int | None = None) -> ShardPolicy:
    """How a training run uses the CPU: decided once per run from the setting, the usable cores and the model.

    threads "all": one shard per usable core, at most MAX_SHARDS. "N": N shards, N threads at most.
    recorded_shards: a resumed run's checkpointed count, which wins (the weights depend on it, not on the cores).
    A model with BatchNormalization is not cut (see the module's docstring): it keeps PyTorch's threads, `threads`
    of them when a number is given.
    """
    wanted = parse_threads(threads)
    if has_batch_norm:
        return ShardPolicy(1, 1, wanted, "BatchNormalization needs whole batches: unsharded, PyTorch's threads")
    if recorded_shards is not None:
        shards, why = recorded_shards, "as recorded in the checkpoint"
    elif wanted is not None:
        shards, why = wanted, f"threads={wanted}"
    else:
        shards, why = min(cores, MAX_SHARDS), f"{cores} usable core{'s' if cores != 1 else ''}"
    workers = min(shards, wanted if wanted is not None else cores)
    return ShardPolicy(shards, max(workers, 1), 1, f"{shards} single-threaded shard(s) per batch ({why})")


def may_suggest_threads(policy: ShardPolicy, threads: str) -> bool:
    """Whether a run could get busy_machine_hint's note: on PyTorch's threads (not cut into shards), with their count
    left to convolab (no --threads N). The machine need only be looked at then."""
    return not policy.sharded and parse_threads(threads) is None


def busy_machine_hint(policy: ShardPolicy, threads: str, torch_thread_count: int, cores: int,
                      busy_elsewhere: float | None) -> str | None:
    """One line for a new run on PyTorch's threads (a BatchNormalization model, which is not cut into shards) when
    other programs already keep some of the cores busy; None otherwise.

    Those threads wait for each other at every operation, and one that shares its core with another program is
    descheduled while the rest wait: `fast` and `best` trained about 3 times slower with one busy program on 2 cores,
    and 1.4-1.7 times their quiet time on one thread (BENCHMARKS.md, "A busy machine"). The count is never changed
    by itself: the weights depend on it, and the same command must give the same weights.
    """
    if not may_suggest_threads(policy, threads) or busy_elsewhere is None:
        return None
    free = max(1, cores - math.floor(busy_elsewhere + 0.3))   # a core 70% busy counts as taken
    if free >= min(torch_thread_count, cores):
        return None
    return (f"other programs keep about {busy_elsewhere:.1f} of this machine's {cores} cores busy, and a model with "
            f"BatchNormalization trains on PyTorch's {torch_thread_count} threads, which wait for each other when one "
            f"is descheduled (about 3x slower with one busy program on 2 cores): --threads {free} (threads={free} in "
            "Python) may train much faster, with other, equally repeatable, results")


def workers_now(shards: int, limit: int | None, cores: int) -> int:
    """How many shards run at once for this step: never more than the usable cores, the shards, or a fixed limit.

    Read every step, so a run whose affinity is narrowed (taskset, a container) follows it; the weights do not depend
    on the answer.
    """
    return max(1, min(shards, cores, limit if limit is not None else shards))


def split_sizes(batch: int, shards: int) -> list[int]:
    """Sizes of the shards of a `batch`: as equal as possible, the larger first; never an empty shard.

    A function of the batch size only (never of the threads), so every run cuts a batch the same way.
    """
    parts = max(1, min(shards, batch))
    base, extra = divmod(batch, parts)
    return [base + 1 if index < extra else base for index in range(parts)]


# --- running shards ----------------------------------------------------------------------------------------------------

_shard_state = threading.local()


def shard_generator() -> torch.Generator | None:
    """The random generator of the shard running on this thread (Dropout draws from it), None outside shards."""
    return getattr(_shard_state, "generator", None)


def in_shard() -> bool:
    """True on a thread that is running a shard: a sharded module called there runs unsharded (no nesting)."""
    return getattr(_shard_state, "depth", 0) > 0


@contextmanager
def shard_context(generator: torch.Generator | None = None) -> Iterator[None]:
    """This thread runs a shard: one OpenMP thread, `generator` for its Dropout masks."""
    _shard_state.depth = getattr(_shard_state, "depth", 0) + 1
    _shard_state.generator = generator
    try:
        with torch_threads(1):
            yield
    finally:
        _shard_state.depth -= 1
        _shard_state.generator = None


@contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """PyTorch's OpenMP thread count set to `count` (None: unchanged) for this thread, restored afterwards."""
    previous = torch.get_num_threads()
    if count is not None and count != previous:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        if torch.get_num_threads() != previous:
            torch.set_num_threads(previous)


class Lane:
    """One worker thread that runs a map's share of the items: it sleeps on a plain lock until given a task, runs it
    with one PyTorch thread, and releases a second lock when done.

    Why not concurrent.futures: a map is a hand-off per training step (two outside train.py's loop: forward,
    backward), and a future's queue, condition variables and callbacks made the worker start later and the caller
    resume later than two plain locks do (BENCHMARKS.md, "A busy machine": a few per cent of the lab's step on a
    quiet machine).
    """

    def __init__(self, name: str):
        self.start_signal, self.done_signal = threading.Lock(), threading.Lock()
        self.start_signal.acquire()
        self.done_signal.acquire()
        self.task: Callable[[], None] | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        torch.set_num_threads(1)
        while True:
            self.start_signal.acquire()
            task = self.task
            if task is None:                     # stop()
                return
            try:
                task()
            except BaseException as error:       # handed to the caller by wait()
                self.error = error
            self.done_signal.release()

    def run(self, task: Callable[[], None]) -> None:
        self.task = task
        self.start_signal.release()

    def wait(self) -> BaseException | None:
        """Block until the task given to run() is done; its exception, if it raised one."""
        self.done_signal.acquire()
        error, self.error = self.error, None
        return error

    def stop(self, join: bool = True) -> None:
        self.task = None
        self.start_signal.release()
        if join:
            self.thread.join()


class ShardPool:
    """Threads that run shards: the first on the caller's thread, the others on lanes started once and reused.

    limit: the most shards that run at once (None: one per usable core, read at every call). cores: a function
    returning the usable cores (tests pass a fake). One map at a time: a map called while another runs (a second
    thread of a web server, a shard's own model) runs its items on its caller's thread, one after another, which
    computes the same numbers.
    """

    def __init__(self, shards: int, limit: int | None = None, cores: Callable[[], int] = usable_cores):
        self.shards, self.limit, self.cores = shards, limit, cores
        self.lanes: list[Lane] = []
        self.busy = threading.Lock()
        # A pool dropped without close() (a finished fit's model) still ends its threads. Not joined there: the
        # collector may run on one of them. Not at interpreter exit either: a thread that wakes while Python shuts
        # down is ended inside PyTorch's C++ frames, which aborts the process; asleep, it just ends with it.
        weakref.finalize(self, _stop_lanes, self.lanes).atexit = False

    def workers(self) -> int:
        return workers_now(self.shards, self.limit, self.cores())

    def map(self, function: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
        """[function(item) for item in items], several at once when the policy allows; results in items' order."""
        running = min(self.workers(), len(items))
        if running <= 1 or not self.busy.acquire(blocking=False):
            return [function(item) for item in items]
        try:
            return self._map_on_lanes(function, items, running)
        finally:
            self.busy.release()

    def _map_on_lanes(self, function: Callable[[Any], Any], items: Sequence[Any], running: int) -> list[Any]:
        while len(self.lanes) < running - 1:
            self.lanes.append(Lane(f"convolab-shard-{len(self.lanes) + 1}"))
        results: list[Any] = [None] * len(items)

        def run_lane(indices: range) -> None:
            for index in indices:
                results[index] = function(items[index])

        # Items i, i + running, ... go to one thread, in order: the same work whatever the count, only the placement
        # changes. Thread 0 is the caller's, so a step needs one wake-up less.
        started = self.lanes[:running - 1]
        for lane_index, lane in enumerate(started, start=1):
            lane.run(partial(run_lane, range(lane_index, len(items), running)))
        errors: list[BaseException] = []
        try:
            run_lane(range(0, len(items), running))
        except BaseException as error:
            errors.append(error)
        finally:
            errors.extend(error for error in (lane.wait() for lane in started) if error is not None)
        if errors:
            raise errors[0]
        return results

    def close(self) -> None:
        for lane in self.lanes:
            lane.stop()
        self.lanes.clear()


def _stop_lanes(lanes: list[Lane]) -> None:
    for lane in lanes:
        lane.stop(join=False)
    lanes.clear()


def has_batch_norm(model: nn.Module) -> bool:
    return any(isinstance(module, nn.modules.batchnorm._BatchNorm) for module in model.modules())


# --- training: forward and backward in shards, as one autograd operation ----------------------------------------------

class ShardedForward(torch.autograd.Function):
    """model(images) computed shard by shard; its backward runs each shard's backward and adds the parameter
    gradients in shard order. To the loop around it, it is one forward and one backward, as without shards.
    """

    @staticmethod
    def forward(ctx, runner: "ShardedModel", images: torch.Tensor, *parameters: torch.Tensor) -> torch.Tensor:
        parts = images.split(split_sizes(images.shape[0], runner.shards))
        if ctx.needs_input_grad[1]:              # the images' own gradient is asked for (tests, saliency maps)
            parts = [part.detach().requires_grad_(True) for part in parts]
        seeds = runner.dropout_seeds(len(parts))
        outputs = runner.pool.map(runner.forward_shard, list(zip(parts, seeds)))
        ctx.runner, ctx.parts, ctx.outputs = runner, parts, outputs
        return torch.cat([output.detach() for output in outputs])

    @staticmethod
    def backward(ctx, gradient: torch.Tensor):
        runner, parts, outputs = ctx.runner, ctx.parts, ctx.outputs
        gradients = gradient.split([len(output) for output in outputs])
        with_input = ctx.needs_input_grad[1]
        per_shard = runner.pool.map(runner.backward_shard,
                                    [(output, grad, part if with_input else None)
                                     for output, grad, part in zip(outputs, gradients, parts)])
        ctx.parts = ctx.outputs = None
        image_gradient = torch.cat([shard[0] for shard in per_shard]) if with_input else None
        totals = [add_in_order(pieces) for pieces in zip(*(shard[1:] for shard in per_shard))]
        return (None, image_gradient, *totals)


def add_in_order(pieces: Sequence[torch.Tensor | None]) -> torch.Tensor | None:
    """The sum of the pieces that are not None, shard 0 first: a fixed order of additions, so the same floats whichever
    thread computed which piece. Always a new tensor (a single piece is copied), so the caller may keep or change it."""
    present = [piece for piece in pieces if piece is not None]
    if not present:
        return None
    total = present[0] + present[1] if len(present) > 1 else present[0].clone()
    for piece in present[2:]:
        total.add_(piece)
    return total


class ShardedModel:
    """The training forward of `forward` (a function of images, usually a module's unsharded forward) in shards, and
    a whole training step's forward, loss and backward in shards (train_step)."""

    def __init__(self, forward: Callable[[torch.Tensor], torch.Tensor], parameters: list[nn.Parameter],
                 pool: ShardPool, uses_dropout: bool):
        self.forward_unsharded, self.parameters, self.pool = forward, parameters, pool
        self.shards, self.uses_dropout = pool.shards, uses_dropout

    def dropout_seeds(self, count: int) -> list[int | None]:
        """One seed per shard for its Dropout masks, drawn from torch's global generator on the calling thread (so
        checkpoints that save that generator replay them); none when the model has no Dropout."""
        if not self.uses_dropout:
            return [None] * count
        return torch.randint(0, 2 ** 62, (count,)).tolist()

    def forward_shard(self, item: tuple[torch.Tensor, int | None]) -> torch.Tensor:
        images, seed = item
        with torch.enable_grad(), shard_context(torch.Generator().manual_seed(seed) if seed is not None else None):
            return self.forward_unsharded(images)

    def backward_shard(self, item: tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]
                       ) -> tuple[torch.Tensor | None, ...]:
        """(the shard input's gradient or None, then each parameter's gradient or None)."""
        output, gradient, images = item
        wanted = [parameter for parameter in self.parameters if parameter.requires_grad]
        inputs = ([images] if images is not None else []) + wanted
        with shard_context():
            found = torch.autograd.grad(output, inputs, gradient, allow_unused=True)
        image_gradient = found[0] if images is not None else None
        by_parameter = dict(zip(map(id, wanted), found[len(inputs) - len(wanted):]))
        return (image_gradient, *(by_parameter.get(id(parameter)) for parameter in self.parameters))

    def train_step(self, images: torch.Tensor, labels: torch.Tensor,
                   loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """One training batch's forward, loss and backward, with a single hand-off to the threads: each shard computes
        its logits, its part of the loss and that part's gradients on its own thread, and the parameters' .grad
        end up holding the sum over the shards. Returns (the batch's logits, its loss), without gradient history.

        loss_fn must be the batch mean of a per-image loss (train.is_batch_mean), so that the batch's loss is the sum
        of each shard's mean weighted by the shard's share of the batch. Why not the module's forward and then
        loss.backward(): that hands work to the threads twice per step (ShardedForward's forward and backward), and
        each hand-off waits for a sleeping thread to wake, a few per cent of the lab's step at batch 32 (BENCHMARKS.md,
        "A busy machine").

        How the shards' gradients are added, the same floats whichever thread finishes first: two shards whose .grad
        starts empty add straight into .grad as each finishes a parameter (autograd's accumulation, under its lock),
        while the other shard still computes; two additions give the same floats in either order (a + b == b + a
        exactly), three or more would not. Otherwise each shard keeps its gradients and they are added in shard order
        after the last one is done.
        """
        batch = images.shape[0]
        sizes = split_sizes(batch, self.shards)
        into_grad = len(sizes) == 2 and all(parameter.grad is None for parameter in self.parameters)
        items = list(zip(images.split(sizes), labels.split(sizes), self.dropout_seeds(len(sizes))))
        per_shard = self.pool.map(partial(self.train_shard, loss_fn=loss_fn, batch=batch, into_grad=into_grad), items)
        if not into_grad:
            for index, parameter in enumerate(self.parameters):
                total = add_in_order([gradients[index] for _, _, gradients in per_shard])
                if total is None:
                    continue
                if total.stride() != parameter.stride():     # as autograd would store it: in the parameter's layout
                    total = torch.empty_like(parameter).copy_(total)
                if parameter.grad is None:
                    parameter.grad = total
                else:
                    parameter.grad.add_(total)
        logits = torch.cat([shard_logits for shard_logits, _, _ in per_shard])
        return logits, add_in_order([loss for _, loss, _ in per_shard])

    def train_shard(self, item: tuple[torch.Tensor, torch.Tensor, int | None], loss_fn: Callable, batch: int,
                    into_grad: bool) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor | None] | None]:
        """(this shard's logits, its part of the batch's loss, each parameter's gradient of that part or None); with
        into_grad, the gradients are added to the parameters' .grad instead (train_step says when) and None returned."""
        images, labels, seed = item
        wanted = [parameter for parameter in self.parameters if parameter.requires_grad]
        found: Sequence[torch.Tensor | None] = [None] * len(wanted)
        with torch.enable_grad(), shard_context(torch.Generator().manual_seed(seed) if seed is not None else None):
            logits = self.forward_unsharded(images)
            loss = loss_fn(logits, labels) * (labels.shape[0] / batch)
            if loss.requires_grad and into_grad:
                torch.autograd.backward(loss, inputs=wanted)
            elif loss.requires_grad:
                found = torch.autograd.grad(loss, wanted, allow_unused=True)
        if into_grad:
            return logits.detach(), loss.detach(), None
        by_parameter = dict(zip(map(id, wanted), found))
        return logits.detach(), loss.detach(), [by_parameter.get(id(parameter)) for parameter in self.parameters]

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if in_shard():
            return self.forward_unsharded(images)
        if torch.is_grad_enabled():
            return ShardedForward.apply(self, images, *self.parameters)
        return infer_in_shards(self.forward_unsharded, images, self.pool)


# --- inference: evaluate, predict, the report's pictures ---------------------------------------------------------------

def infer_in_shards(model: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, pool: ShardPool) -> torch.Tensor:
    """model(images) without gradients, shard by shard (each image's result does not depend on the others in eval
    mode, so this is the same computation as one call, on single-threaded shards)."""
    def run(part: torch.Tensor) -> torch.Tensor:
        with torch.no_grad(), shard_context():
            return model(part)

    parts = images.split(split_sizes(images.shape[0], pool.shards))
    return torch.cat(pool.map(run, list(parts)))


_inference_pool: ShardPool | None = None


def inference_pool() -> ShardPool:
    """The process's pool for inference: one shard per usable core (at most MAX_SHARDS), made on first use."""
    global _inference_pool
    if _inference_pool is None:
        _inference_pool = ShardPool(min(usable_cores(), MAX_SHARDS))
    return _inference_pool
