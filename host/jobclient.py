"""Qt face of the engine worker: turns `backline.host.jobs.JobWorker` events into signals.

The worker is polled from a 30 ms timer with a zero timeout, so the UI thread never waits on it. When the
worker dies, every job it held gets a `crashed` signal (its take card shows why) and a fresh worker is started
at once; engines that were described before are described again so the panels stay live. A worker that keeps
dying while it starts is not restarted in a loop: after `MAX_QUICK_RESTARTS` the client gives up and says so.
"""

from __future__ import annotations

import time

from PyQt6.QtCore import QObject, QTimer, pyqtSignal

from backline.engines.core.errors import BacklineError
from backline.host.jobs import JobEvent, JobWorker

MAX_QUICK_RESTARTS = 3
QUICK_SECONDS = 20.0


class JobClient(QObject):
    ready = pyqtSignal(str)  # device text
    described = pyqtSignal(str, object, str)  # engine, EngineDescription | None, error
    progress = pyqtSignal(str, float, str)  # job, fraction, message
    finished = pyqtSignal(str, object)  # job, GenerationResult
    failed = pyqtSignal(str, str, bool)  # job, message, cancelled
    crashed = pyqtSignal(str, str)  # job ('' if none), message
    restarted = pyqtSignal(int)  # restart count

    def __init__(self, config: str = "shipped", device: str = "auto", parent: QObject | None = None,
                 fit: str = "auto") -> None:
        super().__init__(parent)
        self.worker = JobWorker(config=config, device=device, fit=fit)
        self.wanted: set[str] = set()  # engines whose description the UI wants
        self.broken: set[str] = set()  # engines whose loading crashed the worker (not retried automatically)
        self._crash_times: list[float] = []
        self.gave_up = False
        self._timer = QTimer(self)
        self._timer.setInterval(30)
        self._timer.timeout.connect(self.pump)

    def start(self) -> None:
        self.worker.start()
        self._timer.start()

    def stop(self) -> None:
        """Cancel what runs (so the worker can stop cleanly), then stop it; a hung engine is terminated."""
        self._timer.stop()
        for job in list(self.worker.pending.jobs):
            self.worker.cancel(job)
        self.worker.stop()

    def reconfigure(self, config: str, device: str) -> None:
        """New engine settings: restart the worker with them (running jobs are cancelled first)."""
        for job in list(self.worker.pending.jobs):
            self.cancel(job)
        self.worker.stop()
        self.worker.config, self.worker.device = config, device
        self.broken.clear()
        self.gave_up = False
        self.worker.start()
        for name in sorted(self.wanted):
            self.worker.describe(name)

    @property
    def busy(self) -> bool:
        return self.worker.busy

    def describe(self, engine: str) -> None:
        self.wanted.add(engine)
        self.worker.describe(engine)

    def submit(self, request, job_id: str | None = None) -> str:
        if self.gave_up or not self.worker.alive and self.worker.process is None:
            raise BacklineError("the engine worker is not running (it kept crashing)",
                                fix="check the engine device and weights in Settings, then save to restart it")
        return self.worker.submit(request, job_id)

    def cancel(self, job_id: str) -> None:
        self.worker.cancel(job_id)

    def pump(self, timeout: float = 0.0) -> None:
        """Deliver whatever the worker sent (the timer calls this; tests may too)."""
        events = self.worker.poll(timeout)
        crashes = [e for e in events if e.kind == "crash"]
        for event in events:
            self._dispatch(event)
        if crashes:
            self._restart(during_job=any(e.job_id for e in crashes))

    def _dispatch(self, e: JobEvent) -> None:
        if e.kind == "ready":
            self.ready.emit(e.device)
        elif e.kind == "described":
            self.described.emit(e.engine, e.description, e.message)
        elif e.kind == "progress":
            self.progress.emit(e.job_id, e.fraction, e.message)
        elif e.kind == "result":
            self.finished.emit(e.job_id, e.result)
        elif e.kind == "error":
            self.failed.emit(e.job_id, e.message, e.cancelled)
        elif e.kind == "crash":
            if e.engine and not e.job_id:
                self.broken.add(e.engine)
                self.described.emit(e.engine, None, e.message)
            else:
                self.crashed.emit(e.job_id, e.message)

    def _restart(self, during_job: bool) -> None:
        """A crash during a job always restarts; crashes while starting/loading are capped (no restart loop)."""
        now = time.monotonic()
        self._crash_times = [t for t in self._crash_times if now - t < QUICK_SECONDS]
        if not during_job:
            self._crash_times.append(now)
        if len(self._crash_times) > MAX_QUICK_RESTARTS:
            self.gave_up = True
            self.crashed.emit("", "the engine worker keeps crashing; it was not restarted again — "
                                  "check the engine device and weights in Settings")
            return
        self.worker.restart()
        for name in sorted(self.wanted - self.broken):
            self.worker.describe(name)
        self.restarted.emit(self.worker.restarts)
