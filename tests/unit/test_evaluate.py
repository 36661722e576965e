import numpy as np
import pytest

from sumpref.config import PairsConfig
from sumpref.evaluate import bootstrap_ci, model_metrics, render_report, sentence_count, win_rate


def rows(spec):
    return [{"article_id": f"a{i}", "summary": s, "n_correct": c, "n_words": len(s.split()), "article_words": 100}
            for i, (c, s) in enumerate(spec)]


def test_sentence_count():
    assert sentence_count("One. Two! Three?") == 3
    assert sentence_count("No final stop") == 1
    assert sentence_count("") == 0


def test_model_metrics_values():
    m = model_metrics(rows([(5, "a b c d e."), (3, "a b. c d. e f."), (1, "x y")]), 200, 200, 0)
    assert m["accuracy_ge3"]["value"] == 2 / 3 and m["accuracy_ge4"]["value"] == 1 / 3
    assert m["two_sentences"]["value"] == 2 / 3 and m["mean_correct"]["value"] == 3.0
    assert m["median_compression"]["value"] == 0.05
    lo, hi = m["accuracy_ge3"]["ci95"]
    assert 0 <= lo <= 2 / 3 <= hi <= 1


def test_win_rate_under_the_preference_rule():
    base = rows([(2, "w " * 30), (4, "w " * 30), (4, "w " * 30)])
    tuned = rows([(4, "w " * 30), (4, "w " * 10), (4, "w " * 31)])  # win (more correct), win (shorter), tie
    w = win_rate(tuned, base, PairsConfig(), 200, 0)
    assert (w["wins"], w["ties"], w["losses"]) == (2, 1, 0) and w["value"] == 2.5 / 3


def test_bootstrap_ci_brackets_the_mean_and_shrinks_with_n():
    rng = np.random.default_rng(0)
    small = bootstrap_ci(rng.random(20), np.mean, 500, np.random.default_rng(1))
    large = bootstrap_ci(rng.random(2000), np.mean, 500, np.random.default_rng(1))
    assert small[1] - small[0] > large[1] - large[0] > 0


def test_report_renders_every_metric():
    m = model_metrics(rows([(5, "a b c d e."), (1, "x y")]), 200, 50, 0)
    rep = {"run_name": "t", "eval_articles": 2, "judge": "cloze", "models": {"base": m, "tuned": m},
           "win_rates": {"tuned vs base": win_rate(rows([(5, "a")]), rows([(1, "b")]), PairsConfig(), 50, 0)},
           "training": [{"pairs_train": 3, "pairs_valid": 1, "steps": 2, "train_loss": 0.69}],
           "drops": {"articles": {"empty_article": 2}}, "accounting": {}, "artifacts": {}}
    md = render_report(rep)
    assert "| Accuracy >= 3 |" in md and "| articles | empty_article | 2 |" in md and "100.0%" in md


def test_api_baseline_only_when_the_config_asks(monkeypatch):
    """A key in the environment adds nothing paid; `eval.api_baseline` does, whatever the environment."""
    from sumpref.config import ConfigError, RunConfig, config_from_dict
    from sumpref.stages import eval_models, eval_spec

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    cfg = RunConfig()
    assert list(eval_models(cfg, cfg.policy)) == ["base", "tuned"]
    asked = config_from_dict({"eval": {"api_baseline": {"model": "gpt-4o", "base_url": "https://api.openai.com/v1"}}})
    monkeypatch.delenv("OPENAI_API_KEY")
    models = eval_models(asked, asked.policy)
    assert list(models) == ["base", "tuned", "gpt-4o"] and models["gpt-4o"].backend == "openai"
    assert "gpt-4o" not in eval_spec(cfg, *_refs(), cfg.policy, [], {}).config["models"]
    assert "gpt-4o" in eval_spec(asked, *_refs(), asked.policy, [], {}).config["models"]
    with pytest.raises(ConfigError, match="eval.openai_model: unknown field"):  # the old implicit switch is gone
        config_from_dict({"eval": {"openai_model": "gpt-4o"}})


def _refs():
    from sumpref.artifacts import ArtifactRef

    return [ArtifactRef(uri=f"file:///nowhere/{s}", stage=s, key="k", fingerprint=f"fp-{s}", rows=1) for s in ("articles", "questions")]
