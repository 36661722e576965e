"""A tiny but real pipeline configuration on the shared CNN/DM articles (CPU, embedded model).

Sized for the tests' time on two shared cores: articles cut to 96 tokens, 16-token summaries, our
packed trainer (TRL's DPOTrainer is exercised where a test names `dpo.trainer: trl`: the pipeline
flow test and the Ray Train test). Every stage still runs for real on the embedded model."""

from pathlib import Path

from sumpref.config import RunConfig, config_from_dict

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def tiny_config(root: Path, iterations: int = 1, **sections) -> RunConfig:
    data = {
        "name": "it",
        "iterations": iterations,
        "root": str(root),
        # Two one-CPU actors: generation is memory-bound on one thread, so two use both cores.
        "policy": {"batch_size": 12, "num_cpus": 1, "replicas": 2},
        "judge": {"kind": "cloze"},
        "data": {"source": str(SHARED / "cnndm_cliff.jsonl"), "num_articles": 10, "eval_fraction": 0.2,
                 "max_article_tokens": 96},
        "sampling": {"n": 3, "max_new_tokens": 16, "shard_size": 2},
        "dpo": {"trainer": "packed", "max_steps": 2, "per_device_batch_size": 2, "max_length": 192, "gradient_checkpointing": False,
                "learning_rate": 1e-4, "beta": 0.1, "logging_steps": 1},
        "eval": {"max_new_tokens": 16, "bootstrap_samples": 100},
    }
    for section, values in sections.items():
        data[section] = {**data.get(section, {}), **values}
    return config_from_dict(data)
