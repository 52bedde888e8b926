"""Shared test set-up: headless Qt, offline model hubs, and small thread counts for the 2-core machine."""

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "2")

# A suite started in the background (`cmd &` in a script) inherits SIGINT ignored, and so would every `backline`
# process the tests start: the Ctrl+C tests would see nothing arrive. Ctrl+C is what they test, so give it back.
import signal  # noqa: E402

if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


# --- tiny_corpus: two short rendered songs in the Slakh2100 layout (corpus helper) --------------------------
import pytest  # noqa: E402

TINY_CORPUS_SEED = 0


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory):
    """2 songs of 8–12 bars rendered by `backline data synth` (seed 0, all six parts); ~1 min on 2 cores."""
    from backline.engines.data.synth import synthesize

    out = tmp_path_factory.mktemp("tiny_corpus")
    synthesize(out, 2, TINY_CORPUS_SEED, jobs=1, min_bars=8, max_bars=12, progress=False, log=lambda msg: None)
    return out
