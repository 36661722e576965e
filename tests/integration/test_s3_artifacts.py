"""Stage artifacts on a real S3-compatible server (moto's server mode on 127.0.0.1): files, then
meta.json, then _SUCCESS in the store; a stage killed midway resumes from the files it uploaded,
even on another machine (a fresh local cache)."""

import json

import pytest

from sumpref import storage
from sumpref.artifacts import META, SUCCESS, fingerprint_dir, read_table, remove_tree, run_stage, write_table
from tests.s3_store import new_bucket

pytestmark = pytest.mark.integration


@pytest.fixture
def bucket(s3, tmp_path, monkeypatch):
    monkeypatch.setenv("SUMPREF_ARTIFACT_CACHE", str(tmp_path / "cache"))
    return new_bucket()


def test_stage_on_s3_produces_once_and_writes_marker_last(bucket, tmp_path):
    calls = []

    def produce(out):
        calls.append(out)
        write_table(out / "shards" / "shard-00000.parquet", [{"x": 1}, {"x": 2}])
        (out / "adapter").mkdir()
        (out / "adapter" / "weights.bin").write_bytes(b"w")  # written by a library, not by us
        return {"rows": 2}

    ref = run_stage(f"{bucket}/runs", "demo", {"a": 1}, [], "1", produce)
    assert ref.uri.startswith(f"{bucket}/runs/demo/") and ref.exists()
    assert storage.list_files(ref.uri) == [SUCCESS, "adapter/weights.bin", META, "shards/shard-00000.parquet"]
    assert read_table(ref.child("shards/shard-00000.parquet")) == [{"x": 1}, {"x": 2}]
    assert ref.meta()["info"] == {"rows": 2} and ref.fingerprint == fingerprint_dir(ref.path)
    assert (ref.path / "adapter" / "weights.bin").read_bytes() == b"w"
    again = run_stage(f"{bucket}/runs", "demo", {"a": 1}, [], "1", produce)
    assert again == ref and len(calls) == 1


def test_killed_stage_resumes_from_uploaded_files_on_another_machine(bucket, tmp_path, monkeypatch):
    def crash(out):
        write_table(out / "shards" / "shard-00000.parquet", [{"x": 1}])
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        run_stage(f"{bucket}/runs", "demo", {}, [], "1", crash)
    stage_dir = f"{bucket}/runs/demo/" + storage.list_files(f"{bucket}/runs/demo")[0].split("/")[0]
    assert storage.list_files(stage_dir) == ["shards/shard-00000.parquet"]  # uploaded at once; no meta, no marker

    monkeypatch.setenv("SUMPREF_ARTIFACT_CACHE", str(tmp_path / "other-machine"))
    seen = []

    def finish(out):
        seen.append(sorted(p.relative_to(out).as_posix() for p in out.rglob("*.parquet")))
        write_table(out / "shards" / "shard-00001.parquet", [{"x": 2}])
        return {"rows": 2}

    ref = run_stage(f"{bucket}/runs", "demo", {}, [], "1", finish)
    assert seen == [["shards/shard-00000.parquet"]] and ref.rows == 2
    assert json.loads(storage.read_text(ref.child(META)))["ref"]["fingerprint"] == ref.fingerprint


def test_deleted_remote_artifact_is_seen_as_missing(bucket):
    ref = run_stage(f"{bucket}/runs", "demo", {}, [], "1", lambda out: {"rows": write_table(out / "t.parquet", [{"x": 1}])})
    assert (ref.path / SUCCESS).exists()
    remove_tree(ref.uri)
    assert not ref.exists() and not (ref.path / SUCCESS).exists()


def test_unwritable_remote_root_is_reported(s3):
    assert storage.check_writable("s3://no-such-bucket-sumpref/runs") is not None
