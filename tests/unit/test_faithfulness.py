"""The qa judge's faithfulness term: golden cases and how it changes the count the rule sees."""

import pytest

from sumpref.config import ClozeJudgeConfig, QAJudgeConfig
from sumpref.judging.faithfulness import (ArticleIndex, apply_faithfulness, faithfulness, novel_trigram_share,
                                          proportional_penalty, unsupported_sentences)
from sumpref.judging.judges import (QuestionWriter, SummaryJudge, article_from_json, highlights_from_json,
                                    questions_from_json)
from sumpref.judging.mcq import LETTERS, UNSURE
from sumpref.judging.qa import QAScorer

ARTICLE = ("Chelsea beat Arsenal 2-1 at Stamford Bridge on Sunday. Eden Hazard scored the winner in the 78th minute. "
           "Manager Jose Mourinho said the team had shown great spirit. The win puts Chelsea 10 points clear at the top "
           "of the Premier League with seven games left. Arsenal manager Arsene Wenger said his side deserved a draw.")
HIGHLIGHTS = "Chelsea beat Arsenal 2-1 at Stamford Bridge.\nEden Hazard scored the winner.\nChelsea are 10 points clear."
FAITHFUL = "Chelsea beat Arsenal 2-1 at Stamford Bridge. Eden Hazard scored the winner. The win puts Chelsea 10 points clear at the top."
INVENTED_NUMBER = "Chelsea beat Arsenal 2-1 at Stamford Bridge. Eden Hazard scored the winner. The win puts Chelsea 14 points clear at the top."
INVENTED_NAME = "Chelsea beat Arsenal 2-1 at Stamford Bridge. Diego Costa scored the winner. The win puts Chelsea 10 points clear at the top."
SWAPPED = "Arsenal beat Chelsea 2-1 at Stamford Bridge. Eden Hazard scored the winner. The win puts Chelsea 10 points clear at the top."


def test_a_faithful_summary_is_fully_supported():
    support = unsupported_sentences(ARTICLE, FAITHFUL)
    assert [s.supported for s in support] == [True, True, True]
    assert faithfulness([s.supported for s in support]) == 1.0


@pytest.mark.parametrize("summary, novel", [(INVENTED_NUMBER, ("14",)), (INVENTED_NAME, ("diego", "costa"))])
def test_an_invented_number_or_name_makes_its_sentence_unsupported(summary, novel):
    support = unsupported_sentences(ARTICLE, summary)
    bad = [s for s in support if not s.supported]
    assert len(bad) == 1 and bad[0].novel_words == novel
    assert faithfulness([s.supported for s in support]) == pytest.approx(2 / 3)


def test_known_words_recombined_into_a_new_claim_are_caught_by_bigrams():
    support = unsupported_sentences(ARTICLE, SWAPPED)
    assert support[0].novel_words == () and support[0].novel_bigram_share > 0.35 and not support[0].supported
    assert unsupported_sentences(ARTICLE, SWAPPED, max_novel_bigrams=1.0)[0].supported


def test_case_ptb_tokens_and_number_words_do_not_count_as_new():
    article = "The company (CNN) said it would cut 1,000 jobs, and three plants would close."
    assert all(s.supported for s in unsupported_sentences(article, "the company said it would cut 1000 jobs -LRB- cnn -RRB- ."))
    assert all(s.supported for s in unsupported_sentences(article, "The company said 3 plants would close."))


def test_empty_summary_claims_nothing():
    assert unsupported_sentences(ARTICLE, "") == [] and faithfulness([]) == 1.0


@pytest.mark.parametrize("mode, n_unsupported, expected", [
    ("none", 2, 4), ("extra_wrong", 0, 4), ("extra_wrong", 1, 3), ("extra_wrong", 9, 0), ("gate", 0, 4), ("gate", 1, 0)])
def test_apply_faithfulness(mode, n_unsupported, expected):
    assert apply_faithfulness(4, n_unsupported, mode) == expected


def test_unknown_mode_names_the_field():
    with pytest.raises(ValueError, match="judge.faithfulness"):
        apply_faithfulness(3, 1, "maybe")


def _judge(cfg: QAJudgeConfig, summaries: list[str]) -> list[dict]:
    writer, judge = QuestionWriter(cfg), SummaryJudge(cfg)
    writer.load(), judge.load()
    q, _ = writer.run([{"id": "a1", "article": ARTICLE, "highlights": HIGHLIGHTS}])
    assert q[0]["error"] is None and article_from_json(q[0]["questions"]) == ARTICLE
    assert highlights_from_json(q[0]["questions"]) == HIGHLIGHTS
    judged, _ = judge.run([{"article_id": "a1", "sample_idx": i, "questions": q[0]["questions"], "summary": s}
                           for i, s in enumerate(summaries)])
    return judged


def test_qa_judge_prefers_the_faithful_summary():
    cfg = QAJudgeConfig(n_questions=3, count="mcq", faithfulness="extra_wrong")
    faithful, number, name = _judge(cfg, [FAITHFUL, INVENTED_NUMBER, INVENTED_NAME])
    assert faithful["faithfulness"] == 1.0 and faithful["n_unsupported"] == 0
    for bad in (number, name):
        assert bad["faithfulness"] < faithful["faithfulness"] and bad["n_unsupported"] == 1
        assert bad["n_correct"] == max(0, bad["n_correct_raw"] - 1) < faithful["n_correct"]
    assert all(len(r["answers"]) == 3 and set(r["answers"]) <= {*LETTERS, UNSURE} for r in (faithful, number, name))


def test_qa_judge_gate_and_none_modes():
    gated = _judge(QAJudgeConfig(n_questions=3, faithfulness="gate"), [INVENTED_NUMBER])[0]
    plain = _judge(QAJudgeConfig(n_questions=3, count="mcq", faithfulness="none"), [INVENTED_NUMBER])[0]
    assert gated["n_correct"] == 0 and plain["n_correct"] == plain["n_correct_raw"] > 0


def test_qa_questions_are_cloze_questions_and_read_back_as_a_list():
    cfg = QAJudgeConfig(n_questions=3)
    q, _ = QuestionWriter(cfg).run([{"id": "a1", "article": ARTICLE, "highlights": HIGHLIGHTS}])
    c, _ = QuestionWriter(ClozeJudgeConfig(n_questions=3)).run([{"id": "a1", "article": ARTICLE, "highlights": HIGHLIGHTS}])
    assert questions_from_json(q[0]["questions"]) == questions_from_json(c[0]["questions"])
    assert article_from_json(c[0]["questions"]) is None


def test_qa_judge_flags_questions_without_an_article():
    c, _ = QuestionWriter(ClozeJudgeConfig(n_questions=3)).run([{"id": "a1", "article": ARTICLE, "highlights": HIGHLIGHTS}])
    judge = SummaryJudge(QAJudgeConfig(n_questions=3))
    judged, _ = judge.run([{"article_id": "a1", "questions": c[0]["questions"], "summary": FAITHFUL}])
    assert judged[0]["judge_error"] == "qa_needs_qa_questions" and judged[0]["n_correct"] == 0


def test_qa_scorer_lexical_needs_no_model():
    scorer = QAScorer(QAJudgeConfig())
    scorer.load()
    assert scorer.encoder is None


def test_config_defaults_and_errors():
    cfg = QAJudgeConfig()
    assert (cfg.kind, cfg.count, cfg.faithfulness, cfg.faithfulness_weight) == ("qa", "key_content", "proportional", 1.0)
    with pytest.raises(ValueError, match="faithfulness"):
        QAJudgeConfig(faithfulness="sometimes")
    with pytest.raises(ValueError, match="max_novel_bigrams"):
        QAJudgeConfig(max_novel_bigrams=1.5)
    with pytest.raises(ValueError, match="count"):
        QAJudgeConfig(count="answers")
    with pytest.raises(ValueError, match="faithfulness_weight"):
        QAJudgeConfig(faithfulness_weight=-1)


def test_novel_trigram_share_counts_new_wording_and_new_claims():
    index = ArticleIndex.of(ARTICLE)
    copied = "Chelsea beat Arsenal 2-1 at Stamford Bridge on Sunday. Eden Hazard scored the winner"
    assert novel_trigram_share(index, copied) == 0.0
    assert novel_trigram_share(index, "") == 0.0 and novel_trigram_share(index, "Chelsea won") == 0.0
    # FAITHFUL skips words ("on Sunday"), which joins words the article never puts together: a
    # little; an invented number or name, or swapped roles, add the trigrams around them.
    share = {s: novel_trigram_share(index, s) for s in (FAITHFUL, INVENTED_NUMBER, INVENTED_NAME, SWAPPED)}
    assert 0 < share[FAITHFUL] < min(share[INVENTED_NUMBER], share[INVENTED_NAME], share[SWAPPED]) < 0.5


@pytest.mark.parametrize("n, share, weight, expected", [(5, 0.0, 1.0, 0.0), (5, 0.5, 1.0, 2.5), (5, 0.2, 0.5, 0.5)])
def test_proportional_penalty(n, share, weight, expected):
    assert proportional_penalty(n, share, weight) == pytest.approx(expected)
    assert apply_faithfulness(2.0, proportional_penalty(n, share, weight), "proportional") == pytest.approx(max(0.0, 2.0 - expected))


def test_default_qa_count_is_key_content_coverage_minus_unsupported_share():
    faithful, number, swapped, empty = _judge(QAJudgeConfig(n_questions=5), [FAITHFUL, INVENTED_NUMBER, SWAPPED, ""])
    for r in (faithful, number, swapped):
        assert 0 <= r["n_correct"] <= 5 and isinstance(r["n_correct"], float) and 0 < r["coverage"] <= 1
        # faithfulness = 1 - novel trigram share; weight 1: the count loses 5 x that share
        assert r["n_correct"] == pytest.approx(round(max(0.0, 5 * r["coverage"] - 5 * (1 - r["faithfulness"])), 2), abs=0.011)
    # the faithful summary passes the rule's ">= 3 of 5", an invented number or swapped roles do not
    assert faithful["n_correct"] >= 3 > max(number["n_correct"], swapped["n_correct"])
    assert number["faithfulness"] < 1.0 and empty["n_correct"] == 0.0 and empty["coverage"] == 0.0


def test_qa_count_weight_zero_is_coverage_only():
    cfg = QAJudgeConfig(n_questions=5, faithfulness_weight=0.0)
    faithful, number = _judge(cfg, [FAITHFUL, INVENTED_NUMBER])
    assert number["n_correct"] == pytest.approx(round(5 * number["coverage"], 2))
