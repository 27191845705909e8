"""keras.callbacks: Keras's Callback protocol on convolab's training loop, plus EarlyStopping, ModelCheckpoint, History.

A Keras callback is called as Keras calls it: `on_epoch_end(self, epoch, logs)` with a 0-based epoch and a logs dict,
`self.model` the model being fitted, and `self.model.stop_training = True` ends training after the epoch. `logs`
carries the accuracy under both of its names, `accuracy` (Keras 2 and 3) and `acc` (Keras 1): the course's callback
fails on exactly that difference in the original (lmoroney/dlaicourse #29, #96; tensorflow/tensorflow #36358).

EarlyStopping and ModelCheckpoint are convolab's own callbacks (callbacks.py) with Keras's signatures.
"""
from __future__ import annotations

import string
from typing import Any

from convolab import callbacks as native
from convolab.errors import ArgumentError
from convolab.keras.surface import check_arguments, check_keras_name, unsupported


class Callback:
    """Keras's base class: override any of the hooks; `self.model` and `self.params` are set by fit."""

    def __init__(self):
        self.model = None
        self.params: dict = {}

    def set_model(self, model) -> None:
        self.model = model

    def set_params(self, params: dict) -> None:
        self.params = params

    def on_train_begin(self, logs=None): pass
    def on_train_end(self, logs=None): pass
    def on_epoch_begin(self, epoch, logs=None): pass
    def on_epoch_end(self, epoch, logs=None): pass
    def on_batch_begin(self, batch, logs=None): pass
    def on_batch_end(self, batch, logs=None): pass

    def on_train_batch_begin(self, batch, logs=None):
        self.on_batch_begin(batch, logs)

    def on_train_batch_end(self, batch, logs=None):
        self.on_batch_end(batch, logs)


def keras_logs(row: dict) -> dict:
    """A history row as Keras's logs: loss and accuracy (also as `acc`), val_ ones when validating."""
    logs = {key: row[key] for key in ("loss", "accuracy", "val_loss", "val_accuracy") if row.get(key) is not None}
    for name, alias in native.METRIC_ALIASES.items():
        if alias in logs:
            logs[name] = logs[alias]
    return logs


def wants_batches(callback: Callback) -> bool:
    """Whether a callback overrides a per-batch hook (the loop then computes the running metrics after each step)."""
    kind = type(callback)
    overridden = kind.on_train_batch_end is not Callback.on_train_batch_end or kind.on_batch_end is not Callback.on_batch_end
    return overridden or "on_batch_end" in vars(callback)   # LambdaCallback(on_batch_end=...)


class KerasCallbacks(native.Callback):
    """convolab's side of Keras callbacks: the loop's state in, Keras's (epoch, logs) calls out, stop_training read."""

    def __init__(self, callbacks: list[Callback], model, params: dict):
        self.callbacks, self.model = callbacks, model
        for callback in callbacks:
            callback.set_model(model)
            callback.set_params(params)

    def on_train_begin(self, state: Any) -> None:
        self.model.stop_training = False
        for callback in self.callbacks:
            callback.on_train_begin({})

    def on_epoch_begin(self, epoch: int) -> None:
        for callback in self.callbacks:
            callback.on_epoch_begin(epoch - 1, {})

    def on_batch_end(self, step: int, metrics: dict) -> None:
        logs = keras_logs(metrics)
        for callback in self.callbacks:
            if wants_batches(callback):
                callback.on_train_batch_end(step - 1, logs)

    def on_epoch_end(self, state: Any) -> str | None:
        logs = keras_logs(state.logs)
        stopped_by = None
        for callback in self.callbacks:
            callback.on_epoch_end(state.epoch - 1, logs)
            if self.model.stop_training and stopped_by is None:
                stopped_by = type(callback).__name__
        return f"{stopped_by} set model.stop_training" if stopped_by else None

    def on_train_end(self, state: Any) -> None:
        logs = keras_logs(state.logs)
        for callback in self.callbacks:
            callback.on_train_end(logs)


class History(Callback):
    """What fit returns: `history.history["accuracy"]`, `["val_loss"]`, ... one value per epoch; `history.epoch`.

    As in Keras 3, the accuracy keys are the metric names compile was given: metrics=["acc"] gives "acc" and
    "val_acc", metrics=["accuracy"] "accuracy" and "val_accuracy", no metrics only the losses."""

    def __init__(self, metric_names: list[str] | tuple[str, ...] = ("accuracy",)):
        super().__init__()
        self.metric_names = list(metric_names)
        self.history: dict[str, list[float]] = {}
        self.epoch: list[int] = []

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        logs = logs or {}
        named = {key: logs[key] for key in ("loss", "val_loss") if key in logs}
        for name in self.metric_names:        # every accuracy metric convolab supports is the one accuracy
            for prefix in ("", "val_"):
                if prefix + "accuracy" in logs:
                    named[prefix + name] = logs[prefix + "accuracy"]
        for key, value in named.items():
            self.history.setdefault(key, []).append(value)

    def rows(self) -> list[dict]:
        """One dict per epoch (1-based), as convolab's history is kept."""
        return [{"epoch": epoch + 1, **{key: values[position] for key, values in self.history.items()}}
                for position, epoch in enumerate(self.epoch)]

    def __repr__(self) -> str:
        last = {key: round(values[-1], 4) for key, values in self.history.items() if values}
        return f"<History: {len(self.epoch)} epochs, last {last}>"

    def _repr_html_(self) -> str:
        from convolab.notebook import history_html
        return history_html(self.rows(), caption=f"History: {len(self.epoch)} epochs")


class EarlyStopping(native.EarlyStopping):
    """Keras's EarlyStopping(monitor="val_loss", min_delta=0, patience=0, restore_best_weights=False)."""

    def __init__(self, monitor: str = "val_loss", min_delta: float = 0.0, patience: int = 0, verbose: int = 0,
                 mode: str = "auto", restore_best_weights: bool = False, **keras_arguments):
        check_arguments("keras.callbacks.EarlyStopping", keras_arguments,
                        ["monitor", "min_delta", "patience", "verbose", "mode", "restore_best_weights"],
                        ("baseline", "start_from_epoch"))
        _check_mode("EarlyStopping", monitor, mode)
        # Keras stops at the first epoch without improvement for patience 0 and 1 alike.
        super().__init__(patience=max(int(patience), 1), monitor=monitor, min_delta=min_delta,
                         restore_best_weights=restore_best_weights)


class ModelCheckpoint(native.Callback):
    """Keras's ModelCheckpoint(filepath, monitor="val_loss", save_best_only=False): after each epoch (or each
    improvement) the whole model is saved to `filepath`, a .keras name that may hold {epoch} and log names
    ("cnn-{epoch:02d}.keras"), read back with keras.models.load_model. save_weights_only=True (Keras's .weights.h5)
    and .h5 names are refused when the callback is made, before any training."""

    def __init__(self, filepath, monitor: str = "val_loss", verbose: int = 0, save_best_only: bool = False,
                 save_weights_only: bool = False, mode: str = "auto", save_freq="epoch", **keras_arguments):
        check_arguments("keras.callbacks.ModelCheckpoint", keras_arguments,
                        ["filepath", "monitor", "verbose", "save_best_only", "save_weights_only", "mode", "save_freq"],
                        ("initial_value_threshold",))
        if save_freq != "epoch":
            raise ArgumentError(f"keras.callbacks.ModelCheckpoint: save_freq={save_freq!r} is not supported",
                                fix="leave save_freq out: convolab saves once per epoch")
        _check_mode("ModelCheckpoint", monitor, mode)
        if save_weights_only:
            raise ArgumentError(f"keras.callbacks.ModelCheckpoint({str(filepath)!r}, save_weights_only=True): convolab "
                                "does not support save_weights_only; it saves the whole model (layers and weights) "
                                "as a .keras file",
                                fix="leave save_weights_only out and name a .keras file, e.g. "
                                    "ModelCheckpoint('model-{epoch:02d}.keras'); keras.models.load_model reads it back")
        check_keras_name("keras.callbacks.ModelCheckpoint", filepath)
        self.filepath, self.monitor, self.save_best_only = str(filepath), native.canonical_metric(monitor), save_best_only
        self.verbose = verbose
        self.model = None
        self.best: float | None = None
        self.saved: list[str] = []

    def check(self, metric_names: set[str]) -> None:
        """Before the first epoch: every {name} of the file name is one this fit logs (else the first save would
        fail after an epoch of training), and the monitor too when only the best is kept."""
        logged = {"epoch", *keras_logs({name: 0.0 for name in metric_names})}
        try:
            fields = [field for _, field, _, _ in string.Formatter().parse(self.filepath) if field is not None]
        except ValueError as error:              # an unmatched { or }
            raise ArgumentError(f"keras.callbacks.ModelCheckpoint: filepath {self.filepath!r} is not a valid template "
                                f"({error})", fix="write braces only around names, e.g. 'model-{epoch:02d}.keras'") from None
        for field in fields:
            name = field.split(".")[0].split("[")[0]
            if name not in logged:
                raise ArgumentError(f"keras.callbacks.ModelCheckpoint: filepath {self.filepath!r} names {{{field}}}, "
                                    f"which this fit does not log; it logs {', '.join(sorted(logged))}",
                                    fix="name only those (val_ ones need validation_split or validation_data), "
                                        "e.g. 'model-{epoch:02d}.keras'")
        if self.save_best_only:
            native.check_metric(self.monitor, metric_names, f"ModelCheckpoint's monitor {self.monitor!r}")

    def on_epoch_end(self, state: Any) -> str | None:
        logs = keras_logs(state.logs)
        if self.save_best_only:
            value = state.logs[self.monitor]
            better = native.higher_is_better(self.monitor)
            if self.best is not None and not (value > self.best if better else value < self.best):
                return None
            self.best = value
        path = self.filepath.format(epoch=state.epoch, **logs)
        self.model.save(path)   # the Keras model being fitted, set by its fit
        self.saved.append(path)
        if self.verbose:
            print(f"epoch {state.epoch}: saved the model to {path}")
        return None

    def state_dict(self) -> dict:
        return {"best": self.best}

    def load_state_dict(self, state: dict) -> None:
        self.best = state["best"]


def _check_mode(where: str, monitor: str, mode: str) -> None:
    """Keras's mode: auto (by the name), min or max; convolab infers it from the name and refuses a contrary one."""
    expected = "max" if native.higher_is_better(native.canonical_metric(monitor)) else "min"
    if mode not in ("auto", expected):
        raise ArgumentError(f"keras.callbacks.{where}: mode={mode!r} for monitor {monitor!r}; convolab watches "
                            f"{monitor} with mode {expected!r}", fix="leave mode out (auto)")


class LambdaCallback(Callback):
    """keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: ...)."""

    def __init__(self, on_epoch_begin=None, on_epoch_end=None, on_train_begin=None, on_train_end=None,
                 on_batch_begin=None, on_batch_end=None, **keras_arguments):
        super().__init__()
        check_arguments("keras.callbacks.LambdaCallback", keras_arguments,
                        ["on_epoch_begin", "on_epoch_end", "on_train_begin", "on_train_end", "on_batch_begin",
                         "on_batch_end"])
        for name, function in (("on_epoch_begin", on_epoch_begin), ("on_epoch_end", on_epoch_end),
                               ("on_train_begin", on_train_begin), ("on_train_end", on_train_end),
                               ("on_batch_begin", on_batch_begin), ("on_batch_end", on_batch_end)):
            if function is not None:
                setattr(self, name, function)


CALLBACKS = ("Callback", "EarlyStopping", "History", "LambdaCallback", "ModelCheckpoint", "TensorBoard")


def __getattr__(name: str):
    if name == "TensorBoard":
        from convolab.tensorboard import TensorBoard
        return TensorBoard
    raise unsupported(f"keras.callbacks.{name}", CALLBACKS)
