"""Shards: the policy's decisions (from fake core counts), the fixed cut of a batch, and the point of it all: the same
weights whatever number of threads ran the shards, mid-epoch resume included, Dropout included."""
from __future__ import annotations

import gc
import io
import threading
import time
from functools import partial

import pytest
import torch
import torch.nn.functional as F

from convolab.engine import prepare_for_training
from convolab.errors import TrainingError
from convolab.model import build_model
from convolab.runs import RunDirectory, read_checkpoint
from convolab.shards import (
    MAX_SHARDS, ShardPolicy, ShardPool, busy_machine_hint, choose_policy, in_shard, infer_in_shards, parse_threads,
    shard_context, split_sizes, torch_threads, workers_now,
)
from convolab.spec import load_spec
from convolab.train import (Progress, QuietProgress, TrainConfig, TrainingInterrupted, cross_entropy, fit,
                            forward_and_backward, is_batch_mean, train_one_epoch)
from train_fixtures import StopAtStep

CPU = torch.device("cpu")
SMALL_CNN = "conv8x3,pool2,flatten,dense16,dense"
WITH_DROPOUT = "conv8x3,pool2,dropout0.3,flatten,dense16,dropout0.5,dense"


# --- the policy ---------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("threads, cores, expected_shards, expected_workers", [
    ("all", 2, 2, 2),            # this project's machine: one shard per core
    ("all", 1, 1, 1),            # one core: nothing to cut
    ("all", 16, MAX_SHARDS, MAX_SHARDS),   # a big machine: no more than the batch can use
    ("adaptive", 2, 2, 2),       # the former name of all
    ("3", 2, 3, 3),              # a fixed count fixes the cut, whatever the machine
    ("1", 8, 1, 1),
])
def test_the_policy_cuts_one_shard_per_usable_core_or_as_asked(threads, cores, expected_shards, expected_workers):
    policy = choose_policy(threads, cores, has_batch_norm=False)
    assert (policy.shards, policy.workers) == (expected_shards, expected_workers)
    assert policy.torch_threads == 1 and policy.sharded == (expected_shards > 1)


def test_a_checkpoints_shard_count_wins_over_the_cores_and_batch_normalization_is_never_cut():
    assert choose_policy("all", 8, has_batch_norm=False, recorded_shards=2).shards == 2
    assert "checkpoint" in choose_policy("all", 1, has_batch_norm=False, recorded_shards=3).reason
    unsharded = choose_policy("all", 2, has_batch_norm=True)
    assert (unsharded.shards, unsharded.torch_threads) == (1, None)        # PyTorch's threads, as before
    assert choose_policy("2", 8, has_batch_norm=True).torch_threads == 2


UNSHARDED = choose_policy("all", 2, has_batch_norm=True)


@pytest.mark.parametrize("policy, threads, torch_threads, cores, busy, suggested", [
    (UNSHARDED, "all", 2, 2, 1.0, 1),          # this project's machine with one busy program: one thread
    (UNSHARDED, "all", 2, 2, 0.75, 1),         # a core three quarters busy counts as taken
    (UNSHARDED, "all", 2, 2, 1.9, 1),          # never fewer than one
    (UNSHARDED, "all", 8, 8, 2.2, 6),          # a bigger machine: the cores left
    (UNSHARDED, "all", 2, 2, 0.3, None),       # a quiet machine (a browser idling)
    (UNSHARDED, "all", 2, 2, None, None),      # not measurable (not Linux)
    (UNSHARDED, "all", 4, 8, 3.0, None),       # fewer threads than free cores: nothing to wait for
    (UNSHARDED, "1", 2, 2, 1.0, None),         # the user chose a count
    (choose_policy("all", 2, has_batch_norm=False), "all", 2, 2, 1.0, None),   # shards already hold on a busy machine
])
def test_a_busy_machine_hint_suggests_the_free_cores_for_models_on_pytorchs_threads(policy, threads, torch_threads,
                                                                                     cores, busy, suggested):
    hint = busy_machine_hint(policy, threads, torch_threads, cores, busy)
    if suggested is None:
        assert hint is None
    else:
        assert f"--threads {suggested} (threads={suggested} in Python)" in hint
        assert f"about {busy:.1f} of this machine's {cores} cores" in hint


def test_threads_must_be_all_or_a_positive_count():
    assert parse_threads("all") is None and parse_threads("adaptive") is None and parse_threads("4") == 4
    for bad in ("0", "-1", "many", ""):
        with pytest.raises(TrainingError, match="threads="):
            parse_threads(bad)


def test_workers_follow_the_cores_available_now_never_more_than_the_shards_or_the_limit():
    assert workers_now(shards=2, limit=None, cores=2) == 2
    assert workers_now(shards=2, limit=None, cores=1) == 1     # affinity narrowed mid-run (taskset, a container)
    assert workers_now(shards=4, limit=2, cores=8) == 2
    assert workers_now(shards=1, limit=None, cores=8) == 1


def test_a_batch_is_cut_by_its_size_alone_never_into_empty_shards():
    assert split_sizes(32, 2) == [16, 16]
    assert split_sizes(33, 2) == [17, 16]
    assert split_sizes(10, 4) == [3, 3, 2, 2]
    assert split_sizes(1, 4) == [1]                   # a last batch of one image
    assert sum(split_sizes(12_000 % 32, 3)) == 12_000 % 32


def test_the_pool_returns_results_in_order_and_runs_shards_on_single_threaded_worker_threads():
    cores = [2]
    pool = ShardPool(4, cores=lambda: cores[0])
    seen = []

    def work(item):
        seen.append((threading.current_thread().name, torch.get_num_threads() if item else None))
        return item * 10

    try:
        assert pool.map(work, [0, 1, 2, 3]) == [0, 10, 20, 30]
        assert {name for name, _ in seen} == {threading.current_thread().name, *[n for n, _ in seen if "shard" in n]}
        assert any("convolab-shard" in name for name, _ in seen)
        assert all(threads == 1 for name, threads in seen if "shard" in name)
        cores[0] = 1                                  # one core left: everything on the caller's thread
        seen.clear()
        assert pool.map(work, [3, 2, 1]) == [30, 20, 10]
        assert {name for name, _ in seen} == {threading.current_thread().name}
    finally:
        pool.close()


def test_an_error_in_any_lane_reaches_the_caller_after_every_lane_is_done_and_the_pool_goes_on():
    pool = ShardPool(2, cores=lambda: 2)
    finished = []

    def work(item):
        if item == "bad":
            raise ValueError("shard failed")
        time.sleep(0.05)
        finished.append(item)
        return item

    try:
        for items in (["bad", "slow"], ["slow", "bad"]):      # on the caller's thread, then on the worker's
            finished.clear()
            with pytest.raises(ValueError, match="shard failed"):
                pool.map(work, items)
            assert finished == ["slow"]                        # the other lane had finished before the error came
        assert pool.map(work, [1, 2, 3]) == [1, 2, 3]
    finally:
        pool.close()


def test_maps_from_two_threads_at_once_each_get_their_own_results():
    pool = ShardPool(2, cores=lambda: 2)
    outcomes = {}

    def caller(offset):
        outcomes[offset] = [pool.map(lambda item: (time.sleep(0.001), item + offset)[1], list(range(6)))
                            for _ in range(20)]

    threads = [threading.Thread(target=caller, args=(offset,)) for offset in (0, 100)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert outcomes[0] == [list(range(6))] * 20 and outcomes[100] == [list(range(100, 106))] * 20
    finally:
        pool.close()


def test_a_pool_dropped_without_close_ends_its_threads():
    def lane_threads():
        return [thread for thread in threading.enumerate() if thread.name.startswith("convolab-shard")]

    before = len(lane_threads())
    pool = ShardPool(3, cores=lambda: 3)
    assert pool.map(lambda item: item * 2, [1, 2, 3]) == [2, 4, 6]
    lanes = [lane.thread for lane in pool.lanes]
    assert len(lane_threads()) == before + 2
    del pool
    gc.collect()
    for thread in lanes:
        thread.join(timeout=5)
    assert not any(thread.is_alive() for thread in lanes)


def test_inside_a_shard_one_thread_runs_and_sharded_modules_do_not_nest():
    threads = torch.get_num_threads()
    assert not in_shard()
    with shard_context():
        assert in_shard() and torch.get_num_threads() == 1
    assert not in_shard() and torch.get_num_threads() == threads


# --- thread-count independence ----------------------------------------------------------------------------------------

def train_weights(line: str, limit: int | None, steps: int = 4, shards: int = 2) -> list[torch.Tensor]:
    """A few Adam steps of the fast engine cut into `shards`, at most `limit` running at once."""
    torch.manual_seed(0)
    model = prepare_for_training(build_model(load_spec(line), (28, 28, 1), 10), CPU,
                                 ShardPolicy(shards, limit or shards, 1, "test"))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)
    generator = torch.Generator().manual_seed(1)
    images, labels = torch.rand(steps * 32 + 7, 1, 28, 28, generator=generator), torch.randint(0, 10, (steps * 32 + 7,))
    for batch_images, batch_labels in zip(images.split(32), labels.split(32)):   # the last batch has 7 images
        loss = F.cross_entropy(model(batch_images), batch_labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.sharded.pool.close()
    return [parameter.detach().clone() for parameter in model.parameters()]


@pytest.mark.parametrize("line", [SMALL_CNN, WITH_DROPOUT])
def test_the_weights_are_the_same_bit_for_bit_whether_shards_run_on_one_thread_or_several(line):
    serial, parallel = train_weights(line, limit=1), train_weights(line, limit=2)
    assert all(torch.equal(a, b) for a, b in zip(serial, parallel))


def test_sharded_gradients_are_the_whole_batchs_to_float_precision():
    torch.manual_seed(0)
    reference = build_model(load_spec(SMALL_CNN), (28, 28, 1), 10)
    sharded = prepare_for_training(build_model(load_spec(SMALL_CNN), (28, 28, 1), 10), CPU,
                                   ShardPolicy(3, 3, 1, "test"))
    sharded.load_state_dict(reference.state_dict())
    images, labels = torch.rand(32, 1, 28, 28), torch.randint(0, 10, (32,))
    for model in (reference, sharded):
        F.cross_entropy(model(images), labels).backward()
    for mine, theirs in zip(sharded.parameters(), reference.parameters()):
        torch.testing.assert_close(mine.grad, theirs.grad, rtol=1e-4, atol=1e-6)
    sharded.eval()
    with torch.no_grad():
        torch.testing.assert_close(sharded(images), reference.eval()(images), rtol=1e-5, atol=1e-5)
    pool = ShardPool(2)
    try:
        torch.testing.assert_close(infer_in_shards(reference, images, pool), reference(images), rtol=1e-5, atol=1e-5)
    finally:
        pool.close()
        sharded.sharded.pool.close()


def train_loop_weights(line: str, shards: int, limit: int, loss_fn=F.cross_entropy, steps: int = 4
                       ) -> tuple[list[torch.Tensor], list[float]]:
    """A few Adam steps through train.py's loop (train_one_epoch: one hand-off per step for a batch-mean loss)."""
    torch.manual_seed(0)
    model = prepare_for_training(build_model(load_spec(line), (28, 28, 1), 10), CPU,
                                 ShardPolicy(shards, limit, 1, "test"))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)
    generator = torch.Generator().manual_seed(1)
    images, labels = torch.rand(steps * 32 + 7, 1, 28, 28, generator=generator), torch.randint(0, 10, (steps * 32 + 7,))
    losses = []
    train_one_epoch(model, zip(images.split(32), labels.split(32)), optimizer, loss_fn,
                    on_step=lambda totals: losses.append(totals.loss_sum))
    model.sharded.pool.close()
    return [parameter.detach().clone() for parameter in model.parameters()], losses


@pytest.mark.parametrize("line", [SMALL_CNN, WITH_DROPOUT])
@pytest.mark.parametrize("shards", [2, 3])
def test_the_loops_one_hand_off_steps_give_the_same_weights_on_one_thread_or_several(line, shards):
    # Two shards add into .grad in whichever order they finish; three keep their gradients and add them in order.
    serial, serial_losses = train_loop_weights(line, shards, limit=1)
    for _ in range(3):                                   # the finishing order varies from run to run
        parallel, parallel_losses = train_loop_weights(line, shards, limit=shards)
        assert all(torch.equal(a, b) for a, b in zip(serial, parallel))
        assert serial_losses == parallel_losses


@pytest.mark.parametrize("shards", [2, 3, 4])
def test_a_one_hand_off_steps_gradients_do_not_depend_on_the_order_in_which_shards_finish(shards):
    def gradients(finishing_order) -> list[torch.Tensor]:
        torch.manual_seed(0)
        model = prepare_for_training(build_model(load_spec(WITH_DROPOUT), (28, 28, 1), 10), CPU,
                                     ShardPolicy(shards, 1, 1, "test"))

        def map_in_order(function, items):              # the shards run one after another, in the order given
            results = [None] * len(items)
            for index in finishing_order(len(items)):
                results[index] = function(items[index])
            return results

        model.sharded.pool.map = map_in_order
        images, labels = torch.rand(32, 1, 28, 28), torch.randint(0, 10, (32,))
        forward_and_backward(model, images, labels, F.cross_entropy)
        model.sharded.pool.close()
        return [parameter.grad for parameter in model.parameters()]

    forward, backward = gradients(range), gradients(lambda count: reversed(range(count)))
    assert all(torch.equal(a, b) for a, b in zip(forward, backward))


@pytest.mark.parametrize("shards", [2, 3])
def test_a_one_hand_off_step_gives_the_whole_batchs_loss_and_gradients_and_adds_to_existing_ones(shards):
    torch.manual_seed(0)
    reference = build_model(load_spec(SMALL_CNN), (28, 28, 1), 10)
    model = prepare_for_training(build_model(load_spec(SMALL_CNN), (28, 28, 1), 10), CPU,
                                 ShardPolicy(shards, shards, 1, "test"))
    model.load_state_dict(reference.state_dict())
    images, labels = torch.rand(32, 1, 28, 28), torch.randint(0, 10, (32,))
    smoothed = partial(F.cross_entropy, label_smoothing=0.1)
    expected_loss = smoothed(reference(images), labels)
    expected_loss.backward()
    try:
        logits, loss = forward_and_backward(model, images, labels, smoothed)
        assert not loss.requires_grad and not logits.requires_grad
        torch.testing.assert_close(loss, expected_loss.detach(), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(logits, reference(images).detach(), rtol=1e-5, atol=1e-5)
        for parameter, theirs in zip(model.parameters(), reference.parameters()):
            torch.testing.assert_close(parameter.grad, theirs.grad, rtol=1e-4, atol=1e-6)
            assert parameter.grad.stride() == parameter.stride()   # the layout autograd keeps (channels-last convs)
        once = [parameter.grad.clone() for parameter in model.parameters()]
        forward_and_backward(model, images, labels, smoothed)   # no zero_grad between: added, as backward() does
        for twice, first in zip(model.parameters(), once):
            assert torch.equal(twice.grad, first * 2)
    finally:
        model.sharded.pool.close()


def test_only_batch_mean_losses_are_cut_with_the_batch_others_see_the_whole_batch():
    assert is_batch_mean(cross_entropy) and is_batch_mean(F.cross_entropy)
    assert is_batch_mean(partial(F.cross_entropy, label_smoothing=0.1))
    assert not is_batch_mean(partial(F.cross_entropy, reduction="sum"))
    assert not is_batch_mean(lambda logits, labels: F.cross_entropy(logits, labels))

    seen_batches = []

    def batch_max_loss(logits, labels):            # not a mean of per-image losses: cutting it would change it
        seen_batches.append(len(labels))
        return F.cross_entropy(logits, labels, reduction="none").max()

    serial, _ = train_loop_weights(SMALL_CNN, 2, limit=1, loss_fn=batch_max_loss, steps=1)
    assert seen_batches == [32, 7]                   # whole batches, through the module's two-hand-off backward
    parallel, _ = train_loop_weights(SMALL_CNN, 2, limit=2, loss_fn=batch_max_loss, steps=1)
    assert all(torch.equal(a, b) for a, b in zip(serial, parallel))


def test_a_resumed_run_cuts_batches_as_its_checkpoint_says_and_ends_with_the_uninterrupted_weights(tmp_path,
                                                                                                   monkeypatch):
    import convolab.train as train

    generator = torch.Generator().manual_seed(3)
    data = (torch.randint(0, 256, (160, 1, 28, 28), dtype=torch.uint8, generator=generator),
            torch.randint(0, 10, (160,), generator=generator))

    def run(out, cores: int, interrupt: bool = False, resume_from=None):
        monkeypatch.setattr(train, "usable_cores", lambda: cores)
        torch.manual_seed(5)
        model = build_model(load_spec(WITH_DROPOUT), (28, 28, 1), 10)
        progress = StopAtStep(epoch=2, step=2) if interrupt else QuietProgress()
        state = fit(model, data, TrainConfig(epochs=2, seed=5, device="cpu"), run=RunDirectory(out),
                    progress=progress, resume_from=resume_from)
        state.model.sharded.pool.close()
        return state.model

    straight = run(tmp_path / "straight", cores=2)
    with pytest.raises(TrainingInterrupted):
        run(tmp_path / "stopped", cores=2, interrupt=True)
    checkpoint = read_checkpoint(tmp_path / "stopped" / "checkpoint.pt")
    assert checkpoint["shards"] == 2 and checkpoint["step"] == 2
    resumed = run(tmp_path / "stopped", cores=1, resume_from=checkpoint)   # now one core: still 2 shards, serially
    assert resumed.shards == 2
    for key, value in straight.state_dict().items():
        assert torch.equal(resumed.state_dict()[key], value), key


class Notes(Progress):
    """Records the notes fit prints; epoch lines go to a string."""

    def __init__(self):
        super().__init__(stream=io.StringIO())
        self.notes: list[str] = []

    def message(self, text: str) -> None:
        self.notes.append(text)


def test_fit_notes_a_busy_machine_before_a_new_run_on_pytorchs_threads_and_only_then(monkeypatch, tmp_path):
    import convolab.train as train

    looks: list[float] = []
    monkeypatch.setattr(train, "cores_busy_elsewhere", lambda: looks.append(1.0) or 1.0)   # one busy program
    monkeypatch.setattr(train, "usable_cores", lambda: 2)
    generator = torch.Generator().manual_seed(3)
    data = (torch.randint(0, 256, (64, 1, 28, 28), dtype=torch.uint8, generator=generator),
            torch.randint(0, 10, (64,), generator=generator))

    def notes(line: str, threads: str = "all", **options) -> list[str]:
        progress = Notes()
        torch.manual_seed(0)
        with torch_threads(2):
            state = fit(build_model(load_spec(line), (28, 28, 1), 10), data,
                        TrainConfig(epochs=1, device="cpu", threads=threads), progress=progress, **options)
        if state.model.sharded is not None:
            state.model.sharded.pool.close()
        return [note for note in progress.notes if "cores busy" in note]

    with_bn = "conv4x3,pool2,bn,flatten,dense"
    (note,) = notes(with_bn)
    assert note.startswith("note: other programs keep about 1.0 of this machine's 2 cores busy")
    assert "--threads 1 (threads=1 in Python)" in note
    assert notes(with_bn, threads="1") == []          # a count the user chose
    assert notes(SMALL_CNN) == []                     # shards: nothing to suggest
    assert len(looks) == 1                            # the machine is looked at only where a note could follow
    fit(build_model(load_spec(with_bn), (28, 28, 1), 10), data, TrainConfig(epochs=1, device="cpu"),
        run=RunDirectory(tmp_path / "run"), progress=QuietProgress())     # quiet: nothing would be seen
    assert notes(with_bn, resume_from=read_checkpoint(tmp_path / "run" / "checkpoint.pt")) == []   # its count is kept
    assert len(looks) == 1
