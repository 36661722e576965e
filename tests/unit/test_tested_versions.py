"""Private transformers/PEFT internals run only on the versions they were tested with; elsewhere a
warning names the versions and the public-API path runs instead. The backends declare the
capability flags the judges read."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

from sumpref import tested_versions as tv
from sumpref.backends import BACKENDS

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("package", sorted(tv.TESTED))
def test_the_tested_range_includes_its_ends_and_the_newest_patches(package):
    lo, hi = tv.TESTED[package]
    major, minor, _ = hi.split(".")
    assert tv.in_range(package, lo) and tv.in_range(package, hi) and tv.in_range(package, f"{major}.{minor}.9")
    assert not tv.in_range(package, f"{major}.{int(minor) + 1}.0") and not tv.in_range(package, "0.0.1")


def test_the_installed_versions_are_tested():
    """The constraints file and the tested ranges must move together."""
    for package in tv.TESTED:
        assert tv.in_range(package, importlib.metadata.version(package)), package


def test_an_untested_version_warns_once_with_the_fix_and_reports_false():
    tv.tested.cache_clear()
    with pytest.warns(RuntimeWarning, match=r"peft 0\.21\.0\.\.0\.22\.0\.x, not 0\.99\.0: the fallback instead.*constraints\.txt"):
        assert tv.tested("peft", "some path", "the fallback", "0.99.0") is False
    assert tv.tested("peft", "some path", "the fallback", "0.99.0") is False  # cached: no second warning
    tv.tested.cache_clear()


def test_lora_fusion_and_flex_fall_back_on_untested_versions(monkeypatch):
    from sumpref.training import lora_fused, packed_logprobs

    monkeypatch.setattr(lora_fused, "tested", lambda *a, **k: False)
    assert lora_fused.fuse_lora_linears(object()) == 0  # never looks at the model
    monkeypatch.setattr(packed_logprobs, "tested", lambda *a, **k: False)
    assert packed_logprobs.disable_adapter_input_cast(object()) == 0
    import torch

    assert packed_logprobs.PackedLogProbs(torch.nn.Linear(1, 1), attention="flex").attention == "dense"


def test_private_imports_sit_behind_a_version_check():
    """Every module importing transformers/PEFT internals (a private module path, or a `._name`
    of theirs) also calls a version check."""
    private = re.compile(r"from (transformers\.(integrations|masking_utils|models|generation)|peft\.tuners)\b"
                         r"|config\._attn_implementation")
    for path in (ROOT / "sumpref").rglob("*.py"):
        text = path.read_text()
        if private.search(text):
            assert "tested(" in text or "tested_transformers(" in text, path.relative_to(ROOT)


@pytest.mark.parametrize("name", sorted(BACKENDS))
def test_every_backend_declares_its_capability_flags(name):
    module, cls = BACKENDS[name]
    source = (ROOT / Path(*module.split("."))).with_suffix(".py").read_text()  # vllm_ray: no vllm import needed
    body = source[source.index(f"class {cls}"):]
    for flag in ("supports_json_schema", "supports_template"):
        assert re.search(rf"^    {flag}(: bool)? = (True|False)", body, re.M), f"{cls}.{flag}"
    from sumpref.backends.base import Backend

    assert {"supports_json_schema", "supports_template"} <= set(Backend.__annotations__)
