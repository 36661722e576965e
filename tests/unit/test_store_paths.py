"""What the remote-root paths compute without a server (fsspec's in-memory store): the remote
fingerprint equals the local one, name order included; row slices of an upstream file read back
the same rows, in order, that the local path passes as rows."""

import uuid

import fsspec

from sumpref import storage
from sumpref.artifacts import ArtifactRef, _fingerprint_remote, encode_table, fingerprint_dir
from sumpref.fanout import RowSlice, _input_rows
from sumpref.stages.shards import file_rows, file_shards, slices

FILES = {"a/x.parquet": b"1", "a-b/x.parquet": b"2", "shards/shard-00000.parquet": b"3", "logs/e.jsonl": b"not data",
         "meta.json": b"{}", "_LOCK": b"{}"}


def test_remote_fingerprint_equals_local_whichever_files_are_staged(tmp_path):
    uri = f"memory://fp-{uuid.uuid4().hex}"
    for name, data in FILES.items():
        storage.write_bytes(f"{uri}/{name}", data)
        storage.write_bytes(str(tmp_path / "full" / name), data)
    staged = tmp_path / "staged"  # the driver staged only some files (actors wrote the shards)
    storage.write_bytes(str(staged / "a-b/x.parquet"), b"2")
    assert _fingerprint_remote(staged, uri) == (fingerprint_dir(tmp_path / "full"), False)
    assert _fingerprint_remote(tmp_path / "full", uri)[1] is True


def _articles(n: int) -> list[dict]:
    return [{"id": f"a{i}", "split": "train" if i % 3 else "eval", "article": "x" * i} for i in range(n)]


def test_row_slices_read_the_rows_the_local_path_passes(tmp_path):
    rows = _articles(10)
    local = tmp_path / "art"
    storage.write_bytes(str(local / "articles.parquet"), encode_table(rows))
    uri = f"memory://rows-{uuid.uuid4().hex}"
    fsspec.filesystem("memory").pipe(f"{uri}/articles.parquet", encode_table(rows))

    def keep(r):
        return r["split"] == "train"

    as_rows = file_shards(ArtifactRef(local.as_uri(), "articles", "k", "f", 10), "articles.parquet", keep, ["split"], 3)
    as_slices = file_shards(ArtifactRef(uri, "articles", "k", "f", 10), "articles.parquet", keep, ["split"], 3)
    assert all(isinstance(s, RowSlice) for s in as_slices) and [len(s) for s in as_slices] == [len(s) for s in as_rows]
    tables: dict = {}
    assert [_input_rows(s, tables) for s in as_slices] == as_rows == slices([r for r in rows if keep(r)], 3)
    whole = file_rows(ArtifactRef(uri, "articles", "k", "f", 10), "articles.parquet", keep, ["split"])
    assert [_input_rows(s, tables) for s in slices(whole, 4)] == slices([r for r in rows if keep(r)], 4)
