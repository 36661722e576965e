"""Accounting is a property of the kept shards: each shard's backend stats are recorded beside it when
it is written, and a stage's `backend` is their sum, whichever attempt wrote each shard (no Ray:
a stage whose shards are all written returns without starting any)."""

import json

from sumpref.backends.base import BackendStats
from sumpref.fanout import kept_stats, run_shards, shard_path, stats_path, write_shard


def stats(i: int) -> BackendStats:
    return BackendStats(prompt_tokens=100 + i, output_tokens=10 * i, requests=2, retries=i % 2, gpu_seconds=0.5,
                        cost_usd=0.01, errors={"timeout": 1} if i == 2 else {})


class NoWorker:
    """A stage whose shards are all written must not run a worker."""

    def load(self):
        raise AssertionError("loaded")

    def run(self, rows):
        raise AssertionError("ran")


def test_a_resumed_stage_counts_every_kept_shard(tmp_path):
    shards = [[{"x": i}] for i in range(4)]
    clean, resumed = tmp_path / "clean", tmp_path / "resumed"
    for i in range(4):
        write_shard(clean, i, shards[i], stats(i))
    # The first attempt wrote shards 0 and 1, and the record of shard 2 before it was killed: its
    # record says 999 prompt tokens that no kept shard holds.
    for i in (0, 1):
        write_shard(resumed, i, shards[i], stats(i))
    stats_path(resumed, 2).write_text(json.dumps({"prompt_tokens": 999}))
    # The rerun computes shards 2 and 3 (same content, so the same counts), rewriting 2's record first.
    for i in (2, 3):
        write_shard(resumed, i, shards[i], stats(i))

    want = {"prompt_tokens": 406, "output_tokens": 60, "requests": 8, "retries": 2, "gpu_seconds": 2.0,
            "cost_usd": 0.04, "errors": {"timeout": 1}}
    for out in (clean, resumed):
        info = run_shards(out, shards, NoWorker())
        assert info["shards_reused"] == 4 and info["shards_computed"] == 0
        assert {k: v if k != "cost_usd" else round(v, 6) for k, v in info["backend"].items()} == want


def test_the_record_is_written_before_its_shard_and_outside_the_fingerprint(tmp_path):
    from sumpref.artifacts import fingerprint_dir

    write_shard(tmp_path / "a", 0, [{"x": 1}], stats(0))
    write_shard(tmp_path / "b", 0, [{"x": 1}], stats(3))  # other timings and counts, same rows
    assert shard_path(tmp_path / "a", 0).exists() and stats_path(tmp_path / "a", 0).exists()
    assert fingerprint_dir(tmp_path / "a") == fingerprint_dir(tmp_path / "b")


def test_a_shard_without_a_record_is_counted_as_missing(tmp_path):
    write_shard(tmp_path, 0, [{"x": 1}], stats(1))
    write_shard(tmp_path, 1, [{"x": 2}], stats(1))
    stats_path(tmp_path, 1).unlink()
    total, missing = kept_stats(tmp_path, 2)
    assert missing == 1 and total.prompt_tokens == 101
    assert run_shards(tmp_path, [[{"x": 1}], [{"x": 2}]], NoWorker())["shards_without_stats"] == 1
