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
        # One one-CPU actor: the tests run on several pytest-xdist workers, so the other core is busy
        # with other workers' tests, and a second actor would only add its start-up (a Ray worker
        # process, torch, the model: 17 of a run's 109 busy core-seconds). The tests about several
        # actors (test_actor_pool, test_store_shards, the kill tests on two actors and two nodes) ask for two.
        # Sampling is one shard of all 8 training articles, decoded together (batch_size 24 = 8
        # prompts x n 3): on CPU each decoding step reads every weight once however many rows it
        # decodes, so 8 prompts in one group decode in about half the time of 4 groups of 2
        # (benchmarks/cpu_decode_groups.py). The tests about shards set their own `shard_size`.
        "policy": {"batch_size": 24, "num_cpus": 1, "replicas": 1},
        "judge": {"kind": "cloze"},
        "data": {"source": str(SHARED / "cnndm_cliff.jsonl"), "num_articles": 10, "eval_fraction": 0.2,
                 "max_article_tokens": 96},
        "sampling": {"n": 3, "max_new_tokens": 16, "shard_size": 8},
        "dpo": {"trainer": "packed", "max_steps": 2, "per_device_batch_size": 2, "max_length": 192, "gradient_checkpointing": False,
                "learning_rate": 1e-4, "beta": 0.1, "logging_steps": 1},
        # No extractive baselines by default (two more evaluation stages per run, each with its actors):
        # the tests about them ask for them (the pipeline flow test, the evaluation flow test).
        "eval": {"max_new_tokens": 16, "bootstrap_samples": 100, "baselines": [], "equal_length": False},
    }
    for section, values in sections.items():
        data[section] = {**data.get(section, {}), **values}
    return config_from_dict(data)


def run_stages(cfg: RunConfig, through: str = "eval", after=None) -> dict:
    """The pipeline's stages in order, without Prefect, up to and including `through`: articles,
    questions, the library's round (`sumpref.stages.run_round`, the steps the round subflow runs),
    then the evaluation, as `flows.full_pipeline` sequences them for one round. Returns each
    stage's `ArtifactRef` by name (`eval`: the comparison), and calls `after(stage)` as each one
    ends. What the kill tests and benchmarks/concurrent_runs.py run in a process of their own."""
    from sumpref import stages

    if cfg.iterations != 1:
        raise ValueError(f"run_stages runs one round; iterations is {cfg.iterations}")
    refs: dict = {}

    def finished(stage: str, ref) -> bool:
        refs[stage] = ref
        if after is not None:
            after(stage)
        return stage == through

    if finished("articles", stages.articles_spec(cfg).run()) or finished(
            "questions", stages.questions_spec(cfg, refs["articles"], cfg.judge).run()):
        return refs
    r = stages.Round(cfg, refs["articles"], refs["questions"], cfg.policy)
    for stage, ref in stages.run_round(r):
        if finished(stage, ref):
            return refs
    upstream = {k: refs[k] for k in ("articles", "samples", "judged", "pairs")}
    finished("eval", stages.evaluate(stages.run_eval_config(cfg, r.tuned(refs)), refs["articles"], refs["questions"],
                                     upstream, [refs["dpo"]]))
    return refs
