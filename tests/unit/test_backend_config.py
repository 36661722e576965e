"""Backend configs: a union keyed on `backend`, each engine with its own fields; a field of another
engine, or a bad value, is an error naming the field."""

from pathlib import Path

import pytest
from pydantic import TypeAdapter

from sumpref.config import (BACKEND_CONFIGS, BackendConfig, ConfigError, OpenAIBackendConfig, RunConfig,
                            TransformersBackendConfig, VLLMBackendConfig, config_from_dict, load_config)

ROOT = Path(__file__).resolve().parents[2]
OPENAI = {"backend": "openai", "base_url": "http://127.0.0.1:8000/v1"}


@pytest.mark.parametrize("data,cls", [
    ({}, TransformersBackendConfig),  # no `backend` key: transformers, as before the split
    ({"backend": "transformers"}, TransformersBackendConfig),
    ({"backend": "vllm"}, VLLMBackendConfig),
    (OPENAI, OpenAIBackendConfig),
])
def test_the_backend_key_selects_the_config_type(data, cls):
    cfg = config_from_dict({"policy": data, "judge": {"kind": "llm", "backend": data}})
    assert type(cfg.policy) is cls and type(cfg.judge.backend) is cls
    assert cfg.policy.backend == cls.model_fields["backend"].default


@pytest.mark.parametrize("backend,field,value", [
    ({}, "base_url", "http://x/v1"),
    ({}, "tensor_parallel_size", 2),
    ({}, "gpu_memory_utilization", 0.5),
    ({"backend": "transformers"}, "api_key_env", "K"),
    ({"backend": "vllm"}, "base_url", "http://x/v1"),
    ({"backend": "vllm"}, "max_concurrency", 4),
    (OPENAI, "tensor_parallel_size", 2),
    (OPENAI, "max_lora_rank", 16),
    (OPENAI, "enforce_eager", True),
])
def test_a_field_of_another_engine_is_an_unknown_field(backend, field, value):
    engine = backend.get("backend", "transformers")
    with pytest.raises(ConfigError, match=rf"policy\.{field}: unknown field for backend '{engine}'"):
        config_from_dict({"policy": {**backend, field: value}})
    with pytest.raises(ConfigError, match=rf"judge\.backend\.{field}: unknown field"):
        config_from_dict({"judge": {"kind": "llm", "backend": {**backend, field: value}}})


@pytest.mark.parametrize("policy,pattern", [
    ({"backend": "tgi"}, r"policy\.backend: must be one of transformers, vllm, openai \(got 'tgi'\)"),
    ({"backend": "openai"}, r"policy\.base_url: Field required"),
    ({**OPENAI, "num_gpus": 1}, r"policy\.num_gpus: .*must be 0 for backend 'openai'"),
    ({**OPENAI, "max_retries": -1}, r"policy\.max_retries"),
    ({**OPENAI, "request_timeout_s": 0}, r"policy\.request_timeout_s"),
    ({"backend": "vllm", "gpu_memory_utilization": 1.5}, r"policy\.gpu_memory_utilization"),
    ({"backend": "vllm", "tensor_parallel_size": 0}, r"policy\.tensor_parallel_size"),
    ({"backend": "transformers", "batch_size": 0}, r"policy\.batch_size"),
    ({"backend": "transformers", "num_gpus": 2}, r"policy\.num_gpus: .*at most 1 for backend 'transformers'"),
    ({"backend": "vllm", "num_gpus": 1, "tensor_parallel_size": 2}, r"policy\.tensor_parallel_size: .*needs num_gpus >= 2"),
])
def test_invalid_values_name_the_field(policy, pattern):
    with pytest.raises(ConfigError, match=pattern):
        config_from_dict({"policy": policy})


def test_overrides_can_switch_the_engine():
    cfg = config_from_dict({}, ["policy.backend=vllm", "policy.tensor_parallel_size=2", "policy.enforce_eager=true"])
    assert isinstance(cfg.policy, VLLMBackendConfig) and cfg.policy.tensor_parallel_size == 2 and cfg.policy.enforce_eager
    with pytest.raises(ConfigError, match=r"policy\.tensor_parallel_size: unknown field"):
        config_from_dict({}, ["policy.tensor_parallel_size=2"])


@pytest.mark.parametrize("cls", list(BACKEND_CONFIGS.values()))
def test_each_engine_round_trips_through_json(cls):
    """Prefect passes flow parameters as JSON: the dump must validate back into the same type."""
    cfg = cls(**({"base_url": "http://127.0.0.1:8000/v1"} if cls is OpenAIBackendConfig else {}))
    again = TypeAdapter(BackendConfig).validate_json(cfg.model_dump_json())
    assert again == cfg and type(again) is cls


def test_run_config_schema_offers_each_engine():
    """The Prefect UI renders the flow parameter's JSON schema: each engine is one option."""
    schema = RunConfig.model_json_schema()
    options = schema["properties"]["policy"]["oneOf"]
    titles = {schema["$defs"][o["$ref"].split("/")[-1]]["title"] for o in options}
    assert titles == {"TransformersBackendConfig", "VLLMBackendConfig", "OpenAIBackendConfig"}


def test_published_recipe_uses_typed_vllm_configs():
    cfg = load_config(ROOT / "configs" / "published.yaml")
    assert isinstance(cfg.policy, VLLMBackendConfig) and isinstance(cfg.judge.backend, VLLMBackendConfig)
    assert cfg.judge.backend.tensor_parallel_size == 4 and cfg.judge.backend.num_gpus == 4
    assert isinstance(load_config(ROOT / "configs" / "demo.yaml").policy, TransformersBackendConfig)
