"""The analysis engine: the Engine protocol around `api.Analyzer`, so the host shows what the captured mix holds.

`generate()` returns one Take whose `report` is the `AnalysisReport` as a dict (instruments fine and coarse
with probabilities, missing parts, the engine to run next) and the ResAtt attention map (which fine tags drive
each coarse decision) as an `attention.png` attachment. Like every engine it writes nothing itself:
`engines.takes.write_takes` writes `analysis_seedN.json` and `analysis_seedN_attention.png`.
"""

from __future__ import annotations

import threading

from backline.engines.analysis.api import Analyzer
from backline.engines.analysis.description import CONTROLS, NAME, describe  # noqa: F401 - CONTROLS re-exported
from backline.engines.core.errors import AudioFormatError, ConfigError
from backline.engines.core.protocol import (
    EngineDescription,
    GenerationRequest,
    GenerationResult,
    ProgressFn,
    Take,
    check_cancel,
)


class AnalysisEngine:
    name = NAME

    def __init__(self, config: str = "shipped", device: str = "cpu") -> None:
        self.config, self.device = config, device
        self.analyzer = Analyzer(config, device)

    def describe(self) -> EngineDescription:
        weights = "debug (random, seeded)" if self.config == "debug" else f"shipped weights in {self.analyzer.weights_dir}"
        return describe(self.config, self.device, weights)

    def generate(self, request: GenerationRequest, *, progress: ProgressFn | None = None,
                 cancel: threading.Event | None = None) -> GenerationResult:
        progress = progress or (lambda f, m: None)
        if request.mix is None:
            raise AudioFormatError("the analysis needs a mix", fix="capture or select a region of the session first")
        controls = self.describe().validate(dict(request.controls))
        if request.variations != 1:
            raise ConfigError("the analysis has one answer; variations must be 1")
        check_cancel(cancel)
        report = self.analyzer.analyze(request.mix, sensitivity=controls["sensitivity"],
                                       progress=lambda f, m: progress(0.95 * f, m), cancel=cancel)
        check_cancel(cancel)
        data = report.to_dict()
        attachments = {"attention.png": report.attention_png()} if report.attention is not None else {}
        progress(1.0, report.summary())
        take = Take(seed=request.seed, stems={}, midi=None, start_sample=request.region_start, report=data,
                    attachments=attachments)
        return GenerationResult([take], report={"engine": NAME, "summary": report.summary()})


def build(config: str = "shipped", device: str = "cpu") -> AnalysisEngine:
    return AnalysisEngine(config, device)
