"""From stored tensors to training batches: the Keras-style validation split, and batches drawn by index."""
from __future__ import annotations

from collections.abc import Iterator

import torch

from convolab.errors import DataError


def split_validation(images: torch.Tensor, labels: torch.Tensor, fraction: float
                     ) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """Hold out the LAST `fraction` of the arrays for validation, as Keras's fit(validation_split=...) does.

    Keras takes the last samples before any shuffling, so with data sorted by class the validation set can miss
    classes; Fashion-MNIST's training file is not sorted, so its last 10% is a fair sample. Returns views, not copies.
    """
    if not 0.0 <= fraction < 1.0:
        raise DataError(f"validation_split={fraction}; expected a fraction in [0, 1)",
                        fix="use validation_split=0.1, say, or 0 for none (--validation-split on the command line)")
    if len(images) != len(labels):
        raise DataError(f"{len(images)} images but {len(labels)} labels; expected equal counts")
    # Keras: split_at = int(n * (1 - validation_split)).
    split_at = int(len(images) * (1.0 - fraction))
    if fraction > 0 and split_at == len(images):
        split_at = len(images) - 1
    if fraction > 0 and split_at < 1:
        raise DataError(f"validation_split={fraction} of {len(images)} images leaves {split_at} to train on",
                        fix="use a smaller --validation-split (0.1, say), or more images (--train-limit)")
    return (images[:split_at], labels[:split_at]), (images[split_at:], labels[split_at:])


def iterate_batches(images: torch.Tensor, labels: torch.Tensor, batch_size: int, shuffle: bool = False,
                    generator: torch.Generator | None = None, device: torch.device | str = "cpu"
                    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Batches (float32 images / 255 on `device`, int64 labels) drawn by index from uint8 tensors; the last may be short.

    shuffle draws a fresh permutation from `generator` (so a seeded generator gives the same order every run).
    No per-sample Python: each batch is one index_select on the stored tensor.
    """
    if batch_size < 1:
        raise DataError(f"batch_size={batch_size}; expected a positive integer", fix="use batch_size=32, say (--batch-size 32 on the command line)")
    count = len(images)
    order = torch.randperm(count, generator=generator) if shuffle else None
    device = torch.device(device)
    for start in range(0, count, batch_size):
        if order is None:
            batch_images, batch_labels = images[start:start + batch_size], labels[start:start + batch_size]
        else:
            index = order[start:start + batch_size]
            batch_images, batch_labels = images[index], labels[index]
        # uint8 crosses to the device (4x less traffic than float), and is scaled there.
        batch_images = batch_images.to(device, non_blocking=True).float().div_(255.0)
        yield batch_images, batch_labels.to(device, non_blocking=True)
