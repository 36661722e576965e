"""The lease in the store that keeps one producer per stage across machines, on a real
S3-compatible server (moto's server mode on 127.0.0.1): exclusive create, expiry of a lease whose
owner stopped heartbeating (a killed run), and a live lease that keeps a second run waiting."""

import json
import threading
import time

import pytest

from sumpref import lease, storage
from sumpref.artifacts import LOCK, run_stage, stage_key, write_table
from tests.s3_store import new_bucket

pytestmark = pytest.mark.integration


@pytest.fixture
def root(s3, tmp_path, monkeypatch):
    monkeypatch.setenv("SUMPREF_ARTIFACT_CACHE", str(tmp_path / "cache"))
    return f"{new_bucket()}/runs"


def lock_uri(root: str) -> str:
    return f"{root}/demo/{stage_key('demo', {}, [], '1')}/{LOCK}"


def produce(calls: list):
    def go(out):
        calls.append(time.monotonic())
        return {"rows": write_table(out / "t.parquet", [{"x": 1}])}
    return go


def test_only_one_of_two_creators_holds_the_lease(root):
    uri = f"{root}/x/{LOCK}"
    first = lease.acquire(uri, lambda: False, ttl=30)
    fs, path = storage.filesystem(uri)
    assert lease._put(fs, path, b"{}", create=True) is None  # If-None-Match: the object exists
    assert lease._put(fs, path, b"{}", if_tag='"not-its-etag"') is None  # If-Match on a stale version
    assert json.loads(storage.read_text(uri))["owner"] == first.token
    lease.release(first)
    assert not storage.exists(uri)


def test_stale_lease_of_a_dead_owner_expires(root):
    """A lease object nobody heartbeats (its owner was killed) is taken over after its ttl."""
    body = {"owner": "dead", "host": "elsewhere", "pid": 1, "beats": 0, "heartbeat": time.time(), "ttl": 2}
    storage.write_bytes(lock_uri(root), json.dumps(body).encode())
    calls, start = [], time.monotonic()
    ref = run_stage(root, "demo", {}, [], "1", produce(calls))
    assert len(calls) == 1 and calls[0] - start >= 2  # waited out the ttl, then produced
    assert ref.exists() and LOCK not in storage.list_files(ref.uri)


def test_live_lease_is_not_taken_over(root):
    """A lease that heartbeats keeps a second run waiting for many ttls; once released, that run
    produces. (Waiting and then reusing the holder's artifact: `test_concurrent_runs.py`.)"""
    holder = lease.acquire(lock_uri(root), lambda: False, ttl=1)
    beat = threading.Thread(target=lease._heartbeat, args=(holder,), daemon=True)
    beat.start()
    calls, result = [], {}
    waiter = threading.Thread(target=lambda: result.update(ref=run_stage(root, "demo", {}, [], "1", produce(calls))))
    waiter.start()
    time.sleep(4)
    assert waiter.is_alive() and calls == [] and not holder.lost
    lease.release(holder)
    waiter.join(timeout=60)
    assert not waiter.is_alive() and len(calls) == 1 and result["ref"].exists()
