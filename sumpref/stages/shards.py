"""What the generation stages share: cutting rows into shards, the Ray resources of a shard
actor, reading back a sharded artifact, and counting drop reasons."""

from __future__ import annotations

from sumpref.artifacts import ArtifactRef
from sumpref.config import BackendConfig, JudgeConfig
from sumpref.raygen import actor_runtime_env, read_shards


def chunks(rows: list, size: int) -> list[list]:
    return [rows[i:i + size] for i in range(0, len(rows), size)]


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
    """The LLM judge needs its backend's resources. The embedded judges (`qa`, `cloze`) run no model
    on a GPU: `judge.backend.replicas` CPU actors of `judge.backend.num_cpus` each (default one)."""
    if j.kind == "llm":
        return resources(j.backend)
    return dict(replicas=j.backend.replicas, num_cpus=j.backend.num_cpus, num_gpus=0)


def judge_shard_size(j: JudgeConfig, embedded_rows: int) -> int:
    """Rows per shard: `embedded_rows` for the embedded judges (cheap rows), else a few LLM batches."""
    return j.backend.batch_size * 4 if j.kind == "llm" else embedded_rows


def shard_rows(ref: ArtifactRef) -> list[dict]:
    """All rows of a sharded artifact (questions, samples, judged), in shard order."""
    return read_shards(ref.path, ref.meta()["info"]["shards"])


def question_map(questions: ArtifactRef) -> dict[str, str]:
    """article id -> questions (JSON), for the articles whose questions could be written."""
    return {q["article_id"]: q["questions"] for q in shard_rows(questions) if q["questions"]}
