"""Evaluation: test loss and accuracy, accuracy per class, the confusion matrix, the most confused pairs, the top losses.

The arithmetic is pure functions on tensors (labels and logits in, numbers out), each tested against a hand-computed
case. `evaluate_model` runs a model over a test set once and applies them all; `render_evaluation` prints the tables.
Rows of a confusion matrix are the true classes, columns the predicted ones (scikit-learn's and Keras's convention).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from convolab.data import iterate_batches
from convolab.errors import DataError
from convolab.model import model_device
from convolab.recipes import mirror_average
from convolab.shards import inference_pool, infer_in_shards, torch_threads


# --- pure arithmetic ------------------------------------------------------------------------------------------------

def confusion_matrix(true_labels: torch.Tensor, predicted_labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Counts (num_classes, num_classes) int64: entry [t, p] = how many samples of true class t were predicted p."""
    true_labels = true_labels.to(torch.int64).flatten().cpu()
    predicted_labels = predicted_labels.to(torch.int64).flatten().cpu()
    flat = true_labels * num_classes + predicted_labels    # one bin per (true, predicted) pair
    return torch.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def normalize_rows(counts: torch.Tensor) -> torch.Tensor:
    """Each row divided by its sum (the fraction of a true class predicted as each class); an empty row stays zero."""
    counts = counts.to(torch.float64)
    totals = counts.sum(dim=1, keepdim=True)
    return torch.where(totals > 0, counts / totals.clamp(min=1), torch.zeros_like(counts))


def per_class_accuracy(counts: torch.Tensor) -> list[float | None]:
    """Recall per true class: the diagonal over the row sums; None for a class with no samples."""
    totals = counts.sum(dim=1)
    return [None if int(total) == 0 else float(counts[index, index]) / float(total)
            for index, total in enumerate(totals)]


@dataclass(frozen=True)
class ConfusedPair:
    """Samples of `true_class` predicted as `predicted_class`: how many, and what fraction of the true class."""

    true_class: int
    predicted_class: int
    count: int
    fraction: float


def most_confused(counts: torch.Tensor, top: int = 5) -> list[ConfusedPair]:
    """The largest off-diagonal counts, largest first (ties: lower true class, then lower predicted class first)."""
    normalized = normalize_rows(counts)
    pairs = [ConfusedPair(t, p, int(counts[t, p]), float(normalized[t, p]))
             for t in range(counts.shape[0]) for p in range(counts.shape[1]) if t != p and int(counts[t, p]) > 0]
    pairs.sort(key=lambda pair: (-pair.count, pair.true_class, pair.predicted_class))
    return pairs[:top]


@dataclass(frozen=True)
class TopLoss:
    """One of the worst-predicted samples: its index in the set, loss, true and predicted class with probabilities."""

    index: int
    loss: float
    true_class: int
    predicted_class: int
    true_probability: float
    predicted_probability: float


def top_losses(logits: torch.Tensor, labels: torch.Tensor, top: int = 9) -> list[TopLoss]:
    """The `top` samples with the highest cross-entropy, highest first (ties: lower index first)."""
    logits, labels = logits.detach().double().cpu(), labels.cpu()
    losses = F.cross_entropy(logits, labels, reduction="none")                   # (N,)
    probabilities = logits.softmax(dim=1)                                        # (N, classes)
    predicted = probabilities.argmax(dim=1)                                      # (N,)
    order = sorted(range(len(labels)), key=lambda i: (-float(losses[i]), i))[:top]
    return [TopLoss(index=i, loss=float(losses[i]), true_class=int(labels[i]), predicted_class=int(predicted[i]),
                    true_probability=float(probabilities[i, labels[i]]),
                    predicted_probability=float(probabilities[i, predicted[i]]))
            for i in order]


def loss_and_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    """Mean cross-entropy of logits against labels, and the fraction whose largest logit is the label."""
    logits, labels = logits.detach().double().cpu(), labels.cpu()
    if len(labels) == 0:
        return float("nan"), float("nan")
    loss = float(F.cross_entropy(logits, labels))
    accuracy = float((logits.argmax(dim=1) == labels).double().mean())
    return loss, accuracy


# --- a model on a test set ------------------------------------------------------------------------------------------

@torch.no_grad()
def predict_logits(model: torch.nn.Module, images: torch.Tensor, batch_size: int = 256,
                   device: torch.device | str | None = None, test_time_flip: bool = False) -> torch.Tensor:
    """The model's logits (N, classes) for uint8 images (N, C, H, W), in eval mode (restored afterwards), on CPU.

    device: where the batches go; default the model's own (model_device), so a model trained on a GPU is measured
    there.

    On the CPU each batch runs as single-threaded shards, side by side on the usable cores (shards.py): no OpenMP
    thread spin-waits for one that another program has descheduled, and the numbers do not depend on the threads.
    test_time_flip: the mean of the logits of each image and its mirror (mirror_average).
    """
    if test_time_flip:
        return mirror_average(predict_logits(model, images, batch_size, device),
                              predict_logits(model, images.flip(3), batch_size, device))   # (N, C, H, W): W mirrored
    device = model_device(model) if device is None else torch.device(device)
    was_training = model.training
    model.eval()
    on_cpu = device.type == "cpu"
    try:
        labels = torch.zeros(len(images), dtype=torch.int64)
        with torch_threads(1 if on_cpu else None):
            outputs = [(infer_in_shards(model, batch, inference_pool()) if on_cpu else model(batch)).float().cpu()
                       for batch, _ in iterate_batches(images, labels, batch_size, device=device)]
    finally:
        model.train(was_training)
    if not outputs:
        return torch.zeros(0, 0)
    return torch.cat(outputs)


@dataclass(repr=False)
class Evaluation:
    """Everything `convolab evaluate` reports about a model on a labelled set (displays as a table in a notebook)."""

    class_names: list[str]
    loss: float
    accuracy: float
    per_class_accuracy: list[float | None]
    confusion: torch.Tensor            # (classes, classes) int64 counts
    confusion_normalized: torch.Tensor  # rows sum to 1
    most_confused: list[ConfusedPair]
    top_losses: list[TopLoss]
    count: int
    test_time_flip: bool = False        # the logits were each image's and its mirror's, averaged (mirror_average)

    def __repr__(self) -> str:
        return f"<Evaluation: loss {self.loss:.4f}, accuracy {self.accuracy:.4f} on {self.count} images>"

    def _repr_html_(self) -> str:
        from html import escape

        rows = "".join(f"<tr><td>{escape(name)}</td><td style='text-align:right'>"
                       f"{'' if value is None else f'{value:.4f}'}</td></tr>"
                       for name, value in zip(self.class_names, self.per_class_accuracy))
        confused = ", ".join(f"{self.class_names[p.true_class]} → {self.class_names[p.predicted_class]} ({p.count})"
                             for p in self.most_confused[:3])
        return (f"<div><b>test loss {self.loss:.4f}, accuracy {self.accuracy:.4f}</b> on {self.count} images; "
                f"most confused: {escape(confused) or 'none'}<table><tr><th>class</th><th>accuracy</th></tr>{rows}"
                f"</table></div>")

    def to_dict(self) -> dict:
        """For metrics.json: plain numbers and lists."""
        return {
            "test_loss": self.loss, "test_accuracy": self.accuracy, "test_count": self.count,
            "test_time_flip": self.test_time_flip,
            "class_names": self.class_names,
            "per_class_accuracy": dict(zip(self.class_names, self.per_class_accuracy)),
            "confusion_matrix": self.confusion.tolist(),
            "confusion_matrix_normalized": [[round(value, 6) for value in row] for row in self.confusion_normalized.tolist()],
            "most_confused": [{"true": self.class_names[p.true_class], "predicted": self.class_names[p.predicted_class],
                               "count": p.count, "fraction": p.fraction} for p in self.most_confused],
            "top_losses": [{"index": t.index, "loss": t.loss, "true": self.class_names[t.true_class],
                            "predicted": self.class_names[t.predicted_class], "true_probability": t.true_probability,
                            "predicted_probability": t.predicted_probability} for t in self.top_losses],
        }


def evaluate_logits(logits: torch.Tensor, labels: torch.Tensor, class_names: list[str], top_pairs: int = 5,
                    top_k_losses: int = 9) -> Evaluation:
    """All the metrics from a set's logits and labels."""
    num_classes = len(class_names)
    loss, accuracy = loss_and_accuracy(logits, labels)
    predicted = logits.argmax(dim=1) if len(labels) else torch.zeros(0, dtype=torch.int64)
    counts = confusion_matrix(labels, predicted, num_classes)
    return Evaluation(class_names=list(class_names), loss=loss, accuracy=accuracy,
                      per_class_accuracy=per_class_accuracy(counts), confusion=counts,
                      confusion_normalized=normalize_rows(counts), most_confused=most_confused(counts, top_pairs),
                      top_losses=top_losses(logits, labels, top_k_losses), count=len(labels))


def evaluate_model(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, class_names: list[str],
                   device: torch.device | str | None = None, batch_size: int = 256, top_pairs: int = 5,
                   top_k_losses: int = 9, test_time_flip: bool = False) -> Evaluation:
    """Run `model` over uint8 `images` once (twice with `test_time_flip`: each image and its mirror, logits averaged)
    and compute every metric; DataError when there are no images. device: default the model's own."""
    if len(images) == 0:
        raise DataError("no test images to evaluate on (0 images)",
                        fix="give data with a test split: --test-split 0.2, or a test/ folder next to train/")
    logits = predict_logits(model, images, batch_size=batch_size, device=device, test_time_flip=test_time_flip)
    evaluation = evaluate_logits(logits, labels, class_names, top_pairs=top_pairs, top_k_losses=top_k_losses)
    evaluation.test_time_flip = test_time_flip
    return evaluation


# --- printing -------------------------------------------------------------------------------------------------------

def _short(name: str, width: int) -> str:
    return name if len(name) <= width else name[: width - 1] + "…"


def render_confusion(counts: torch.Tensor, class_names: list[str], normalized: bool = False) -> str:
    """The confusion matrix as a text table: rows true classes, columns predicted (numbered as in the row labels)."""
    corner = "true \\ predicted"
    name_width = max(max(len(name) for name in class_names) + 5, len(corner) + 1)
    cell = 6
    values = normalize_rows(counts) if normalized else counts
    header = corner.ljust(name_width) + "".join(f"{index:>{cell}}" for index in range(len(class_names)))
    lines = [header]
    for row, name in enumerate(class_names):
        cells = "".join((f"{float(values[row, col]):>{cell}.2f}" if normalized else f"{int(values[row, col]):>{cell}d}")
                        for col in range(len(class_names)))
        lines.append(f"{row:>2} {name}".ljust(name_width) + cells)
    return "\n".join(lines)


def render_evaluation(evaluation: Evaluation, title: str = "test") -> str:
    """The whole report as plain text: metrics, per-class accuracy, both confusion tables, confused pairs, top losses."""
    names = evaluation.class_names
    flips = "   (test-time flips: each image and its mirror, logits averaged)" if evaluation.test_time_flip else ""
    lines = [f"{title}: {evaluation.count} images   loss {evaluation.loss:.4f}   accuracy {evaluation.accuracy:.4f}"
             f"{flips}", ""]
    lines.append("accuracy per class")
    for index, (name, value) in enumerate(zip(names, evaluation.per_class_accuracy)):
        shown = "  n/a (no samples)" if value is None else f"{value:7.4f}"
        lines.append(f"  {index:>2} {name:<{max(map(len, names))}}  {shown}")
    lines += ["", "confusion matrix (counts)", render_confusion(evaluation.confusion, names), ""]
    lines += ["confusion matrix (each row divided by its total)",
              render_confusion(evaluation.confusion, names, normalized=True), ""]
    lines.append("most confused (true -> predicted)")
    if not evaluation.most_confused:
        lines.append("  none: every sample was classified correctly")
    for pair in evaluation.most_confused:
        lines.append(f"  {names[pair.true_class]} -> {names[pair.predicted_class]}: {pair.count} "
                     f"({pair.fraction:.1%} of {names[pair.true_class]})")
    lines += ["", "top losses (index, loss, true class with its probability, predicted class with its probability)"]
    for item in evaluation.top_losses:
        lines.append(f"  #{item.index:<6} loss {item.loss:7.3f}   true {names[item.true_class]} "
                     f"({item.true_probability:.3f})   predicted {names[item.predicted_class]} "
                     f"({item.predicted_probability:.3f})")
    return "\n".join(lines)
