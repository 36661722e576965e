"""What the generation stages share: cutting rows into shards (or, for an upstream file in the
store, into `RowSlice`s the actors read themselves), the Ray resources of a shard actor, reading
back a sharded artifact, and counting drop reasons."""

from __future__ import annotations

from typing import Callable

from sumpref import storage
from sumpref.artifacts import ArtifactRef, read_table
from sumpref.config import BackendConfig, JudgeConfig
from sumpref.fanout import RowSlice, actor_runtime_env, read_shards


def chunks(rows: list, size: int) -> list[list]:
    return [rows[i:i + size] for i in range(0, len(rows), size)]


def slices(rows: list[dict] | RowSlice, size: int) -> list[list[dict] | RowSlice]:
    """`chunks` of rows, or of a `RowSlice` (into smaller slices of the same file)."""
    if isinstance(rows, RowSlice):
        return [RowSlice(rows.uri, tuple(part)) for part in chunks(list(rows.index), size)]
    return chunks(rows, size)


def file_rows(ref: ArtifactRef, name: str, keep: Callable[[dict], bool], columns: list[str]) -> list[dict] | RowSlice:
    """The rows of `ref`'s file `name` for which `keep` (given only `columns`) is true, in order.

    Remote root: a `RowSlice`, so actors read the rows from the store and the driver reads only
    `columns`; local root: the rows themselves (actors need not share the driver's disk)."""
    location = ref.child(name)
    if not storage.is_remote(location):
        return [r for r in read_table(location) if keep(r)]
    return RowSlice(location, tuple(i for i, r in enumerate(read_table(location, columns=columns)) if keep(r)))


def file_shards(ref: ArtifactRef, name: str, keep: Callable[[dict], bool], columns: list[str],
                size: int) -> list[list[dict] | RowSlice]:
    """`file_rows`, cut into shards of `size`."""
    return slices(file_rows(ref, name, keep, columns), size)


def counts(rows: list[dict], key: str = "reason") -> dict[str, int]:
    out: dict[str, int] = {}
    for r in rows:
        out[r[key]] = out.get(r[key], 0) + 1
    return dict(sorted(out.items()))


def resources(b: BackendConfig) -> dict:
    """`run_shards` keyword arguments for actors running backend `b`."""
    return dict(replicas=b.replicas, num_cpus=b.num_cpus, num_gpus=b.num_gpus, accelerator_type=b.accelerator_type,
                runtime_env=actor_runtime_env(b))


def judge_resources(j: JudgeConfig) -> dict:
    """`run_shards` keyword arguments for the judge's actors: the judge type's own resources (the LLM
    judge's backend; CPU actors for the embedded judges), and its model backend's runtime_env."""
    return {**j.actor_resources(), "runtime_env": actor_runtime_env(j.model_backend)}


def judge_shard_size(j: JudgeConfig, embedded_rows: int) -> int:
    """Rows per shard: `embedded_rows` for the embedded judges (cheap rows), else a few LLM batches."""
    return j.shard_size(embedded_rows)


def shard_rows(ref: ArtifactRef) -> list[dict]:
    """All rows of a sharded artifact (questions, samples, judged), in shard order."""
    return read_shards(ref.path, ref.meta()["info"]["shards"])


def question_map(questions: ArtifactRef) -> dict[str, str]:
    """article id -> questions (JSON), for the articles whose questions could be written."""
    return {q["article_id"]: q["questions"] for q in shard_rows(questions) if q["questions"]}
