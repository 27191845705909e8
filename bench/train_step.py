"""The benchmark's training step (bench_engine.py goal 2): forward, backward and update with no host synchronisation per
step, metrics summed on the device and read once; on CUDA, optionally captured once as a CUDA graph and replayed.

`convolab train` runs train.py's visible loop instead; this step is kept here, beside the benchmark that measures it,
as the candidate for a captured GPU step (its CUDA-graph replay is written but not wired into `convolab train`).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from convolab.engine import autocast_dtype, step_threads
from convolab.errors import TrainingError
from convolab.train import forward_and_backward, make_optimizer


class TrainStep:
    """forward, loss, backward, optimizer step; loss and correct counts summed on the device, read by `read()`.

    device: where model and batches live. amp: autocast to autocast_dtype(device) (None: decide by device).
    capture: on CUDA, record the whole step once as a CUDA graph and replay it for every full batch (the optimizer
    must be built with capturable=True; make_optimizer_for does that). A short last batch runs eagerly.
    micro_batch: run forward and backward on slices of this many images and step once with their summed gradient
    (the same gradient as the whole batch's, up to rounding): a large batch's activations then stay in cache.
    Refused for models with BatchNormalization, whose batch statistics would change.
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, device: torch.device,
                 loss_fn=F.cross_entropy, amp: bool | None = None, capture: bool | None = None,
                 micro_batch: int | None = None):
        if micro_batch and any(isinstance(module, nn.modules.batchnorm._BatchNorm) for module in model.modules()):
            raise TrainingError("micro_batch with BatchNormalization would change its batch statistics",
                                fix="leave micro_batch unset for this model")
        self.micro_batch = micro_batch
        self.model, self.optimizer, self.device, self.loss_fn = model, optimizer, torch.device(device), loss_fn
        self.dtype = autocast_dtype(self.device) if amp is not False else None
        self.capture = self.device.type == "cuda" if capture is None else capture
        self.loss_sum = torch.zeros((), device=self.device)
        self.correct = torch.zeros((), dtype=torch.int64, device=self.device)
        self.count = 0
        self.graph = None

    def _forward_backward(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.optimizer.zero_grad(set_to_none=not self.capture)
        size = self.micro_batch or len(labels)
        total, predicted = 0.0, []
        for part_images, part_labels in zip(images.split(size), labels.split(size)):
            with torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype is not None,
                                cache_enabled=False):
                if size == len(labels):
                    # the step train.py's loop takes (one hand-off per step for a sharded model); logits (B, classes)
                    logits, loss = forward_and_backward(self.model, part_images, part_labels, self.loss_fn)
                else:
                    logits = self.model(part_images)         # (b, classes)
                    # mean over the whole batch: each slice's mean weighted by its share (autocast computes
                    # cross-entropy in float32, as the whole batch's step does)
                    loss = self.loss_fn(logits, part_labels) * (len(part_labels) / len(labels))
                    loss.backward()
            total = total + loss.detach()
            predicted.append(logits.detach().argmax(dim=1))
        self.optimizer.step()
        return total, torch.cat(predicted) if len(predicted) > 1 else predicted[0]

    def _eager(self, images, labels) -> tuple[torch.Tensor, torch.Tensor]:
        return self._forward_backward(images, labels)

    def _captured(self, images, labels) -> tuple[torch.Tensor, torch.Tensor]:
        if self.graph is None:
            self.static_images, self.static_labels = images.clone(), labels.clone()
            # Warm-up steps (outside the graph, on a side stream, as the CUDA-graph docs ask) create the optimizer's
            # state; the weights and that state are put back afterwards, so warming up trains nothing.
            weights = {name: value.clone() for name, value in self.model.state_dict().items()}
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                for _ in range(3):
                    self._forward_backward(self.static_images, self.static_labels)
            torch.cuda.current_stream().wait_stream(stream)
            with torch.no_grad():
                for name, value in self.model.state_dict().items():
                    value.copy_(weights[name])
                for state in self.optimizer.state.values():
                    for value in state.values():
                        if torch.is_tensor(value):
                            value.zero_()            # Adam's step count and moments: as before any step
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self.static_loss, self.static_predicted = self._forward_backward(self.static_images,
                                                                                  self.static_labels)
            self.graph_batch = images.shape[0]
        self.static_images.copy_(images, non_blocking=True)
        self.static_labels.copy_(labels, non_blocking=True)
        self.graph.replay()
        return self.static_loss, self.static_predicted

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """One step on a batch already on the device; returns the batch's mean loss as a device tensor (no sync)."""
        use_graph = self.capture and (self.graph is None or images.shape[0] == self.graph_batch)
        with step_threads(self.model):               # as train.fit runs a sharded model
            loss, predicted = (self._captured if use_graph else self._eager)(images, labels)
        batch = labels.shape[0]
        self.loss_sum += loss * batch
        self.correct += (predicted == labels).sum()
        self.count += batch
        return loss

    def read(self, reset: bool = False) -> dict[str, float]:
        """The mean loss and accuracy since the last reset: the one host synchronisation, when someone asks."""
        count = max(self.count, 1)
        metrics = {"loss": float(self.loss_sum) / count, "accuracy": int(self.correct) / count, "count": self.count}
        if reset:
            self.loss_sum.zero_()
            self.correct.zero_()
            self.count = 0
        return metrics


def make_optimizer_for(name: str, parameters, learning_rate: float, device: torch.device,
                       weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """train.make_optimizer's Adam or AdamW, capturable on CUDA so that a CUDA graph can replay the step."""
    if name not in ("adam", "adamw"):
        raise TrainingError(f"optimizer={name!r}; the engine's step takes adam or adamw", fix="use --optimizer adam")
    return make_optimizer(name, parameters, learning_rate, torch.device(device), weight_decay, capturable=True)
