"""Sentence embeddings for the `qa` judge's `support: embedding`, cached per text.

The all-MiniLM-L6-v2 model has one owner, `sumpref.similarity` (which ships, extracts and loads
it); this module only adds what the judge needs on top: a text cache and pickling without weights.

Contract:
- `SentenceEncoder(device="cpu", batch_size=64)` is cheap to construct and pickle (settings only);
  `load()` loads the model through `sumpref.similarity.load_model` (local files only). A missing
  model package or `sentence-transformers` raises `sumpref.similarity.MiniLMModelMissing`, whose
  message names what to install.
- `encode(texts)` -> float32 array (len(texts), 384): mean-pooled over word pieces, L2-normalised,
  so a dot product is the cosine similarity. Texts already seen are served from an in-memory cache
  (a judge embeds the same article sentences for every summary of the article).
"""

from __future__ import annotations

import numpy as np

DIM = 384  # all-MiniLM-L6-v2's embedding size


class SentenceEncoder:
    def __init__(self, device: str = "cpu", batch_size: int = 64):
        self.device, self.batch_size = device, batch_size
        self._model = None
        self._cache: dict[str, np.ndarray] = {}

    def __getstate__(self) -> dict:  # ship settings only; weights load where the work runs
        return {"device": self.device, "batch_size": self.batch_size}

    def __setstate__(self, state: dict) -> None:
        self.__init__(**state)

    def load(self) -> None:
        if self._model is None:
            from sumpref.similarity import load_model

            self._model = load_model(self.device)

    def encode(self, texts: list[str]) -> np.ndarray:
        self.load()
        todo = sorted({t for t in texts if t not in self._cache}, key=len)  # similar lengths pad less
        if todo:
            vecs = self._model.encode(todo, batch_size=self.batch_size, normalize_embeddings=True,
                                      convert_to_numpy=True, show_progress_bar=False)
            self._cache.update(zip(todo, np.asarray(vecs, dtype=np.float32)))
        if not texts:
            return np.zeros((0, DIM), dtype=np.float32)
        return np.stack([self._cache[t] for t in texts])
