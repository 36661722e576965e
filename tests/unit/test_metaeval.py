"""Meta-evaluation statistics on tiny hand-computed examples, and the table for synthetic sets."""

import math

import pytest

from sumpref.config import ClozeJudgeConfig, QAJudgeConfig
from sumpref.evaluation.meta import (COMPARE_SUFFIX, HUMAN_SETS, HumanSet, MetaEvalConfig, balanced_accuracy,
                                     bootstrap_ci, agreement_with_people, kendall_tau_b, pairwise_agreement, render_table,
                                     roc_auc, score_names, score_set, spearman_rho, summary_level, write_report)


def test_kendall_tau_b_hand_computed():
    assert kendall_tau_b([1, 2, 3], [1, 3, 2]) == pytest.approx(1 / 3)  # 2 concordant, 1 discordant
    # one pair tied in x only: tau-b = (2 - 0) / sqrt((2 + 1) * 2)
    assert kendall_tau_b([1, 1, 2], [1, 2, 3]) == pytest.approx(2 / math.sqrt(6))
    assert math.isnan(kendall_tau_b([1, 1, 1], [1, 2, 3]))


def test_spearman_hand_computed():
    assert spearman_rho([1, 2, 3], [1, 3, 2]) == pytest.approx(0.5)  # 1 - 6 * 2 / (3 * 8)
    assert spearman_rho([10, 20, 30], [3, 2, 1]) == pytest.approx(-1.0)


def test_roc_auc_hand_computed():
    assert roc_auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.75)  # 3 of 4 pos/neg pairs ordered
    assert roc_auc([1, 1], [1, 0]) == pytest.approx(0.5)  # a tie counts one half
    assert math.isnan(roc_auc([0.2, 0.3], [0, 0]))  # one class


def test_balanced_accuracy_and_pairwise_agreement():
    assert balanced_accuracy([1, 1, 0, 0], [1, 0, 0, 0]) == pytest.approx((1 + 2 / 3) / 2)
    assert math.isnan(balanced_accuracy([1, 0], [1, 1]))
    # decisive human labels only; judge tie = 1/2
    assert pairwise_agreement([1, -1, 0, 2], [1, 1, 1, 0]) == pytest.approx(0.5)
    assert math.isnan(pairwise_agreement([1], [0]))


def test_summary_level_counts_constant_scores_as_zero():
    assert summary_level([[1, 1, 1], [1, 2, 3]], [[1, 2, 3], [1, 2, 3]], kendall_tau_b) == [0.0, 1.0]


def test_bootstrap_ci_brackets_the_value_and_is_seeded():
    groups = [[0.1], [0.3], [0.5], [0.9]]
    stat = lambda gs: sum(g[0] for g in gs) / len(gs)
    value, lo, hi = bootstrap_ci(groups, stat, n_boot=200, seed=1)
    assert value == pytest.approx(0.45) and lo <= value <= hi and lo >= 0.1 and hi <= 0.9
    assert bootstrap_ci(groups, stat, n_boot=200, seed=1) == (value, lo, hi)
    assert bootstrap_ci([[1.0]] * 3, stat, n_boot=50) == (1.0, 1.0, 1.0)


def _rows(specs):
    return [{"id": f"{a}-{i}", "article_id": a, "summary": s, "compare": c, "human": h}
            for i, (a, s, c, h) in enumerate(specs)]


def test_evaluate_graded_binary_and_pairwise_sets():
    graded = HumanSet("g", "g.jsonl", graded=("q",))
    rows = _rows([("a", "x", None, {"q": 1}), ("a", "y", None, {"q": 2}), ("a", "z", None, {"q": 3}),
                  ("b", "x", None, {"q": 3}), ("b", "y", None, {"q": 1}), ("b", "z", None, {"q": 2})])
    scores = {"perfect": [1, 2, 3, 3, 1, 2], "flat": [1] * 6}
    tau = agreement_with_people(graded, rows, scores, n_boot=50)[0]
    assert tau.metric.startswith("Kendall tau") and tau.n == 6
    assert tau.values["perfect"][0] == pytest.approx(1.0) and tau.values["flat"][0] == 0.0

    binary = HumanSet("b", "b.jsonl", binary=("ok",))
    rows = _rows([("a", "", None, {"ok": 1}), ("a", "", None, {"ok": 0}), ("b", "", None, {"ok": 1}),
                  ("b", "", None, {"ok": None})])
    auc, bacc = agreement_with_people(binary, rows, {"s": [0.9, 0.1, 0.8, 0.0]}, n_boot=50)
    assert auc.n == 3 and auc.values["s"][0] == pytest.approx(1.0) and bacc.values["s"][0] == pytest.approx(1.0)

    pair = HumanSet("p", "p.jsonl", pairwise=("writer_better",))
    rows = _rows([("a", "m", "w", {"writer_better": 1}), ("a", "m", "w", {"writer_better": -1}),
                  ("b", "m", "w", {"writer_better": 0})])
    agree = agreement_with_people(pair, rows, {"s": [0.2, 0.2, 0.5], "s" + COMPARE_SUFFIX: [0.9, 0.9, 0.1]}, n_boot=50)[0]
    assert agree.n == 2 and agree.values["s"][0] == pytest.approx(0.5) and "s" + COMPARE_SUFFIX not in agree.values


def test_score_set_calls_each_scorer_once_per_article_with_compared_texts():
    calls = []

    def length(row, texts):
        calls.append(row["article_id"])
        return {"len": [float(len(t)) for t in texts]}

    rows = _rows([("a", "xx", "w", {}), ("b", "y", "www", {}), ("a", "zzz", "ww", {})])
    scores = score_set(rows, [length])
    assert sorted(calls) == ["a", "b"]
    assert scores["len"] == [2.0, 1.0, 3.0] and scores["len" + COMPARE_SUFFIX] == [1.0, 3.0, 2.0]


def test_every_human_file_is_covered_and_sets_are_validated(tmp_path):
    assert len({h.file for h in HUMAN_SETS}) == len(HUMAN_SETS) == 8
    with pytest.raises(ValueError, match="sets"):
        MetaEvalConfig(sets=("nope",))
    assert score_names(QAJudgeConfig())[:4] == ["qa judge: n correct", "qa judge: coverage", "qa judge: faithfulness",
                                                     "cloze judge (baseline)"]
    assert "cloze judge (baseline)" not in score_names(ClozeJudgeConfig())


def test_render_and_write_report_keeps_the_discussion(tmp_path):
    graded = HumanSet("g", "g.jsonl", graded=("q",))
    rows = _rows([("a", "", None, {"q": 1}), ("a", "", None, {"q": 2})])
    table = render_table(agreement_with_people(graded, rows, {"s": [1, 2]}, n_boot=20), ["s", "missing"])
    assert "| g | q | Kendall tau (summary level) | 2 | 1.000" in table and table.rstrip().endswith("n/a |")
    path = tmp_path / "M.md"
    path.write_text("# T\n\nintro\n<!-- results:begin -->\nold\n<!-- results:end -->\n\ndiscussion\n")
    write_report(path, "new table")
    text = path.read_text()
    assert "new table" in text and "old" not in text and text.startswith("# T\n\nintro") and text.endswith("discussion\n")


def test_minilm_similarity_is_a_column_beside_rouge_scored_against_the_reference(monkeypatch):
    from sumpref import similarity
    from sumpref.evaluation import meta

    assert score_names(QAJudgeConfig())[-3:] == ["ROUGE-1 F", meta.SIMILARITY, "article precision"]
    seen = []
    monkeypatch.setattr(similarity, "semantic_similarity",
                        lambda texts, refs, **kw: seen.append((texts, refs)) or [0.5 if r else math.nan for r in refs])
    rows = [{"id": "1", "article_id": "a", "summary": "x", "compare": None, "reference": "hl"},
            {"id": "2", "article_id": "b", "summary": "y", "compare": None, "reference": None}]
    scores = score_set(rows, meta.similarity_scorer())
    assert scores[meta.SIMILARITY][0] == 0.5 and math.isnan(scores[meta.SIMILARITY][1])
    assert seen == [(["x"], ["hl"]), (["y"], [None])]
