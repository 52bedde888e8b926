"""The engine worker process: describe, progress, result, cancel, engine errors, and crash + restart.

These run a real spawned worker with real (test-only) engines from tests/test_jobs_engines.py; no Qt.
"""

from __future__ import annotations

import time

import pytest
import test_jobs_engines

from backline.engines.core.audio import Audio, read_audio
from backline.engines.core.protocol import GenerationRequest
from backline.engines.core.timeline import Timeline
from backline.engines.registry import available_engines
from backline.host.jobs import JobEvent, JobWorker

TIMEOUT = 120.0  # generous: the CI machine is small and shared


@pytest.fixture(scope="module")
def shared():
    """One worker for the tests that leave it running (a spawn costs seconds on a busy machine).

    fit='always' makes it score takes with the analysis engine's (debug) matching model, as shipped weights would.
    """
    test_jobs_engines.register()
    w = JobWorker(config="debug", device="cpu", fit="always")
    w.start()
    yield w
    w.stop()
    test_jobs_engines.unregister()


@pytest.fixture()
def worker(shared):
    assert shared.alive and not shared.busy
    return shared


@pytest.fixture()
def fresh():
    """A worker of its own, for tests that kill it."""
    test_jobs_engines.register()
    w = JobWorker(config="debug", device="cpu")
    w.start()
    yield w
    w.stop()


def collect(worker: JobWorker, until, timeout: float = TIMEOUT) -> list[JobEvent]:
    events: list[JobEvent] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        events += worker.poll(0.2)
        if until(events):
            return events
    raise AssertionError(f"timed out; events so far: {[(e.kind, e.job_id, e.message) for e in events]}")


def request(tmp_path, engine="sine", **controls) -> GenerationRequest:
    tl = Timeline.constant(120.0, 8000)
    start, stop = tl.bar_range_to_samples(2, 3)
    out = tmp_path / f"out-{time.monotonic_ns()}"
    out.mkdir()
    return GenerationRequest(engine=engine, out_dir=out, timeline=tl, region_start=start, region_stop=stop,
                             mix=Audio.silence(stop - start, 8000), controls=controls, seed=3)


def test_describe_generate_progress_and_result(worker, tmp_path):
    worker.describe("sine")
    worker.describe("no-such-engine")
    job = worker.submit(request(tmp_path, steps=4, report_fit=False))
    events = collect(worker, lambda ev: any(e.kind in ("result", "error") for e in ev)
                     and sum(e.kind == "described" for e in ev) == 2)
    ready = [e for e in events if e.kind == "ready"]
    assert len(ready) <= 1 and all("CPU" in e.device for e in ready) and "CPU" in worker.device_text
    described = {e.engine: e for e in events if e.kind == "described"}
    assert described["sine"].description.title == "Sine"
    assert described["no-such-engine"].description is None
    assert "unknown engine" in described["no-such-engine"].message
    progress = [e.fraction for e in events if e.kind == "progress" and e.job_id == job]
    assert progress and progress[-1] == 1.0 and progress == sorted(progress)
    result = next(e for e in events if e.kind == "result")
    take = result.result.takes[0]
    audio = read_audio(take.stems["sine"])
    assert audio.frames == 32000 and audio.peak() > 0.1  # two bars of 4/4 at 120 BPM = 4 s at 8 kHz
    assert take.midi.exists() and take.midi.stat().st_size > 20
    if "analysis" in available_engines():  # the worker scored the take against the mix
        assert 0.0 <= take.report["fit"] <= 1.0, take.report
    assert not worker.busy


def test_cancel_stops_a_running_job_and_writes_nothing(worker, tmp_path):
    req = request(tmp_path, steps=200, step_seconds=0.05)  # 10 s if not cancelled
    job = worker.submit(req)
    collect(worker, lambda ev: any(e.kind == "progress" and e.fraction > 0 for e in ev))
    worker.cancel(job)
    events = collect(worker, lambda ev: any(e.kind in ("result", "error") for e in ev))
    end = next(e for e in events if e.kind in ("result", "error"))
    assert end.kind == "error" and end.cancelled and "cancel" in end.message
    assert list(req.out_dir.iterdir()) == []
    # the worker is still usable after a cancel
    job2 = worker.submit(request(tmp_path, steps=2))
    events = collect(worker, lambda ev: any(e.kind == "result" and e.job_id == job2 for e in ev))
    assert worker.alive


def test_cancel_before_start_drops_the_queued_job(worker, tmp_path):
    running = worker.submit(request(tmp_path, steps=40, step_seconds=0.05))
    queued_req = request(tmp_path, steps=2)
    queued = worker.submit(queued_req)
    worker.cancel(queued)
    worker.cancel(running)
    events = collect(worker, lambda ev: sum(e.kind in ("result", "error") for e in ev) == 2)
    ends = {e.job_id: e for e in events if e.kind in ("result", "error")}
    assert ends[queued].kind == "error" and ends[queued].cancelled
    assert ends[running].cancelled
    assert list(queued_req.out_dir.iterdir()) == []


def test_engine_exception_is_an_error_not_a_crash(worker, tmp_path):
    job = worker.submit(request(tmp_path, engine="broken"))
    events = collect(worker, lambda ev: any(e.kind in ("error", "crash") for e in ev))
    err = next(e for e in events if e.kind in ("error", "crash"))
    assert err.kind == "error" and err.job_id == job and not err.cancelled
    assert "ZeroDivisionError" in err.message and "broken engine failed" in err.message
    assert worker.alive


def test_crash_mid_job_is_reported_and_restart_works(fresh, tmp_path):
    worker = fresh
    job = worker.submit(request(tmp_path, engine="crash"))
    events = collect(worker, lambda ev: any(e.kind == "crash" for e in ev))
    crash = next(e for e in events if e.kind == "crash")
    assert crash.job_id == job and "exit code 3" in crash.message and "died" in crash.message
    assert any(e.kind == "progress" and e.job_id == job for e in events)  # it did run before dying
    assert not worker.alive and not worker.busy
    worker.restart()
    assert worker.restarts == 1
    job2 = worker.submit(request(tmp_path, steps=2))
    events = collect(worker, lambda ev: any(e.kind == "result" and e.job_id == job2 for e in ev))
    assert worker.alive


def test_killed_worker_reports_every_pending_job(fresh, tmp_path):
    worker = fresh
    a = worker.submit(request(tmp_path, steps=100, step_seconds=0.05))
    b = worker.submit(request(tmp_path, steps=2))
    collect(worker, lambda ev: any(e.kind == "progress" and e.job_id == a for e in ev))
    worker.process.kill()  # SIGKILL, as the OOM killer would
    events = collect(worker, lambda ev: sum(e.kind == "crash" for e in ev) == 2)
    crashed = {e.job_id: e.message for e in events if e.kind == "crash"}
    assert set(crashed) == {a, b}
    assert "signal 9" in crashed[a]


def test_sigterm_to_the_worker_cancels_its_job_and_leaves_the_folder_as_it_was(fresh, tmp_path):
    """SIGTERM (a logout, the host's stop) unwinds the running job like a cancel: no take, no lock file, and
    the folder the job would have created is not left behind."""
    worker = fresh
    req = request(tmp_path, steps=200, step_seconds=0.05)
    (req.out_dir / "mine.txt").write_text("the user's")
    job = worker.submit(req)
    collect(worker, lambda ev: any(e.kind == "progress" and e.job_id == job and e.fraction > 0 for e in ev))
    worker.process.terminate()
    events = collect(worker, lambda ev: any(e.kind == "crash" for e in ev))
    assert next(e for e in events if e.kind == "crash").job_id == job
    assert sorted(p.name for p in req.out_dir.iterdir()) == ["mine.txt"]
