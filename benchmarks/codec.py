"""Spectral codec benchmark: speed (× real time, peak memory, EnCodec-24k speed ratio) and reconstruction quality.

    python benchmarks/codec.py [--corpus HELD_OUT] [--songs 4] [--seconds 30] [--device cpu|cuda]
                               [--threads N] [--repeats 5] [--config shipped|small|debug]

Prints, naming the hardware:
- encode+decode time for 30 s of 44.1 kHz stereo as × real time (processing s ÷ audio s) (mix codec; stem codec on the same audio as mono),
  best and median of --repeats runs, and the peak resident memory (CPU, sampled) or peak CUDA memory during them;
- the same timing for EnCodec's 24 kHz architecture (`encodec` package, random weights: its pretrained weights
  cannot be downloaded here) on the same audio resampled to 24 kHz (resampling not timed), and the speed ratio;
- reconstruction quality on the corpus songs (first --seconds of each; without --corpus a small synthetic corpus
  is rendered and the table says "synthetic", not "held-out"): multi-resolution STFT distance,
  log-spectral distance (dB) and mel L1 (backline.engines.core.frontend), for the shipped codecs, the same
  architecture untrained, and EnCodec-24k (random weights, so only a floor: it shows the metric's scale).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from pathlib import Path

import _common
import numpy as np
import torch
from _common import x_real_time


def hardware(device: str) -> str:
    return _common.hardware(device)


class PeakRSS:
    """Samples this process's resident memory every 2 ms while active (torch allocations included)."""

    def __enter__(self) -> PeakRSS:
        self.base = self._rss()
        self.peak = self.base
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    @staticmethod
    def _rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _run(self) -> None:
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, self._rss())

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())


CPU_TIMES: list[float] = []  # process CPU seconds of the last `timed` call's runs


def timed(fn, repeats: int, device: str) -> tuple[list[float], float]:
    """Run fn once to warm up, then `repeats` times; returns (seconds per run, peak memory MiB above baseline).

    Also records each run's process CPU time in CPU_TIMES: on a machine shared with other jobs, wall time
    measures the neighbours as much as the codec, while CPU time (with --threads 1) approximates the wall
    time the same run takes on one idle core."""
    fn()
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    times = []
    CPU_TIMES.clear()
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    with PeakRSS() as mem:
        for _ in range(repeats):
            sync()
            t, c = time.perf_counter(), time.process_time()
            fn()
            sync()
            times.append(time.perf_counter() - t)
            CPU_TIMES.append(time.process_time() - c)
    if device.startswith("cuda"):
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = (mem.peak - mem.base) / 2**20
    return times, peak


def load_test_audio(corpus: Path | None, seconds: float, songs: int):
    from backline.engines.core.audio import read_audio

    n = int(seconds * 44100)
    out = []
    if corpus is not None and corpus.is_dir():
        from backline.engines.data.slakh import list_tracks

        for track in list_tracks(corpus)[:songs]:
            mix = read_audio(track.mix_path, sample_rate=44100, channels=2, frames=n)
            stems = {(s.id, s.role): track.stem_audio(s.id, sample_rate=44100, channels=1, frames=n)
                     for s in track.audio_stems()}
            out.append((track.name, mix, stems, bass_notes(track.path, stems, seconds)))
    return out


def bass_notes(track_dir: Path, stems: dict, seconds: float) -> list | None:
    """The bass stem's MIDI notes that start within the excerpt (the reference for note F1)."""
    import mido

    from backline.engines.core.transcribe import midi_to_notes

    ids = [sid for sid, role in stems if role == "bass"]
    path = Path(track_dir) / "MIDI" / f"{ids[0]}.mid" if ids else None
    if path is None or not path.exists():
        return None
    return [n for n in midi_to_notes(mido.MidiFile(str(path))) if n.start < seconds - 0.5]


def demo_audio(seconds: float) -> list:
    """The bundled demo song (rendered on first use), as one more (name, mix, stems, bass notes) entry."""
    from backline.engines.data.demo import demo_song
    from backline.engines.data.slakh import read_track

    folder = demo_song()
    track = read_track(folder)
    n = int(seconds * 44100)
    mix = track.mix_audio(channels=2, frames=n)
    stems = {(s.id, s.role): track.stem_audio(s.id, sample_rate=44100, channels=1, frames=n) for s in track.audio_stems()}
    return [("demo", mix, stems, bass_notes(folder, stems, seconds))]


def encodec_model(device: str):
    try:
        from encodec.model import EncodecModel
    except ImportError:
        print("encodec is not installed: pip install 'backline[bench]' (or encodec==0.1.1)", file=sys.stderr)
        return None
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.manual_seed(0)
        model = EncodecModel.encodec_model_24khz(pretrained=False)
    model.set_target_bandwidth(6.0)
    return model.to(device).eval()


def encodec_roundtrip(model, x24: torch.Tensor) -> torch.Tensor:
    """[channels, T] at 24 kHz → same, each channel coded as EnCodec's mono input (batched)."""
    with torch.inference_mode():
        frames = model.encode(x24[:, None])
        return model.decode(frames)[:, 0, : x24.shape[-1]]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--corpus", default=None, help="held-out Slakh-layout songs (default: render 4 synthetic songs once)")
    p.add_argument("--songs", type=int, default=4)
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--config", default="shipped", help="codec weights to benchmark (shipped, small, debug, paper)")
    p.add_argument("--stem-weights", default=None, help="a stem codec .safetensors to benchmark instead")
    p.add_argument("--no-encodec", action="store_true")
    p.add_argument("--long-minutes", type=float, default=0.0,
                   help="also stream a synthetic file this long through encode_file/decode_to_file (e.g. 120)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    from backline.engines.codec import load_codec
    from backline.engines.core.audio import Audio, resample

    dev = args.device
    print(f"hardware: {hardware(dev)}")
    codecs = {role: load_codec(role, args.config, dev) for role in ("mix", "stem")}
    if args.stem_weights:  # a candidate stem codec (e.g. a fine-tune) in place of the --config one
        codecs["stem"] = load_codec("stem", device=dev, weights=args.stem_weights)
    for role, c in codecs.items():
        n_params = sum(p.numel() for p in c.model.parameters())
        steps = c.meta.get("training", {}).get("steps", "untrained")
        print(f"{role} codec: config {args.config} (size {c.config.size}), {n_params / 1e6:.2f} M parameters, "
              f"dim {c.dim}, {c.channels} channel(s), training steps: {steps}")

    held_out = args.corpus is not None
    corpus, label = _common.corpus_or_render(args.corpus)
    songs = load_test_audio(corpus, args.seconds, args.songs)
    name, mix, _, _ = songs[0]
    n = int(args.seconds * 44100)
    x = mix.samples[:, :n]
    if x.shape[1] < n:
        x = np.pad(x, ((0, 0), (0, n - x.shape[1])))
    audio = Audio(x, 44100)
    secs = n / 44100

    print(f"\n== speed: encode+decode of {secs:.0f} s of 44.1 kHz stereo ({name}), {args.repeats} runs ==")
    mix_codec = codecs["mix"]
    t_mix, m_mix = timed(lambda: mix_codec.decode(mix_codec.encode(audio), n), args.repeats, dev)
    c_mix = list(CPU_TIMES)
    stem_codec = codecs["stem"]
    mono = Audio(x.mean(0, keepdims=True), 44100)
    t_stem, m_stem = timed(lambda: stem_codec.decode(stem_codec.encode(mono), n, channels=1), args.repeats, dev)
    c_stem = list(CPU_TIMES)
    mem_kind = "peak CUDA memory" if dev.startswith("cuda") else "peak RSS growth"

    def line(label: str, t: list[float], c: list[float], m: float) -> None:
        print(f"{label:34s} wall best {min(t) * 1000:8.1f} ms median {statistics.median(t) * 1000:8.1f} ms | "
              f"wall best {x_real_time(min(t), secs):.4f}× real time, median "
              f"{x_real_time(statistics.median(t), secs):.4f}× | by CPU time best {x_real_time(min(c), secs):.4f}× | "
              f"{mem_kind} {m:7.1f} MiB")

    line("spectral mix codec (stereo)", t_mix, c_mix, m_mix)
    line("spectral stem codec (mono)", t_stem, c_stem, m_stem)
    enc = None if args.no_encodec else encodec_model(dev)
    if enc is not None:
        x24 = torch.from_numpy(resample(x, 44100, 24000)).to(dev)
        t_enc, m_enc = timed(lambda: encodec_roundtrip(enc, x24), max(2, args.repeats // 2), dev)
        c_enc = list(CPU_TIMES)
        line("EnCodec 24 kHz (random weights)", t_enc, c_enc, m_enc)
        print(f"speed ratio (EnCodec-24k time / mix codec time): wall best {min(t_enc) / min(t_mix):.1f}x, "
              f"wall median {statistics.median(t_enc) / statistics.median(t_mix):.1f}x, "
              f"CPU time best {min(c_enc) / min(c_mix):.1f}x")

    print(f"\n== fidelity: {label} (first {args.seconds:.0f} s) and the demo song ==")
    print("targets: hop-band share within 0.5 pp of the input's; loudness ±1 LU; chroma cosine ≥ 0.95; "
          "bass note F1 ≥ 0.85 (stem codec)")
    print(f"{'role':34s} {'hop-band in→out %':>18s} {'ΔLU':>6s} {'chroma':>7s} {'note F1 in/out':>15s} "
          f"{'MR-STFT':>8s} {'SI-SDR':>7s}")
    from backline.engines.codec.fidelity import bass_note_f1, fidelity

    rows: dict[str, list[dict[str, float]]] = {}

    def add(label: str, ref: Audio, codec, notes=None) -> None:
        est = codec.roundtrip(ref)
        m = fidelity(ref.resampled(44100).with_channels(est.channels), est)
        if notes is not None:
            m["f1_in"], m["f1_out"] = bass_note_f1(ref, notes), bass_note_f1(est, notes)
        rows.setdefault(label, []).append(m)

    for song, song_mix, stems, bass_notes in songs + demo_audio(args.seconds):
        where = "demo" if song == "demo" else "held-out" if held_out else "synthetic"
        add(f"mix codec, {where} mix", song_mix, codecs["mix"])
        for (_, role), stem in stems.items():
            if stem.rms() < 1e-4:
                continue
            if role == "bass":
                add(f"stem codec, {where} bass", stem, codecs["stem"], bass_notes)
            else:
                add(f"stem codec, {where} other stems", stem, codecs["stem"])
    for label, vals in rows.items():
        mean = {k: float(np.mean([v[k] for v in vals])) for k in vals[0]}
        f1 = f"{mean['f1_in']:.2f}/{mean['f1_out']:.2f}" if "f1_in" in mean else "—"
        print(f"{label:34s} {100 * mean['hop_band_in']:8.2f} → {100 * mean['hop_band_out']:5.2f} "
              f"{mean['loudness_change_lu']:+6.1f} {mean['chroma_cosine']:7.3f} {f1:>15s} {mean['mr_stft']:8.2f} "
              f"{mean['si_sdr_db']:7.1f}   (n={len(vals)})")
    if args.long_minutes > 0:
        long_stream(codecs["mix"], args.long_minutes)
    return 0


def long_stream(codec, minutes: float) -> None:
    """Write a long synthetic stereo file piecewise, stream it through the codec and report time and peak RSS."""
    import tempfile

    from pedalboard.io import AudioFile

    sr, block = 44100, 60 * 44100
    total = int(minutes * 60 * sr)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "long.wav"
        rng = np.random.default_rng(0)
        t = np.arange(block) / sr
        with AudioFile(str(src), "w", samplerate=sr, num_channels=2, bit_depth=16) as f:
            for start in range(0, total, block):
                n = min(block, total - start)
                tone = 0.2 * np.sin(2 * np.pi * (110 + start / total * 330) * t[:n])
                f.write(np.stack([tone, tone]).astype(np.float32) + 0.01 * rng.standard_normal((2, n)).astype(np.float32))
        print(f"\n== streaming {minutes:.0f} min of 44.1 kHz stereo ({src.stat().st_size / 2**20:.0f} MiB wav) ==")
        with PeakRSS() as mem:
            t0 = time.perf_counter()
            z = codec.encode_file(src)
            t1 = time.perf_counter()
            codec.decode_to_file(z, Path(tmp) / "back.wav", total)
            t2 = time.perf_counter()
        print(f"encode_file {t1 - t0:.1f} s, decode_to_file {t2 - t1:.1f} s "
              f"({x_real_time(t2 - t0, minutes * 60):.4f}× real time), "
              f"latents {tuple(z.shape)}, peak RSS growth {(mem.peak - mem.base) / 2**20:.1f} MiB "
              f"(the audio alone would be {total * 2 * 4 / 2**20:.0f} MiB as float32)")


if __name__ == "__main__":
    sys.exit(main())
