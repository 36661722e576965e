"""vLLM for real, in a Ray actor of the worker environment (`.venv-vllm`), driven from this one
(which has no vLLM). One engine for the whole module: it starts with a random LoRA adapter, so
the base model and the adapter are served side by side, unmerged."""

from __future__ import annotations

import importlib.util

import pytest

from sumpref.backends.base import SamplingParams
from sumpref.backends.vllm_ray import PROMPT_TOO_LONG, load_runtime_env
from sumpref.prompts import summary_messages
from tests.integration.vllm_support import WORKER_PYTHON, EngineProbe, articles, cpu_vllm_config, make_random_adapter

pytestmark = [pytest.mark.integration, pytest.mark.vllm]


@pytest.fixture(scope="module")
def random_adapter(tmp_path_factory) -> str:
    return make_random_adapter(tmp_path_factory.mktemp("adapter"))


@pytest.fixture(scope="module")
def engine(random_adapter):
    import ray

    from sumpref.fanout import ensure_ray

    cfg = cpu_vllm_config(adapter=random_adapter)
    ensure_ray()
    actor = ray.remote(EngineProbe).options(num_cpus=1, runtime_env=load_runtime_env(cfg.runtime_env)).remote(cfg)
    yield actor
    ray.kill(actor)


def test_engine_runs_in_the_worker_environment_driver_has_no_vllm(engine):
    where = __import__("ray").get(engine.where.remote())
    assert where["python"] == str(WORKER_PYTHON) and where["vllm"] == "0.32.0"
    assert importlib.util.find_spec("vllm") is None


def test_n_samples_per_request_prompt_counted_once(engine):
    import ray

    prompts = [summary_messages(r["article"]) for r in articles(3)]
    params = SamplingParams(n=4, temperature=0.8, top_p=0.95, max_new_tokens=12, seed=5)
    gens, stats = ray.get(engine.generate.remote(prompts, params, None))
    assert [len(g) for g in gens] == [4, 4, 4]
    assert all(g.finish_reason in ("stop", "length") and g.output_tokens > 0 for gs in gens for g in gs)
    assert all(len({g.text for g in gs}) > 1 for gs in gens)  # sampled, not copied
    assert stats.requests == 3 and not stats.errors
    assert stats.prompt_tokens == sum(gs[0].prompt_tokens for gs in gens)  # once per article, not n times
    assert stats.output_tokens == sum(g.output_tokens for gs in gens for g in gs)
    again, _ = ray.get(engine.generate.remote(prompts, params, None))
    assert [[g.text for g in gs] for gs in again] == [[g.text for g in gs] for gs in gens]  # seeded


def test_llm_judge_structured_output_all_answers_parse(engine):
    import ray

    from sumpref.config import LLMJudgeConfig
    from sumpref.judging.cloze import build_cloze_questions
    from sumpref.judging.judges import SummaryJudge, questions_to_json

    cfg = cpu_vllm_config()
    judge = SummaryJudge(LLMJudgeConfig(backend=cfg, n_questions=5))
    rows = []
    for r in articles(6):
        q = build_cloze_questions(r["article"], r.get("highlights"), 5, 0)
        assert q.ok
        rows.append({"article_id": r["id"], "sample_idx": 0, "summary": r["highlights"] or r["article"][:300],
                     "questions": questions_to_json(q.questions)})
    out, stats = ray.get(engine.run_worker.remote(judge, rows))
    assert len(out) == 6 and not stats.errors
    assert [r["judge_error"] for r in out] == [None] * 6  # 100% parseable: decoding follows the JSON schema
    assert all(len(r["answers"]) == 5 and 0 <= r["n_correct"] <= 5 for r in out)


def test_adapter_served_unmerged_differs_from_base(engine, random_adapter):
    import ray

    prompts = [summary_messages(r["article"]) for r in articles(2)]
    params = SamplingParams(n=1, temperature=0.0, max_new_tokens=12)
    tuned, _ = ray.get(engine.generate.remote(prompts, params, random_adapter))
    base, _ = ray.get(engine.generate.remote(prompts, params, None))
    tuned_again, _ = ray.get(engine.generate.remote(prompts, params))  # the configured adapter
    assert [g[0].text for g in tuned] == [g[0].text for g in tuned_again]  # greedy: deterministic
    assert [g[0].text for g in tuned] != [g[0].text for g in base]
    assert all(g[0].finish_reason != "error" for g in tuned + base)


def test_prompt_longer_than_max_model_len_is_a_counted_drop(engine):
    import ray

    long_article = " ".join([articles(1, max_words=2000)[0]["article"]] * 3)  # well over 1024 tokens
    prompts = [summary_messages(long_article), summary_messages(articles(1)[0]["article"])]
    gens, stats = ray.get(engine.generate.remote(prompts, SamplingParams(n=2, temperature=0.7, max_new_tokens=8), None))
    assert [g.finish_reason for g in gens[0]] == ["error", "error"] and {g.error for g in gens[0]} == {PROMPT_TOO_LONG}
    assert gens[0][0].prompt_tokens > 1024
    assert all(g.finish_reason != "error" for g in gens[1])
    assert stats.errors == {PROMPT_TOO_LONG: 2} and stats.requests == 2
