"""Latency calibration from the settings dialog: the bridge's click-out/click-in routine, if installed."""

from __future__ import annotations

from backline.engines.errors import MissingDependencyError
from backline.host.settings import HostSettings


def calibrate(settings: HostSettings) -> tuple[int, str]:
    """(round-trip latency in samples, a note for the dialog). Raises a BacklineError when it cannot run."""
    try:
        from backline.bridge import calibrate as bridge_calibrate
    except ImportError as err:
        raise MissingDependencyError("latency calibration is not part of this install",
                                     fix="enter the latency by hand (samples)") from err
    result = bridge_calibrate.measure(input_device=settings.input_device or None,
                                      output_device=settings.output_device or None)
    return int(result.samples), str(result)
