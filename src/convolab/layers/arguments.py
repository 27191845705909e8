"""Argument validation shared by every layer kind, in Keras's terms: each helper returns the normalized value or
raises a SpecError that names the layer, the argument, what was received and a fix."""
from __future__ import annotations

import difflib
from typing import Any

from convolab.errors import SpecError

PADDINGS = ("valid", "same")
SHORT_TEXT = 60  # characters of a received value quoted in a message


def short(value: Any, limit: int = SHORT_TEXT) -> str:
    """repr(value) cut to `limit` characters without building the whole repr of a huge or self-similar value.

    A YAML alias bomb is a list of lists sharing their items: a plain repr() would expand it to gigabytes first.
    """
    text = _bounded_repr(value, limit, depth=0)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _bounded_repr(value: Any, limit: int, depth: int) -> str:
    """repr that stops once `limit` characters are written or 20 levels are nested."""
    if depth > 20:
        return "..."
    if isinstance(value, (list, tuple)):
        opening, closing = ("[", "]") if isinstance(value, list) else ("(", ")")
        parts, length = [], 1
        for item in value:
            if length > limit:
                parts.append("...")
                break
            text = _bounded_repr(item, limit, depth + 1)
            parts.append(text)
            length += len(text) + 2
        return opening + ", ".join(parts) + closing
    if isinstance(value, dict):
        parts, length = [], 1
        for key, item in value.items():
            if length > limit:
                parts.append("...")
                break
            text = f"{_bounded_repr(key, limit, depth + 1)}: {_bounded_repr(item, limit, depth + 1)}"
            parts.append(text)
            length += len(text) + 2
        return "{" + ", ".join(parts) + "}"
    if isinstance(value, str) and len(value) > limit:
        return repr(value[:limit])
    return repr(value)


def suggestion(received: str, choices: Any) -> str | None:
    """'did you mean X?' for the nearest name, or None when nothing is close."""
    nearest = difflib.get_close_matches(received.lower(), [str(choice).lower() for choice in choices], n=1, cutoff=0.5)
    if not nearest:
        return None
    original = {str(choice).lower(): str(choice) for choice in choices}[nearest[0]]
    return f"did you mean {original!r}?"


def is_int(value: Any) -> bool:
    """True for Python/numpy integers, False for bool (Keras rejects filters=True too)."""
    return isinstance(value, int) and not isinstance(value, bool) or type(value).__name__.startswith(("int", "uint"))


def is_number(value: Any) -> bool:
    """An int or float that is not a bool."""
    return not isinstance(value, bool) and isinstance(value, (int, float))


def positive_int(layer: str, argument: str, value: Any, example: str) -> int:
    """`value` as an int > 0, or a SpecError that says what was received."""
    if not is_int(value) or int(value) <= 0:
        raise SpecError(
            f"{layer}: expected {argument} to be a positive integer, received: {argument}={short(value)}",
            fix=f"for example {example}",
        )
    return int(value)


def positive_pair(layer: str, argument: str, value: Any, example: str) -> tuple[int, int]:
    """An int or a pair of ints > 0 as (height, width); Keras's normalize_tuple."""
    if is_int(value):
        pair = (value, value)
    elif isinstance(value, (tuple, list)) and len(value) == 2:
        pair = tuple(value)
    else:
        pair = None
    if pair is None or not all(is_int(item) and int(item) > 0 for item in pair):
        raise SpecError(
            f"{layer}: expected {argument} to be a positive integer or a tuple of 2 positive integers, "
            f"received: {argument}={short(value)}",
            fix=f"for example {example}",
        )
    return int(pair[0]), int(pair[1])


def choice(layer: str, argument: str, value: Any, choices: tuple[str, ...], aliases: dict | None = None) -> str:
    """A string among `choices` (case-insensitive, aliases allowed), or a SpecError naming the nearest."""
    if isinstance(value, str):
        lowered = value.strip().lower()
        lowered = (aliases or {}).get(lowered, lowered)
        if lowered in choices:
            return lowered
    raise SpecError(
        f"{layer}: expected {argument} to be one of {', '.join(choices)}, received: {argument}={short(value)}",
        fix=(suggestion(value[:SHORT_TEXT], choices) if isinstance(value, str) else None)
        or f"use one of {', '.join(choices)}",
    )


def boolean(layer: str, argument: str, value: Any) -> bool:
    """A real bool (a YAML 'yes' is a bool already; the string 'false' is not)."""
    if not isinstance(value, bool):
        raise SpecError(f"{layer}: expected {argument} to be true or false, received: {argument}={short(value)}",
                        fix=f"{argument}=False")
    return value


def input_shape(layer: str, value: Any) -> tuple[int, int, int] | None:
    """Keras's input_shape argument as (height, width, channels); (h, w) means one channel, as the lab's Flatten uses."""
    if value is None:
        return None
    if isinstance(value, (tuple, list)) and len(value) in (2, 3) and all(is_int(v) and int(v) > 0 for v in value):
        shape = tuple(int(v) for v in value)
        return shape if len(shape) == 3 else (shape[0], shape[1], 1)
    raise SpecError(
        f"{layer}: expected input_shape to be (height, width, channels) of positive integers, "
        f"received: input_shape={short(value)}",
        fix="for example input_shape=(28, 28, 1)",
    )


def store(layer: Any, **values: Any) -> None:
    """Store normalized values on a frozen dataclass (only __post_init__ calls this)."""
    for name, value in values.items():
        object.__setattr__(layer, name, value)
