"""Audition playback through sounddevice.

One `Player` plays one thing at a time (a take, a take soloed against the mix, a preset's reference). A
machine without a sound card, or a device that vanished, raises `DeviceError` with a message the UI shows;
playback never takes the app down.
"""

from __future__ import annotations

import numpy as np

from backline.bridge.playback import StemPlayer
from backline.engines.core.audio import Audio
from backline.engines.core.errors import BacklineError, DeviceError


def mix_against(take: Audio, take_start: int, mix: Audio | None, mix_start: int, mix_gain: float = 0.7) -> Audio:
    """The take over the captured mix, aligned by position: `*_start` are the positions of frame 0 in samples
    at the mix's rate (the capture's timeline). Only the part under the take is resampled, if rates differ."""
    if mix is None:
        return take
    offset = take_start - mix_start
    length = round(take.frames * mix.sample_rate / take.sample_rate)
    under = mix.slice(offset, offset + length)
    if under.sample_rate != take.sample_rate:
        under = under.resampled(take.sample_rate)
    under = under.slice(0, take.frames).with_channels(2)
    over = take.with_channels(2)
    out = over.samples + mix_gain * under.samples
    peak = float(np.abs(out).max()) if out.size else 0.0
    return Audio(out / peak * 0.98 if peak > 0.98 else out, take.sample_rate)


class Player:
    def __init__(self, device: str = "") -> None:
        self.device = device or None
        self.playing: str = ""
        self._synced = None  # a bridge StemPlayer following the DAW transport

    def _sd(self):
        try:
            import sounddevice as sd
        except OSError as err:  # PortAudio library missing
            raise DeviceError("audio playback is unavailable (PortAudio is not installed)",
                              fix="apt-get install libportaudio2") from err
        return sd

    def output_name(self) -> str:
        """The output device's name, or raise DeviceError when there is none."""
        sd = self._sd()
        try:
            info = sd.query_devices(self.device, "output")
        except (ValueError, sd.PortAudioError) as err:
            wanted = f"'{self.device}'" if self.device else "default"
            raise DeviceError(f"no audio output device ({wanted} not found) — audition is off",
                              fix="connect an audio interface or pick an output in Settings ▸ Audio") from err
        return str(info["name"])

    def play(self, audio: Audio, what: str = "") -> None:
        sd = self._sd()
        name = self.output_name()
        try:
            sd.stop()
            sd.play(np.ascontiguousarray(audio.samples.T), audio.sample_rate, device=name)
        except sd.PortAudioError as err:
            raise DeviceError(f"could not play on '{name}' ({err})", fix="check the output in Settings ▸ Audio") from err
        self.playing = what

    def play_synced(self, transport, audio: Audio, start: int, what: str = "") -> None:
        """Play `audio` at DAW sample `start`, following the DAW's transport (the bridge's return path).

        The take sounds when the DAW plays through its bars, in time with the DAW's own tracks.
        """
        self.stop()
        player = StemPlayer(transport, device=self.device)
        try:
            player.load(audio, start)
            player.start()
        except (BacklineError, OSError) as err:
            player.stop()
            raise DeviceError(f"no audio output for in-sync audition ({err})",
                              fix="connect an audio interface or pick an output in Settings ▸ Audio") from err
        self._synced, self.playing = player, what

    def stop(self) -> None:
        synced, self._synced = self._synced, None
        if synced is not None:
            synced.stop()
        if self.playing:
            try:
                self._sd().stop()
            except Exception:  # stopping a device that vanished is not worth a message
                pass
        self.playing = ""
