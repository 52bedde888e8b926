"""Listening models: masking statistics, losses, heads, metrics, features and the analysis API (debug configs)."""

from __future__ import annotations

import math
import threading
import zlib

import numpy as np
import pytest
import torch

from backline.engines.analysis import musicoder as mc
from backline.engines.analysis import simclr as sc
from backline.engines.analysis import tagger as tg
from backline.engines.analysis.features import (
    CQT_BINS_PER_OCTAVE,
    CQT_FMIN,
    FEATURE_DIM,
    FEATURE_SLICES,
    FEATURE_SR,
    MusiCoderFeatures,
    SimCLRLogMel,
)
from backline.engines.core.audio import Audio
from backline.engines.core.errors import AudioFormatError, Cancelled, FileExistsRefusal

# --- CFM / CCM masking -------------------------------------------------------------------------------------

def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(start, length) of each run of True."""
    runs, start = [], None
    for i, m in enumerate(np.r_[mask, False]):
        if m and start is None:
            start = i
        elif not m and start is not None:
            runs.append((start, i - start))
            start = None
    return runs


def test_cfm_budget_and_span_lengths():
    g = torch.Generator().manual_seed(1234)
    lengths = []
    for t in (60, 250, 1000, 1600):
        for _ in range(40):
            spans = mc.sample_cfm_spans(t, g)
            mask = np.zeros(t, bool)
            for s, n in zip(spans.starts, spans.lengths):
                assert not mask[s : s + n].any(), "spans must not overlap"
                mask[s : s + n] = True
            budget = math.ceil(0.15 * t)
            assert budget <= mask.sum() < budget + 7  # 15 % spent, the last span kept whole
            runs = _runs(mask)
            assert sorted(n for _, n in runs) == sorted(spans.lengths)  # spans never touch: each is one run
            lengths += [n for _, n in runs]
    lengths = np.array(lengths)
    assert lengths.min() >= 2 and lengths.max() <= 7
    # truncated Geo(0.2) on 2..7: mean 3.868 (the paper's "around 3.87 frames"), and its histogram
    assert abs(lengths.mean() - 3.868) < 0.08, lengths.mean()
    expected = mc.span_length_probs().numpy()
    observed = np.bincount(lengths, minlength=8)[2:8] / len(lengths)
    assert np.abs(observed - expected).max() < 0.025, (observed, expected)


def test_cfm_70_20_10_policy_applied_to_frames():
    g = torch.Generator().manual_seed(99)
    x = torch.randn(220, 250, 4)  # CFM is channel-agnostic: 4 channels keep the test fast
    masked, loss_mask = mc.mask_batch(x, g, cfm=True, ccm=False)
    counts = {"zero": 0, "random": 0, "keep": 0}
    xs, ms, lm = x.numpy(), masked.numpy(), loss_mask.numpy()
    flat_rows = {tuple(r) for r in xs.reshape(-1, 4)}
    for i in range(xs.shape[0]):
        frame_masked = lm[i].all(-1)
        assert (lm[i].any(-1) == frame_masked).all()  # CFM masks whole frames
        for s, n in _runs(frame_masked):
            span = ms[i, s : s + n]
            if not span.any():
                counts["zero"] += 1
            elif np.array_equal(span, xs[i, s : s + n]):
                counts["keep"] += 1
            else:
                assert (span == span[0]).all()  # one random frame copied over the span
                assert tuple(span[0]) in flat_rows  # ... drawn from the batch
                counts["random"] += 1
        assert np.array_equal(ms[i, ~frame_masked], xs[i, ~frame_masked])  # unmasked frames untouched
    total = sum(counts.values())
    assert total > 1800
    assert abs(counts["zero"] / total - 0.7) < 0.04
    assert abs(counts["random"] / total - 0.2) < 0.04
    assert abs(counts["keep"] / total - 0.1) < 0.03


def test_ccm_blocks_are_contiguous_uniform_and_in_the_spectral_blocks():
    g = torch.Generator().manual_seed(7)
    x = torch.randn(400, 20, FEATURE_DIM) + 5.0  # no natural zeros
    masked, loss_mask = mc.mask_batch(x, g, cfm=False, ccm=True)
    zeroed = (masked == 0).all(1)  # [B, D]: channel zeroed for every frame
    assert torch.equal(zeroed, loss_mask.all(1))
    for name in ("chroma", "mfcc", "delta_mfcc"):
        lo, hi = FEATURE_SLICES[name]
        assert not zeroed[:, lo:hi].any()
    for name in ("logmel", "cqt"):
        lo, hi = FEATURE_SLICES[name]
        widths = []
        for row in zeroed[:, lo:hi].numpy():
            runs = _runs(row)
            assert len(runs) <= 1  # one consecutive block
            widths.append(runs[0][1] if runs else 0)
        h = hi - lo
        assert abs(np.mean(widths) - h / 2) < 0.1 * h  # n ~ U{0..H}: mean H/2
        assert np.max(widths) > 0.8 * h and np.min(widths) < 0.2 * h


def test_huber_loss_counts_masked_positions_only():
    target = torch.zeros(1, 4, 2)
    pred = torch.tensor([[[0.5, 3.0], [10.0, 10.0], [0.0, 0.0], [-2.0, 0.2]]])
    mask = torch.tensor([[[True, True], [False, False], [False, False], [True, True]]])
    expected = (0.5 * 0.25 + (3.0 - 0.5) + (2.0 - 0.5) + 0.5 * 0.04) / 4  # eq. 3
    assert mc.huber_masked(pred, target, mask).item() == pytest.approx(expected)


def test_musicoder_pretraining_step_reduces_loss():
    torch.manual_seed(0)
    model = mc.MusiCoderPretrainer(mc.get_config("debug"))
    x = torch.randn(4, 50, FEATURE_DIM)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for i in range(30):
        loss = model(x, torch.Generator().manual_seed(i % 3))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-5:]) < np.mean(losses[:5])


def test_paper_configs_sizes():
    def count(name):
        return sum(p.numel() for p in mc.MusiCoder(mc.get_config(name)).parameters())

    assert 27e6 < count("base") < 31e6  # paper: 29.3M
    assert count("small") < 1e6


# --- SimCLR ---------------------------------------------------------------------------------------------------

def test_nt_xent_matches_hand_computation():
    z1 = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    z2 = torch.tensor([[0.6, 0.8], [0.8, -0.6]])
    tau = 0.1
    views = [(1.0, 0.0), (0.0, 1.0), (0.6, 0.8), (0.8, -0.6)]  # all unit vectors already
    positive = {0: 2, 1: 3, 2: 0, 3: 1}
    total = 0.0
    for i, a in enumerate(views):
        sims = {k: (a[0] * b[0] + a[1] * b[1]) / tau for k, b in enumerate(views) if k != i}
        total += -math.log(math.exp(sims[positive[i]]) / sum(math.exp(s) for s in sims.values()))
    assert sc.nt_xent(z1, z2, tau).item() == pytest.approx(total / 4, rel=1e-5)
    # scale invariance (cosine similarity)
    assert sc.nt_xent(3 * z1, 0.5 * z2, tau).item() == pytest.approx(total / 4, rel=1e-5)


def test_mixup_gains_follow_beta_5_2():
    g = torch.Generator().manual_seed(3)
    a = torch.zeros(4000, 1)
    a[: 2000] = 1.0  # mixing two constants reveals the gain
    out = sc.mixup(a, g)
    # out = λ a + (1-λ) a[perm]; for rows where a=1 and partner=0, out = λ
    partner_zero = out[:2000][(out[:2000] < 1.0)]
    assert abs(partner_zero.mean().item() - 5 / 7) < 0.02  # E[Beta(5,2)] = 5/7
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0


def test_nf_encoder_has_no_batchnorm_and_standardised_weights():
    model = sc.SimCLRModel(sc.get_config("debug"))
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())
    conv = model.encoder.stem
    w = conv.standardized_weight()
    fan_in = w[0].numel()
    assert torch.allclose(w.mean(dim=(1, 2, 3)), torch.zeros(w.shape[0]), atol=1e-5)
    assert torch.allclose(w.var(dim=(1, 2, 3), unbiased=False) * fan_in, torch.ones(w.shape[0]), atol=2e-2)
    z = model(torch.randn(3, 96, 300))
    assert z.shape == (3, sc.get_config("debug").out_dim)


def test_matching_loss_and_soft_assignment():
    m = sc.MatchingModel(sc.get_config("debug"))
    mix, stem = torch.randn(4, 96, 300), torch.randn(4, 96, 300)
    assert torch.isfinite(m.loss(mix, stem))
    p = sc.soft_assignment(m.embed_mix(mix), m.embed_stem(stem))
    assert p.shape == (4, 4) and torch.allclose(p.sum(1), torch.ones(4))
    cal = sc.fit_calibration(torch.tensor([0.8, 0.7, 0.9]), torch.tensor([0.1, 0.2, 0.0, 0.3]))
    assert 1 / (1 + math.exp(-(cal.a * 0.85 + cal.b))) > 0.5 > 1 / (1 + math.exp(-(cal.a * 0.15 + cal.b)))


# --- tagger heads ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", tg.HEADS)
def test_heads_shapes_and_ranges(kind):
    torch.manual_seed(0)
    head = tg.TaggerHead(kind, 24)
    with torch.no_grad():
        out = head(torch.randn(5, 24) * 4)
    assert out.fine.shape == (5, len(tg.FINE_TAGS)) and out.coarse.shape == (5, len(tg.COARSE_TAGS))
    for p in (out.fine, out.coarse):
        assert float(p.min()) >= 0.0 and float(p.max()) <= 1.0


def test_gmp_head_is_the_max_over_each_group():
    head = tg.TaggerHead("gmp", 16)
    out = head(torch.randn(6, 16))
    for c, coarse in enumerate(tg.COARSE_TAGS):
        children = [i for i, f in enumerate(tg.FINE_TAGS) if tg.PARENT[f] == coarse]
        assert torch.allclose(out.coarse[:, c], out.fine[:, children].max(1).values)


def test_resatt_attention_is_softmax_over_fine_and_gives_coarse():
    head = tg.TaggerHead("resatt", 16)
    out = head(torch.randn(3, 16))
    assert out.attention.shape == (3, len(tg.FINE_TAGS), len(tg.COARSE_TAGS))
    assert torch.allclose(out.attention.sum(1), torch.ones(3, len(tg.COARSE_TAGS)), atol=1e-5)
    assert torch.allclose(out.coarse, torch.einsum("bfc,bf->bc", out.attention, out.fine), atol=1e-6)


def test_topdown_fine_is_parent_times_leaf():
    head = tg.TaggerHead("topdown", 8)
    out = head(torch.randn(4, 8))
    parent = tg.hierarchy_matrix().argmax(1)
    assert torch.all(out.fine <= out.coarse[:, parent] + 1e-7)


def test_hierarchy_and_labels():
    assert set(tg.PARENT) == set(tg.FINE_TAGS) and set(tg.PARENT.values()) == set(tg.COARSE_TAGS)
    assert tg.FINE_TAGS[tg.fine_index(33, False)] == "Bass" and tg.FINE_TAGS[tg.fine_index(0, True)] == "Drums"
    y = torch.zeros(1, len(tg.FINE_TAGS))
    y[0, tg.FINE_TAGS.index("Guitar")] = 1
    coarse = tg.coarse_from_fine(y)[0]
    assert coarse[tg.COARSE_TAGS.index("plucked")] == 1 and coarse.sum() == 1
    m = torch.ones_like(y)
    m[0, tg.FINE_TAGS.index("Strings")] = 0  # unknown strings, no known bowed child present -> bowed unknown
    cm = tg.coarse_mask_from_fine(y, m)[0]
    assert cm[tg.COARSE_TAGS.index("bowed")] == 0 and cm[tg.COARSE_TAGS.index("plucked")] == 1


def test_masked_bce_ignores_unknown_labels():
    p = torch.tensor([[0.9, 0.5]])
    y = torch.tensor([[1.0, 0.0]])
    full = tg.masked_bce(p, y, torch.ones_like(y))
    only_first = tg.masked_bce(p, y, torch.tensor([[1.0, 0.0]]))
    assert only_first.item() == pytest.approx(-math.log(0.9), rel=1e-5)
    assert full.item() > only_first.item()


def test_hierarchical_loss_weights():
    out = tg.HeadOutput(torch.full((1, 17), 0.5), torch.full((1, 6), 0.9))
    y, m = torch.zeros(1, 17), torch.ones(1, 17)
    cy, cm = torch.zeros(1, 6), torch.ones(1, 6)
    lf, lc = -math.log(0.5), -math.log(0.1)
    assert tg.hierarchical_loss(out, "gmp", y, m, cy, cm, 0.8).item() == pytest.approx(0.8 * lf + 0.2 * lc, rel=1e-4)
    assert tg.hierarchical_loss(out, "flat", y, m, cy, cm, 0.8).item() == pytest.approx(lf, rel=1e-4)


def test_metrics_and_thresholds():
    y = np.array([0, 0, 1, 1, 1, 0])
    p = np.array([0.1, 0.4, 0.35, 0.8, 0.9, 0.9])
    assert tg.roc_auc(y, p) == pytest.approx(5.5 / 9)  # hand count of (pos, neg) pairs, ties = 1/2
    assert tg.average_precision(y, p) == pytest.approx(1 / 3 * 0.5 + 1 / 3 * 2 / 3 + 1 / 3 * 0.6)
    probs = np.array([[0.1], [0.26], [0.64], [0.7]])
    th = tg.tune_thresholds(probs, np.array([[0], [0], [1], [1]]), np.ones((4, 1)))
    assert 0.26 < th[0] <= 0.64  # any threshold between the classes gives F1 = 1
    # well separated classes: every threshold in the 0.2-0.8 search ties, the middle of the tie is taken
    tie = tg.tune_thresholds(np.array([[0.1], [0.15], [0.9], [0.95]]), np.array([[0], [0], [1], [1]]), np.ones((4, 1)))
    assert tie[0] == pytest.approx(0.5)
    # a tag separable only near 0.05 cannot get a threshold below the 0.2 floor
    low = tg.tune_thresholds(np.array([[0.01], [0.02], [0.06], [0.07]]), np.array([[0], [0], [1], [1]]), np.ones((4, 1)))
    assert 0.2 <= low[0] <= 0.8


def test_attention_png_is_a_valid_image():
    png = tg.attention_png(np.random.default_rng(0).random((17, 6)), np.random.default_rng(1).random(17), cell=4)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    w, h = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert (w, h) == (8 * 4, 17 * 4)
    idat = png[png.index(b"IDAT") + 4 :]
    raw = zlib.decompress(idat[: int.from_bytes(png[png.index(b"IDAT") - 4 : png.index(b"IDAT")], "big")])
    assert len(raw) == h * (1 + 3 * w)
    from PyQt6.QtGui import QImage

    img = QImage.fromData(png, "PNG")
    assert not img.isNull() and img.width() == w and img.height() == h


# --- features ---------------------------------------------------------------------------------------------

def _sine(freq: float, seconds: float = 1.0, sr: int = FEATURE_SR) -> torch.Tensor:
    t = torch.arange(int(seconds * sr)) / sr
    return 0.3 * torch.sin(2 * math.pi * freq * t)


def test_musicoder_features_shape_chroma_and_cqt_peaks():
    f = MusiCoderFeatures()
    x = f(_sine(110.0))  # A2
    assert x.shape == (FEATURE_SR // 320 + 1, FEATURE_DIM) and torch.isfinite(x).all()
    mid = x[10:-10].mean(0)
    lo, hi = FEATURE_SLICES["chroma"]
    assert int(mid[lo:hi].argmax()) == 9  # pitch class A
    lo, hi = FEATURE_SLICES["cqt"]
    expected_bin = round(CQT_BINS_PER_OCTAVE * math.log2(110.0 / CQT_FMIN))
    assert abs(int(mid[lo:hi].argmax()) - expected_bin) <= 1
    silent = f(torch.zeros(FEATURE_SR))
    assert torch.isfinite(silent).all()


def test_simclr_logmel_shape():
    m = SimCLRLogMel()(torch.zeros(2, 3 * FEATURE_SR))
    assert m.shape == (2, 96, 301)


# --- API and engine (debug models) --------------------------------------------------------------------------

def _tone_mix(seconds: float = 6.0, sr: int = 44100) -> Audio:
    t = np.arange(int(seconds * sr)) / sr
    x = 0.2 * np.sin(2 * np.pi * 55 * t) + 0.1 * np.sin(2 * np.pi * 440 * t) * (np.sin(2 * np.pi * 2 * t) > 0)
    x += 0.05 * np.random.default_rng(0).standard_normal(len(t)) * (np.arange(len(t)) % (sr // 2) < 2000)
    return Audio(np.stack([x, x]).astype(np.float32), sr)


def test_analyze_silence_short_and_other_rates():
    from backline.engines.analysis.api import Analyzer

    an = Analyzer("debug")
    rep = an.analyze(Audio.silence(44100 * 3, 44100))
    assert rep.silent and rep.present_fine == [] and "no instruments detected" in rep.message
    with pytest.raises(AudioFormatError, match="at least 1 s"):
        an.analyze(Audio.silence(4410, 44100))
    with pytest.raises(AudioFormatError, match="empty"):
        an.analyze(Audio(np.zeros((2, 0), np.float32), 44100))
    for sr in (22050, 48000, 16000):
        rep = an.analyze(_tone_mix(3.0, sr))
        assert not rep.silent and rep.windows == 1 and set(rep.fine) == set(tg.FINE_TAGS)
        assert all(0.0 <= p <= 1.0 for p in rep.fine.values())
        assert (sr != FEATURE_SR) == any("resampled" in n for n in rep.notes)
    rep = an.analyze(_tone_mix(12.0))
    assert rep.windows == 3 and rep.attention is not None and rep.attention_png()[:4] == b"\x89PNG"


def test_embed_and_match_matrix_api():
    from backline.engines.analysis.api import Analyzer

    an = Analyzer("debug")
    e = an.embed(_tone_mix(7.0))
    assert e.shape == (sc.get_config("debug").embed_dim,)
    assert an.embed(_tone_mix(7.0), per_snippet=True).shape[0] == 3  # snippets at 0, 2, 4 s
    mixes = [_tone_mix(4.0), _tone_mix(5.0, 22050)]
    stems = [_tone_mix(4.0), _tone_mix(3.0), _tone_mix(2.0, 48000)]
    p = an.match_matrix(mixes, stems)
    assert p.shape == (2, 3) and torch.allclose(p.sum(1), torch.ones(2))
    s = an.fit_score(_tone_mix(4.0), _tone_mix(4.0, 48000))
    assert 0.0 <= s <= 1.0
    with pytest.raises(AudioFormatError, match="silent"):
        an.fit_score(_tone_mix(4.0), Audio.silence(44100 * 4, 44100))


def test_engine_registered_generate_and_cancel(tmp_path):
    from backline.engines.core.protocol import GenerationRequest
    from backline.engines.core.timeline import Timeline
    from backline.engines.registry import build_engine

    eng = build_engine("analysis", "debug")
    desc = eng.describe()
    assert desc.name == "analysis" and "mix" in desc.inputs
    tl = Timeline.constant(120.0, 44100)
    req = GenerationRequest(engine="analysis", out_dir=tmp_path, timeline=tl, mix=_tone_mix(6.0))
    seen = []
    res = eng.generate(req, progress=lambda f, m: seen.append(f), cancel=threading.Event())
    rep = res.takes[0].report
    assert set(rep["fine"]) == set(tg.FINE_TAGS) and seen[-1] == 1.0
    assert not any(tmp_path.iterdir())  # generate() is pure; the one writer writes the take
    from backline.engines.core.takes import write_takes

    write_takes(res, tmp_path)
    assert (tmp_path / "analysis_seed0.json").exists() and (tmp_path / "analysis_seed0_attention.png").exists()
    with pytest.raises(FileExistsRefusal):  # never overwrites
        write_takes(eng.generate(req, progress=lambda f, m: None, cancel=threading.Event()), tmp_path)
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        eng.generate(req, progress=lambda f, m: None, cancel=cancel)
    with pytest.raises(FileExistsRefusal):
        from backline.engines.core.audio import write_bytes_atomic

        write_bytes_atomic(tmp_path / "analysis_seed0.json", b"{}")


def test_timbre_vector_is_level_free_and_tells_timbres_apart():
    from backline.engines.analysis.features import timbre_vector
    from backline.engines.core.errors import AudioFormatError

    sr = 44100
    t = np.arange(2 * sr) / sr
    hiss = 0.001 * np.random.default_rng(0).standard_normal(len(t))  # a real recording's floor, scaled with it
    sine = Audio((0.3 * np.sin(2 * np.pi * 82.4 * t) + hiss).astype(np.float32)[None], sr)
    square = Audio((0.3 * np.sign(np.sin(2 * np.pi * 82.4 * t))).astype(np.float32)[None], sr)
    quiet = Audio(sine.samples * 0.1, sr)

    def cos_dist(a, b):
        return 1 - float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))

    v_sine, v_square, v_quiet = timbre_vector(sine), timbre_vector(square), timbre_vector(quiet)
    assert v_sine.shape == (38,)
    assert cos_dist(v_sine, v_quiet) < 1e-4 and cos_dist(v_sine, v_square) > 0.05
    with pytest.raises(AudioFormatError, match="silent"):
        timbre_vector(Audio(np.zeros((1, sr), np.float32), sr))
