"""live.LiveTraining, the server's side of a training started from the page: what the page's polling may see while a
new training starts (the real trainings run in tests/test_serve.py)."""
from __future__ import annotations

import tempfile
import threading

from convolab import live
from convolab.live import LiveTraining, TrainingJob, write_status


class NoProcess:
    """A training process that is never started: this test is about the folder swap, not about training."""

    exitcode = None

    def __init__(self, *arguments, **options):
        pass

    def start(self) -> None:
        pass

    def is_alive(self) -> bool:
        return False


def test_polling_while_a_new_training_starts_sees_the_old_or_the_new_status_never_a_missing_file(monkeypatch,
                                                                                               tmp_path):
    training = LiveTraining()
    training.folder = tmp_path / "last"          # the last training's folder, about to be removed by start()
    training.folder.mkdir()
    write_status(training.folder, "finished", "finished after epoch 1", str(tmp_path / "run0"))
    training.job = TrainingJob(out=str(tmp_path / "run0"))
    inside_start, make_folder = threading.Event(), tempfile.mkdtemp

    def slow_mkdtemp(**options):                 # start() pauses between removing the old folder and the new one
        inside_start.set()
        threading.Event().wait(0.3)
        return make_folder(dir=tmp_path, **options)

    monkeypatch.setattr(live.tempfile, "mkdtemp", slow_mkdtemp)
    monkeypatch.setattr(live.multiprocessing, "get_context", lambda method: type("Context", (), {"Process": NoProcess}))
    starting = threading.Thread(target=training.start, args=(TrainingJob(out=str(tmp_path / "run1")),))
    starting.start()
    assert inside_start.wait(10)
    status = training.status()                   # the page's poll, on another thread, mid-start
    starting.join(10)
    assert status["state"] in ("starting", "finished", "failed") and status["run_name"] in ("run0", "run1")
    assert training.status()["run_name"] == "run1"
