"""Content-addressed, atomically written stage artifacts.

A stage writes into `{root}/{stage}/{key}/`, where `key` hashes the stage's config slice, the
fingerprints of its inputs and the code version. Data files first, then `meta.json` (config,
lineage, counts), then the `_SUCCESS` marker last: its presence proves the stage finished, so a
rerun that finds it returns the existing `ArtifactRef` without recomputing anything. Tasks pass
these small frozen refs around, never the data itself.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable
from urllib.parse import unquote, urlparse

import pyarrow as pa
import pyarrow.parquet as pq

from sumpref import __version__

SUCCESS = "_SUCCESS"
META = "meta.json"


@dataclass(frozen=True)
class ArtifactRef:
    """Where a stage's output lives, what it holds, and a fingerprint of its content."""

    uri: str
    stage: str
    key: str
    fingerprint: str
    rows: int

    @property
    def path(self) -> Path:
        return uri_to_path(self.uri)

    def meta(self) -> dict:
        return json.loads((self.path / META).read_text())


def uri_to_path(uri: str) -> Path:
    parsed = urlparse(uri)
    if parsed.scheme in ("", "file"):
        return Path(unquote(parsed.path) if parsed.scheme else uri)
    raise ValueError(f"unsupported artifact URI scheme {parsed.scheme!r} in {uri!r}: use a local path or file://")


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def stage_key(stage: str, config_slice: Any, upstream: list[ArtifactRef | str], code_version: str) -> str:
    """sha256 over sorted JSON of exactly what decides the stage's output."""
    material = {
        "stage": stage,
        "config": config_slice,
        "upstream": [u.fingerprint if isinstance(u, ArtifactRef) else u for u in upstream],
        "code": f"{__version__}/{code_version}",
    }
    return hashlib.sha256(canonical_json(material).encode()).hexdigest()[:20]


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def write_table(path: Path, rows: list[dict] | pa.Table, schema: pa.Schema | None = None) -> int:
    """Write rows as Parquet atomically; returns the row count."""
    table = rows if isinstance(rows, pa.Table) else pa.Table.from_pylist(rows, schema=schema)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    atomic_write_bytes(path, sink.getvalue().to_pybytes())
    return table.num_rows


def read_table(path: Path) -> list[dict]:
    return pq.read_table(path).to_pylist()


def fingerprint_dir(path: Path) -> str:
    """sha256 over the names and bytes of the data files (meta and markers excluded)."""
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        rel = f.relative_to(path).as_posix()
        if rel in (META, SUCCESS) or f.name.startswith(".") or rel.startswith("logs/"):
            continue
        h.update(rel.encode())
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()[:20]


def load_ref(out: Path) -> ArtifactRef:
    meta = json.loads((out / META).read_text())
    return ArtifactRef(**meta["ref"])


def run_stage(
    root: str | Path,
    stage: str,
    config_slice: Any,
    upstream: list[ArtifactRef | str],
    code_version: str,
    produce: Callable[[Path], dict],
) -> ArtifactRef:
    """Return the finished artifact for this exact input, producing it only if missing.

    `produce(out_dir)` writes the data files into `out_dir` (it may resume from files a killed
    attempt left there) and returns `{"rows": int, ...counts}`; that dict goes into meta.json.
    """
    key = stage_key(stage, config_slice, upstream, code_version)
    out = uri_to_path(str(root)).resolve() / stage / key
    if (out / SUCCESS).exists():
        return load_ref(out)
    out.mkdir(parents=True, exist_ok=True)
    info = produce(out)
    ref = ArtifactRef(uri=out.as_uri(), stage=stage, key=key, fingerprint=fingerprint_dir(out), rows=int(info.get("rows", 0)))
    meta = {
        "ref": ref.__dict__,
        "config": config_slice,
        "upstream": [u.__dict__ if isinstance(u, ArtifactRef) else u for u in upstream],
        "code_version": f"{__version__}/{code_version}",
        "info": info,
    }
    atomic_write_text(out / META, json.dumps(meta, indent=2, sort_keys=True, default=str))
    atomic_write_text(out / SUCCESS, "")
    return ref
