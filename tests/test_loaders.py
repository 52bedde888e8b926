"""Dataset readers: the Slakh2100-layout reader (our corpus and real Slakh quirks) and the LPD-5 pianorolls."""

from __future__ import annotations

import json
import shutil
import zipfile

import numpy as np
import pytest
import torch
import yaml
from torch.utils.data import DataLoader, DistributedSampler

from backline.engines.core.audio import Audio, read_audio, write_audio
from backline.engines.core.errors import DatasetError
from backline.engines.data import lpd5, slakh


def test_track_listing_api(tiny_corpus):
    tracks = slakh.list_tracks(tiny_corpus)
    assert [t.name for t in tracks] == ["Track00001", "Track00002"]
    tr = tracks[0]
    assert tr.extras["bars"] >= 8 and {s.role for s in tr.stems.values()} >= {"bass", "drums", "piano"}
    bass = tr.find("bass")
    assert len(bass) == 1 and bass[0].inst_class == "Bass" and tr.find("Bass") == bass
    assert tr.find("drums")[0].is_drum
    audio = tr.stem_audio(bass[0].id, start=1000, frames=500)
    assert audio.samples.shape == (2, 500)
    full = slakh.read_stem(tr.path, bass[0].id)
    np.testing.assert_array_equal(audio.samples, full.samples[:, 1000:1500])
    assert tr.info() == (44100, full.frames)
    with pytest.raises(DatasetError, match="no audio"):
        tr.stem_audio("S99")


def test_crops_are_sample_exact(tiny_corpus):
    ds = slakh.SlakhCropDataset(tiny_corpus, target="bass", crop_frames=22050, seed=3, length=6)
    tracks = {t.name: t for t in slakh.list_tracks(tiny_corpus)}
    seen_subsets = set()
    for i in range(len(ds)):
        mix, target, labels = ds[i]
        assert mix.shape == target.shape == (2, 22050) and mix.dtype == torch.float32
        tr, start = tracks[labels["track"]], labels["start"]
        assert labels["target_role"] == "bass" and tr.stems[labels["target_stem"]].role == "bass"
        np.testing.assert_array_equal(target.numpy(), tr.stem_audio(labels["target_stem"], start=start, frames=22050).samples)
        ids = labels["mix_stems"].split(",")
        assert ids and labels["target_stem"] not in ids
        want = sum(tr.stem_audio(s, start=start, frames=22050).samples for s in ids)
        np.testing.assert_allclose(mix.numpy(), want, atol=1e-6)
        assert not labels["target_silent"] and labels["tempo_bpm"] == tr.extras["tempo_bpm"]
        seen_subsets.add(labels["mix_stems"])
    assert len(seen_subsets) > 1  # random subsets, not always the full mix
    again = slakh.SlakhCropDataset(tiny_corpus, target="bass", crop_frames=22050, seed=3, length=6)
    assert all(again[i][2] == ds[i][2] for i in range(6))  # deterministic per (seed, index)


def test_crops_resampled_and_batched(tiny_corpus):
    ds = slakh.SlakhCropDataset(tiny_corpus, target="drums", crop_frames=16000, sample_rate=16000, seed=1, length=4)
    mix, target, labels = next(iter(DataLoader(ds, batch_size=4)))
    assert mix.shape == target.shape == (4, 2, 16000) and labels["sample_rate"].tolist() == [16000] * 4
    # the crop equals the same region of the whole stem resampled (away from the crop edges)
    tr = {t.name: t for t in slakh.list_tracks(tiny_corpus)}[labels["track"][0]]
    whole = tr.stem_audio(labels["target_stem"][0], sample_rate=16000).samples
    s = int(labels["start"][0])
    np.testing.assert_allclose(target[0, :, 500:-500].numpy(), whole[:, s + 500 : s + 16000 - 500], atol=2e-3)


def test_iterable_crops_shard_by_rank_and_worker(tiny_corpus):
    shards = [slakh.SlakhCrops(tiny_corpus, target="piano", crop_frames=4096, seed=7, items_per_epoch=10, rank=r,
                               world_size=2) for r in (0, 1)]
    items = [[(lab["track"], lab["start"]) for _, _, lab in shard] for shard in shards]
    assert [len(i) for i in items] == [5, 5] and not set(items[0]) & set(items[1])
    assert items[0] == [(lab["track"], lab["start"]) for _, _, lab in shards[0]]  # same epoch, same crops
    shards[0].set_epoch(1)
    assert items[0] != [(lab["track"], lab["start"]) for _, _, lab in shards[0]]
    loader = DataLoader(slakh.SlakhCrops(tiny_corpus, target="guitar", crop_frames=2048, items_per_epoch=4),
                        batch_size=2)
    assert [b[0].shape for b in loader] == [(2, 2, 2048)] * 2
    ds = slakh.SlakhCropDataset(tiny_corpus, target="bass", crop_frames=2048, length=8)
    halves = [list(DistributedSampler(ds, num_replicas=2, rank=r, shuffle=True, seed=0)) for r in (0, 1)]
    assert sorted(halves[0] + halves[1]) == list(range(8))
    with pytest.raises(DatasetError):
        slakh.SlakhCrops(tiny_corpus, rank=2, world_size=2)


def test_reads_real_slakh_quirks(tiny_corpus, tmp_path):
    """Real Slakh2100: split folders, no extras.json, unrendered stems, mono stems; roles from inst_class."""
    root = tmp_path / "slakh2100" / "train"
    track = root / "Track00001"
    shutil.copytree(tiny_corpus / "Track00001", track)
    (track / "extras.json").unlink()
    meta = yaml.safe_load((track / "metadata.yaml").read_text())
    roles = {sid: slakh.ROLE_OF_CLASS.get(s["inst_class"].lower(), "drums") for sid, s in meta["stems"].items()}
    piano = next(sid for sid, r in roles.items() if r == "piano")
    meta["stems"][piano]["audio_rendered"] = False
    (track / "stems" / f"{piano}.flac").unlink()
    bass = next(sid for sid, s in meta["stems"].items() if s["inst_class"] == "Bass")
    stereo = read_audio(track / "stems" / f"{bass}.flac")
    write_audio(track / "stems" / f"{bass}.flac", Audio(stereo.samples.mean(axis=0), 44100), overwrite=True)
    (track / "metadata.yaml").write_text(yaml.safe_dump(meta))
    tracks = slakh.list_tracks(tmp_path / "slakh2100")
    assert len(tracks) == 1 and tracks[0].extras is None
    tr = tracks[0]
    assert tr.stems[piano].audio is None and piano not in {s.id for s in tr.audio_stems()}
    assert tr.stems[bass].role == "bass" and tr.find("drums")[0].is_drum
    mix, target, labels = slakh.SlakhCropDataset(tmp_path / "slakh2100", target="Bass", crop_frames=8000, length=1)[0]
    assert target.shape == (2, 8000) and torch.equal(target[0], target[1])  # mono stem served as stereo
    assert piano not in labels["mix_stems"] and np.isnan(labels["tempo_bpm"])
    with pytest.raises(DatasetError, match="no track has a 'lead2'"):
        slakh.SlakhCropDataset(tmp_path / "slakh2100", target="lead2")
    with pytest.raises(DatasetError, match="corpus folder not found"):
        slakh.list_tracks(tmp_path / "nowhere")
    (track / "metadata.yaml").write_text("stems: [unclosed")
    with pytest.raises(DatasetError, match="metadata.yaml is unreadable"):
        slakh.list_tracks(tmp_path / "slakh2100")


def test_lpd5_roundtrip_in_pypianoroll_format(tmp_path):
    rng = np.random.default_rng(0)
    steps = 4 * 4 * 24  # 4 bars of 4/4 at 24 steps per beat
    tracks = {}
    for name in lpd5.LPD5_TRACKS:
        roll = np.zeros((steps, 128), np.uint8)
        hits = rng.integers(0, steps, 40)
        roll[hits, rng.integers(35, 80, 40)] = rng.integers(1, 128, 40)
        tracks[name] = roll
    song = lpd5.LPDSong("song", None, tracks, {n: i * 8 for i, n in enumerate(lpd5.LPD5_TRACKS)},
                        {n: n == "Drums" for n in lpd5.LPD5_TRACKS}, np.full(steps, 120.0),
                        np.arange(steps) % 96 == 0, 24)
    path = lpd5.write_npz(tmp_path / "a" / "b.npz", song)
    names = set(zipfile.ZipFile(path).namelist())
    assert {"info.json", "tempo.npy", "downbeat.npy", "pianoroll_0_csc_data.npy", "pianoroll_4_csc_indptr.npy",
            "pianoroll_3_csc_shape.npy", "pianoroll_2_csc_indices.npy"} <= names
    assert json.loads(zipfile.ZipFile(path).read("info.json"))["0"] == {"program": 0, "is_drum": True, "name": "Drums"}
    back = lpd5.read_npz(path)
    stack = back.stack()
    assert stack.shape == (5, steps, 128) and stack.dtype == np.uint8
    np.testing.assert_array_equal(stack, np.stack([tracks[n] for n in lpd5.LPD5_TRACKS]))
    assert back.is_drum["Drums"] and back.programs["Bass"] == 24 and back.downbeat.sum() == 4
    assert [s.name for s in lpd5.iter_songs(tmp_path)] == ["song"]
    # a file at another beat resolution is converted to 24 steps per beat, keeping every onset
    coarse = lpd5.LPDSong("c", None, {"Drums": tracks["Drums"][::2]}, {}, {}, np.full(steps // 2, 100.0), None, 12)
    conv = lpd5.read_npz(lpd5.write_npz(tmp_path / "c.npz", coarse))
    assert conv.tracks["Drums"].shape == (steps, 128) and conv.stack().shape == (5, steps, 128)
    assert (conv.tracks["Drums"] > 0).sum() >= (tracks["Drums"][::2] > 0).sum()
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(DatasetError, match="not a readable pypianoroll"):
        lpd5.read_npz(tmp_path / "bad.npz")
