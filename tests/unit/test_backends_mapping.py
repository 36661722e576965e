"""Pure mapping functions of the generation backends: no model, no network, no vLLM."""

from __future__ import annotations

import json
import sys
from types import SimpleNamespace

import pytest

from sumpref.backends import openai_http as oh
from sumpref.backends import vllm_ray as vr
from sumpref.backends.base import BackendStats, SamplingParams
from sumpref.config import OpenAIBackendConfig, VLLMBackendConfig

SCHEMA = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}


def test_modules_import_without_vllm_ray_or_prefect():
    import os
    import subprocess
    from pathlib import Path

    code = ("import sys, sumpref.backends.vllm_ray, sumpref.backends.openai_http, sumpref.backends.prefix_sampling; "
            "print(sorted(m for m in ('vllm', 'ray', 'prefect', 'torch', 'httpx', 'openai') if m in sys.modules))")
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


def test_engine_kwargs_prefix_caching_tp_eager_and_lora():
    cfg = VLLMBackendConfig(model="m", tensor_parallel_size=2, dtype="bfloat16", max_model_len=4096,
                            gpu_memory_utilization=0.5, enforce_eager=True)
    kw = vr.engine_kwargs(cfg, "/models/m")
    assert kw["model"] == "/models/m" and kw["enable_prefix_caching"] is True
    assert kw["tensor_parallel_size"] == 2 and kw["distributed_executor_backend"] == "mp"
    assert kw["dtype"] == "bfloat16" and kw["max_model_len"] == 4096 and "enable_lora" not in kw
    assert kw["gpu_memory_utilization"] == 0.5 and kw["enforce_eager"] is True
    lora = vr.engine_kwargs(VLLMBackendConfig(adapter="/runs/round1/adapter", max_lora_rank=16))
    assert lora["enable_lora"] is True and lora["max_loras"] == 1 and lora["max_lora_rank"] == 16


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
    stats = BackendStats()
    vr.add_generation_stats(stats, [gens])
    assert stats.errors == {"short_response": 1} and stats.prompt_tokens == 3 and stats.output_tokens == 3


def test_cost_and_gpu_seconds():
    cfg = VLLMBackendConfig(usd_per_1m_prompt_tokens=2.0, usd_per_1m_output_tokens=4.0, usd_per_gpu_hour=3.6)
    stats = BackendStats()
    vr.add_cost(stats, cfg, 1_000_000, 500_000, 12.5)
    assert stats.cost_usd == pytest.approx(4.0 + 12.5 * 3.6 / 3600) and stats.gpu_seconds == pytest.approx(12.5)


# --- OpenAI wire format (retries, timeouts and Retry-After are the openai SDK's) ---------------


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
    be = oh.OpenAIBackend(OpenAIBackendConfig(base_url="http://127.0.0.1:9/v1", api_key_env="SUMPREF_UNIT_KEY"))
    be.load()
    assert be._api_key == "sk-unit-secret"
    blob = pickle.dumps(be)
    assert b"sk-unit-secret" not in blob and "sk-unit-secret" not in repr(be)
    again = pickle.loads(blob)
    assert again.cfg == be.cfg and again._api_key is None


def test_packaged_runtime_env_is_found_from_any_directory(monkeypatch, tmp_path):
    monkeypatch.delenv("SUMPREF_RUNTIME_ENV", raising=False)
    monkeypatch.chdir(tmp_path)  # package data, not a path relative to the source tree or the cwd
    env = vr.load_runtime_env()
    assert set(env) <= {"image_uri", "env_vars", "uv", "pip", "py_modules", "working_dir", "config"}
    assert env.get("image_uri") or env.get("uv") or env.get("pip")
    assert all(isinstance(v, str) for v in env.get("env_vars", {}).values())
    own = tmp_path / "mine.yaml"
    own.write_text("image_uri: my-registry/worker:1\n")
    assert vr.load_runtime_env(VLLMBackendConfig(runtime_env=str(own)).runtime_env) == {"image_uri": "my-registry/worker:1"}


def test_actor_runtime_env_per_engine(monkeypatch, tmp_path):
    from sumpref.config import TransformersBackendConfig
    from sumpref.fanout import actor_runtime_env

    own = tmp_path / "env.yaml"
    own.write_text("image_uri: my-registry/worker:2\n")
    assert actor_runtime_env(VLLMBackendConfig(runtime_env=str(own))) == {"image_uri": "my-registry/worker:2"}
    assert actor_runtime_env(TransformersBackendConfig()) is None
    monkeypatch.setenv("SUMPREF_UNIT_KEY", "sk-unit-secret")
    cfg = OpenAIBackendConfig(base_url="http://127.0.0.1:9/v1", api_key_env="SUMPREF_UNIT_KEY")
    # not as runtime_env env_vars (Ray logs those): run_shards passes it to the actor's constructor
    assert actor_runtime_env(cfg) == {"sumpref_secret_env": {"SUMPREF_UNIT_KEY": "sk-unit-secret"}}
