"""argparse types for convolab's flags: numbers within bounds, sizes and lists, each refusal a one-line message.

`int()` and `float()` accept more than a flag should: '²' passes `str.isdigit` and then fails in `int`, Arabic-Indic
digits parse, 'nan' and 'inf' are floats, and an integer has no upper bound. `Bounded` takes plain ASCII numbers only,
within the bounds it states, so every command refuses the same things with the same words.
"""
from __future__ import annotations

import argparse
import math
import re
from dataclasses import dataclass

_WHOLE = re.compile(r"[+-]?[0-9]+", re.ASCII)
_DECIMAL = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?", re.ASCII)
SEED_MAX = 2**64 - 1   # torch.manual_seed's largest


@dataclass(frozen=True)
class Bounded:
    """argparse type: a whole number (kind=int) or a decimal (kind=float) from `minimum` to `maximum`.

    above / below: exclude the minimum / the maximum. noun and example word the message: "expected a fraction from 0
    up to (not including) 1, such as 0.2".
    """

    kind: type
    minimum: float | None = None
    maximum: float | None = None
    above: bool = False
    below: bool = False
    noun: str = "a whole number"
    example: str = "5"

    @property
    def __name__(self) -> str:   # argparse names the type in some messages
        return self.noun

    def bounds(self) -> str:
        low, high = self.minimum, self.maximum
        if low is not None and high is not None:
            return f"from {low} {'up to (not including)' if self.below else 'to'} {high}" if not self.above else \
                f"above {low} and {'below' if self.below else 'at most'} {high}"
        if low is not None:
            return f"above {low}" if self.above else f"of at least {low}"
        if high is not None:
            return f"below {high}" if self.below else f"of at most {high}"
        return ""

    def __call__(self, text: str):
        pattern = _WHOLE if self.kind is int else _DECIMAL
        wanted = f"{self.noun} {self.bounds()}".strip() + f", such as {self.example}"
        if not pattern.fullmatch(text.strip()):
            raise argparse.ArgumentTypeError(f"{text!r}: expected {wanted}")
        value = self.kind(text.strip())
        too_low = self.minimum is not None and (value <= self.minimum if self.above else value < self.minimum)
        too_high = self.maximum is not None and (value >= self.maximum if self.below else value > self.maximum)
        if too_low or too_high or (self.kind is float and not math.isfinite(value)):
            raise argparse.ArgumentTypeError(f"{text}: expected {wanted}")
        return value


COUNT = Bounded(int, 1, noun="a whole number", example="5")
CLASS_COUNT = Bounded(int, 1, noun="a whole number of classes", example="10")
FRACTION = Bounded(float, 0, 1, below=True, noun="a fraction", example="0.2")
POSITIVE = Bounded(float, 0, above=True, noun="a number", example="0.001")
FILTER_INDEX = Bounded(int, 0, noun="a filter number", example="1")
SEED = Bounded(int, 0, SEED_MAX, noun="a seed", example="0")
THREAD_COUNT = Bounded(int, 1, 4096, noun="a thread count", example="4")


def threads(text: str) -> str:
    """--threads: all, adaptive, or a count (kept as text, as config.json records it)."""
    if text in ("all", "adaptive"):
        return text
    try:
        return str(THREAD_COUNT(text))
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected all, adaptive, or a thread count from 1 to 4096, "
                                         "such as 4") from None


def _whole_numbers(text: str) -> list[int] | None:
    parts = text.lower().replace("x", ",").split(",")
    if not all(_WHOLE.fullmatch(part.strip()) for part in parts):
        return None
    return [int(part) for part in parts]


def input_shape(text: str) -> tuple[int, int, int]:
    """--input-shape: "28,28,1", "28x28x1", or "28,28" (one channel)."""
    sizes = _whole_numbers(text)
    if sizes is None:
        raise argparse.ArgumentTypeError(f"{text!r}: expected HEIGHT,WIDTH,CHANNELS such as 28,28,1")
    if len(sizes) == 2:
        sizes.append(1)
    if len(sizes) != 3 or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected three positive integers HEIGHT,WIDTH,CHANNELS such as "
                                         "28,28,1")
    return (sizes[0], sizes[1], sizes[2])


def image_size(text: str) -> tuple[int, int]:
    """--image-size: "28,28", "28x28" or "28" (square)."""
    sizes = _whole_numbers(text)
    if sizes is None:
        raise argparse.ArgumentTypeError(f"{text!r}: expected HEIGHT,WIDTH such as 28,28")
    if len(sizes) == 1:
        sizes = sizes * 2
    if len(sizes) != 2 or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected HEIGHT,WIDTH, two positive integers such as 28,28")
    return (sizes[0], sizes[1])


def index_list(text: str) -> list[int]:
    """--images: "0,23,28" -> [0, 23, 28] (whole numbers, 0 or more)."""
    parts = [part.strip() for part in text.split(",") if part.strip()]
    if not all(_WHOLE.fullmatch(part) for part in parts):
        raise argparse.ArgumentTypeError(f"{text!r}: expected image numbers separated by commas, such as 0,23,28")
    values = [int(part) for part in parts]
    if not values or min(values) < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: expected image numbers of 0 or more, such as 0,23,28")
    return values
