"""The fast training path: the same function as model.py's ConvNet, with the same parameters, computed faster.

    fast = fast_model(model)                   # a FastConvNet sharing model's parameters (state_dict keys identical)
    fast = prepare_for_training(model, device) # the same, moved to the device in its fastest memory layout

Each block says what may be done with it (layers/base.py's Block): a convolution followed by a max-pool is fused
(pool before an activation that commutes with max, so it touches 4x fewer values); a block that reads only the leading
rows and columns lets the block before it compute only those (what a valid pool floors away is never computed); every
other block runs as it is, so it is the reference by construction. Activations are channels-last (NHWC), where
oneDNN's and PyTorch's kernels are vectorised. Freed memory stays in the process (keep_freed_memory). On the CPU each
batch is cut into single-threaded shards run on one thread per core (shards.py): no OpenMP barrier spin-waits for a
thread another program has descheduled (an epoch took 41x its quiet time with one busy process), and the weights do
not depend on how many threads ran the shards. The measurements behind each choice, and what was tried and did not
pay, are in BENCHMARKS.md ("Why the fast engine is shaped this way", "A busy machine").

`convolab train` runs train.py's visible loop on FastConvNet (prepare_for_training); on a GPU that loop keeps the
uint8 data on the card and runs bfloat16 autocast with float32 logits; `--precision bf16` runs that autocast on the
CPU too (never by itself there; each shard enters it on its own thread). The benchmark's own step (TrainStep, with its
CUDA-graph replay) lives in bench/train_step.py.
"""
from __future__ import annotations

import ctypes
import sys
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from convolab.errors import TrainingError
from convolab.layers.activation_functions import FUNCTIONS
from convolab.model import ConvNet, build_model
from convolab.shards import (ShardedModel, ShardPolicy, ShardPool, choose_policy, has_batch_norm, shard_generator,
                             torch_threads, usable_cores)
from convolab.spec import ModelSpec


# --- what each step needs of its input: the demand that lets convs skip rows a pooling layer drops ---------------------

@dataclass(frozen=True)
class Window:
    """A sliding window along one axis: size, stride, and the padding added before it (top or left)."""

    size: int
    stride: int
    pad_before: int = 0

    def input_needed(self, outputs: int) -> int:
        """How many leading input positions (unpadded) the first `outputs` outputs read."""
        return (outputs - 1) * self.stride + self.size - self.pad_before


def output_count(length: int, window: Window, pad_after: int) -> int:
    """Outputs of a valid window over `length` inputs padded by pad_before and pad_after (floor, as Keras)."""
    return (length + window.pad_before + pad_after - window.size) // window.stride + 1


# --- the steps of a fast forward pass ---------------------------------------------------------------------------------

class LeadingCrop(torch.autograd.Function):
    """x[:, :, :rows, :cols] whose gradient keeps x's memory layout.

    Plain slicing's backward builds an NCHW zero tensor, so every layer before a crop would get its gradient in NCHW
    against NHWC activations, and BatchNormalization's backward is slower on that mix (BENCHMARKS.md).
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
        ctx.shape, ctx.rows, ctx.cols = x.shape, rows, cols
        ctx.channels_last = x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last)
        return x[:, :, :rows, :cols]

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        layout = torch.channels_last if ctx.channels_last else torch.contiguous_format
        full = grad.new_zeros(ctx.shape).contiguous(memory_format=layout)
        full[:, :, :ctx.rows, :ctx.cols] = grad
        return full, None, None


def crop(x: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """The first rows×cols of x's height and width (x itself when nothing is cut)."""
    if rows >= x.shape[2] and cols >= x.shape[3]:
        return x
    if not (x.requires_grad and torch.is_grad_enabled()):
        return x[:, :, :rows, :cols]          # the images themselves: no gradient, so no backward to shape
    return LeadingCrop.apply(x, rows, cols)

class ConvPoolStep:
    """A Conv2DBlock, then a MaxPooling2DBlock: conv on the rows and columns the pool reads, pool, then activation.

    The activation moves after the pool only when it commutes with max (the activation table says which do);
    otherwise it stays before it, and the step still gains the cropping and the channels-last layout.
    """

    blocks_computed = 2  # how many of the ConvNet's blocks one step computes

    def __init__(self, conv_block: nn.Module, pool_block: nn.Module):
        self.conv_block, self.pool_block = conv_block, pool_block
        self.conv = conv_block.conv
        left, right, top, bottom = conv_block.padding
        self.pad = conv_block.padding
        self.conv_windows = (Window(self.conv.kernel_size[0], self.conv.stride[0], top),
                             Window(self.conv.kernel_size[1], self.conv.stride[1], left))
        self.pool_pad = pool_block.padding
        pool_left, _, pool_top, _ = pool_block.padding
        self.pool_windows = (Window(pool_block.pool_size[0], pool_block.strides[0], pool_top),
                             Window(pool_block.pool_size[1], pool_block.strides[1], pool_left))
        self.activation = conv_block.activation
        self.activate_after_pool = FUNCTIONS[conv_block.activation_name].commutes_with_max
        # A 'same' pool pads its bottom/right edge: cropping the conv before it would move that edge, so it reads all.
        self.crop = not any(self.pool_pad)
        self.out_rows = self.out_cols = None   # set by plan(): how many pooled rows/columns downstream reads

    def input_needed(self, rows: int, cols: int) -> tuple[int, int] | None:
        """Input rows and columns read by the first rows×cols outputs (None: all of them)."""
        if not self.crop:
            return None
        conv_rows = self.pool_windows[0].input_needed(rows)
        conv_cols = self.pool_windows[1].input_needed(cols)
        return self.conv_windows[0].input_needed(conv_rows), self.conv_windows[1].input_needed(conv_cols)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if any(self.pad):
            x = F.pad(x, self.pad)                       # Keras 'same': zeros, the odd one bottom/right
        if self.crop:
            conv_rows = self.pool_windows[0].input_needed(self.out_rows)
            conv_cols = self.pool_windows[1].input_needed(self.out_cols)
            rows = (conv_rows - 1) * self.conv.stride[0] + self.conv.kernel_size[0]
            cols = (conv_cols - 1) * self.conv.stride[1] + self.conv.kernel_size[1]
            x = crop(x, rows, cols)                      # (N, C, rows, cols): only what the pool will read
        # Channels-last memory, stated explicitly: with one input channel the layouts coincide and oneDNN would
        # otherwise pick NCHW for the output, where pooling is slower (BENCHMARKS.md).
        x = x.contiguous(memory_format=torch.channels_last)
        x = F.conv2d(x, self.conv.weight, self.conv.bias, self.conv.stride)   # (N, filters, conv_rows, conv_cols)
        if not self.activate_after_pool:
            x = self.activation(x)
        if any(self.pool_pad):
            x = F.pad(x, self.pool_pad, value=float("-inf"))
        x = F.max_pool2d(x, self.pool_block.pool_size, self.pool_block.strides)   # (N, filters, out_rows, out_cols)
        if self.activate_after_pool:
            x = self.activation(x)
        return x


class PaddedConvStep:
    """A convolution with padding ('same') that no max-pool follows: only the output rows and columns the next step
    reads, from the input and the zero padding they need. Why: 'same' keeps the size, so when a valid conv or pool
    follows, the last rows and columns would be computed, never read, and their gradient carried as zeros."""

    blocks_computed = 1  # how many of the ConvNet's blocks one step computes

    def __init__(self, block: nn.Module):
        self.block, self.conv = block, block.conv
        left, _, top, _ = block.padding
        self.windows = (Window(self.conv.kernel_size[0], self.conv.stride[0], top),
                        Window(self.conv.kernel_size[1], self.conv.stride[1], left))
        self.out_rows = self.out_cols = None

    def input_needed(self, rows: int, cols: int) -> tuple[int, int]:
        return self.windows[0].input_needed(rows), self.windows[1].input_needed(cols)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        rows = min(x.shape[2], self.windows[0].input_needed(self.out_rows))
        cols = min(x.shape[3], self.windows[1].input_needed(self.out_cols))
        x = crop(x, rows, cols)
        # Zeros before as the block pads; after, only as many as the demanded outputs read (at most the block's own).
        top, left = self.windows[0].pad_before, self.windows[1].pad_before
        bottom = (self.out_rows - 1) * self.conv.stride[0] + self.conv.kernel_size[0] - top - rows
        right = (self.out_cols - 1) * self.conv.stride[1] + self.conv.kernel_size[1] - left - cols
        x = F.pad(x, (left, right, top, bottom))
        x = x.contiguous(memory_format=torch.channels_last)
        x = F.conv2d(x, self.conv.weight, self.conv.bias, self.conv.stride)   # (N, filters, out_rows, out_cols)
        return self.block.activation(x)


class CropStep:
    """A leading-rows/columns crop, for blocks that read only part of their input (a valid conv or pool)."""

    blocks_computed = 1  # how many of the ConvNet's blocks one step computes

    def __init__(self, block: nn.Module, windows: tuple[Window, Window]):
        self.block, self.windows = block, windows
        self.out_rows = self.out_cols = None

    def input_needed(self, rows: int, cols: int) -> tuple[int, int]:
        return self.windows[0].input_needed(rows), self.windows[1].input_needed(cols)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        rows, cols = self.input_needed(self.out_rows, self.out_cols)
        return self.block(crop(x, rows, cols))


class BlockStep:
    """Any other block, run as it is (so it is the reference by construction); it needs all of its input."""

    blocks_computed = 1  # how many of the ConvNet's blocks one step computes

    def __init__(self, block: nn.Module):
        self.block = block
        self.out_rows = self.out_cols = None

    def input_needed(self, rows: int | None, cols: int | None) -> None:
        return None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)


class DropoutStep(BlockStep):
    """A block that draws random numbers while training (Dropout): inside a shard (shards.py) it draws from the
    shard's own generator, since threads drawing from torch's global one at the same time would take its numbers in
    whichever order they ran; elsewhere from the global one, as the reference model does."""

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x, generator=shard_generator())


def lower(blocks: nn.ModuleList) -> list:
    """The ConvNet's blocks as steps, as each block allows (layers/base.py's Block): a convolution followed by a
    max-pool fused, blocks that read only leading rows and columns cropped, a padded convolution computing only the
    outputs read, the rest run as they are."""
    steps, index = [], 0
    while index < len(blocks):
        block = blocks[index]
        following = blocks[index + 1] if index + 1 < len(blocks) else None
        if block.fast_role == "conv" and following is not None and following.fast_role == "max_pool":
            steps.append(ConvPoolStep(block, following))
            index += 2
            continue
        windows = block.crop_windows()
        if windows is not None:
            steps.append(CropStep(block, (Window(*windows[0]), Window(*windows[1]))))
        elif block.fast_role == "conv":
            steps.append(PaddedConvStep(block))     # a padded conv (a valid one has crop windows)
        elif block.draws_random:
            steps.append(DropoutStep(block))
        else:
            steps.append(BlockStep(block))
        index += 1
    return steps


def plan(steps: list, output_sizes: list[tuple[int, int] | None]) -> None:
    """Walk back from the logits, telling each step how many output rows/columns the next one reads.

    output_sizes[i]: step i's full (rows, cols) output, None for vectors. A step that needs all of its input (a
    Flatten, a BatchNormalization whose statistics would change, Dropout whose random draws would) resets the demand.
    """
    demand = None
    for step, full in zip(reversed(steps), reversed(output_sizes)):
        if full is not None:
            step.out_rows, step.out_cols = (min(demand[0], full[0]), min(demand[1], full[1])) if demand else full
        demand = step.input_needed(step.out_rows, step.out_cols) if full is not None else None


def _spatial_sizes(model: ConvNet, steps: list) -> list[tuple[int, int] | None]:
    """Each step's full output (rows, cols) from the reference's shape reports, None when it outputs a vector."""
    sizes, index = [], 0
    for step in steps:
        index += step.blocks_computed
        shape = model.reports[index - 1].output_shape
        sizes.append((shape[0], shape[1]) if len(shape) == 3 else None)
    return sizes


# --- the module ---------------------------------------------------------------------------------------------------------

class FastConvNet(nn.Module):
    """What `reference` computes, through the steps above; its parameters ARE the reference's (same state_dict keys).

    Pictures and checkpoints keep working on either: `fast.reference` is the plain ConvNet over the same tensors.
    """

    def __init__(self, reference: ConvNet):
        super().__init__()
        self.blocks = reference.blocks                   # the same modules: `blocks.0.conv.weight`, ...
        self.spec, self.reports = reference.spec, reference.reports
        self.input_shape, self.num_classes = reference.input_shape, reference.num_classes
        self.output_activation = reference.output_activation
        object.__setattr__(self, "reference", reference)   # not a submodule: its parameters would be listed twice
        object.__setattr__(self, "finish", reference.finish)  # probabilities as logits, when the output needs it
        self.steps = lower(self.blocks)
        plan(self.steps, _spatial_sizes(reference, self.steps))
        self.autocast_dtype = None    # prepare_for_training: bfloat16 on CUDA, or asked for; float32 logits
        self.shards = 1               # prepare_for_training cuts CPU batches into shards (shards.py)
        self.sharded: ShardedModel | None = None

    def use_shards(self, policy: ShardPolicy) -> None:
        """Run every forward (and its backward) in `policy.shards` single-threaded shards; 1: unsharded."""
        if self.sharded is not None:
            self.sharded.pool.close()
        self.shards = policy.shards
        self.sharded = None
        if policy.sharded:
            uses_dropout = any(isinstance(step, DropoutStep) for step in self.steps)
            self.sharded = ShardedModel(self.forward_unsharded, list(self.parameters()),
                                        ShardPool(policy.shards, limit=policy.workers), uses_dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, C, H, W) floats, any memory layout -> (N, num_classes) logits, equal to the reference's."""
        if self.sharded is not None:
            return self.sharded(x)
        return self.forward_unsharded(x)

    def forward_unsharded(self, x: torch.Tensor) -> torch.Tensor:
        """The forward pass itself, on the calling thread."""
        if x.dim() == 4 and x.shape[1] > 1 and not x.is_contiguous(memory_format=torch.channels_last):
            x = x.contiguous(memory_format=torch.channels_last)   # (N, C, H, W) view of NHWC memory
        if self.autocast_dtype is None:
            for step in self.steps:
                x = step(x)
        else:
            # No autocast weight cache: a CUDA graph replays the casts, so the cast weights follow the updated ones.
            with torch.autocast(x.device.type, dtype=self.autocast_dtype, cache_enabled=False):
                for step in self.steps:
                    x = step(x)
            x = x.float()                                # the loss and the metrics stay in float32
        return x if self.finish is None else self.finish(x)

    def probabilities(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.forward(x), dim=1)

    def extra_repr(self) -> str:
        names = [type(step).__name__ for step in self.steps]
        return f"spec={self.spec.to_line()!r}, steps={names}"


def fast_model(model_or_spec: ConvNet | ModelSpec, input_shape=None, num_classes: int | None = None) -> FastConvNet:
    """A FastConvNet for a ConvNet (sharing its parameters) or for a spec (building the reference first)."""
    if isinstance(model_or_spec, FastConvNet):
        return model_or_spec
    if isinstance(model_or_spec, ModelSpec):
        model_or_spec = build_model(model_or_spec, input_shape, num_classes)
    if not isinstance(model_or_spec, ConvNet):
        raise TrainingError(f"the fast engine takes a convolab ConvNet or ModelSpec, received {type(model_or_spec).__name__}",
                            fix="build the model with convolab.model.build_model, or use --engine reference")
    return FastConvNet(model_or_spec)


# --- device and process settings ----------------------------------------------------------------------------------------

def keep_freed_memory() -> bool:
    """Ask glibc to keep freed blocks instead of returning them to the kernel; True when it applied (Linux, glibc).

    Every training step frees and reallocates the same few megabytes; returned to the kernel they come back through
    page faults (BENCHMARKS.md has the cost). A process-wide
    setting, harmless elsewhere: it only changes when memory goes back to the system.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    mallopt = getattr(libc, "mallopt", None)
    if mallopt is None:
        return False
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
    return bool(mallopt(M_MMAP_THRESHOLD, 1 << 30)) and bool(mallopt(M_TRIM_THRESHOLD, 1 << 30))


def prepare_for_training(model: ConvNet | FastConvNet | ModelSpec, device: torch.device | str = "cpu",
                         policy: ShardPolicy | None = None, precision: str = "auto") -> FastConvNet:
    """The fast module on `device`, parameters in the layout its kernels prefer (values and state_dict unchanged).

    precision: "auto" (bfloat16 autocast on CUDA cards that have it, float32 elsewhere), "fp32", or "bf16" (autocast
    on CPU or CUDA; the parameters, optimizer and logits stay float32: see autocast_dtype).

    policy: on the CPU, how batches are cut into shards (shards.py); default choose_policy("all", ...): one
    single-threaded shard per usable core, unsharded with BatchNormalization. The weights depend on the shard count,
    never on how many threads run the shards.
    """
    device = torch.device(device)
    fast = fast_model(model)
    fast.to(device=device, memory_format=torch.channels_last)   # 4-D conv weights NHWC; others unchanged
    fast.autocast_dtype = autocast_dtype(device, precision)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True            # fixed shapes: let cuDNN pick its fastest algorithm once
    if device.type == "cpu":
        keep_freed_memory()
        fast.use_shards(policy or choose_policy("all", usable_cores(), has_batch_norm(fast)))
    return fast


def step_threads(model: nn.Module):
    """A context for a training step of `model`: for a sharded FastConvNet, one PyTorch thread for what runs between
    the shards (optimizer, metrics), as train.fit sets for a whole run: an OpenMP team there would spin on the core a
    shard needs (the shards are the parallelism). Anything else: PyTorch's setting, unchanged."""
    return torch_threads(1 if getattr(model, "sharded", None) is not None else None)


def accelerate(model: nn.Module, device: torch.device | str, policy: ShardPolicy | None = None,
               precision: str = "auto") -> nn.Module:
    """prepare_for_training for a ConvNet (or FastConvNet); any other module is returned as it is."""
    if isinstance(model, (ConvNet, FastConvNet)):
        return prepare_for_training(model, device, policy, precision)
    return model


PRECISIONS = ("auto", "fp32", "bf16")


def autocast_dtype(device: torch.device, precision: str = "auto") -> torch.dtype | None:
    """The autocast type for `precision` on `device`, None for plain float32.

    auto: bfloat16 on CUDA cards that have it (no loss scaling needed), float32 on CPU, where the engine must equal
    the reference bit for bit. bf16: asked for explicitly; on CPUs with AMX or AVX512-BF16 oneDNN runs the convolutions
    and matmuls in bfloat16 (machine.py detects them; BENCHMARKS.md has what it gave). Weights, their gradients and
    the optimizer's state stay float32 (autocast casts a copy per op), and FastConvNet returns float32 logits.
    """
    if precision not in PRECISIONS:
        raise TrainingError(f"precision={precision!r}; expected one of {', '.join(PRECISIONS)}",
                            fix="use --precision fp32 (exact) or --precision bf16")
    if precision == "fp32":
        return None
    if precision == "bf16":
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise TrainingError("precision='bf16' requested, but this CUDA card has no bfloat16",
                                fix="use --precision fp32")
        if device.type not in ("cpu", "cuda"):
            raise TrainingError(f"precision='bf16' on device {device.type!r}; bfloat16 autocast runs on cpu or cuda",
                                fix="use --precision fp32, or --device cpu")
        return torch.bfloat16
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return None
