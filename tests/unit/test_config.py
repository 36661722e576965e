from pathlib import Path

import pytest

from sumpref.config import ConfigError, RunConfig, config_from_dict, load_config

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_are_valid_and_user_facing_default_is_the_hub():
    cfg = RunConfig()
    assert cfg.data.source == "abisee/cnn_dailymail" and cfg.data.hub_config == "3.0.0"
    assert cfg.policy.model.startswith("embedded:")


@pytest.mark.parametrize("recipe", sorted((ROOT / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_recipe_loads(recipe):
    if recipe.name.startswith("eval"):  # evaluation-flow recipes have their own schema
        from sumpref.evaluation.config import EvalFlowConfig, load_eval_config

        assert isinstance(load_eval_config(recipe), EvalFlowConfig)
        return
    cfg = load_config(recipe)
    assert isinstance(cfg, RunConfig)


def test_published_recipe_matches_the_method():
    cfg = load_config(ROOT / "configs" / "published.yaml")
    assert cfg.policy.model == "mistralai/Mistral-7B-Instruct-v0.1"
    assert cfg.judge.kind == "llm" and "Llama-3.1-70B" in cfg.judge.backend.model
    assert (cfg.dpo.beta, cfg.dpo.lora_r, cfg.dpo.lora_alpha, cfg.sampling.n) == (0.01, 8, 16, 10)


def test_unknown_key_is_an_error_naming_the_field():
    with pytest.raises(ConfigError, match=r"dpo\.betta: unknown field"):
        config_from_dict({"dpo": {"betta": 0.1}})


def test_invalid_value_names_the_field():
    with pytest.raises(ConfigError, match=r"sampling\.n"):
        config_from_dict({"sampling": {"n": 1}})


def test_overrides_apply_and_parse_yaml_scalars():
    cfg = config_from_dict({}, ["dpo.beta=0.2", "data.source=x.jsonl", "dpo.target_modules=[q_proj]"])
    assert cfg.dpo.beta == 0.2 and cfg.data.source == "x.jsonl" and cfg.dpo.target_modules == ("q_proj",)


def test_override_of_unknown_section_is_an_error():
    with pytest.raises(ConfigError, match="nosuch"):
        config_from_dict({}, ["nosuch.x=1"])


def test_openai_backend_needs_base_url():
    with pytest.raises(ConfigError, match="base_url"):
        config_from_dict({"policy": {"backend": "openai"}})


def test_cli_rejects_bad_config_before_any_work(tmp_path, capsys):
    from flows.full_pipeline import main

    bad = tmp_path / "bad.yaml"
    bad.write_text("data:\n  sorce: x.jsonl\n")
    assert main(["--config", str(bad)]) == 2
    assert "data.sorce: unknown field" in capsys.readouterr().err
