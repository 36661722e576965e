"""Champion registry, promotion rule, nightly article selection, best-vs-worst pairs, the
per-round view, and the prefect.yaml recipe: pure logic on temporary folders."""

import json
from pathlib import Path

import pytest
import yaml

from sumpref.champion import (champion_as_of, current_champion, read_history, record_round, round_id, should_promote,
                              used_article_ids)
from sumpref.config import ConfigError, PairsConfig, RunConfig, config_from_dict, load_config
from sumpref.nightly import check_nightly, plot_rounds, render_rounds, rounds_table, select_articles
from sumpref.pairs import best_worst_pair, build_pairs

ROOT = Path(__file__).resolve().parents[2]


def win(value, lo, hi, n=10):
    return {"value": value, "ci95": [lo, hi], "n": n, "wins": 0, "ties": 0, "losses": 0}


def metric(v):
    return {"value": v, "ci95": [v - 0.1, v + 0.1]}


def entry(day, rnd, status, parent="initial", train=("a",), evals=("b",)):
    return {"id": round_id(day, rnd), "date": day, "round": rnd, "status": status, "parent": parent,
            "model": f"/m/{day}-{rnd}" if status == "promoted" else None, "base_model": "base", "threshold": 0.5,
            "win_rate": win(0.7, 0.55, 0.85), "articles": {"train": list(train), "eval": list(evals)},
            "metrics": {"candidate": {k: metric(0.5) for k in ("accuracy_ge3", "mean_correct", "median_compression",
                                                                 "at_most_2_sentences")}}}


@pytest.mark.parametrize("w,threshold,expected", [
    (win(0.7, 0.55, 0.85), 0.5, True),
    (win(0.7, 0.5, 0.85), 0.5, False),      # lower bound must be strictly above
    (win(0.6, 0.45, 0.75), 0.5, False),     # better on average, not significantly
    (win(0.5, 0.5, 0.5), 0.4, True),        # every article a tie passes a threshold below 0.5
    (win(float("nan"), float("nan"), float("nan"), n=0), 0.0, False),  # no evidence
])
def test_promotion_needs_the_ci_lower_bound_above_the_threshold(w, threshold, expected):
    assert should_promote(w, threshold) is expected


def test_registry_records_append_only_and_points_at_the_last_promotion(tmp_path):
    root = str(tmp_path)
    assert current_champion(root, "base")["id"] == "initial"
    record_round(root, entry("2026-12-01", 1, "promoted"))
    record_round(root, entry("2026-12-02", 1, "rejected", parent="2026-12-01-r01"))
    assert current_champion(root, "base")["id"] == "2026-12-01-r01"  # a rejection leaves the champion
    again = record_round(root, {**entry("2026-12-01", 1, "rejected")})  # a rerun cannot rewrite history
    assert again["status"] == "promoted"
    assert [e["id"] for e in read_history(root)] == ["2026-12-01-r01", "2026-12-02-r01"]
    files = sorted(p.name for p in (tmp_path / "champion" / "history").iterdir())
    assert files == ["2026-12-01-r01.json", "2026-12-02-r01.json"]  # no temp files left behind
    record_round(root, entry("2026-12-03", 1, "promoted", parent="2026-12-01-r01"))
    reg = json.loads((tmp_path / "champion" / "registry.json").read_text())
    assert reg["champion"]["id"] == "2026-12-03-r01" and reg["champion"]["parent"] == "2026-12-01-r01"


def test_registry_repairs_a_registry_write_cut_off_after_the_history_write(tmp_path):
    record_round(str(tmp_path), entry("2026-12-01", 1, "promoted"))
    (tmp_path / "champion" / "registry.json").unlink()
    record_round(str(tmp_path), entry("2026-12-01", 1, "promoted"))
    assert current_champion(str(tmp_path), "base")["id"] == "2026-12-01-r01"


def test_record_refuses_an_undecided_round(tmp_path):
    with pytest.raises(ValueError, match="status"):
        record_round(str(tmp_path), entry("2026-12-01", 1, "maybe"))


def test_champion_and_used_articles_as_of_a_date():
    history = [entry("2026-12-01", 1, "promoted", train=("a1", "a2"), evals=("e1",)),
               entry("2026-12-02", 1, "promoted", parent="2026-12-01-r01", train=("b1",), evals=("e2",)),
               entry("2026-12-02", 2, "rejected", parent="2026-12-02-r01", train=("c1",), evals=("e3",))]
    assert champion_as_of(history, "base", before="2026-12-01")["id"] == "initial"
    # A rerun of night 2 starts from night 1's champion, whatever night 2's first attempt recorded.
    assert champion_as_of(history, "base", before="2026-12-02")["id"] == "2026-12-01-r01"
    assert champion_as_of(history, "base")["id"] == "2026-12-02-r01"
    assert used_article_ids(history, "2026-12-02") == ["a1", "a2", "e1"]
    assert used_article_ids(history, "2026-12-03") == ["a1", "a2", "b1", "c1", "e1", "e2", "e3"]


def test_article_selection_excludes_used_ids_and_is_seeded():
    pool = [{"id": f"x{i}"} for i in range(10)]
    a = select_articles(pool, {"x0", "x1"}, 4, "21:2026-12-01:1")
    assert len(a) == 4 and not {"x0", "x1"} & {r["id"] for r in a}
    assert a == select_articles(pool, {"x0", "x1"}, 4, "21:2026-12-01:1")
    assert a != select_articles(pool, {"x0", "x1"}, 4, "21:2026-12-02:1")
    with pytest.raises(ConfigError, match="nightly.articles_per_round"):
        select_articles(pool, {f"x{i}" for i in range(8)}, 4, "s")


def test_nightly_config_is_typed_and_checked():
    with pytest.raises(ConfigError, match="nightly.reference"):
        config_from_dict({"nightly": {"reference": "latest"}})
    with pytest.raises(ConfigError, match="nightly.roundz"):
        config_from_dict({"nightly": {"roundz": 2}})
    with pytest.raises(ConfigError, match="nightly.reference: 'fixed' needs dpo.trainer 'packed'"):
        check_nightly(config_from_dict({"nightly": {"reference": "fixed"}}))
    check_nightly(config_from_dict({"nightly": {"reference": "fixed"}, "dpo": {"trainer": "packed"}}))
    assert RunConfig().nightly.promote_threshold == 0.5


def row(i, correct, words, aid="a1"):
    return {"article_id": aid, "sample_idx": i, "n_correct": correct, "n_words": words,
            "summary": " ".join(["w"] * words), "prompt_text": "P"}


def test_best_worst_pairs_the_best_and_the_worst_sample_by_score():
    rule = PairsConfig()
    pairs, ties = best_worst_pair([row(0, 3, 20), row(1, 5, 30), row(2, 1, 10), row(3, 5, 25)], rule)
    assert ties == 0 and [(c["sample_idx"], r["sample_idx"]) for c, r in pairs] == [(3, 2)]
    assert best_worst_pair([row(0, 2, 20), row(1, 2, 20)], rule) == ([], 1)
    assert best_worst_pair([row(0, 2, 20)], rule) == ([], 0)
    # The format first: the best-scoring sample was cut at the token limit, so the best in format wins.
    fmt = PairsConfig(format_rule=True)

    def done(r):  # one complete sentence
        return {**r, "summary": r["summary"] + "."}

    cut = {**done(row(3, 5, 25)), "finish_reason": "length"}
    pairs, _ = best_worst_pair([done(row(0, 3, 20)), done(row(1, 1, 10)), cut], fmt)
    assert [(c["sample_idx"], r["sample_idx"]) for c, r in pairs] == [(0, 3)]
    assert best_worst_pair([cut, {**row(1, 1, 10), "finish_reason": "length"}], fmt) == ([], 1)
    cfg = config_from_dict({"pairs": {"selection": "best_worst", "valid_fraction": 0.0}}).pairs
    out, _, counts = build_pairs([row(0, 4, 20), row(1, 1, 30), row(2, 3, 25)], cfg)
    assert len(out) == 1 and out[0]["chosen_correct"] == 4 and out[0]["rejected_correct"] == 1


def test_rounds_view_lists_every_round_and_plots(tmp_path):
    history = [entry("2026-12-01", 1, "promoted"), entry("2026-12-02", 1, "rejected", parent="2026-12-01-r01")]
    table = rounds_table(history)
    assert [(r["round"], r["status"]) for r in table] == [("2026-12-01-r01", "promoted"), ("2026-12-02-r01", "rejected")]
    assert table[0]["win_rate_vs_champion"] == "70.0% [55.0, 85.0]"
    md = render_rounds(history, history[0], "rounds")
    assert "| 2026-12-02-r01 | rejected | 2026-12-01-r01 |" in md and "![rounds](rounds.png)" in md
    plot_rounds(history, tmp_path / "r.png")
    assert (tmp_path / "r.png").read_bytes()[:4] == b"\x89PNG"


def test_prefect_yaml_carries_the_demo_recipe_on_a_process_pool():
    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    demo = load_config(ROOT / "configs" / "demo.yaml")
    deployments = {d["name"]: d for d in spec["deployments"]}
    assert set(deployments) == {"pipeline", "nightly", "evaluate"}  # evaluate: tests/unit/test_paired.py
    for d in (deployments["pipeline"], deployments["nightly"]):
        assert RunConfig.model_validate(d["parameters"]["config"]) == demo
        assert d["work_pool"]["name"] == "sumpref-process"
    assert deployments["nightly"]["entrypoint"] == "flows/nightly.py:nightly"
