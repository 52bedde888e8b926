"""Latency calibration from the settings dialog: the bridge's click-out/click-in routine, saved where the
capture reads it (bridge.json), so there is one stored latency for the whole app."""

from __future__ import annotations

from backline.bridge.calibrate import measure, save
from backline.host.settings import HostSettings


def calibrate(settings: HostSettings) -> str:
    """Measure the loopback round trip on the chosen devices and store it; returns a line for the dialog.

    Raises `DeviceError` (from the bridge) when there is no input/output device or no click came back.
    """
    cal = measure(input_device=settings.input_device or None, output_device=settings.output_device or None)
    path = save(cal)
    return (f"round trip {cal.roundtrip_ms:.1f} ms from {cal.clicks_found} clicks on {cal.device_in} → "
            f"{cal.device_out}; saved to {path}")
