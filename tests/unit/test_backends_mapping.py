"""Pure mapping and policy functions of the generation backends: no model, no network, no vLLM."""

from __future__ import annotations

import email.utils
import json
import sys
from types import SimpleNamespace

import pytest

from sumpref.backends import openai_http as oh
from sumpref.backends import vllm_ray as vr
from sumpref.backends.base import BackendStats, Generation, SamplingParams
from sumpref.config import BackendConfig

SCHEMA = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}


def test_modules_import_without_vllm_ray_or_prefect():
    import os
    import subprocess
    from pathlib import Path

    code = ("import sys, sumpref.backends.vllm_ray, sumpref.backends.openai_http, sumpref.backends.prefix_sampling; "
            "print(sorted(m for m in ('vllm', 'ray', 'prefect', 'torch', 'httpx') if m in sys.modules))")
    root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout
    assert out.strip() == "[]"


# --- vLLM mappings ----------------------------------------------------------------------------


def test_sampling_kwargs_sampling_and_schema():
    p = SamplingParams(n=10, temperature=0.8, top_p=0.95, max_new_tokens=100, seed=7, json_schema=SCHEMA)
    assert vr.sampling_kwargs(p) == {"n": 10, "temperature": 0.8, "top_p": 0.95, "max_tokens": 100, "seed": 7,
                                     "structured_outputs": {"json": SCHEMA}}


def test_sampling_kwargs_greedy_ignores_top_p_and_overrides():
    kw = vr.sampling_kwargs(SamplingParams(n=3, temperature=0.0, top_p=0.5, max_new_tokens=5), n=1, seed=42)
    assert kw == {"n": 1, "temperature": 0.0, "top_p": 1.0, "max_tokens": 5, "seed": 42}


def test_engine_kwargs_prefix_caching_tp_and_lora():
    cfg = BackendConfig(backend="vllm", model="m", tensor_parallel_size=2, dtype="bfloat16", max_model_len=4096)
    kw = vr.engine_kwargs(cfg, "/models/m")
    assert kw["model"] == "/models/m" and kw["enable_prefix_caching"] is True
    assert kw["tensor_parallel_size"] == 2 and kw["distributed_executor_backend"] == "mp"
    assert kw["dtype"] == "bfloat16" and kw["max_model_len"] == 4096 and "enable_lora" not in kw
    lora = vr.engine_kwargs(BackendConfig(backend="vllm", adapter="/runs/round1/adapter"))
    assert lora["enable_lora"] is True and lora["max_loras"] == 1 and lora["max_lora_rank"] >= 8


def test_chat_to_engine_input_uses_chat_template():
    class Tok:
        def apply_chat_template(self, messages, add_generation_prompt, tokenize):
            assert add_generation_prompt and tokenize
            return {"input_ids": [1, len(messages), 2]}

    assert vr.chat_to_engine_input([{"role": "user", "content": "x"}], Tok()) == {"prompt_token_ids": [1, 1, 2]}


def _completion(text, ids, reason, index=0):
    return SimpleNamespace(text=text, token_ids=ids, finish_reason=reason, index=index)


def test_generations_from_output_orders_counts_and_pads():
    out = SimpleNamespace(prompt_token_ids=[5, 6, 7],
                          outputs=[_completion("b", [1, 2], "length", 1), _completion("a", [1], "stop", 0)])
    gens = vr.generations_from_output(out, 3)
    assert [(g.text, g.output_tokens, g.finish_reason) for g in gens[:2]] == [("a", 1, "stop"), ("b", 2, "length")]
    assert all(g.prompt_tokens == 3 for g in gens)
    assert gens[2].finish_reason == "error" and gens[2].error == "short_response"


def test_ray_rows_one_row_per_sample_with_distinct_seeds_and_adapter():
    p = SamplingParams(n=3, temperature=0.8, seed=2, json_schema=SCHEMA)
    rows = vr.ray_rows("a1", [{"role": "user", "content": "x"}], p, adapter="s3://bucket/adapters/round1")
    assert [r["sample_idx"] for r in rows] == [0, 1, 2]
    assert len({r["sampling_params"]["seed"] for r in rows}) == 3
    assert all(r["sampling_params"]["n"] == 1 and r["model"] == "round1" for r in rows)
    assert json.loads(rows[0]["sampling_params"]["structured_outputs"]["json"]) == SCHEMA
    greedy = vr.ray_rows("a", [], SamplingParams(n=2, temperature=0.0))
    assert {r["sampling_params"]["seed"] for r in greedy} == {0}


def test_lora_model_field():
    assert vr.lora_model_field("s3://b/adapters/r1/") == ("s3://b/adapters", "r1")
    path, name = vr.lora_model_field("runs/adapter")
    assert path is None and name.endswith("runs/adapter") and name.startswith("/")


def test_collect_ray_rows_regroups_and_counts_missing_and_errors():
    p = SamplingParams(n=2, max_new_tokens=4)
    rows = [
        {"prompt_id": 1, "sample_idx": 1, "generated_text": "y", "num_input_tokens": 9, "num_generated_tokens": 4},
        {"prompt_id": 0, "sample_idx": 0, "generated_text": "x", "num_input_tokens": 8, "num_generated_tokens": 2},
        {"prompt_id": 0, "sample_idx": 0, "generated_text": "dup", "num_input_tokens": 8, "num_generated_tokens": 2},
        {"prompt_id": 0, "sample_idx": 1, "__inference_error__": "CUDA OOM", "num_input_tokens": 8},
    ]
    res = vr.collect_ray_rows(rows, [0, 1], p)
    assert res[0][0].text == "x" and res[0][0].finish_reason == "stop"
    assert res[0][1].finish_reason == "error" and res[0][1].error.startswith("engine_error:")
    assert res[1][0].error == "missing_row" and res[1][1].finish_reason == "length"
    stats = BackendStats()
    vr.add_generation_stats(stats, res)
    assert stats.errors == {"engine_error": 1, "missing_row": 1}
    assert stats.prompt_tokens == 8 + 9 and stats.output_tokens == 6


def test_collect_prompt_rows_from_actor_pool():
    gens = [Generation("t", 3, 2, "stop").__dict__, Generation("u", 3, 1, "stop").__dict__]
    rows = [{"prompt_id": 1, "generations_json": json.dumps(gens), "batch_gpu_s": 1.5}]
    res, gpu_s = vr.collect_prompt_rows(rows, 2, 2)
    assert [g.text for g in res[1]] == ["t", "u"] and gpu_s == 1.5
    assert [g.error for g in res[0]] == ["missing_row", "missing_row"]


def test_map_batches_and_processor_kwargs():
    cfg = BackendConfig(backend="vllm", replicas=4, num_gpus=1, num_cpus=2, accelerator_type="H100", batch_size=16)
    p = SamplingParams(n=10)
    kw = vr.map_batches_kwargs(cfg, p, {"image_uri": "img"})
    assert (kw["concurrency"], kw["num_gpus"], kw["num_cpus"], kw["accelerator_type"]) == (4, 1, 2, "H100")
    assert kw["runtime_env"] == {"image_uri": "img"} and kw["fn_constructor_kwargs"] == {"cfg": cfg, "params": p}
    tp = BackendConfig(backend="vllm", tensor_parallel_size=2)
    assert vr.map_batches_kwargs(tp, p)["num_gpus"] == 2
    pk = vr.processor_config_kwargs(tp.model_copy(update={"adapter": "s3://b/a/r1", "num_gpus": 2}), "/m")
    assert pk["model_source"] == "/m" and "model" not in pk["engine_kwargs"]
    assert "distributed_executor_backend" not in pk["engine_kwargs"] and pk["should_continue_on_error"] is True
    assert pk["dynamic_lora_loading_path"] == "s3://b/a" and "placement_group_config" not in pk


def test_cost_and_gpu_seconds():
    cfg = BackendConfig(backend="vllm", usd_per_1m_prompt_tokens=2.0, usd_per_1m_output_tokens=4.0)
    stats = BackendStats()
    vr.add_cost(stats, cfg, 1_000_000, 500_000, 12.5)
    assert stats.cost_usd == pytest.approx(4.0) and stats.gpu_seconds == pytest.approx(12.5)


# --- OpenAI retry policy and wire format -----------------------------------------------------


def test_backoff_grows_exponentially_with_full_jitter_and_cap():
    pol = oh.RetryPolicy(max_retries=6, base_s=0.5, max_s=4.0)
    assert [pol.delay(a, rand=1.0) for a in range(5)] == [0.5, 1.0, 2.0, 4.0, 4.0]
    assert pol.delay(3, rand=0.0) == 0.0 and pol.delay(3, rand=0.25) == 1.0
    assert all(0.0 <= pol.delay(2) <= 2.0 for _ in range(100))


def test_retry_after_is_a_lower_bound_and_capped():
    pol = oh.RetryPolicy(base_s=0.5, max_s=4.0, max_retry_after_s=60.0)
    assert pol.delay(0, retry_after_s=3.0, rand=1.0) == 3.0
    assert pol.delay(4, retry_after_s=1.0, rand=1.0) == 4.0
    assert pol.delay(0, retry_after_s=3600.0, rand=0.0) == 60.0


def test_parse_retry_after():
    assert oh.parse_retry_after("2") == 2.0 and oh.parse_retry_after("0.5") == 0.5
    assert oh.parse_retry_after(None) is None and oh.parse_retry_after("soon") is None
    now = 1_000_000.0
    assert oh.parse_retry_after(email.utils.formatdate(now + 30, usegmt=True), now=now) == pytest.approx(30, abs=1)
    assert oh.parse_retry_after(email.utils.formatdate(now - 30, usegmt=True), now=now) == 0.0


@pytest.mark.parametrize("status,retry", [(429, True), (500, True), (502, True), (503, True), (408, True),
                                          (400, False), (401, False), (404, False), (422, False)])
def test_status_classification(status, retry):
    assert oh.status_reason(status) == (f"http_{status}", retry)


def test_exception_classification():
    import httpx

    assert oh.exception_reason(httpx.ReadTimeout("t")) == ("timeout", True)
    assert oh.exception_reason(TimeoutError()) == ("timeout", True)
    assert oh.exception_reason(httpx.RemoteProtocolError("gone")) == ("connection_error", True)
    assert oh.exception_reason(httpx.ConnectError("refused")) == ("connection_error", True)
    assert oh.exception_reason(ValueError("x")) == ("client_error:ValueError", False)


def test_build_request_body():
    p = SamplingParams(n=10, temperature=0.8, top_p=0.95, max_new_tokens=100, seed=5, json_schema=SCHEMA)
    body = oh.build_request("gpt", [{"role": "user", "content": "x"}], p, n=4, seed_offset=2)
    assert body["n"] == 4 and body["seed"] == 7 and body["max_tokens"] == 100 and body["top_p"] == 0.95
    assert body["response_format"] == {"type": "json_schema",
                                       "json_schema": {"name": "output", "schema": SCHEMA, "strict": True}}
    assert "response_format" not in oh.build_request("gpt", [], SamplingParams(), n=1)


def test_parse_response_splits_usage_and_maps_finish_reasons():
    payload = {"choices": [{"index": 1, "message": {"content": "bbbb"}, "finish_reason": "length"},
                           {"index": 0, "message": {"content": None}, "finish_reason": "stop"}],
               "usage": {"prompt_tokens": 12, "completion_tokens": 10}}
    gens, p_tok, o_tok = oh.parse_response(payload)
    assert (p_tok, o_tok) == (12, 10)
    assert [g.text for g in gens] == ["", "bbbb"] and [g.finish_reason for g in gens] == ["stop", "length"]
    assert sum(g.output_tokens for g in gens) == 10 and all(g.prompt_tokens == 12 for g in gens)


@pytest.mark.parametrize("bad", [None, [], {"choices": None}, {"choices": [{"text": "x"}]}, {"error": "x"}])
def test_parse_response_rejects_malformed(bad):
    with pytest.raises(ValueError):
        oh.parse_response(bad)


def test_backend_is_cheap_and_keyless_when_pickled(monkeypatch):
    import pickle

    monkeypatch.setenv("SUMPREF_UNIT_KEY", "sk-unit-secret")
    be = oh.OpenAIBackend(BackendConfig(backend="openai", base_url="http://127.0.0.1:9/v1", api_key_env="SUMPREF_UNIT_KEY"))
    be.load()
    assert be._headers()["Authorization"] == "Bearer sk-unit-secret"
    blob = pickle.dumps(be)
    assert b"sk-unit-secret" not in blob and "sk-unit-secret" not in repr(be)
    assert pickle.loads(blob).policy == be.policy


def test_shipped_runtime_env_parses(monkeypatch):
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    monkeypatch.chdir(root)
    env = vr.load_runtime_env()
    assert set(env) <= {"image_uri", "env_vars", "uv", "pip", "py_modules", "working_dir", "config"}
    assert env.get("image_uri") or env.get("uv") or env.get("pip")
    assert all(isinstance(v, str) for v in env.get("env_vars", {}).values())
