"""The job seam: engine tabs, Generate, progress and cancel, and what the engine worker answers."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backline.engines.core.errors import BacklineError
from backline.engines.core.protocol import GenerationRequest
from backline.engines.core.timeline import Timeline
from backline.engines.registry import available_engines
from backline.host.controllers.base import Controller
from backline.host.history import TakeRecord
from backline.host.takecard import PendingCard

#: the engines with a tab of their own, in this order; others (test engines) follow, sorted
TAB_ORDER = ("bass", "accompany", "drums")


@dataclass
class Job:
    """A job in flight and the settings that made it (saved with every take it yields)."""

    job_id: str
    engine: str
    title: str
    values: dict[str, Any]
    seed: int
    variations: int
    bars: tuple[int, int]
    region: tuple[int, int]
    timeline: Timeline
    out_dir: Path
    card: PendingCard
    started: float = field(default_factory=time.monotonic)
    fraction: float = 0.0


class JobController(Controller):
    """Starts jobs on the engine worker (`JobClient`) from the current panel, follows them on the progress bar
    and their pending cards, and hands finished takes to the take list."""

    def __init__(self, window) -> None:
        super().__init__(window)
        self.active: dict[str, Job] = {}
        self.worker_text = "starting…"

    # -- engines ------------------------------------------------------------------------------------------
    def show_engine(self, name: str) -> None:
        if name in self.window.panels:
            self.window.tabs.setCurrentWidget(self.window.panels[name])

    def tab_changed(self, _index: int = -1) -> None:
        """Engines load when their tab is first opened: no GPU memory for an engine nobody uses."""
        name = self.current_engine()
        self.window.settings.last_engine = name
        if name in available_engines() and name not in self.window.jobs.wanted:
            self.window.jobs.describe(name)

    def current_engine(self) -> str:
        panels = self.window.panels
        for name, panel in panels.items():
            if panel is self.window.tabs.currentWidget():
                return name
        return next(iter(panels))

    def worker_ready(self, device: str) -> None:
        self.worker_text = device
        self.update_engine_info()

    def update_engine_info(self) -> None:
        w = self.window
        restarts = w.jobs.worker.restarts
        w.engine_device.setText(self.worker_text + (f" · restarted ×{restarts}" if restarts else ""))
        config = w.jobs.worker.config
        ready = [p.title for n, p in w.panels.items() if p.ready and n in TAB_ORDER]
        others = sum(p.ready for n, p in w.panels.items() if n not in TAB_ORDER)
        listing = ", ".join(ready) + (f" +{others}" if others else "")
        w.engine_weights.setText(f"{config} weights · " + (listing + " ready" if listing else "loading…"))
        w.engine_weights.setToolTip("\n".join(f"{p.title}: {p.description.weights}" for p in w.panels.values()
                                              if p.ready))

    def described(self, name: str, description, error: str) -> None:
        panel = self.window.panels.get(name)
        if panel is None:
            return
        if description is None:
            panel.set_state(f"The {panel.title} engine could not be loaded:\n{error}", error=True)
            self.show_message("error", error)
        else:
            panel.build(description, self.window.preset_folders)
        self.update_engine_info()

    def reconfigure(self, config: str, device: str) -> None:
        """The engine settings changed: every job in flight is dropped and the worker restarts."""
        for job in list(self.active):
            self.job_failed(job, "cancelled: the engine settings changed", True)
        self.worker_text = "restarting…"
        self.window.jobs.reconfigure(config, device)
        self.update_engine_info()

    # -- generate -----------------------------------------------------------------------------------------
    def set_progress_visible(self, on: bool) -> None:
        self.window.progress.setVisible(on)
        self.window.cancel_button.setVisible(on)

    def generate(self, _checked: bool = False, *, engine: str | None = None, values: dict | None = None,
                 seed: int | None = None, variations: int | None = None, bars: tuple[int, int] | None = None
                 ) -> str | None:
        """Start a job for the selected bars with the current panel (or the given settings). Returns its id."""
        w = self.window
        engine = engine or self.current_engine()
        panel = w.panels[engine]
        if not panel.ready:
            self.show_message("warning", f"The {panel.title} engine is not ready: "
                                         f"{' '.join(panel.state_text.split()) or 'it is still loading'}")
            return None
        bars = bars or w.capture_control.selection()
        if bars is None:
            self.show_message("warning", "Select some bars on the captured waveform first (drag across them).")
            return None
        values = values if values is not None else panel.values()
        seed = w.seed.value() if seed is None else int(seed)
        variations = w.variations.value() if variations is None else int(variations)
        needs_mix = "mix" in panel.description.inputs
        out_dir = None
        try:
            reference, band_midi = values.get("reference"), values.get("midi")
            known = {c.name for c in panel.description.controls}
            # a take recalled from an older session may carry a control the engine no longer has (drums'
            # "overwrite" moved to the take writer): drop it rather than refuse to regenerate
            controls = {k: v for k, v in dict(values.get("controls", {})).items() if k in known}
            if "vst3" in known and w.settings.drum_instrument:  # file handling lives in Settings
                controls["vst3"] = w.settings.drum_instrument
            if needs_mix or not w.capture.empty:
                # the one region path (engines.region.cut, as the CLI's --bars): the capture's grid (the DAW's,
                # the file's or heard over the whole file) and the chord lane under the selection go with it
                region = w.capture.region(*bars, controls=controls, control_names=known)
                start, stop, mix, timeline, controls = region.start, region.stop, region.mix, region.timeline, \
                    region.controls
            else:
                timeline = w.daw.transport.timeline
                start, stop = timeline.bar_range_to_samples(*bars)
                mix = None
            number = w.store.next_number() + len(self.active)
            out_dir = w.store.job_dir(f"{time.strftime('%Y%m%d-%H%M%S')}-{number:03d}-{engine}-seed{seed}")
            request = GenerationRequest(engine=engine, out_dir=out_dir, timeline=timeline, region_start=start,
                                        region_stop=stop, mix=mix, reference=Path(reference) if reference else None,
                                        midi=Path(band_midi) if band_midi else None,
                                        preset=values.get("preset"), controls=controls,
                                        seed=seed, variations=variations)
            panel.description.validate({k: v for k, v in request.controls.items()})
            job_id = w.jobs.submit(request)
            if w.capture.last_coverage < 0.999:
                self.show_message("warning", f"Bars {bars[0]}–{bars[1]} were only {w.capture.last_coverage:.0%} "
                                             "captured; the gaps are silence. Play them once more for a full take.")
        except BacklineError as err:
            if out_dir is not None and out_dir.is_dir() and not any(out_dir.iterdir()):
                out_dir.rmdir()  # the job never started: leave no empty folder behind
            self.show_message("error", str(err))
            return None
        card = PendingCard(job_id, f"{panel.title} · {variations} take{'s' if variations > 1 else ''}", bars, seed)
        card.cancelRequested.connect(self.cancel_job)
        w.take_list.insert_card(card)
        self.active[job_id] = Job(job_id, engine, panel.title, values, seed, variations, tuple(bars), (start, stop),
                                  timeline, out_dir, card)
        self.set_progress_visible(True)
        w.progress.setValue(0)
        w.progress.setFormat(f"{panel.title}: starting…")
        self.status(f"Generating {panel.title} for bars {bars[0]}–{bars[1]} (seed {seed})")
        w.seed.setValue(random.randrange(1, 100000))  # next press gives a new take
        return job_id

    def current_job(self) -> Job | None:
        return next(iter(self.active.values()), None)

    def cancel_current(self) -> None:
        job = self.current_job()
        if job is not None:
            self.cancel_job(job.job_id)
        elif self.window.player.playing:
            self.window.player.stop()

    def cancel_job(self, job_id: str) -> None:
        job = self.active.get(job_id)
        if job is None:
            return
        job.card.set_cancelling()
        self.window.jobs.cancel(job_id)
        self.status("Cancelling…")

    # -- the worker's answers -----------------------------------------------------------------------------
    def job_progress(self, job_id: str, fraction: float, message: str) -> None:
        job = self.active.get(job_id)
        if job is None:
            return
        job.fraction = fraction
        job.card.set_progress(fraction, message)
        if job is self.current_job():
            self.window.progress.setValue(int(fraction * 1000))
            self.window.progress.setFormat(f"{job.title}: {fraction * 100:.0f} %  {message}")
        self.window.jobProgress.emit(job_id, fraction)

    def _finish_job(self, job_id: str) -> Job | None:
        job = self.active.pop(job_id, None)
        if job is not None:
            job.card.setParent(None)
            job.card.deleteLater()
        current = self.current_job()
        if current is None:
            self.set_progress_visible(False)
        else:
            self.window.progress.setValue(int(current.fraction * 1000))
        return job

    def _record(self, job: Job, **extra: Any) -> TakeRecord:
        store = self.window.store
        return TakeRecord(id=f"{job.out_dir.name}-{extra.pop('index', 0)}", number=store.next_number(),
                          engine=job.engine, engine_title=job.title, seed=extra.pop("seed", job.seed),
                          controls=dict(job.values.get("controls", {})), preset=job.values.get("preset"),
                          reference=job.values.get("reference"), variations=job.variations, bars=job.bars,
                          region_start=job.region[0], region_stop=job.region[1],
                          sample_rate=job.timeline.sample_rate, bpm=job.timeline.bpm,
                          meter=(job.timeline.numerator, job.timeline.denominator), origin=job.timeline.origin,
                          **extra)

    def job_finished(self, job_id: str, result) -> None:
        job = self._finish_job(job_id)
        if job is None:
            return
        store, takes = self.window.store, self.window.take_list
        added = []
        for i, take in enumerate(result.takes):
            fit = take.report.get("fit", result.report.get("fit") if len(result.takes) == 1 else None)
            record = self._record(job, index=i, seed=int(take.seed),
                                  stems={k: store.relative(v) for k, v in take.stems.items()},
                                  midi=store.relative(take.midi) if take.midi else None,
                                  start_sample=int(take.start_sample),
                                  fit=float(fit) if isinstance(fit, (int, float)) else None,
                                  report=dict(take.report))
            added.append(takes.add_take(record))
        if not added:
            takes.add_take(self._record(job, status="error", error=f"the {job.title} engine returned no takes"))
        elapsed = time.monotonic() - job.started
        self.status(f"{job.title}: {len(added)} take(s) in {elapsed:.1f} s", 8000)
        learned = (result.report.get("reference") or {}).get("learned")  # issue 22: what the reference taught
        if learned:  # (a warning below replaces it: a warning matters more)
            self.show_message("info", f"{job.title}, learned from your reference: {learned}")
        for warning in result.report.get("warnings", [])[:1]:
            self.show_message("warning", f"{job.title}: {warning}")
        if added:
            takes.select_take(added[-1].id)

    def job_failed(self, job_id: str, message: str, cancelled: bool) -> None:
        job = self._finish_job(job_id)
        if job is None:
            return
        if cancelled:
            self.show_message("info", f"{job.title}: cancelled — nothing was written.")
            return
        self.window.take_list.add_take(self._record(job, status="error", error=message))
        self.show_message("error", f"{job.title} failed: {message}")

    def job_crashed(self, job_id: str, message: str) -> None:
        job = self._finish_job(job_id) if job_id else None
        if job is not None:
            self.window.take_list.add_take(self._record(job, status="error", error=message))
        self.show_message("error", f"{job.title if job else 'Engine'}: {message}")
        self.update_engine_info()
