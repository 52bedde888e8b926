"""The one diffusion sampler of Backline: DDIM over a v-objective cosine schedule, with pluggable per-step
transforms (classifier-free guidance with Lin et al.'s std rescale, style grounding, and later GMSDI's
coupled updates for the accompaniment engine).

    from backline.engines.diffusion import ddim_sample, classifier_free, style_grounding, CosineSchedule
"""

from backline.engines.diffusion.grounding import ground_denoised, style_grounding
from backline.engines.diffusion.guidance import cfg_combine, classifier_free
from backline.engines.diffusion.sampler import (
    ADPM2,
    DDIM,
    EulerChurn,
    Solver,
    Step,
    StepTransform,
    ddim_sample,
    ddim_timesteps,
    sample,
)
from backline.engines.diffusion.schedule import CosineSchedule, v_loss, v_target

__all__ = [
    "ADPM2", "DDIM", "EulerChurn", "Solver", "sample",
    "CosineSchedule", "Step", "StepTransform", "cfg_combine", "classifier_free", "ddim_sample", "ddim_timesteps",
    "ground_denoised", "style_grounding", "v_loss", "v_target",
]
