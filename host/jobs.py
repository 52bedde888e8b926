"""The job worker: one process that owns the engines (and the GPU) and runs generations off the UI.

Why a process and not a thread: a model that segfaults, runs out of GPU memory or hangs in native code must
not take the desktop app, the OSC listener or the audio capture with it. The worker is started with the
multiprocessing 'spawn' method (no forked CUDA or Qt state), builds engines lazily through
`backline.engines.registry.build_engine` and keeps them loaded between jobs.

Messages are plain tuples over two pipes.

host → worker (commands)::

    ("describe", name)                 build the engine (if needed) and send its EngineDescription
    ("generate", job_id, request)      run GenerationRequest; jobs run one at a time, in order
    ("cancel", job_id)                 set that job's cancel event (or drop it if not started yet)
    ("shutdown",)

worker → host (events, see `JobEvent`)::

    ("ready", device_text)
    ("described", name, EngineDescription | None, error_text)
    ("progress", job_id, fraction, message)
    ("result", job_id, GenerationResult)      takes already written: stems/midi are file paths
    ("error", job_id, message, cancelled)

The fifth kind, ``crash``, cannot be sent by a process that has died: `JobWorker.poll` synthesises it from
the process sentinel for every job and description that was still pending, so the host can show the error on
that take and start a fresh worker. This module has no Qt in it; `backline.host.jobclient` wraps it.
"""

from __future__ import annotations

import itertools
import multiprocessing as mp
import os
import queue
import signal
import threading
import time
import traceback
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any

from backline.engines import registry as engines
from backline.engines.core import hooks
from backline.engines.core.errors import BacklineError, Cancelled, ConfigError, DeviceError
from backline.engines.core.protocol import check_device
from backline.engines.core.takes import generate_and_write
from backline.engines.registry import ENGINE_REGISTRY

#: Progress events are throttled to this many per second per job (the final one always goes through).
PROGRESS_RATE_HZ = 20.0


@dataclass
class JobEvent:
    """One thing the worker reported (or, for 'crash', that the client noticed)."""

    kind: str  # 'ready' | 'described' | 'progress' | 'result' | 'error' | 'crash'
    job_id: str = ""
    fraction: float = 0.0
    message: str = ""
    cancelled: bool = False
    result: Any = None  # GenerationResult for 'result'
    description: Any = None  # EngineDescription for 'described'
    engine: str = ""  # engine name for 'described' (and 'crash' of a describe)
    device: str = ""  # for 'ready'


# ----------------------------------------------------------------------------------------------------------
# worker side
# ----------------------------------------------------------------------------------------------------------
def resolve_device(device: str) -> tuple[str, str]:
    """('cuda'|'cpu', human text). 'auto' picks CUDA when torch sees a GPU.

    'cpu' does not import torch: the worker is ready at once, and engines that need torch import it themselves.
    """
    check_device(device)
    if device == "cpu":
        return "cpu", f"CPU ({os.cpu_count() or 1} cores)"
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceError("engine device is set to CUDA but no GPU is visible",
                              fix="set the engine device to 'auto' or 'cpu' in Settings")
        index = torch.device(device).index or 0
        return device, f"GPU: {torch.cuda.get_device_name(index)}"
    return "cpu", f"CPU ({torch.get_num_threads()} threads)"


class _Worker:
    """Runs inside the spawned process."""

    def __init__(self, cmd: Connection, evt: Connection, config: str, device: str, fit: str = "auto") -> None:
        self.cmd, self.evt = cmd, evt
        self.config, self.device, self.fit = config, device, fit
        self.engines: dict[str, Any] = {}
        self.todo: queue.Queue = queue.Queue()
        self.cancel_events: dict[str, threading.Event] = {}
        self.cancelled_early: set[str] = set()
        self.lock = threading.Lock()
        self.send_lock = threading.Lock()

    def send(self, *msg: Any) -> None:
        with self.send_lock:
            self.evt.send(msg)

    def listen(self) -> None:
        """Reader thread: commands arrive here so that 'cancel' reaches a job while it is running."""
        while True:
            try:
                msg = self.cmd.recv()
            except (EOFError, OSError):  # the host is gone: do not linger as an orphan holding the GPU
                os._exit(0)
            kind = msg[0]
            if kind == "cancel":
                with self.lock:
                    event = self.cancel_events.get(msg[1])
                    if event is not None:
                        event.set()
                    else:
                        self.cancelled_early.add(msg[1])
            elif kind == "shutdown":
                self.todo.put(None)
                return
            else:
                self.todo.put(msg)

    def engine(self, name: str) -> Any:
        if name not in self.engines:
            self.engines[name] = engines.build_engine(name, config=self.config, device=self.device)
        return self.engines[name]

    def run(self) -> None:
        try:
            self.device, text = resolve_device(self.device)
        except BacklineError as err:
            self.device, text = "cpu", f"CPU (fallback: {err})"
        self.send("ready", text)
        threading.Thread(target=self.listen, name="backline-job-commands", daemon=True).start()
        while True:
            msg = self.todo.get()
            if msg is None:
                return
            if msg[0] == "describe":
                self.describe(msg[1])
            elif msg[0] == "generate":
                self.generate(msg[1], msg[2])

    def describe(self, name: str) -> None:
        try:
            self.send("described", name, self.engine(name).describe(), "")
        except BacklineError as err:
            self.send("described", name, None, str(err))
        except Exception as err:  # an engine bug must not kill the worker; say what it was
            self.send("described", name, None, f"{name} engine failed to load: {type(err).__name__}: {err}")

    def generate(self, job_id: str, request: Any) -> None:
        with self.lock:
            if job_id in self.cancelled_early:
                self.cancelled_early.discard(job_id)
                self.send("error", job_id, str(Cancelled()), True)
                return
            cancel = self.cancel_events[job_id] = threading.Event()
        last = [0.0]

        def progress(fraction: float, message: str = "") -> None:
            now = time.monotonic()
            if fraction >= 1.0 or now - last[0] >= 1.0 / PROGRESS_RATE_HZ:
                last[0] = now
                self.send("progress", job_id, float(min(max(fraction, 0.0), 1.0)), str(message))

        try:
            engine = self.engine(request.engine)
            progress(0.0, f"{request.engine}: starting")
            # the output folder is locked and checked before any work; the takes are written all-or-nothing
            # after generate() (pure) and the fit score, so a cancel or an error leaves the folder as it was
            result = generate_and_write(engine, request, progress=progress, cancel=cancel,
                                        before_write=lambda res: self.score_fit(request, res, cancel),
                                        role_check=self.config,
                                        on_warning=lambda text: progress(0.0, f"warning: {text}"))
            self.send("result", job_id, result)
        except Cancelled as err:
            self.send("error", job_id, str(err), True)
        except BacklineError as err:
            self.send("error", job_id, str(err), False)
        except MemoryError:
            self.send("error", job_id, "ran out of memory — try fewer bars or variations", False)
        except Exception as err:
            last_frame = traceback.extract_tb(err.__traceback__)[-1:]
            where = f" ({os.path.basename(last_frame[0].filename)}:{last_frame[0].lineno})" if last_frame else ""
            self.send("error", job_id, f"{request.engine} engine failed: {type(err).__name__}: {err}{where}", False)
        finally:
            with self.lock:
                self.cancel_events.pop(job_id, None)


    def score_fit(self, request: Any, result: Any, cancel: threading.Event) -> None:
        """Add `report['fit']` (how well each take sits in the mix) when an engine provides the fit-score hook
        (the analysis engine registers it: `core.hooks`).

        The matching model is optional: when its weights are missing the reason goes into the report as
        `fit_unavailable` and the take is delivered without a score. `fit='auto'` scores only with shipped
        weights (a random debug matching model says nothing about fit); 'always' / 'never' force it.
        """
        if self.fit == "never" or (self.fit == "auto" and self.config != "shipped"):
            return
        if request.engine == "analysis" or request.mix is None or hooks.hook("fit_score") is None:
            return
        takes = [t for t in result.takes if t.stems and "fit" not in t.report]
        if not takes:
            return
        try:
            for take in takes:
                check_cancel_event(cancel)
                score = hooks.fit_score(request.mix, next(iter(take.stems.values())), config=self.config,
                                        device=self.device)
                take.report["fit"] = round(float(score), 4)
        except Cancelled:
            raise
        except BacklineError as err:
            for take in takes:
                take.report.setdefault("fit_unavailable", str(err))
        except Exception as err:  # scoring is a bonus: never lose a take over it
            for take in takes:
                take.report.setdefault("fit_unavailable", f"{type(err).__name__}: {err}")


def check_cancel_event(cancel: threading.Event) -> None:
    if cancel.is_set():
        raise Cancelled()


def _worker_main(cmd: Connection, evt: Connection, config: str, device: str, registry: dict[str, str],
                 fit: str = "auto") -> None:
    """Process entry point (must be importable for 'spawn')."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C in the terminal is the host's to handle

    def terminate(_sig, _frame):  # SIGTERM (the host's stop, a session logout) cancels like Ctrl+C would
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)
    engines.ENGINE_REGISTRY.clear()
    engines.ENGINE_REGISTRY.update(registry)  # the host's view, including engines registered at run time
    try:
        _Worker(cmd, evt, config, device, fit).run()
    except KeyboardInterrupt:  # the running job unwound (its output folder released, nothing written)
        os._exit(128 + signal.SIGTERM)


# ----------------------------------------------------------------------------------------------------------
# host side
# ----------------------------------------------------------------------------------------------------------
@dataclass
class _Pending:
    jobs: dict[str, str] = field(default_factory=dict)  # job_id -> engine name
    describes: set[str] = field(default_factory=set)


class JobWorker:
    """The host's handle on the worker process. Qt-free; never blocks for longer than `poll`'s timeout.

    Use `start()`, then `describe()` / `submit()` / `cancel()`, and call `poll()` regularly (the host does it
    from a timer); it returns the events that arrived, including synthesised 'crash' events. After a crash,
    `restart()` starts a fresh worker.
    """

    _ids = itertools.count(1)

    def __init__(self, config: str = "shipped", device: str = "auto", fit: str = "auto") -> None:
        if fit not in ("auto", "always", "never"):
            raise ConfigError(f"fit={fit!r} is not one of auto, always, never")
        self.config, self.device, self.fit = config, device, fit
        self.process: mp.process.BaseProcess | None = None
        self.cmd: Connection | None = None
        self.evt: Connection | None = None
        self.pending = _Pending()
        self.device_text = ""
        self.restarts = 0

    # -- lifecycle ----------------------------------------------------------------------------------------
    def start(self) -> None:
        ctx = mp.get_context("spawn")
        cmd_r, cmd_w = ctx.Pipe(duplex=False)
        evt_r, evt_w = ctx.Pipe(duplex=False)
        self.process = ctx.Process(target=_worker_main, name="backline-engine-worker", daemon=True,
                                   args=(cmd_r, evt_w, self.config, self.device, dict(ENGINE_REGISTRY), self.fit))
        self.process.start()
        cmd_r.close()
        evt_w.close()
        self.cmd, self.evt = cmd_w, evt_r
        self.pending = _Pending()

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.is_alive()

    @property
    def busy(self) -> bool:
        return bool(self.pending.jobs)

    def restart(self) -> None:
        self.stop(timeout=1.0)
        self.restarts += 1
        self.start()

    def stop(self, timeout: float = 3.0) -> None:
        """Ask the worker to finish, then terminate it if it does not (a hung model must not hang quit)."""
        proc, self.process = self.process, None
        if proc is None:
            return
        try:
            if proc.is_alive() and self.cmd is not None:
                self.cmd.send(("shutdown",))
        except (OSError, ValueError):
            pass
        proc.join(timeout)
        if proc.is_alive():
            proc.terminate()
            proc.join(2.0)
        if proc.is_alive():
            proc.kill()
            proc.join(1.0)
        for conn in (self.cmd, self.evt):
            if conn is not None:
                conn.close()
        self.cmd = self.evt = None

    # -- commands -----------------------------------------------------------------------------------------
    def _send(self, msg: tuple) -> None:
        if self.cmd is None:
            raise ConfigError("the engine worker is not running", fix="restart Backline")
        try:
            self.cmd.send(msg)
        except (OSError, ValueError) as err:  # broken pipe: poll() will report the crash
            raise DeviceError("the engine worker stopped", fix="it restarts by itself; try again") from err

    def describe(self, engine: str) -> None:
        self.pending.describes.add(engine)
        self._send(("describe", engine))

    def submit(self, request: Any, job_id: str | None = None) -> str:
        job_id = job_id or f"job{next(self._ids)}-{os.getpid()}"
        self.pending.jobs[job_id] = request.engine
        try:
            self._send(("generate", job_id, request))
        except BacklineError:
            self.pending.jobs.pop(job_id, None)
            raise
        return job_id

    def cancel(self, job_id: str) -> None:
        if job_id in self.pending.jobs and self.cmd is not None:
            try:
                self.cmd.send(("cancel", job_id))
            except (OSError, ValueError):
                pass

    # -- events -------------------------------------------------------------------------------------------
    def poll(self, timeout: float = 0.0) -> list[JobEvent]:
        """Events that arrived within `timeout` seconds (0 = just what is there)."""
        if self.process is None or self.evt is None:
            return []
        events: list[JobEvent] = []
        ready = wait([self.evt, self.process.sentinel], timeout)
        dead = False
        if self.evt in ready:
            try:
                while self.evt.poll():
                    events.append(self._event(self.evt.recv()))
            except (EOFError, OSError):
                dead = True
        if dead or self.process.sentinel in ready:
            # Drain anything sent just before exit, then report what was still pending as a crash.
            try:
                while self.evt.poll():
                    events.append(self._event(self.evt.recv()))
            except (EOFError, OSError):
                pass
            self.process.join(1.0)
            if not self.process.is_alive():
                events.extend(self._crash_events(self.process.exitcode))
                self.process = None
        return events

    def _event(self, msg: tuple) -> JobEvent:
        kind = msg[0]
        if kind == "ready":
            self.device_text = msg[1]
            return JobEvent("ready", device=msg[1])
        if kind == "described":
            self.pending.describes.discard(msg[1])
            return JobEvent("described", engine=msg[1], description=msg[2], message=msg[3])
        if kind == "progress":
            return JobEvent("progress", job_id=msg[1], fraction=msg[2], message=msg[3])
        if kind == "result":
            self.pending.jobs.pop(msg[1], None)
            return JobEvent("result", job_id=msg[1], result=msg[2], fraction=1.0)
        if kind == "error":
            self.pending.jobs.pop(msg[1], None)
            return JobEvent("error", job_id=msg[1], message=msg[2], cancelled=bool(msg[3]))
        raise ConfigError(f"unknown message from the engine worker: {kind!r}")

    def _crash_events(self, exitcode: int | None) -> list[JobEvent]:
        how = f"exit code {exitcode}" if exitcode is not None and exitcode >= 0 else \
            f"killed by signal {-(exitcode or 0)}"
        events = [JobEvent("crash", job_id=job_id, engine=engine,
                           message=f"the {engine} engine worker died ({how}) during this take; "
                                   "it was restarted — press Regenerate to try again")
                  for job_id, engine in self.pending.jobs.items()]
        events += [JobEvent("crash", engine=name,
                            message=f"the engine worker died ({how}) while loading {name}")
                   for name in sorted(self.pending.describes)]
        if not events:
            events.append(JobEvent("crash", message=f"the engine worker stopped ({how}); it was restarted"))
        self.pending = _Pending()
        return events
