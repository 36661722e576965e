"""The embedded model's one-time conversion: processes that ask at once convert it once."""

import multiprocessing as mp
import time
from pathlib import Path

from sumpref import model_paths

SPEC = "embedded:smollm2-135m-instruct"


def _slow_convert(gguf: Path, out: Path) -> None:
    """Stands in for the de-quantization (~25 s of CPU): records each call, writes a config."""
    with open(out.parent / "calls.log", "a") as f:
        f.write(f"{gguf.name}\n")
    time.sleep(1.0)
    (out / "config.json").write_text("{}")


def _resolve(cache: str, results) -> None:
    import os

    os.environ["SUMPREF_CACHE"] = cache
    model_paths._convert_gguf = _slow_convert
    results.put(model_paths.resolve_model(SPEC))


def test_processes_asking_at_once_convert_the_embedded_model_once(tmp_path):
    ctx = mp.get_context("fork")
    results = ctx.Queue()
    procs = [ctx.Process(target=_resolve, args=(str(tmp_path), results)) for _ in range(3)]
    for p in procs:
        p.start()
    got = {results.get(timeout=60) for _ in procs}
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    target = tmp_path / "models" / "smollm2-135m-instruct"
    assert got == {str(target)} and (target / "config.json").exists()
    assert (tmp_path / "models" / "calls.log").read_text().splitlines() == ["SmolLM2-135M-Instruct.Q4_1.gguf"]
    assert not [p for p in (tmp_path / "models").iterdir() if p.name.startswith(".smollm2") and p.is_dir()]


def test_a_converted_model_is_not_converted_again(tmp_path, monkeypatch):
    monkeypatch.setenv("SUMPREF_CACHE", str(tmp_path))
    monkeypatch.setattr(model_paths, "_convert_gguf", _slow_convert)
    first = model_paths.resolve_model(SPEC)
    assert model_paths.resolve_model(SPEC) == first
    assert len((tmp_path / "models" / "calls.log").read_text().splitlines()) == 1
