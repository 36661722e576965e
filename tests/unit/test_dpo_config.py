"""`dpo:` is a choice of trainer: `dpo.trainer` selects the config type, each with its own fields
and checks; invalid combinations are errors that name the field."""

from __future__ import annotations

import pytest

from sumpref.config import ConfigError, PackedDPOConfig, TRLDPOConfig, config_from_dict


def _dpo(**fields):
    return config_from_dict({"dpo": fields}).dpo


def test_trainer_selects_the_config_type_and_trl_stays_the_default():
    assert isinstance(_dpo(), TRLDPOConfig)
    assert isinstance(_dpo(trainer="trl"), TRLDPOConfig)
    packed = _dpo(trainer="packed", max_tokens_per_batch=4096, attention="flex", logprob_chunk_size=512)
    assert isinstance(packed, PackedDPOConfig)
    assert (packed.max_tokens_per_batch, packed.attention, packed.logprob_chunk_size) == (4096, "flex", 512)


def test_unknown_trainer_names_the_field():
    with pytest.raises(ConfigError, match=r"dpo\.trainer: must be one of trl, packed \(got 'deepspeed'\)"):
        _dpo(trainer="deepspeed")


@pytest.mark.parametrize("field, value", [("max_tokens_per_batch", 4096), ("merge_adapter", True),
                                          ("length_normalize", True), ("ref_replicas", 2), ("attention", "flex"),
                                          ("fused_lora", False), ("compile_layers", True)])
def test_packed_only_fields_are_errors_on_the_trl_trainer(field, value):
    with pytest.raises(ConfigError, match=rf"dpo\.{field}: unknown field for dpo.trainer 'trl'"):
        _dpo(**{field: value})


def test_trl_only_fields_are_errors_on_the_packed_trainer():
    with pytest.raises(ConfigError, match=r"dpo\.precompute_ref_log_probs: unknown field for dpo.trainer 'packed'"):
        _dpo(trainer="packed", precompute_ref_log_probs=True)


@pytest.mark.parametrize("trainer", ["trl", "packed"])
def test_label_smoothing_needs_a_loss_that_uses_it(trainer):
    with pytest.raises(ConfigError, match=r"dpo\.label_smoothing: only loss_type sigmoid or robust"):
        _dpo(trainer=trainer, loss_type="ipo", label_smoothing=0.1)
    assert _dpo(trainer=trainer, loss_type="robust", label_smoothing=0.1).label_smoothing == 0.1


def test_packed_report_to_is_tensorboard_only():
    with pytest.raises(ConfigError, match=r"dpo\.report_to: the packed trainer .* \['wandb'\] would be ignored"):
        _dpo(trainer="packed", report_to=["tensorboard", "wandb"])
    assert _dpo(trainer="trl", report_to=["wandb"]).report_to == ("wandb",)


def test_packed_compile_under_zero3_is_an_error_naming_both_fields():
    with pytest.raises(ConfigError, match=r"dpo\.compile_layers with dpo\.deepspeed: zero3"):
        _dpo(trainer="packed", compile_layers=True, deepspeed="zero3", use_gpu=True)


def test_packed_merge_under_zero3_is_an_error_naming_both_fields():
    with pytest.raises(ConfigError, match=r"dpo\.merge_adapter with dpo\.deepspeed: zero3"):
        _dpo(trainer="packed", merge_adapter=True, deepspeed="zero3", use_gpu=True)
    assert _dpo(trainer="packed", merge_adapter=True, deepspeed="zero2", use_gpu=True).merge_adapter


@pytest.mark.parametrize("trainer", ["trl", "packed"])
def test_zero_max_steps_is_an_error(trainer):
    with pytest.raises(ConfigError, match=r"dpo\.max_steps"):
        _dpo(trainer=trainer, max_steps=0)


def test_packed_field_values_are_checked():
    with pytest.raises(ConfigError, match=r"dpo\.attention"):
        _dpo(trainer="packed", attention="paged")
    with pytest.raises(ConfigError, match=r"dpo\.logprob_chunk_size"):
        _dpo(trainer="packed", logprob_chunk_size=-1)


def test_overrides_switch_trainer_and_validate_the_result():
    cfg = config_from_dict({"dpo": {"beta": 0.2}}, ["dpo.trainer=packed", "dpo.max_tokens_per_batch=2048"])
    assert isinstance(cfg.dpo, PackedDPOConfig) and cfg.dpo.beta == 0.2 and cfg.dpo.max_tokens_per_batch == 2048


def test_trl_args_carry_every_shared_optimisation_field():
    """The TRL path used to ignore save_total_limit (hard-coded 2), warmup and weight decay."""
    pytest.importorskip("trl")
    from sumpref.training.trl_dpo import trl_args

    cfg = _dpo(save_total_limit=5, warmup_ratio=0.1, weight_decay=0.01, max_grad_norm=0.5,
               precompute_ref_log_probs=True, loss_type="ipo")
    args = trl_args(cfg, "/tmp/unused", has_eval=False, use_cpu=True)
    assert (args.save_total_limit, args.warmup_steps, args.weight_decay, args.max_grad_norm) == (5, 0.1, 0.01, 0.5)
    assert args.precompute_ref_log_probs is True and args.loss_type == ["ipo"] and args.deepspeed is None


def test_deepspeed_templates_ship_as_package_data():
    from sumpref.training.deepspeed_config import deepspeed_config, deepspeed_template

    assert deepspeed_template("zero3")["zero_optimization"]["stage"] == 3
    cfg = _dpo(trainer="packed", deepspeed="zero2", use_gpu=True, gradient_accumulation_steps=3, max_grad_norm=0.7)
    ds = deepspeed_config(cfg, world_size=4)
    assert (ds["train_batch_size"], ds["gradient_clipping"], ds["zero_optimization"]["stage"]) == (12, 0.7, 2)
