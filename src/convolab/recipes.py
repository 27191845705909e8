"""Time-to-accuracy recipes: a visible spec plus the hyperparameters that train it, and the two batch-level tools they
use (a learning-rate schedule per step, augmentation on whole batches on the device).

    RECIPES["fast"], RECIPES["best"]     -> Recipe(spec line, epochs, batch size, optimizer, learning rate, ...)
    recipe.train_config(base, epochs, bf16_hardware=...) -> `base` TrainConfig with the recipe's hyperparameters
                                         (config.json records it)
    recipe_precision(wanted, given, bf16_hardware) -> the precision it trains in on this device
    learning_rate_at(step, total, peak, schedule) -> float
    augment_batch(images, kind)          -> images flipped / shifted, the same shape, on their device
    mirror_average(logits, mirrored)     -> test-time flips: the mean logits of an image and its mirror

No pretrained weights anywhere: every recipe starts from Keras's initialisation and Fashion-MNIST's training split.
The figures each recipe reached (and how long it took against Keras's 5 lab epochs) are in BENCHMARKS.md.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from convolab.errors import TrainingError
from convolab.spec import PRESETS

SCHEDULES = ("constant", "onecycle")
AUGMENTATIONS = ("none", "flip", "crop-flip")


@dataclass(frozen=True)
class Recipe:
    """A spec and the hyperparameters that train it; `goal` says what it is for."""

    name: str
    spec: str                     # one-line spec (also a preset of the same name, so `convolab summary NAME` shows it)
    goal: str
    epochs: int
    batch_size: int
    optimizer: str                # adam or adamw
    learning_rate: float          # the peak of the schedule
    schedule: str = "constant"    # constant, or onecycle: linear warm-up over the first 20%, then linear decay to 1%
    label_smoothing: float = 0.0  # mass moved from the true class to all classes evenly
    augment: str = "none"         # none, flip (mirror half the batch), crop-flip (also shift by up to 2 pixels)
    weight_decay: float = 0.0     # AdamW's decoupled weight decay
    test_time_flip: bool = False  # validate and test on the mean logits of each image and its mirror (mirror_average)
    # "bf16": bfloat16 autocast where the device does bfloat16 matrix work in hardware (a CPU with AMX or AVX512-BF16;
    # a CUDA card's "auto" has it already), float32 elsewhere, where emulated bfloat16 is slower (recipe_precision).
    # "auto": TrainConfig's default. An explicit --precision wins over either.
    precision: str = "auto"
    why: tuple[str, ...] = ()     # the reasons for these settings, one line each (`convolab summary NAME` prints them)

    def hyperparameters(self) -> dict:
        """The TrainConfig fields this recipe sets."""
        return {"epochs": self.epochs, "batch_size": self.batch_size, "optimizer": self.optimizer,
                "learning_rate": self.learning_rate, "schedule": self.schedule,
                "label_smoothing": self.label_smoothing, "augment": self.augment, "weight_decay": self.weight_decay,
                "test_time_flip": self.test_time_flip}

    def train_config(self, base, epochs: int | None = None, *, bf16_hardware: bool):
        """`base` (a train.TrainConfig: seed, device, engine, ...) with this recipe's hyperparameters; `epochs` (when
        given) instead of the recipe's own; the precision as recipe_precision resolves it (bf16_hardware: whether the
        device that trains, with the fast engine, runs bfloat16 in hardware)."""
        precision = recipe_precision(self.precision, base.precision, bf16_hardware)
        return replace(base, **{**self.hyperparameters(), "epochs": epochs or self.epochs, "precision": precision})

    def describe(self) -> str:
        """Lines for `convolab summary NAME`: what the recipe is for and how it trains."""
        fields = self.hyperparameters()
        precision = {"bf16": "bf16 where the CPU has AMX or AVX512-BF16 (and on GPUs that have it), fp32 elsewhere",
                     "auto": "fp32 on CPU, bf16 on GPUs that have it"}.get(self.precision, self.precision)
        return "\n".join([f"Recipe {self.name!r}: {self.goal}", f"  spec: {self.spec}"]
                         + [f"  {name}: {value}" for name, value in fields.items()]
                         + [f"  precision: {precision}"]
                         + (["  why:"] + [f"    - {reason}" for reason in self.why] if self.why else [])) + "\n"


RECIPES: dict[str, Recipe] = {
    "fast": Recipe(
        name="fast", spec=PRESETS["fast"],
        goal="test accuracy >= 0.92 in a quarter of the time Keras takes for the lab's 5 epochs",
        epochs=5, batch_size=256, optimizer="adam", learning_rate=0.008, schedule="onecycle", label_smoothing=0.1,
        augment="flip", test_time_flip=True, precision="bf16",
        why=("a quarter of the lab's filters in the first conv: its cost is memory-bound, its accuracy hardly moves",
             "BatchNormalization after each pooling, so that a high peak learning rate is stable",
             "batch 256 (peak rate 0.008) and, on CPUs with AMX or AVX512-BF16, bfloat16 autocast for throughput: "
             "together 0.5-0.6 of the time of batch 128 in float32 on a Zen 4, for nearly the same validation "
             "accuracy (mean of seeds 0-2: 0.9288 against 0.9298)",
             "one-cycle (up for 20%, then down to 1%) to finish at a low rate",
             "label smoothing 0.1: a few epochs of confident labels overfit the hard classes (shirt, T-shirt)",
             "mirrored training images and test-time flips (each test image and its mirror, logits averaged): "
             "+0.003 to +0.006 validation accuracy over neither, for no training time (test-time flips alone, "
             "without mirrored training, cost 0.05); a fifth epoch +0.001",
             "every setting chosen on --validation-split 0.1 trials: BENCHMARKS.md, \"Recipe trials\"",
             "test accuracy 0.9258, 0.9255, 0.9206 on seeds 0, 1, 2 in bf16, in 0.19-0.24 of Keras's time on a Zen 4 "
             "(two runs)"),
    ),
    "best": Recipe(
        name="best", spec=PRESETS["best"],
        goal="test accuracy >= 0.94 in at most twice the time Keras takes for the lab's 5 epochs",
        epochs=13, batch_size=64, optimizer="adamw", learning_rate=0.003, schedule="onecycle", label_smoothing=0.1,
        augment="flip", weight_decay=0.01, test_time_flip=True, precision="bf16",
        why=("a second conv in the second stage ('same' padding) and dropout 0.4 before the classifier: more "
             "capacity, kept from overfitting (dropout 0.3 and 0.5 measured 0.0007 and 0.0025 lower mean validation "
             "accuracy over seeds 0-2)",
             "BatchNormalization after each pooling, so that a high peak learning rate is stable; one-cycle to "
             "finish at a low rate",
             "mirrored training images (clothes look alike mirrored) and test-time flips: each test image and its "
             "mirror, logits averaged, for the cost of a second evaluation and no training time (+0.0005 "
             "validation accuracy here); one-pixel shifts on top of them: no reliable gain",
             "label smoothing 0.1 and AdamW's decay 0.01: regularisation light enough for a short run (2-pixel "
             "shifts too: -0.009 validation accuracy)",
             "on CPUs with AMX or AVX512-BF16, bfloat16 autocast: a step in 0.7 of float32's time on a Zen 4, so 13 "
             "bf16 epochs take less time than 11 float32 ones did; bf16 costs about 0.002 validation accuracy at 11 "
             "epochs and 13 win it back (seed 0: 0.9435 against 0.9437 for 11 float32 epochs)",
             "every setting chosen on --validation-split 0.1 trials: BENCHMARKS.md, \"Recipe trials\"",
             "an average of the weights (EMA, as Keras's use_ema) was measured too and not kept: momentum 0.999 gave "
             "0.9432 mean validation accuracy with flips over seeds 0-2, against 0.9441 for the weights as trained",
             "also measured and not kept: random erasing (underfits in 13 epochs), SGD with Nesterov momentum, peak "
             "rates 0.002 and 0.004, label smoothing 0.05 and 0.15, 15 or 17 epochs (17: +0.0009 mean validation "
             "accuracy for 30% more time), wider networks for fewer epochs in the same time, and a 'same' first "
             "conv that keeps 28x28 to the first pool (+0.0007 for 15% more time)",
             "test accuracy on seeds 0, 1, 2 in bf16 on a Zen 4: 0.9405, 0.9382, 0.9383, in 173-191 s against "
             "Keras's 96 s for its 5 lab epochs in the same run (185-201 s against 152 s in another): within twice "
             "Keras's time; the accuracy falls short: earlier versions gave 0.9382-0.9416 on these seeds too, the "
             "recipe sits at 0.94, and 0.94 on every seed is not reached yet (BENCHMARKS.md)"),
    ),
}


def recipe_precision(wanted: str, given: str, bf16_hardware: bool) -> str:
    """The TrainConfig precision a recipe trains with: `given` when the user chose one (anything but "auto"), else
    "bf16" when the recipe wants it (`wanted`) and the device has bfloat16 hardware, else "auto" (float32 on CPU).

    Without the hardware, bfloat16 autocast is emulated and slower than float32, so a recipe that asks for it for speed
    falls back. config.json records the answer, so a resumed run keeps it on any machine.
    """
    if given != "auto":
        return given
    return "bf16" if wanted == "bf16" and bf16_hardware else "auto"


def get_recipe(name: str) -> Recipe:
    """The recipe called `name`, or a TrainingError listing the recipes."""
    if name not in RECIPES:
        raise TrainingError(f"unknown recipe {name!r}; expected one of {', '.join(RECIPES)}",
                            fix="use --recipe fast or --recipe best")
    return RECIPES[name]


# --- the learning rate, step by step ------------------------------------------------------------------------------------

def learning_rate_at(step: int, total_steps: int, peak: float, schedule: str) -> float:
    """The learning rate for 0-based `step` of `total_steps`: constant, or one-cycle (linear up for 20%, then down).

    One-cycle starts at peak/10, reaches the peak at 20% of training and ends at peak/100, as fast.ai's fit_one_cycle
    (with linear rather than cosine segments, whose ends matter little over a few epochs).
    """
    if schedule == "constant":
        return peak
    if schedule != "onecycle":
        raise TrainingError(f"schedule={schedule!r}; expected one of {', '.join(SCHEDULES)}", fix="use onecycle")
    warmup = max(1, round(0.2 * total_steps))
    if step < warmup:
        return peak * (0.1 + 0.9 * step / warmup)
    remaining = max(1, total_steps - 1 - warmup)
    return peak * (1.0 - 0.99 * min(1.0, (step - warmup) / remaining))


# --- augmentation on whole batches ------------------------------------------------------------------------------------

def augment_batch(images: torch.Tensor, kind: str, pad: int = 2) -> torch.Tensor:
    """Random mirror images (flip) and shifts of up to `pad` pixels with zero fill (crop-flip), per image.

    Whole-batch tensor operations on the images' device, drawn from torch's global generator (which checkpoints save,
    so a resumed run draws the same). images: (N, C, H, W) floats; the result has the same shape.
    """
    if kind == "none":
        return images
    if kind not in AUGMENTATIONS:
        raise TrainingError(f"augment={kind!r}; expected one of {', '.join(AUGMENTATIONS)}", fix="use crop-flip")
    count, _, height, width = images.shape
    mirrored = torch.rand(count, device=images.device) < 0.5
    images = torch.where(mirrored.view(count, 1, 1, 1), images.flip(3), images)
    if kind == "crop-flip":
        padded = F.pad(images, (pad, pad, pad, pad))                               # (N, C, H + 2p, W + 2p), zeros
        shift_rows = torch.randint(0, 2 * pad + 1, (count, 1), device=images.device)
        shift_cols = torch.randint(0, 2 * pad + 1, (count, 1), device=images.device)
        rows = (shift_rows + torch.arange(height, device=images.device)).view(count, 1, height, 1)
        cols = (shift_cols + torch.arange(width, device=images.device)).view(count, 1, 1, width)
        index = torch.arange(count, device=images.device).view(count, 1, 1, 1)
        channels = torch.arange(images.shape[1], device=images.device).view(1, -1, 1, 1)
        images = padded[index, channels, rows, cols]                               # (N, C, H, W)
    return images


# --- test-time flips ----------------------------------------------------------------------------------------------------

def mirror_average(logits: torch.Tensor, mirrored_logits: torch.Tensor) -> torch.Tensor:
    """Test-time flips: the mean of each image's logits and its left-right mirror's, (N, classes) both.

    A model trained on mirrored images (a recipe's augment) sees two views of each test image; averaging their logits
    (not their probabilities: the mean of logits is what a softmax of both views' evidence would give) cancels part
    of each view's error, at twice the evaluation's cost and none of training's."""
    return (logits + mirrored_logits) / 2
