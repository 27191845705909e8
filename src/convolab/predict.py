"""A trained run applied to the user's own images: each file prepared as the training data was, then the top classes.

Preparation is `images.load_image`: grayscale or RGB as the model expects, resized with the aspect kept and padded,
and inverted when the background is light (the lab's data is light objects on black). An unreadable file is reported
by name and the others go on.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from convolab.errors import ArgumentError, ConvolabError
from convolab.evaluate import predict_logits
from convolab.images import load_image


@dataclass
class Prediction:
    """One image's result: the top classes with their probabilities, or why the file could not be used."""

    path: str
    top: list[tuple[str, float]] = field(default_factory=list)   # (class name, probability), most likely first
    error: str | None = None

    def to_dict(self) -> dict:
        if self.error is not None:
            return {"path": self.path, "error": self.error}
        return {"path": self.path, "top": [{"class": name, "probability": probability} for name, probability in self.top]}


def top_classes(probabilities: torch.Tensor, class_names: list[str], k: int = 3) -> list[list[tuple[str, float]]]:
    """For each row of (N, classes) probabilities, the k most likely (class name, probability), most likely first."""
    k = min(k, probabilities.shape[1])
    values, indices = probabilities.topk(k, dim=1)
    return [[(class_names[int(index)], float(value)) for value, index in zip(row_values, row_indices)]
            for row_values, row_indices in zip(values, indices)]


def predict_images(model: torch.nn.Module, paths: list[str | Path], input_shape: tuple[int, int, int],
                   class_names: list[str], invert: bool | str = "auto", top: int = 3,
                   device: torch.device | str = "cpu") -> list[Prediction]:
    """Top-`top` classes for each image file (or a file's bytes, named "image N"); a file that cannot be read gets a
    Prediction with `error` set."""
    if isinstance(top, bool) or not isinstance(top, int) or top < 1:
        raise ArgumentError(f"top={top!r}; expected a whole number of classes to show, 1 or more",
                            fix="top=3, say (--top 3 on the command line)")
    if invert not in ("auto", True, False):   # once, not as every image's error
        raise ArgumentError(f"invert={invert!r}; expected 'auto', True or False",
                            fix="invert='auto' inverts light backgrounds (the default); False never (--no-invert)")
    predictions = [Prediction(path=f"image {number}" if isinstance(path, bytes) else str(path))
                   for number, path in enumerate(paths, start=1)]
    tensors, usable = [], []
    for prediction, path in zip(predictions, paths):
        try:
            tensors.append(load_image(path, input_shape, invert=invert))   # (C, H, W) uint8
            usable.append(prediction)
        except ConvolabError as error:
            prediction.error = error.message
    if tensors:
        logits = predict_logits(model, torch.stack(tensors), device=device)       # (N, classes)
        for prediction, ranked in zip(usable, top_classes(logits.softmax(dim=1), class_names, top)):
            prediction.top = ranked
    return predictions


def render_predictions(predictions: list[Prediction]) -> str:
    """One block per image: its path, then the top classes with probabilities (or the error)."""
    lines = []
    for prediction in predictions:
        if prediction.error is not None:
            lines.append(f"{prediction.path}: cannot use it: {prediction.error}")
            continue
        lines.append(f"{prediction.path}:")
        lines += [f"  {probability:7.2%}  {name}" for name, probability in prediction.top]
    return "\n".join(lines)
