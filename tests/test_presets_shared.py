"""The one preset class and TOML reader (engines/core/presets.py): path safety and the listing flags."""

from __future__ import annotations

import shutil

import pytest

from backline.engines.bass.presets import PRESET_DIR, load_preset
from backline.engines.core.errors import ConfigError
from backline.engines.core.presets import find_preset, load_presets, read_preset
from backline.host.cli import main as cli_main


def _preset(folder, name="mine", reference="finger.flac", gm_program=34):
    folder.mkdir(parents=True, exist_ok=True)
    if reference == "finger.flac" and not (folder / "finger.flac").exists():
        shutil.copy(PRESET_DIR / "finger.flac", folder / "finger.flac")
    lines = [f'name = "{name}"', 'engine = "bass"', f'reference = "{reference}"', f"gm_program = {gm_program}"]
    path = folder / f"{name if '/' not in name else 'odd'}.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_preset_name_cannot_reach_outside_the_cache(tmp_path):
    path = _preset(tmp_path / "p", name="../../x")
    with pytest.raises(ConfigError, match="not a plain name"):
        read_preset(path)
    assert not (tmp_path / "x").exists()


def test_a_reference_must_lie_beside_the_preset(tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    shutil.copy(PRESET_DIR / "finger.flac", outside / "secret.flac")
    for reference in (str(outside / "secret.flac"), "../elsewhere/secret.flac"):
        path = _preset(tmp_path / "p", reference=reference)
        with pytest.raises(ConfigError, match="outside the preset's folder"):
            read_preset(path)
    # a folder the user chose explicitly is allowed
    assert read_preset(path, allowed_dirs=[outside]).reference == (outside / "secret.flac").resolve()
    # the host skips such a preset with one line instead of loading it
    presets, problems = load_presets("bass", [tmp_path / "p"])
    assert "mine" not in {p.name for p in presets}
    assert any("mine.toml skipped" in line and "outside" in line for line in problems)


def test_preset_lookup_by_name_stays_in_the_preset_folders(tmp_path, capsys):
    _preset(tmp_path / "x")
    for name in ("../../x/mine", "/etc/passwd", "..", "a/b"):
        with pytest.raises(ConfigError, match="not a plain name"):
            load_preset(name)
        with pytest.raises(ConfigError, match="not a plain name"):
            find_preset("bass", name)
    mix = tmp_path / "mix.wav"
    mix.write_bytes(b"")
    assert cli_main(["generate", "bass", "--mix", str(mix), "--out", str(tmp_path / "o"), "--preset",
                     "../../x/mine", "--config", "debug"]) == 2
    err = capsys.readouterr().err
    assert "known presets: finger" in err and err.count("\n") == 1  # the engine's declared presets, no path


def test_bad_preset_values_are_one_line_errors(tmp_path):
    with pytest.raises(ConfigError, match="gm_program"):
        read_preset(_preset(tmp_path / "a", gm_program=999))
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "bad.toml").write_text('name = "bad\n')
    with pytest.raises(ConfigError, match="not valid TOML"):
        read_preset(tmp_path / "b" / "bad.toml")


@pytest.mark.parametrize("engine", ["bass", "drums"])
def test_list_presets_works_on_its_own(engine, capsys):
    assert cli_main(["generate", engine, "--list-presets"]) == 0
    out = capsys.readouterr().out
    names = [line.split()[0] for line in out.strip().splitlines()]
    if engine == "bass":
        assert len(names) >= 8 and names[0] == "finger"
    else:
        assert {"rock", "funk", "shuffle", "half-time", "bossa", "disco", "ballad"} <= set(names)


def test_generate_without_mix_or_out_says_what_is_missing(tmp_path, capsys):
    assert cli_main(["generate", "bass"]) == 2
    assert "--mix and --out are needed" in capsys.readouterr().err
    assert cli_main(["generate", "drums", "--band-midi", str(tmp_path / "b.mid")]) == 2
    assert "--out is needed" in capsys.readouterr().err
