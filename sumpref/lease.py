"""A lease object in the store: "one producer at a time" across machines that share a remote root.

Contract: `hold(uri, done)` is a context manager that yields a held `Lease` on the object `uri`
(`{stage folder}/_LOCK`, see `artifacts.run_stage`), or yields None as soon as `done()` is true
while it waits (another holder finished the work). The lease object is JSON: owner token, host,
pid, heartbeat count and wall time, ttl.

- **Acquire**: an exclusive create (`If-None-Match: *` on S3, through s3fs's `mode="create"`):
  of two machines that create it at once, exactly one succeeds.
- **Heartbeat**: a thread rewrites the object every `ttl/4` seconds, conditionally on its ETag
  (`If-Match`), so a holder notices when its lease was taken over (`Lease.lost`).
- **Expiry**: a waiter treats the lease as stale when the object has not changed for the
  holder's `ttl` (recorded in the object) by the waiter's own monotonic clock (no clock agreement
  needed), or when its recorded heartbeat is older than `2 * ttl` by the waiter's wall clock (a
  waiter that arrives long after the holder died need not wait a whole ttl; this shortcut assumes
  clocks agree within `ttl`). It then takes the lease over with a conditional PUT on the ETag it
  saw: of several waiters, one wins.
- **Release**: the holder deletes the object if its ETag is still the holder's.

A killed holder stops heartbeating, so its lease expires and a rerun proceeds. Stores without
conditional writes (fsspec's generic `mode="create"` checks, then writes) fall back to write, wait,
read back, keep if the token is ours: two machines that race within the settle time can both
believe they hold it. Residual races on S3 are two: a holder stalled for more than `ttl` (a long
GC or a suspended VM) can lose its lease to a waiter while still producing (it logs that and
finishes: both write the same content-addressed files, `_SUCCESS` last, so the result is sound,
the work merely done twice); and release is check-then-delete, so a takeover in that instant
loses its object (the next waiter then creates a fresh one). The tests' S3 server (moto) checks a
condition and then writes, not as one step, so there exactly simultaneous requests could both pass;
AWS S3 evaluates the condition atomically.

`ttl` defaults to `$SUMPREF_LEASE_TTL_S` or 60 seconds.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import socket
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator

from sumpref import storage

log = logging.getLogger("sumpref")

TTL_ENV = "SUMPREF_LEASE_TTL_S"
SETTLE_S = 1.0  # fallback stores only: how long to wait before reading a just-written lease back


def default_ttl() -> float:
    return float(os.environ.get(TTL_ENV) or 60)


@dataclass
class Lease:
    uri: str
    token: str
    ttl: float
    tag: str | None = None  # the ETag (S3) or content of the object as last written by us
    beats: int = 0
    lost: bool = False
    _stop: threading.Event = field(default_factory=threading.Event)

    def body(self) -> bytes:
        return json.dumps({"owner": self.token, "host": socket.gethostname(), "pid": os.getpid(), "beats": self.beats,
                           "heartbeat": time.time(), "ttl": self.ttl}).encode()


def _conditional(fs) -> bool:
    """Whether the store honours S3's conditional writes (`If-None-Match`, `If-Match`)."""
    return type(fs).__name__ == "S3FileSystem"


def _tag(fs, path: str) -> str | None:
    """The object's current version tag (ETag on S3, else its bytes), or None if it is absent."""
    fs.invalidate_cache(path)
    try:
        return fs.info(path)["ETag"] if _conditional(fs) else fs.cat_file(path).decode()
    except FileNotFoundError:
        return None


def _put(fs, path: str, data: bytes, *, create: bool = False, if_tag: str | None = None) -> str | None:
    """Write the lease object, exclusively or only over version `if_tag`; its new tag, or None if refused."""
    try:
        if _conditional(fs):
            extra = {"IfMatch": if_tag} if if_tag is not None else {}
            out = fs.pipe_file(path, data, mode="create" if create else "overwrite", **extra)
            return (out or {}).get("ETag") or _tag(fs, path)
        if if_tag is not None and _tag(fs, path) != if_tag:
            return None
        fs.pipe_file(path, data, mode="create" if create else "overwrite")
        time.sleep(SETTLE_S)  # let a racing writer land, then see who won
        return data.decode() if _tag(fs, path) == data.decode() else None
    except (FileExistsError, FileNotFoundError):
        return None
    except OSError as e:  # s3fs maps a failed If-Match (HTTP 412) to OSError(EINVAL)
        if if_tag is not None and e.errno == errno.EINVAL:
            return None
        raise


def _holder(fs, path: str, ttl: float) -> tuple[float | None, float]:
    """The holder's last heartbeat (wall time) and its ttl (ours if unreadable)."""
    try:
        body = json.loads(fs.cat_file(path))
        return float(body["heartbeat"]), float(body["ttl"])
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return None, ttl


def acquire(uri: str, done: Callable[[], bool], ttl: float | None = None, poll_s: float = 1.0) -> Lease | None:
    """Block until this process holds the lease on `uri` (returned) or `done()` is true (None)."""
    fs, path = storage.filesystem(uri)
    lease = Lease(uri=uri, token=uuid.uuid4().hex, ttl=ttl or default_ttl())
    seen_tag, seen_since, waited = None, time.monotonic(), False
    while True:
        lease.tag = _put(fs, path, lease.body(), create=True)
        if lease.tag is not None:
            return lease
        if done():
            return None
        tag = _tag(fs, path)
        if tag != seen_tag:
            seen_tag, seen_since = tag, time.monotonic()
        beat, ttl_held = _holder(fs, path, lease.ttl) if tag is not None else (None, lease.ttl)
        stale = time.monotonic() - seen_since > ttl_held or (beat is not None and time.time() - beat > 2 * ttl_held)
        if tag is not None and stale:
            lease.tag = _put(fs, path, lease.body(), if_tag=tag)
            if lease.tag is not None:
                log.warning("%s: took over a stale lease (no heartbeat for %.0fs)", uri, ttl_held)
                return lease
        if not waited:
            log.info("%s: held by another run; waiting for it to finish or its lease to expire", uri)
            waited = True
        time.sleep(poll_s)


def _heartbeat(lease: Lease) -> None:
    fs, path = storage.filesystem(lease.uri)
    while not lease._stop.wait(lease.ttl / 4):
        lease.beats += 1
        tag = _put(fs, path, lease.body(), if_tag=lease.tag)
        if tag is None:
            lease.lost = True
            log.warning("%s: lease lost to another run (this run was silent for over %.0fs); finishing anyway",
                        lease.uri, lease.ttl)
            return
        lease.tag = tag


def release(lease: Lease) -> None:
    lease._stop.set()
    if lease.lost:
        return
    fs, path = storage.filesystem(lease.uri)
    if _tag(fs, path) == lease.tag:
        fs.rm_file(path)


@contextmanager
def hold(uri: str, done: Callable[[], bool], ttl: float | None = None) -> Iterator[Lease | None]:
    """Hold the lease on `uri` for the body (heartbeating), or yield None if `done()` came true first."""
    lease = acquire(uri, done, ttl)
    if lease is None:
        yield None
        return
    beat = threading.Thread(target=_heartbeat, args=(lease,), daemon=True, name="sumpref-lease")
    beat.start()
    try:
        yield lease
    finally:
        lease._stop.set()
        beat.join(timeout=5)
        release(lease)
