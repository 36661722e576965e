"""Paired comparison of models (sumpref.evaluation.metrics), the two judge-independent metrics, and the
evaluation flow's config: names, baseline, overrides, and a missing adapter caught before any work."""

import numpy as np
import pytest

from sumpref.config import ConfigError, PairsConfig
from sumpref.evaluation.metrics import (bootstrap_indices, bootstrap_median, compare_models, paired_mean_diff,
                                        paired_win_rate, render_comparison, rouge_l, win_scores)


def judged(spec, prefix="a"):
    return [{"article_id": f"{prefix}{i}", "summary": s, "n_correct": c, "n_words": len(s.split()), "article_words": 100,
             "finish_reason": "stop"} for i, (c, s) in enumerate(spec)]


def overlap(summaries, references):
    """A stand-in for the MiniLM similarity (unit tests load no model): word-set Jaccard."""
    out = []
    for s, r in zip(summaries, references):
        a, b = set((s or "").lower().split()), set((r or "").lower().split())
        out.append(len(a & b) / len(a | b) if r and (a | b) else float("nan"))
    return np.array(out)


ARTICLES = {f"a{i}": {"article": "the cat sat on the mat while the dog slept by the door", "highlights": "The cat sat on the mat."}
            for i in range(6)}


def test_bootstrap_median_by_hand():
    v = np.array([1.0, 2.0, 10.0, np.nan])
    m = bootstrap_median(v, np.array([[0, 1, 2, 3], [0, 0, 0, 3], [2, 2, 1, 1]]))  # medians 2, 1, 6
    assert m["value"] == 2.0 and m["n"] == 3
    assert m["ci95"] == (pytest.approx(np.percentile([2, 1, 6], 2.5)), pytest.approx(np.percentile([2, 1, 6], 97.5)))


def test_rouge_l_against_the_highlights():
    assert rouge_l("The cat sat on the mat.", "The cat sat on the mat.") == pytest.approx(1.0)
    # LCS "cat sat mat" = 3 of 4 summary tokens, 3 of 6 reference tokens: F1 = 2PR/(P+R) = 0.6
    assert rouge_l("a cat sat mat", "the cat sat on the mat") == pytest.approx(2 * 0.75 * 0.5 / 1.25)
    assert rouge_l("anything", "unrelated words") == 0.0
    assert np.isnan(rouge_l("a summary", None)) and np.isnan(rouge_l("a summary", "  "))


def test_paired_diff_by_hand():
    a, b = np.array([1.0, 0.0, 1.0]), np.array([0.0, 0.0, 1.0])
    idx = np.array([[0, 1, 2], [0, 0, 0], [1, 1, 2]])  # diffs per resample: 1/3, 1, 0
    d = paired_mean_diff(a, b, idx)
    assert d["value"] == pytest.approx(1 / 3) and d["n"] == 3
    assert d["ci95"][0] == pytest.approx(np.percentile([1 / 3, 1, 0], 2.5))
    assert d["ci95"][1] == pytest.approx(np.percentile([1 / 3, 1, 0], 97.5))


def test_paired_diff_skips_articles_missing_on_either_side():
    a, b = np.array([1.0, np.nan, 3.0]), np.array([0.0, 5.0, np.nan])
    d = paired_mean_diff(a, b, bootstrap_indices(3, 200, 0))
    assert d["value"] == 1.0 and d["n"] == 1 and d["ci95"] == (1.0, 1.0)


def test_the_pairing_removes_article_difficulty():
    # Article difficulty varies a lot; the model is always exactly 0.1 better: the paired CI is a point.
    rng = np.random.default_rng(0)
    base = rng.random(50) * 10
    d = paired_mean_diff(base + 0.1, base, bootstrap_indices(50, 500, 1))
    assert d["ci95"][0] == pytest.approx(0.1) and d["ci95"][1] == pytest.approx(0.1)


def test_identical_models_tie_and_their_difference_ci_contains_zero():
    rows = judged([(5, "w " * 20), (2, "w " * 30), (4, "w " * 12), (0, "w " * 9), (3, "w " * 40), (1, "x y z")])
    rep = compare_models({"base": rows, "same": [dict(r) for r in rows]}, ARTICLES, "base", PairsConfig(), 200, 300, 0,
                         similarity=overlap)
    c = rep["comparisons"]["same vs base"]
    assert c["win_rate"]["value"] == 0.5 and (c["win_rate"]["ties"], c["win_rate"]["n"]) == (6, 6)
    assert c["win_rate"]["ci95"] == (0.5, 0.5)
    for key, d in c["diffs"].items():
        assert d["ci95"][0] <= 0 <= d["ci95"][1], key


def test_a_strictly_better_model_has_a_ci_above_zero():
    base = judged([(1, "w " * 20), (2, "w " * 20), (0, "w " * 20), (1, "w " * 20), (2, "w " * 20), (1, "w " * 20)])
    better = judged([(4, "w " * 20), (5, "w " * 20), (3, "w " * 20), (5, "w " * 20), (4, "w " * 20), (3, "w " * 20)])
    rep = compare_models({"base": base, "better": better}, ARTICLES, "base", PairsConfig(), 200, 300, 0,
                         similarity=overlap)
    c = rep["comparisons"]["better vs base"]
    assert c["win_rate"]["value"] == 1.0 and c["win_rate"]["wins"] == 6 and c["win_rate"]["ci95"][0] > 0.5
    assert c["diffs"]["mean_correct"]["ci95"][0] > 0 and c["diffs"]["accuracy_ge3"]["value"] == 1.0
    assert rep["models"]["better"]["accuracy_ge3"]["value"] == 1.0 and rep["models"]["base"]["accuracy_ge3"]["value"] == 0.0
    md = render_comparison({**rep, "name": "t", "data_source": "x.jsonl", "judge": "cloze", "drops": {"better": {"gen": 1}}})
    assert "| Win rate (preference rule; win 1, tie 0.5) | 100.0% [100.0, 100.0] |" in md
    assert "| Accuracy >= 3 (judge) | +100.0 pp [+100.0, +100.0] |" in md and "| better | gen | 1 |" in md
    assert "| Median compression | 20.0% [20.0, 20.0] | 20.0% [20.0, 20.0] |" in md
    nohl = compare_models({"base": base, "better": better}, {a: {**v, "highlights": None} for a, v in ARTICLES.items()},
                          "base", PairsConfig(), 200, 50, 0, similarity=overlap)
    md = render_comparison({**nohl, "name": "t", "data_source": "x.jsonl", "judge": "qa"})
    assert "| ROUGE-L F1 vs highlights | n/a | n/a |" in md and "nan" not in md


def test_win_scores_follow_the_training_preference_rule():
    base = judged([(2, "w " * 30), (4, "w " * 30), (4, "w " * 30)])
    tuned = judged([(4, "w " * 30), (4, "w " * 10), (4, "w " * 31)])  # win (more correct), win (shorter), tie
    s = win_scores(tuned, base, ["a0", "a1", "a2", "a9"], PairsConfig())
    assert s[:3].tolist() == [1.0, 1.0, 0.5] and np.isnan(s[3])
    w = paired_win_rate(s, bootstrap_indices(4, 200, 0))
    assert w["value"] == 2.5 / 3
    assert (w["wins"], w["ties"], w["losses"], w["n"]) == (2, 1, 0, 3)


def test_independent_metrics_are_paired_too():
    arts = {"a0": {"article": "alpha beta gamma delta", "highlights": "alpha beta"},
            "a1": {"article": "alpha beta gamma delta", "highlights": None}}
    copy = judged([(3, "alpha beta"), (3, "gamma delta")])
    invent = judged([(3, "zeta eta"), (3, "theta iota")])
    rep = compare_models({"copy": copy, "invent": invent}, arts, "copy", PairsConfig(), 200, 100, 0,
                         similarity=overlap)
    d = rep["comparisons"]["invent vs copy"]["diffs"]
    assert d["novel_bigrams"]["value"] == 1.0 and d["novel_bigrams"]["n"] == 2
    assert d["rouge_l"]["value"] == -1.0 and d["rouge_l"]["n"] == 1  # only a0 has highlights
    assert d["similarity"]["value"] == -1.0 and d["similarity"]["n"] == 1
    assert d["lead_copy_share"]["value"] == -0.5  # "alpha beta" starts the article; "gamma delta" does not


def test_comparisons_beyond_the_baseline():
    rows = judged([(5, "w " * 20), (2, "w " * 30)])
    rep = compare_models({"base": rows, "tuned": rows, "lead": rows}, ARTICLES, "base", PairsConfig(), 200, 50, 0,
                         [("tuned", "base"), ("tuned", "lead")], similarity=overlap)
    assert list(rep["comparisons"]) == ["tuned vs base", "tuned vs lead"]
    assert rep["comparisons"]["tuned vs lead"]["baseline"] == "lead"


# --- the evaluation flow's config ---

def _cfg(**kw):
    from sumpref.evaluation.config import eval_config_from_dict

    data = {"models": [{"name": "base"}, {"name": "tuned", "backend": {"adapter": "x"}}], "baseline": "base", **kw}
    return eval_config_from_dict(data)


def test_baseline_must_be_a_model_and_names_unique():
    assert _cfg().baseline == "base"
    with pytest.raises(ConfigError, match=r"baseline: 'nope' is not one of the model names"):
        _cfg(baseline="nope")
    with pytest.raises(ConfigError, match=r"names must be unique.*'base'"):
        _cfg(models=[{"name": "base"}, {"name": "base"}])
    with pytest.raises(ConfigError, match=r"models\.0\.name"):
        _cfg(models=[{"name": "a/b"}], baseline="a/b")


def test_overrides_reach_list_items():
    from sumpref.evaluation.config import eval_config_from_dict

    cfg = eval_config_from_dict({"models": [{"name": "base"}, {"name": "hot"}]},
                                ["models.1.temperature=0.7", "num_articles=5", "judge.n_questions=4"])
    assert cfg.models[1].temperature == 0.7 and cfg.num_articles == 5 and cfg.judge.n_questions == 4
    with pytest.raises(ConfigError, match=r"'5' is not an index"):
        eval_config_from_dict({"models": [{"name": "base"}]}, ["models.5.temperature=1"])


def test_a_missing_adapter_is_an_error_naming_the_field_before_any_work(tmp_path, shared_data):
    import subprocess
    import sys
    from pathlib import Path

    root, missing = tmp_path / "runs", tmp_path / "no-such-adapter"
    out = subprocess.run([sys.executable, "-m", "flows.evaluate", "--config", "configs/eval_example.yaml", f"root={root}",
                          f"data.source={shared_data / 'cnndm_summeval.jsonl'}", f"models.1.backend.adapter={missing}"],
                         cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True, timeout=300)
    assert out.returncode == 2, out.stderr[-2000:]
    assert f"error: models[1].backend.adapter: LoRA adapter folder '{missing}' does not exist" in out.stderr
    assert not any(p.is_dir() for p in root.glob("*"))  # no stage started


def test_the_example_recipe_loads_and_passes_preflight(shared_data):
    from pathlib import Path

    from sumpref.evaluation.config import load_eval_config, preflight_eval

    root = Path(__file__).resolve().parents[2]
    cfg = load_eval_config(root / "configs" / "eval_example.yaml", [f"data.source={shared_data / 'cnndm_summeval.jsonl'}"])
    assert len(cfg.models) >= 2 and cfg.baseline in {m.name for m in cfg.models}
    preflight_eval(cfg.model_copy(update={"root": str(Path("/tmp") / "H-eval-preflight")}))


def test_the_evaluate_deployment_carries_the_example_recipe():
    from pathlib import Path

    import yaml

    from sumpref.evaluation.config import EvalFlowConfig, load_eval_config

    root = Path(__file__).resolve().parents[2]
    spec = {d["name"]: d for d in yaml.safe_load((root / "prefect.yaml").read_text())["deployments"]}["evaluate"]
    assert spec["entrypoint"] == "flows/evaluate.py:evaluate_models"
    assert EvalFlowConfig.model_validate(spec["parameters"]["config"]) == load_eval_config(root / "configs" / "eval_example.yaml")
