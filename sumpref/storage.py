"""Where artifacts live: a local folder or any fsspec URI (`s3://bucket/prefix`, `gs://`, `memory://`).

Every helper takes a URI (or a plain local path) and works the same on both. Local writes are
atomic by rename; an object store has no rename, but a single PUT is atomic per object, so a
reader never sees half an object, and a stage folder counts as finished only once its `_SUCCESS`
object exists (written last, see `artifacts.py`).

Credentials and endpoints come from the usual environment of the backing library (for S3:
`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_ENDPOINT_URL`, ...), so Ray workers on other
nodes reach the same store with the same environment and no secret passes through a config file.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import uuid
from pathlib import Path
from urllib.parse import unquote, urlparse

LOCAL_SCHEMES = ("", "file")
SUCCESS = "_SUCCESS"  # a folder is finished once this object exists (see `artifacts.py`)
LOCK = "_LOCK"  # the lease of the run producing a remote folder (see `lease.py`); not part of it


def scheme(uri: str | Path) -> str:
    s = str(uri)
    parsed = urlparse(s)
    # A Windows drive letter or a bare path is local; anything else with "://" is a filesystem URI.
    return parsed.scheme if "://" in s else ""


def is_remote(uri: str | Path) -> bool:
    return scheme(uri) not in LOCAL_SCHEMES


def local_path(uri: str | Path) -> Path:
    """The local path of a plain path or `file://` URI."""
    s = str(uri)
    if scheme(s) == "file":
        return Path(unquote(urlparse(s).path))
    if is_remote(s):
        raise ValueError(f"{s!r} is not a local path")
    return Path(s)


def normalise(uri: str | Path) -> str:
    """A canonical URI: local paths become absolute `file://` URIs, remote ones lose trailing slashes."""
    if is_remote(uri):
        return str(uri).rstrip("/")
    return local_path(uri).resolve().as_uri()


def join(uri: str, *parts: str) -> str:
    return "/".join([str(uri).rstrip("/"), *(p.strip("/") for p in parts)])


def filesystem(uri: str):
    """(fsspec filesystem, path inside it) for `uri`."""
    from fsspec.core import url_to_fs

    return url_to_fs(str(uri))


def exists(uri: str) -> bool:
    if not is_remote(uri):
        return local_path(uri).exists()
    fs, path = filesystem(uri)
    fs.invalidate_cache()  # another process may have just written it
    return fs.exists(path)


def read_bytes(uri: str) -> bytes:
    if not is_remote(uri):
        return local_path(uri).read_bytes()
    fs, path = filesystem(uri)
    fs.invalidate_cache(path)  # a listing cached before another process (a Ray actor) wrote it would hide it
    return fs.cat_file(path)


def read_text(uri: str) -> str:
    return read_bytes(uri).decode()


def write_bytes(uri: str, data: bytes) -> None:
    """Write atomically: a local temp file renamed into place, or one PUT of the whole object."""
    if is_remote(uri):
        fs, path = filesystem(uri)
        fs.pipe_file(path, data)
        return
    path = local_path(uri)
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


def list_files(uri: str) -> list[str]:
    """Relative POSIX names of every file under the folder `uri` (empty if it does not exist)."""
    if not is_remote(uri):
        root = local_path(uri)
        return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()) if root.exists() else []
    fs, path = filesystem(uri)
    fs.invalidate_cache()
    if not fs.exists(path):
        return []
    base = path.rstrip("/") + "/"
    return sorted(f[len(base):] for f in fs.find(path) if f.startswith(base))


def upload_file(local: Path, uri: str) -> None:
    write_bytes(uri, Path(local).read_bytes())


def download_tree(uri: str, dest: Path, skip: tuple[str, ...] = ()) -> list[str]:
    """Copy every file under `uri` into `dest` (atomically per file); returns the names copied."""
    names = [n for n in list_files(uri) if n not in skip]
    for name in names:
        write_bytes(str(dest / name), read_bytes(join(uri, name)))
    return names


def check_writable(uri: str) -> str | None:
    """None if a file can be created and removed under `uri`, else the reason it cannot."""
    probe = join(str(uri), f".sumpref-probe-{uuid.uuid4().hex}")
    try:
        if is_remote(uri):
            fs, path = filesystem(probe)
            fs.pipe_file(path, b"")
            fs.rm_file(path)
        else:
            write_bytes(probe, b"")
            local_path(probe).unlink()
    except Exception as e:  # noqa: BLE001 - reported to the user with the field that chose the root
        return f"{type(e).__name__}: {e}".splitlines()[0]
    return None


def cache_dir(uri: str) -> Path:
    """The local staging/copy folder of a remote folder: under `$SUMPREF_ARTIFACT_CACHE`, else
    `$SUMPREF_CACHE/artifacts` (default cache as in `model_paths.cache_root`); one per machine."""
    base = os.environ.get("SUMPREF_ARTIFACT_CACHE") or \
        Path(os.environ.get("SUMPREF_CACHE") or Path.home() / ".cache" / "sumpref") / "artifacts"
    return Path(base) / hashlib.sha256(normalise(uri).encode()).hexdigest()[:24]


def local_copy(uri: str) -> Path:
    """Download the finished remote folder `uri` once; return the local copy.

    The copy counts as complete when its own `_SUCCESS` exists (written after the files). If the
    store no longer holds the folder, the copy loses its marker, so callers see it as missing."""
    local = cache_dir(uri)
    if not exists(join(uri, SUCCESS)):
        (local / SUCCESS).unlink(missing_ok=True)
        return local
    if not (local / SUCCESS).exists():
        download_tree(uri, local, skip=(SUCCESS, LOCK))
        write_bytes(str(local / SUCCESS), b"")
    return local


def localize(location: str) -> str:
    """A local path for a file or folder inside a finished artifact, given as a path or a URI
    (remote: the artifact is downloaded to the cache once). For libraries that need local disk."""
    if not is_remote(location):
        return str(local_path(location))
    parent, _, name = location.rstrip("/").rpartition("/")
    return str(local_copy(parent) / name)
