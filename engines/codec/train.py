"""`backline train codec`: train paper 000's spectral autoencoder on a Slakh2100-layout corpus.

Objective (paper 000 §3.1 / §4): generator L = L_adv + 25·L_rec + 0.002·L_mssd, where L_rec is the L1 between the
input log-magnitude and the decoder's magnitude output, L_mssd the multi-scale spectral distance (hops 2^5…2^9,
2^11, 2^12, window 4·hop) and L_adv the hinge generator loss summed over two critics (log-magnitude and 128-bin
mel of the *reconstructed waveform*). Critics take the hinge loss. Adam β = (0.5, 0.9) for both.

Deliberate choices (the paper is silent or the budget forces them):
- Crops are 16 latent frames = 65,536 samples (1.486 s), the multiple of 4096 nearest the paper's 1.5 s.
- `--adv-start` steps of warm-up without the adversarial term (critics idle) so the critics see sensible
  reconstructions first; shipped CPU runs record where it started in TRAINING.md.
- Mix-codec examples are the full mix.flac half of the time and the sum of a random non-empty stem subset the
  other half (the mixes the bass/accompaniment engines condition on); stem-codec examples are single stems of
  every role, downmixed to mono, with near-silent crops redrawn.
- Learning rate 2e-4 for both networks (not stated in the paper).
Runs unchanged under torchrun (DDP, gloo on CPU / NCCL on GPU, bf16 autocast on GPU); every rank draws its own
random crops (seed + rank). Rank 0 checkpoints (`run_dir/checkpoint.*`, resumed automatically), logs to
`run_dir/metrics.jsonl`, shows a progress bar and exports `run_dir/<role>.safetensors` + `.json` at the end with
the latents' per-dimension mean/std.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from backline.engines.codec.codec import FORMAT_VERSION, KIND, build_model, convert_phase, load_codec
from backline.engines.codec.fidelity import loudness_change
from backline.engines.codec.model import Critics, count_parameters, make_config
from backline.engines.core.audio import Audio
from backline.engines.core.errors import ConfigError, DatasetError
from backline.engines.core.frontend import multiscale_spectral_distance
from backline.engines.core.training import Distributed, TrainLoop, apply_update, infinite, seed_everything
from backline.engines.core.weights import save_weights

HELP = "train the spectral codec (mix or stem) of paper 000 on a Slakh2100-layout corpus"

CROP = 16 * 4096  # 1.486 s: the multiple of the latent hop nearest the paper's 1.5 s crops
LAMBDA_REC = 25.0
LAMBDA_MSSD = 0.002
LAMBDA_SC = 25.0
LAMBDA_PITCH = 10.0
LAMBDA_ENERGY = 5.0
PITCH_HOP = 1024  # the latent pitch probe reads 4 steps per latent frame


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, choices=["mix", "stem"], help="which codec: mix (stereo, dim 64) "
                        "or stem (mono, dim 32)")
    parser.add_argument("--data", required=True, help="Slakh2100-layout corpus folder (TrackNNNNN/mix.flac, stems/)")
    parser.add_argument("--size", default="small", choices=["debug", "small", "paper"],
                        help="model size (default small = the shipped size; paper ≈ 37 M parameters)")
    parser.add_argument("--steps", type=int, default=100_000, help="total optimisation steps (default 100000)")
    parser.add_argument("--batch", type=int, default=8, help="crops per step and process (paper: 32 in total)")
    parser.add_argument("--lr", type=float, default=2e-4, help="Adam learning rate (default 2e-4)")
    parser.add_argument("--adv-start", type=int, default=None,
                        help="step at which the adversarial term starts (default: 20%% of --steps)")
    parser.add_argument("--run-dir", default=None, help="checkpoints, metrics and final weights "
                        "(default runs/codec-<config>-<size>); an existing checkpoint there is resumed")
    parser.add_argument("--ckpt-every", type=int, default=200, help="steps between checkpoints (default 200)")
    parser.add_argument("--log-every", type=int, default=10, help="steps between metric rows (default 10)")
    parser.add_argument("--max-minutes", type=float, default=None,
                        help="stop cleanly (checkpoint + export) after this much wall time")
    parser.add_argument("--device", default="auto", help="auto (CUDA if present), cpu or cuda")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads per process (torch.set_num_threads)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--workers", type=int, default=0, help="data loader worker processes (default 0)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--init", default=None,
                        help="start the autoencoder from these exported weights (`shipped` or a .safetensors path); "
                             "critics and optimisers start fresh. Ignored when the run folder has a checkpoint")
    parser.add_argument("--phase", default="spsi", choices=["spsi", "head"],
                        help="spsi (default): magnitude-only decoder, phase reconstructed at decode time; head: the "
                             "version-1 decoder that also predicts phase (it collapses; kept to reproduce old runs)")
    parser.add_argument("--no-pitch-probe", dest="pitch_probe", action="store_false",
                        help="drop the auxiliary loss that makes the latents keep the MIDI's pitches (see PitchProbe)")
    parser.add_argument("--freeze-encoder", action="store_true",
                        help="train the decoder only, so the latent space (and every model trained on it) is kept")
    parser.add_argument("--roles", default=None,
                        help="stem codec: draw only stems of these roles (comma list, e.g. 'bass'), to fine-tune "
                             "the codec for the engine that decodes it")


# --- data --------------------------------------------------------------------------------------------------------

def find_tracks(root: str | Path) -> list:
    """Tracks (backline.engines.data.slakh) that have a mix and stems with audio; a clear error when none."""
    # lazy: data.slakh pulls yaml, absent on the bare GPU machine that imports this trainer (gpu_lease.py)
    from backline.engines.data.slakh import list_tracks

    tracks = [t for t in list_tracks(root) if t.mix_path.is_file()]
    if not tracks:
        raise DatasetError("holds no TrackNNNNN/ folders with mix.flac and stems/", path=root,
                           fix="render one with `backline data synth` or point to Slakh2100")
    return tracks


class CropStream(torch.utils.data.IterableDataset):
    """Endless random training crops [channels, CROP] for the mix or stem codec (see module docstring).

    The track list is re-read every `rescan_every` crops, so a corpus that is still being rendered (complete
    tracks appear atomically) feeds a run that started early."""

    def __init__(self, root: str | Path, role: str, seed: int, rescan_every: int = 256,
                 stem_roles: set[str] | None = None) -> None:
        self.root, self.role, self.seed, self.rescan_every = root, role, seed, rescan_every
        self.stem_roles = stem_roles
        self._notes: dict[str, list] = {}
        self.items = self._scan()

    def _scan(self) -> list[tuple[Any, list[str], int]]:
        items = []
        for track in find_tracks(self.root):
            rate, frames = track.info()
            if rate != 44100:
                raise DatasetError(f"is {rate} Hz; the codec trains on 44.1 kHz audio", path=track.path)
            stems = [s.id for s in track.audio_stems() if not self.stem_roles or s.role in self.stem_roles]
            if frames >= CROP and stems:
                items.append((track, stems, frames))
        if not items:
            raise DatasetError(f"no track is longer than {CROP} samples", path=self.root)
        return items

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        rng = random.Random(self.seed * 1000 + (info.id if info else 0))
        drawn = 0
        while True:
            drawn += 1
            if self.rescan_every and drawn % self.rescan_every == 0:
                self.items = self._scan()
            track, stems, frames = rng.choice(self.items)
            for _attempt in range(8):
                start = rng.randrange(0, frames - CROP + 1)
                if self.role == "stem":
                    chosen = [rng.choice(stems)]
                    x = track.stem_audio(chosen[0], channels=1, start=start, frames=CROP).samples
                elif rng.random() < 0.5:
                    chosen = [s.id for s in track.audio_stems()]
                    x = track.mix_audio(channels=2, start=start, frames=CROP).samples
                else:
                    chosen = rng.sample(stems, rng.randint(1, len(stems)))
                    x = sum(track.stem_audio(s, channels=2, start=start, frames=CROP).samples for s in chosen)
                if np.sqrt(np.mean(np.square(x))) > 1e-4:
                    break
            roll = self._pianoroll(track, chosen, start / track.info()[0])
            yield torch.from_numpy(np.clip(x, -4.0, 4.0).astype(np.float32)), torch.from_numpy(roll)

    def _pianoroll(self, track, stem_ids: list[str], start_s: float) -> np.ndarray:
        """[128, PITCH_STEPS] pitches sounding in the crop (drums excluded), at PITCH_HOP-sample steps; all −1
        (ignored by the loss) when a pitched stem has no MIDI file (e.g. a corpus without MIDI)."""
        import mido

        steps = CROP // PITCH_HOP
        roll = np.zeros((128, steps), np.float32)
        times = start_s + (np.arange(steps) + 0.5) * PITCH_HOP / 44100
        for sid in stem_ids:
            stem = track.stems[sid]
            if stem.is_drum:
                continue
            if stem.midi is None or not Path(stem.midi).exists():
                return np.full((128, steps), -1.0, np.float32)
            key = str(stem.midi)
            if key not in self._notes:
                # lazy: mido, absent on the bare GPU machine that imports this trainer (gpu_lease.py)
                from backline.engines.core.transcribe import midi_to_notes

                self._notes[key] = midi_to_notes(mido.MidiFile(key))
            for n in self._notes[key]:
                if n.end > times[0] and n.start < times[-1] and 0 <= n.pitch < 128:
                    roll[n.pitch, (times >= n.start) & (times < n.end)] = 1.0
        return roll


# --- losses ------------------------------------------------------------------------------------------------------

def hinge_critic_loss(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    return F.relu(1 - real).mean() + F.relu(1 + fake).mean()


def generator_losses(model, critics, x: torch.Tensor, use_adv: bool, probe: torch.nn.Module | None = None,
                     roll: torch.Tensor | None = None, monophonic: bool = False) -> tuple[torch.Tensor, dict[str, float], torch.Tensor | None]:
    """Forward the autoencoder; returns (total generator loss, scalar logs, reconstructed waveform or None).

    Phase-head decoders (version 1) train on the paper's objective. Magnitude-only decoders (phase "spsi") add
    spectral convergence on linear magnitudes, ‖|X| − |X̂|‖_F / ‖|X|‖_F, and the L1 of per-frame log energies: the
    L1 of log-magnitudes alone settles on the median (a smooth envelope a few dB low), while spectral convergence
    is dominated by the loud partials, which carry the pitch, and the energy term holds the level. The waveform (and so L_mssd) is only built when a term needs it."""
    spsi = _unwrap(model).cfg.phase == "spsi"
    out = model(x, synthesise=use_adv or not spsi)
    l_rec = (out["log_mag"].float() - out["s"].float()).abs().mean()
    total = LAMBDA_REC * l_rec
    logs = {"rec": float(l_rec.detach())}
    wav = out.get("wav")
    if spsi:
        target = torch.exp(0.5 * out["s"].float())
        estimate = torch.exp(0.5 * out["log_mag"].float().clamp(max=14.0))
        l_sc = torch.linalg.vector_norm(target - estimate) / torch.linalg.vector_norm(target).clamp_min(1e-6)
        # frame energy in log units: the level a listener hears, which the log-magnitude median under-reads
        energy_true = torch.logsumexp(out["s"].float(), dim=-2)
        energy_est = torch.logsumexp(out["log_mag"].float().clamp(max=14.0), dim=-2)
        l_energy = (energy_true - energy_est).abs().mean()
        total = total + LAMBDA_SC * l_sc + LAMBDA_ENERGY * l_energy
        logs["sc"] = float(l_sc.detach())
        logs["energy"] = float(l_energy.detach())
    else:
        l_mssd = multiscale_spectral_distance(x.float(), wav.float())
        total = total + LAMBDA_MSSD * l_mssd
        logs["mssd"] = float(l_mssd.detach())
    if probe is not None and roll is not None:
        l_pitch = pitch_loss(probe, out["z"], roll, monophonic)
        total = total + LAMBDA_PITCH * l_pitch
        logs["pitch"] = float(l_pitch.detach())
    if use_adv:
        spec_logits, mel_logits = critics(wav.float())
        l_adv = -(spec_logits.float().mean() + mel_logits.float().mean())
        total = total + l_adv
        logs["adv"] = float(l_adv.detach())
    logs["loss"] = float(total.detach())
    return total, logs, wav


class PitchProbe(torch.nn.Module):
    """Training-only linear read-out of the pitches sounding in each quarter of a latent frame.

    Why: probed on held-out bass stems, the version-1 stem latents held no pitch (pitch-class accuracy at chance),
    so no decoder could put the notes back. Supervising a *linear* probe with the corpus's MIDI makes the encoder
    keep pitch in a form the decoder (and the diffusion model) can use. The probe is not exported: inference and
    the latent format are unchanged. Paper 000 learns this implicitly in 500 k GPU steps; we cannot.
    Outputs 129 logits per step: 128 MIDI pitches and "no note"."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.steps = 4096 // PITCH_HOP
        self.proj = torch.nn.Conv1d(dim, 129 * self.steps, 1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        b, _, n = z.shape
        logits = self.proj(z).view(b, 129, self.steps, n)
        return logits.permute(0, 1, 3, 2).reshape(b, 129, n * self.steps)


def pitch_loss(probe: torch.nn.Module, z: torch.Tensor, roll: torch.Tensor, monophonic: bool) -> torch.Tensor:
    """How far the probe is from the piano roll; crops marked −1 (no MIDI) are ignored.

    Monophonic stems (the stem codec is trained on bass): softmax cross-entropy over the 128 pitches and "no note"
    (the lowest sounding pitch is the target) — a far stronger signal than 128 mostly-negative binary terms, which
    were measured to teach the probe nothing in 900 steps (held-out pitch accuracy 0.09). Mixes: binary
    cross-entropy per pitch with positives weighted ×16 (≈ 4 of 128 pitches sound at once)."""
    known = (roll >= 0).all(dim=1)  # [B, steps]
    if not bool(known.any()):
        return z.new_zeros(())
    logits = probe(z.float())
    if monophonic:
        sounding = roll > 0
        lowest = torch.where(sounding.any(1), sounding.float().argmax(1), torch.full_like(known, 128, dtype=torch.long))
        return F.cross_entropy(logits.transpose(1, 2)[known], lowest[known])
    mask = known.unsqueeze(1).expand_as(roll)
    return F.binary_cross_entropy_with_logits(logits[:, :128][mask], roll[mask],
                                              pos_weight=torch.tensor(16.0, device=roll.device))


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if hasattr(model, "module") else model


# --- the loop ----------------------------------------------------------------------------------------------------

def train(args: argparse.Namespace) -> dict[str, Any]:
    if args.steps <= 0 or args.batch <= 0:
        raise ConfigError("--steps and --batch must be positive")
    if args.threads:
        torch.set_num_threads(args.threads)
    ctx = Distributed.setup(args.device)
    try:
        seed_everything(args.seed + 7919 * ctx.rank)
        run_dir = Path(args.run_dir or f"runs/codec-{args.config}-{args.size}")
        cfg = make_config(args.config, args.size, phase=getattr(args, "phase", "spsi"))
        model = build_model(cfg).to(ctx.device)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed + 1)
            critics = Critics(cfg).to(ctx.device)
        if getattr(args, "freeze_encoder", False):
            model.encoder.requires_grad_(False)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed + 2)
            probe = PitchProbe(cfg.dim).to(ctx.device)
        use_probe = getattr(args, "pitch_probe", True) and not getattr(args, "freeze_encoder", False)
        trainable = [p for p in model.parameters() if p.requires_grad] + (list(probe.parameters()) if use_probe else [])
        opt_g = torch.optim.Adam(trainable, lr=args.lr, betas=(0.5, 0.9))
        opt_d = torch.optim.Adam(critics.parameters(), lr=args.lr, betas=(0.5, 0.9))
        if getattr(args, "init", None):
            start = load_codec(args.config, weights=None if args.init == "shipped" else args.init).model
            start = convert_phase(start, cfg)
            decode_only = ("output_gain_db", "phase_iters")  # recalibrated at export; not part of the weights
            if {k: v for k, v in start.cfg.to_dict().items() if k not in decode_only} != \
                    {k: v for k, v in cfg.to_dict().items() if k not in decode_only}:
                raise ConfigError(f"--init weights are not the {args.config}/{args.size} codec",
                                  fix="pass weights of the same --config and --size")
            model.load_state_dict(start.state_dict())
        adv_start = args.adv_start if args.adv_start is not None else int(0.2 * args.steps)
        # one loop, two optimisers: the autoencoder (+ pitch probe) and the critics, at the same constant rate
        loop = TrainLoop(ctx, run_dir, modules={"model": model, "critics": critics, "probe": probe, "opt_g": opt_g,
                                                "opt_d": opt_d},
                         optimizers=[opt_g, opt_d], steps=args.steps, lr=args.lr, floor=1.0,
                         max_minutes=args.max_minutes, log_every=args.log_every, ckpt_every=args.ckpt_every,
                         desc=f"codec {args.config}/{args.size}", quiet=args.quiet)
        g = ctx.wrap(model)
        probe_w = ctx.wrap(probe) if use_probe else probe  # DDP averages the probe's gradients across ranks too
        d = ctx.wrap(critics)
        roles = {r.strip().lower() for r in args.roles.split(",") if r.strip()} if getattr(args, "roles", None) else None
        if roles and args.config != "stem":
            raise ConfigError("--roles applies to the stem codec only", fix="drop --roles or use --config stem")
        data = CropStream(args.data, args.config, args.seed + 7919 * ctx.rank, stem_roles=roles)
        loader = torch.utils.data.DataLoader(data, batch_size=args.batch, num_workers=args.workers)
        batches = infinite(loader, ctx)
        if ctx.is_main and loop.step == 0:
            print(f"codec {args.config}/{args.size}: {count_parameters(model) / 1e6:.2f} M autoencoder + "
                  f"{count_parameters(critics) / 1e6:.2f} M critic parameters; world size {ctx.world_size}; "
                  f"adversarial from step {adv_start}", flush=True)

        def step_fn(step: int) -> dict[str, float]:
            x, roll = next(batches)
            x, roll = x.to(ctx.device, non_blocking=True), roll.to(ctx.device, non_blocking=True)
            use_adv = step >= adv_start
            # the generator's adversarial term goes through the plain (unwrapped) critics with their parameters
            # frozen, so no critic gradients are built and DDP's critic reducer is not involved
            critics.requires_grad_(False)
            with ctx.autocast():
                total, logs, wav = generator_losses(g, critics, x, use_adv, probe_w if use_probe else None, roll,
                                                    monophonic=args.config == "stem")
            apply_update(opt_g, total)
            critics.requires_grad_(True)
            if use_adv:
                with ctx.autocast():
                    spec_logits, mel_logits = d(torch.cat([x, wav.detach()]))
                    b = x.shape[0]
                    l_d = hinge_critic_loss(spec_logits[:b].float(), spec_logits[b:].float()) + \
                        hinge_critic_loss(mel_logits[:b].float(), mel_logits[b:].float())
                logs["critic"] = apply_update(opt_d, l_d)
            return logs

        done = loop.run(step_fn)
        step, elapsed, log = done.step, done.elapsed_s, loop.log
        stop_reason = "time limit" if done.stopped_early else "steps"
        stats = latent_stats(model, batches, ctx) if step > 0 else None
        result = {"steps": step, "target_steps": args.steps, "stop": stop_reason, "elapsed_s": round(elapsed, 1),
                  "batch_per_process": args.batch, "world_size": ctx.world_size, "lr": args.lr,
                  "adv_start": adv_start, "crop_samples": CROP, "final_losses": log.latest,
                  "device": str(ctx.device), "data": str(args.data), "init": getattr(args, "init", None),
                  "roles": sorted(roles) if roles else None, "phase": cfg.phase,
                  "freeze_encoder": bool(getattr(args, "freeze_encoder", False)),
                  "pitch_probe": bool(use_probe), "lambda_pitch": LAMBDA_PITCH if use_probe else 0.0,
                  "lambda_sc": LAMBDA_SC if cfg.phase == "spsi" else 0.0,
                  "lambda_energy": LAMBDA_ENERGY if cfg.phase == "spsi" else 0.0}
        if ctx.is_main:
            if stats is not None:
                result["latent_stats"] = stats
            if cfg.phase == "spsi" and step > 0:
                cfg.output_gain_db = calibrate_output_gain(model, batches)
                result["output_gain_db"] = cfg.output_gain_db
            out = save_weights(model, run_dir / args.config, kind=KIND, config=cfg.to_dict(),
                               format_version=FORMAT_VERSION, training=result, overwrite=True)
            print(f"codec {args.config}/{args.size}: {step} steps in {elapsed / 60:.1f} min ({stop_reason}); "
                  f"weights {out}; final {', '.join(f'{k} {v:.4g}' for k, v in log.latest.items())}", flush=True)
        ctx.barrier()
        return result
    finally:
        ctx.close()


@torch.no_grad()
def calibrate_output_gain(model: torch.nn.Module, batches, n_batches: int = 6) -> float:
    """The decoder's median loudness change (LU) over training crops, negated: the gain (dB) that makes a round
    trip keep its level. Measured with the gain at 0; the caller stores it in the config (`output_gain_db`)."""
    model.eval()
    saved, model.cfg.output_gain_db = model.cfg.output_gain_db, 0.0
    changes = []
    for _ in range(n_batches):
        x = next(batches)[0]
        y = model.decode(model.encode(x.to(next(model.parameters()).device)), x.shape[-1]).float().cpu()
        for a, b in zip(x.numpy(), y.numpy()):
            change = loudness_change(Audio(a, 44100), Audio(b, 44100))
            if np.isfinite(change):
                changes.append(change)
    model.cfg.output_gain_db = saved
    model.train()
    return round(-float(np.median(changes)), 2) if changes else 0.0


@torch.no_grad()
def latent_stats(model: torch.nn.Module, batches, ctx, n_batches: int = 4) -> dict[str, list[float]]:
    """Per-dimension mean/std of latents over a few training batches (diffusion trainers normalise with them)."""
    model.eval()
    zs = [model.encode(next(batches)[0].to(ctx.device)).float() for _ in range(n_batches)]
    model.train()
    z = torch.cat([t.transpose(1, 2).reshape(-1, t.shape[1]) for t in zs])
    return {"mean": [round(float(v), 5) for v in z.mean(0)],
            "std": [round(float(v), 5) for v in z.std(0).clamp_min(1e-6)]}


def run(args: argparse.Namespace) -> int:
    result = train(args)
    return 0 if result["steps"] > 0 else 1


if __name__ == "__main__":
    import sys

    p = argparse.ArgumentParser(prog="python -m backline.engines.codec.train", description=HELP)
    configure(p)
    sys.exit(run(p.parse_args()))
