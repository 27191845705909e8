"""Showing convolab in Jupyter and Colab: IPython's display protocol (_repr_html_, _repr_png_, _repr_mimebundle_),
live progress that renders in a notebook, plain text everywhere else.

    in_notebook()            True inside a Jupyter or Colab kernel (never in a terminal, a script or pytest)
    show(obj)                display(obj) in a notebook (rendered once, as HTML or PNG), print(str(obj)) elsewhere
    Picture(figure)          a matplotlib figure as a PNG that displays inline and .save(path)s
    Page(html)               a whole HTML page (the report) shown inline in a frame, .save(path)
    NotebookProgress         a bar inside each epoch and a metrics table that grows by a row per epoch

IPython is only imported when it is already loaded (a kernel runs it), so nothing here costs a terminal anything.
"""
from __future__ import annotations

import io
import sys
import time
from html import escape
from pathlib import Path

from convolab.runs import atomic_write_bytes, atomic_write_text, require_suffix
from convolab.train import EpochTotals, Progress

HISTORY_COLUMNS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "seconds", "cpu_seconds")


def in_notebook() -> bool:
    """Whether this process is a Jupyter/Colab kernel: IPython is running and its shell talks to a front end."""
    if "IPython" not in sys.modules:
        return False
    from IPython import get_ipython

    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def show(value, print_fn=print) -> None:
    """Display `value` by its rich form in a notebook (once), or print its text elsewhere."""
    if in_notebook():
        from IPython.display import display

        display(value)
    else:
        for line in str(value).rstrip("\n").split("\n"):
            print_fn(line)


class Picture:
    """A figure rendered once to PNG: inline in a notebook, `.save("grid.png")` anywhere; the figure is freed."""

    def __init__(self, figure, description: str = "picture"):
        import matplotlib.pyplot as plt

        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=100)
        plt.close(figure)
        self.png = buffer.getvalue()
        self.description = description

    def _repr_png_(self) -> bytes:
        return self.png

    def save(self, path: str | Path) -> Path:
        """Write the PNG (folders made as needed: atomic_write_bytes makes them, a failure is its WriteError);
        returns the path. Only under a .png name: the bytes are a PNG's, and another name may be a file of the
        user's (`curves().save("notes.txt")`)."""
        require_suffix(path, (".png",), "the picture is a PNG", "PNG picture")
        return atomic_write_bytes(Path(path), self.png)

    def __repr__(self) -> str:
        return f"<Picture: {self.description}, {len(self.png):,} bytes of PNG; .save(path) writes it>"


class Page:
    """A whole HTML page (the report): in a notebook it shows in a frame (its styles stay inside), `.save(path)`."""

    def __init__(self, html: str, title: str = "report", height: int = 720):
        self.html, self.title, self.height = html, title, height

    def _repr_html_(self) -> str:
        return (f'<iframe srcdoc="{escape(self.html, quote=True)}" title="{escape(self.title)}" '
                f'style="width:100%;height:{self.height}px;border:1px solid #ddd"></iframe>')

    def save(self, path: str | Path) -> Path:
        """Write the page, only under a page's name (.html, .htm), as `convolab report --out` does."""
        require_suffix(path, (".html", ".htm"), "the report is a web page", "page")
        return atomic_write_text(Path(path), self.html)

    def __repr__(self) -> str:
        return f"<Page: {self.title}, {len(self.html):,} characters of HTML; .save(path) writes it>"


def _number(value) -> str:
    return "" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)


def history_html(rows: list[dict], caption: str = "") -> str:
    """Epoch rows as a small HTML table (only the columns some row has)."""
    columns = [column for column in HISTORY_COLUMNS if any(row.get(column) is not None for row in rows)]
    head = "".join(f"<th>{escape(column)}</th>" for column in columns)
    body = "".join("<tr>" + "".join(f'<td style="text-align:right">{_number(row.get(column))}</td>'
                                    for column in columns) + "</tr>" for row in rows)
    title = f"<caption>{escape(caption)}</caption>" if caption else ""
    return f"<table>{title}<tr>{head}</tr>{body}</table>"


def key_values_html(title: str, items: list[tuple[str, str]]) -> str:
    """A compact two-column table: a title, then name / value rows."""
    rows = "".join(f'<tr><th style="text-align:left">{escape(name)}</th><td style="text-align:left">{escape(value)}'
                   f"</td></tr>" for name, value in items)
    return f"<table><caption><b>{escape(title)}</b></caption>{rows}</table>"


class NotebookProgress(Progress):
    """In a notebook: an HTML progress bar inside each epoch (steps, loss, accuracy, rate) updated a few times a second,
    and one metrics table that grows by a row per epoch; both are display outputs updated in place, so a saved
    notebook (and its HTML rendering) keeps the final state."""

    REFRESH_SECONDS = 0.5

    def __init__(self):
        super().__init__()
        from IPython.display import HTML, display

        self.HTML = HTML
        self.bar = display(HTML(""), display_id=True)
        self.table = display(HTML(""), display_id=True)
        self.rows: list[dict] = []
        self.epochs = 0
        self.steps = 0
        self.last_update = 0.0
        self.started = time.perf_counter()
        self.start_done = 0

    def _bar_html(self, epoch: int, done: int, metrics: str, rate: float) -> str:
        return (f"<div>epoch {epoch}/{self.epochs} <progress value='{done}' max='{self.steps}' style='width:40%'>"
                f"</progress> {done}/{self.steps} {escape(metrics)} {rate:.0f} steps/s</div>")

    def start_epoch(self, epoch: int, epochs: int, steps: int, done: int) -> None:
        self.epoch, self.epochs, self.steps = epoch, epochs, steps
        self.started, self.start_done = time.perf_counter(), done
        self.bar.update(self.HTML(self._bar_html(epoch, done, "", 0.0)))

    def step(self, totals: EpochTotals) -> None:
        now = time.perf_counter()
        if now - self.last_update < self.REFRESH_SECONDS and totals.steps < self.steps:
            return
        self.last_update = now
        metrics = totals.metrics()
        rate = (totals.steps - self.start_done) / max(now - self.started, 1e-9)
        self.bar.update(self.HTML(self._bar_html(self.epoch, totals.steps,
                                                 f"loss {metrics['loss']:.4f} accuracy {metrics['accuracy']:.4f}",
                                                 rate)))

    def end_epoch(self, epoch: int, epochs: int, logs: dict) -> None:
        self.rows.append(dict(logs))
        self.table.update(self.HTML(history_html(self.rows)))

    def message(self, text: str) -> None:
        print(text, flush=True)
