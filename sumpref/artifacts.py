"""Content-addressed, atomically written stage artifacts, on local disk or an object store.

A stage writes into `{root}/{stage}/{key}/`, where `key` hashes the stage's config slice, the
fingerprints of its inputs and the code version. Data files first, then `meta.json` (config,
lineage, counts), then the `_SUCCESS` marker last: its presence proves the stage finished, so a
rerun that finds it returns the existing `ArtifactRef` without recomputing anything. Tasks pass
these small frozen refs around, never the data itself.

`root` is a local folder or any fsspec URI (`s3://bucket/prefix`, see `storage.py`). On a remote
root a stage still produces into a local folder (libraries such as PEFT and TRL write folders),
a staging copy under `$SUMPREF_ARTIFACT_CACHE` (`cache_dir`); every file written there through
this module (tables, JSON, training checkpoints) is uploaded at once (`store_location` maps a
staged path to its URI, `mirrored` sets that up, also inside a Ray Train worker), so a killed
run loses only its unfinished files, and a rerun on any machine first downloads what the store
already holds. Shards are the exception: Ray actors write them straight to the store
(`fanout.run_shards`), so they never pass through the driver. When `produce` returns, the
remaining files go up, then `meta.json`, then `_SUCCESS`. The fingerprint is the same function of
names and bytes on both kinds of root (files missing from the staging copy are read from the
store). `ArtifactRef.path` is a local folder in both cases: the folder itself, or a read-only
copy of the finished remote folder, downloaded once per machine on first use.

Two runs of the same stage at once do the work once. Local root: `produce` runs under an
exclusive file lock beside the stage folder; the operating system drops the lock of a killed
process. Remote root: the same file lock on the staging copy (runs on one machine), and inside
it a lease object `{stage folder}/_LOCK` in the store (`lease.py`: exclusive create, heartbeat,
expiry), so runs on different machines also produce once: the second waits, then finds the
marker; a killed holder's lease expires after its ttl and a rerun proceeds. `_LOCK` is not data:
it is never fingerprinted, downloaded or left behind by a run that ends.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import threading
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from sumpref import __version__, faults, lease, storage

SUCCESS = storage.SUCCESS
LOCK = storage.LOCK
META = "meta.json"

# Staging folder -> the remote stage folder its files are uploaded to, while `produce` runs.
_MIRRORS: dict[Path, str] = {}
_MIRRORS_LOCK = threading.Lock()


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
        """A local folder with the artifact's files (a cached copy for a remote artifact)."""
        return uri_to_path(self.uri)

    def child(self, name: str) -> str:
        """A file or folder inside the artifact, as a local path (local root) or a URI (remote)."""
        return str(storage.local_path(self.uri) / name) if not storage.is_remote(self.uri) else storage.join(self.uri, name)

    def exists(self) -> bool:
        """Whether the finished artifact is still in the store (its marker is there)."""
        return storage.exists(storage.join(self.uri, SUCCESS))

    def meta(self) -> dict:
        return json.loads(storage.read_text(storage.join(self.uri, META)))


def uri_to_path(uri: str) -> Path:
    """The local folder for `uri`: itself if local, else the cached copy of the finished remote folder."""
    if not storage.is_remote(uri):
        return storage.local_path(uri)
    return storage.local_copy(uri)


cache_dir = storage.cache_dir
localize = storage.localize


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def root_relative(obj: Any, root: str | Path) -> Any:
    """`obj` (JSON-like) with every mention of the artifact root, as a path or a URI, replaced by
    `{root}`: a key names an upstream artifact by its place in the store (itself content-addressed),
    never by where the store lies, so the same run under another root has the same keys."""
    uri = storage.normalise(root)
    forms = {uri} | ({str(storage.local_path(uri))} if not storage.is_remote(uri) else set())
    pattern = re.compile("|".join(re.escape(f) for f in sorted(forms, key=len, reverse=True)) + r"(?=/|$|\s|,)")
    if isinstance(obj, str):
        return pattern.sub("{root}", obj)
    if isinstance(obj, dict):
        return {k: root_relative(v, root) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [root_relative(v, root) for v in obj]
    return obj


def stage_key(stage: str, config_slice: Any, upstream: list[ArtifactRef | str], code_version: str,
              root: str | Path | None = None) -> str:
    """sha256 over sorted JSON of exactly what decides the stage's output (with `root`: the config
    slice `root_relative`)."""
    material = {
        "stage": stage,
        "config": root_relative(config_slice, root) if root is not None else config_slice,
        "upstream": [u.fingerprint if isinstance(u, ArtifactRef) else u for u in upstream],
        "code": f"{__version__}/{code_version}",
    }
    return hashlib.sha256(canonical_json(material).encode()).hexdigest()[:20]


def store_location(path: Path | str) -> str | None:
    """The URI in the store of a file or folder at `path` inside a remote stage's staging folder
    while its `produce` runs (where Ray actors write shards directly), or None (local root)."""
    path = Path(path).absolute()
    with _MIRRORS_LOCK:
        mirrors = dict(_MIRRORS)
    for staging, uri in mirrors.items():
        if path.is_relative_to(staging):
            rel = path.relative_to(staging).as_posix()
            return uri if rel == "." else storage.join(uri, rel)
    return None


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write atomically (temp file + rename); inside a remote stage's staging folder, upload too."""
    storage.write_bytes(str(path), data)
    target = store_location(path)
    if target is not None:
        storage.write_bytes(target, data)
    faults.point("file")


def mirror_file(path: Path) -> None:
    """Put a file written at `path` by other means (an appended log) into the store too, if staged."""
    target = store_location(path)
    if target is not None:
        storage.upload_file(path, target)


def mirror_tree(folder: Path, last: str | None = None) -> None:
    """Put every file under `folder` into the store too, if staged; the file named `last` goes last
    (a checkpoint's completion marker)."""
    target = store_location(folder)
    if target is None:
        return
    files = sorted((p for p in Path(folder).rglob("*") if p.is_file()), key=lambda p: p.name == last)
    for f in files:
        storage.upload_file(f, storage.join(target, f.relative_to(folder).as_posix()))


def read_staged(path: Path) -> bytes:
    """A file of a staged folder: the local one, or the store's copy (written by a worker on another node)."""
    target = store_location(path)
    return Path(path).read_bytes() if Path(path).exists() or target is None else storage.read_bytes(target)


def unmirror_tree(folder: Path) -> None:
    """Delete the store's copy of a staged folder (a superseded checkpoint)."""
    target = store_location(folder)
    if target is not None:
        remove_tree(target)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def encode_table(rows: list[dict] | pa.Table, schema: pa.Schema | None = None) -> bytes:
    """The Parquet bytes of `rows` (what `write_table` writes)."""
    table = rows if isinstance(rows, pa.Table) else pa.Table.from_pylist(rows, schema=schema)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()


def write_table(path: Path, rows: list[dict] | pa.Table, schema: pa.Schema | None = None) -> int:
    """Write rows as Parquet atomically; returns the row count."""
    data = encode_table(rows, schema)
    atomic_write_bytes(path, data)
    return rows.num_rows if isinstance(rows, pa.Table) else len(rows)


def read_table(path: Path | str, columns: list[str] | None = None) -> list[dict]:
    """Rows (optionally only `columns`) of a Parquet file given as a local path or a URI."""
    if storage.is_remote(path):
        return pq.read_table(pa.BufferReader(storage.read_bytes(str(path))), columns=columns).to_pylist()
    return pq.read_table(storage.local_path(path), columns=columns).to_pylist()


def _is_data(rel: str) -> bool:
    """Data files are fingerprinted and uploaded; meta, markers, dotfiles and logs are not data."""
    return rel not in (META, SUCCESS, LOCK) and not rel.rsplit("/", 1)[-1].startswith(".") and not rel.startswith("logs/")


def _fingerprint(names: list[str], open_file: Callable[[str], Any]) -> str:
    """sha256 over the names and bytes of the data files among `names`, in path-component order."""
    h = hashlib.sha256()
    for rel in sorted((n for n in names if _is_data(n)), key=lambda n: n.split("/")):
        h.update(rel.encode())
        with open_file(rel) as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()[:20]


def fingerprint_dir(path: Path) -> str:
    """sha256 over the names and bytes of the data files (meta and markers excluded)."""
    names = [p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()]
    return _fingerprint(names, lambda rel: open(path / rel, "rb"))


def _fingerprint_remote(staging: Path, uri: str) -> tuple[str, bool]:
    """The fingerprint of the remote folder `uri` (equal to `fingerprint_dir` of a full copy), reading
    the files its staging copy holds locally and the rest (shards written by actors) from the store;
    and whether the staging copy holds every data file."""
    names = storage.list_files(uri)
    fs, base = storage.filesystem(uri)

    def open_file(rel: str):
        local = staging / rel
        return open(local, "rb") if local.is_file() else fs.open(f"{base.rstrip('/')}/{rel}", "rb")

    complete = all((staging / n).is_file() for n in names if _is_data(n))
    return _fingerprint(names, open_file), complete


def load_ref(out: Path | str) -> ArtifactRef:
    uri = str(out) if storage.is_remote(out) else storage.local_path(out).as_uri()
    meta = json.loads(storage.read_text(storage.join(uri, META)))
    return ArtifactRef(**meta["ref"])


@contextmanager
def _stage_lock(local: Path) -> Iterator[None]:
    from filelock import FileLock

    local.mkdir(parents=True, exist_ok=True)
    with FileLock(str(local.parent / f".{local.name}.lock")):  # beside the folder: not part of it
        yield


@contextmanager
def mirrored(staging: Path, uri: str) -> Iterator[None]:
    """While inside, files written under `staging` through this module also go to `uri`. `run_stage`
    does this for a remote stage; a Ray Train worker does it for the output folder it was given."""
    with _MIRRORS_LOCK:
        _MIRRORS[staging.absolute()] = uri
    try:
        yield
    finally:
        with _MIRRORS_LOCK:
            _MIRRORS.pop(staging.absolute(), None)


def run_stage(
    root: str | Path,
    stage: str,
    config_slice: Any,
    upstream: list[ArtifactRef | str],
    code_version: str,
    produce: Callable[[Path], dict],
) -> ArtifactRef:
    """Return the finished artifact for this exact input, producing it only if missing.

    `produce(out_dir)` writes the data files into the local folder `out_dir` (it may resume from
    files a killed attempt left there) and returns `{"rows": int, ...counts}`; that dict goes
    into meta.json.
    """
    key = stage_key(stage, config_slice, upstream, code_version, root)
    uri = storage.join(storage.normalise(root), stage, key)
    remote = storage.is_remote(uri)
    out = cache_dir(uri) if remote else storage.local_path(uri)

    def finished() -> bool:
        return storage.exists(storage.join(uri, SUCCESS))

    if finished():
        return load_ref(uri)
    with _stage_lock(out), (lease.hold(storage.join(uri, LOCK), finished) if remote else nullcontext(True)) as held:
        if held is None or finished():  # another run (here or on another machine) finished it while we waited
            return load_ref(uri)
        return _produce_stage(uri, out, stage, key, config_slice, upstream, code_version, produce)


def _produce_stage(uri: str, out: Path, stage: str, key: str, config_slice: Any, upstream: list[ArtifactRef | str],
                   code_version: str, produce: Callable[[Path], dict]) -> ArtifactRef:
    """Run `produce` (holding the stage's locks), then write meta.json and the marker, last."""
    remote = storage.is_remote(uri)
    started = time.perf_counter()
    with faults.in_stage(stage):
        if not remote:
            info = produce(out)
        else:
            (out / SUCCESS).unlink(missing_ok=True)
            storage.download_tree(uri, out, skip=(META, SUCCESS, LOCK))  # what a killed attempt left
            with mirrored(out, uri):
                info = produce(out)
            _upload_missing(out, uri)
        faults.point("produced")
    fingerprint, complete = _fingerprint_remote(out, uri) if remote else (fingerprint_dir(out), True)
    ref = ArtifactRef(uri=uri, stage=stage, key=key, fingerprint=fingerprint, rows=int(info.get("rows", 0)))
    meta = {
        "ref": ref.__dict__,
        "config": config_slice,
        "upstream": [u.__dict__ if isinstance(u, ArtifactRef) else u for u in upstream],
        "code_version": f"{__version__}/{code_version}",
        "info": info,
        "wall_s": round(time.perf_counter() - started, 2),  # this attempt's time in produce()
    }
    atomic_write_text(out / META, json.dumps(meta, indent=2, sort_keys=True, default=str))
    if remote:
        storage.write_bytes(storage.join(uri, META), (out / META).read_bytes())
        storage.write_bytes(storage.join(uri, SUCCESS), b"")
    if complete:  # else (shards only in the store) `ArtifactRef.path` downloads the folder on first use
        atomic_write_text(out / SUCCESS, "")  # last: the local copy is complete too
    return ref


def _upload_missing(staging: Path, uri: str) -> None:
    """Upload the files `produce` wrote without this module (model folders, plots, logs)."""
    have = set(storage.list_files(uri))
    for f in sorted(p for p in staging.rglob("*") if p.is_file()):
        rel = f.relative_to(staging).as_posix()
        if rel in (META, SUCCESS, LOCK) or rel.rsplit("/", 1)[-1].startswith("."):
            continue
        if rel not in have or rel.startswith("logs/"):
            storage.upload_file(f, storage.join(uri, rel))


def remove_tree(location: str | Path) -> None:
    """Delete an artifact folder (tests, cleanup) on local disk or in the store."""
    if storage.is_remote(location):
        fs, path = storage.filesystem(str(location))
        if fs.exists(path):
            fs.rm(path, recursive=True)
    else:
        shutil.rmtree(storage.local_path(location), ignore_errors=True)
