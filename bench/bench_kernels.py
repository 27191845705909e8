"""Which kernels pay for the lab's CNN on this CPU: one training step (forward, backward, Adam) per variant, interleaved.

usage: .venv/bin/python bench/bench_kernels.py [--batch 32] [--rounds 7] [--steps 20] [--candidates]

Each round times every variant for `steps` steps, in turn, so that the machine's noise (other people's jobs on the
2 shared cores) falls on all of them alike; the table gives each variant's median over the rounds.
--candidates adds the ideas that were measured and rejected (kept here so that the rejection can be re-checked):
a fused conv+pool+ReLU autograd.Function with a hand-written backward, and the first conv as unfold+matmul.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from convolab.engine import FastConvNet, keep_freed_memory, prepare_for_training
from convolab.model import build_model
from convolab.shards import ShardPolicy
from convolab.spec import load_spec


# --- rejected candidates, measured against the engine -----------------------------------------------------------------

class ConvPoolReLUFunction(torch.autograd.Function):
    """relu(maxpool2(conv(x, w)) + b) with a hand-written backward: uint8 window index, relu folded into it."""

    @staticmethod
    def forward(ctx, x, weight, bias):
        y = F.conv2d(x, weight).contiguous(memory_format=torch.channels_last)   # (N, O, H, W) NHWC memory
        n, o, h, w = y.shape
        hp, wp = h // 2, w // 2
        windows = y.permute(0, 2, 3, 1)[:, :2 * hp, :2 * wp].reshape(n, hp, 2, wp, 2, o)
        a, b, c, d = windows[:, :, 0, :, 0], windows[:, :, 0, :, 1], windows[:, :, 1, :, 0], windows[:, :, 1, :, 1]
        top, bottom = torch.maximum(a, b), torch.maximum(c, d)
        lower = bottom > top                                           # first maximum in row-major order wins ties
        pooled = torch.where(lower, bottom, top) + bias                # (N, hp, wp, O)
        index = torch.where(lower, (d > c).to(torch.uint8) + 2, (b > a).to(torch.uint8))
        index.masked_fill_(pooled <= 0, 255)                           # relu's zero gradient folded into the index
        ctx.save_for_backward(x, weight, index)
        ctx.conv_shape = (h, w)
        return pooled.clamp_min_(0).permute(0, 3, 1, 2)

    @staticmethod
    def backward(ctx, grad):
        x, weight, index = ctx.saved_tensors
        n, hp, wp, o = index.shape
        g = grad.permute(0, 2, 3, 1).contiguous()
        grad_bias = torch.where(index != 255, g, 0).sum((0, 1, 2))
        slots = torch.arange(4, dtype=torch.uint8).view(1, 1, 2, 1, 2, 1)
        grad_y = torch.where(index.view(n, hp, 1, wp, 1, o) == slots, g.view(n, hp, 1, wp, 1, o), 0.0)
        grad_y = F.pad(grad_y.reshape(n, 2 * hp, 2 * wp, o).permute(0, 3, 1, 2),
                       (0, ctx.conv_shape[1] - 2 * wp, 0, ctx.conv_shape[0] - 2 * hp))
        grad_x, grad_w, _ = torch.ops.aten.convolution_backward(
            grad_y, x, weight, None, [1, 1], [0, 0], [1, 1], False, [0, 0], 1, [ctx.needs_input_grad[0], True, False])
        return grad_x, grad_w, grad_bias


def forward_fused_function(model, x):
    """The lab's CNN through ConvPoolReLUFunction (the candidate), then the reference's dense blocks."""
    blocks = model.blocks
    x = ConvPoolReLUFunction.apply(x, blocks[0].conv.weight, blocks[0].conv.bias)
    x = ConvPoolReLUFunction.apply(x, blocks[2].conv.weight, blocks[2].conv.bias)
    for block in blocks[4:]:
        x = block(x)
    return x


def forward_unfold_first_conv(model, x):
    """The first conv as unfold + matmul (K = 9), NHWC out; the rest as the engine does it."""
    blocks = model.blocks
    n = x.shape[0]
    patches = x[:, 0].unfold(1, 3, 1).unfold(2, 3, 1).reshape(n * 26 * 26, 9)          # (N·26·26, 9)
    y = torch.addmm(blocks[0].conv.bias, patches, blocks[0].conv.weight.reshape(64, 9).t())
    y = y.view(n, 26, 26, 64).permute(0, 3, 1, 2)                                      # NCHW view, NHWC memory
    x = F.relu(F.max_pool2d(y, 2))[:, :, :12, :12]
    for step in model.steps[1:]:
        x = step(x)
    return x


# --- timing -----------------------------------------------------------------------------------------------------------

def make_step(model, forward, images, labels):
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7, fused=True)

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(forward(model, images), labels)
        loss.backward()
        optimizer.step()
    return step


def interleaved(steps: dict, rounds: int, count: int) -> dict[str, float]:
    """Median seconds per step of each variant, timed in turn `rounds` times."""
    times = {name: [] for name in steps}
    threads = torch.get_num_threads()
    for step in steps.values():
        step()                                           # warm-up: allocations, oneDNN primitive caches
    for _ in range(rounds):
        for name, step in steps.items():
            torch.set_num_threads(threads)               # a variant may have changed it
            started = time.perf_counter()
            for _ in range(count):
                step()
            times[name].append((time.perf_counter() - started) / count)
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--candidates", action="store_true", help="also time the rejected candidates")
    parser.add_argument("--one-thread-too", action="store_true", help="also time the engine on one thread")
    args = parser.parse_args()
    torch.manual_seed(0)
    spec = load_spec("cnn")
    images = torch.rand(args.batch, 1, 28, 28)
    labels = torch.randint(0, 10, (args.batch,))
    channels_last = images.contiguous(memory_format=torch.channels_last)

    def model():
        torch.manual_seed(0)
        return build_model(spec, (28, 28, 1), 10)

    keep_freed_memory()
    steps = {
        "reference ConvNet (NCHW)": make_step(model(), lambda m, x: m(x), images, labels),
        "engine FastConvNet": make_step(prepare_for_training(model()), lambda m, x: m(x), channels_last, labels),
    }
    if args.one_thread_too:
        engine_step = steps["engine FastConvNet"]

        def one_thread():
            torch.set_num_threads(1)
            try:
                engine_step()
            finally:
                torch.set_num_threads(threads)
        threads = torch.get_num_threads()
        steps["engine, 1 thread"] = one_thread
        fixed = prepare_for_training(model(), policy=ShardPolicy(1, 1, None, "unsharded: PyTorch's threads"))
        steps["engine unsharded, PyTorch's threads"] = make_step(fixed, lambda m, x: m(x), channels_last, labels)
    if args.candidates:
        steps["candidate: fused Function"] = make_step(prepare_for_training(model()), forward_fused_function,
                                                       channels_last, labels)
        steps["candidate: unfold first conv"] = make_step(prepare_for_training(model()), forward_unfold_first_conv,
                                                          images, labels)
    medians = interleaved(steps, args.rounds, args.steps)
    base = medians["reference ConvNet (NCHW)"]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}, "
          f"median of {args.rounds} rounds x {args.steps} steps")
    for name, seconds in medians.items():
        print(f"{name:32s} {seconds * 1e3:7.2f} ms/step  {args.batch / seconds:7.0f} img/s  x{base / seconds:4.2f}")


if __name__ == "__main__":
    main()
