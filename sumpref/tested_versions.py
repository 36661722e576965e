"""Which versions of transformers and PEFT our uses of their private internals were tested with.

A few fast paths reach past the public API: `sumpref.training.packed_logprobs` registers its own
attention function through transformers' attention and mask registries and reads the decoder's
`config._attn_implementation`; `packed_logprobs.disable_adapter_input_cast` switches off PEFT's
private per-layer input cast; `sumpref.training.lora_fused` patches PEFT's LoRA `Linear` forward
and reads its adapter bookkeeping (`lora_variant`, `active_adapters`, `merged`, ...). Each such
path asks `tested(package, path, fallback)` first; outside the tested range it warns once (a
`RuntimeWarning` naming the installed and the tested versions, what runs instead, and the fix) and
the caller takes its public-API path, which gives the same numbers, only slower. TRL is used
through its public API only (`trl.DPOConfig`, `trl.DPOTrainer`).

The ranges are the versions the tests ran with: the oldest on the GPU machine
(`benchmarks/RESULTS.md`), the newest in `constraints.txt` (CPU tests). A new version joins by
passing tests/unit/test_lora_fused.py, the packed-trainer parity tests and tests/gpu, then
raising the upper bound here (the range covers the upper bound's patch releases).
(`sumpref.backends.prefix_sampling` keeps its own `TESTED_TRANSFORMERS` for its sampler.)
"""

from __future__ import annotations

import functools
import importlib.metadata
import warnings

TESTED: dict[str, tuple[str, str]] = {
    "transformers": ("5.17.0", "5.25.0"),
    "peft": ("0.21.0", "0.22.0"),
}


def in_range(package: str, version: str) -> bool:
    """`version` lies between the oldest and the newest tested release (any patch of the newest)."""
    from packaging.version import Version

    lo, hi = (Version(v) for v in TESTED[package])
    v = Version(version)
    return lo <= v and v.release[:2] <= hi.release[:2]


@functools.lru_cache(maxsize=None)
def tested(package: str, path: str, fallback: str, version: str | None = None) -> bool:
    """Whether the installed `package` (or `version`) is in its tested range; warns once per
    (package, path) if not, saying that `path` uses `fallback` instead."""
    version = version or importlib.metadata.version(package)
    if in_range(package, version):
        return True
    lo, hi = TESTED[package]
    warnings.warn(f"{path} uses private {package} internals tested with {package} {lo}..{hi}.x, not {version}: "
                  f"{fallback} instead (same numbers, slower). Install the pinned versions "
                  f"(`pip install -c constraints.txt -e .`), or test this version and extend "
                  f"sumpref.tested_versions.TESTED.", RuntimeWarning, stacklevel=3)
    return False
