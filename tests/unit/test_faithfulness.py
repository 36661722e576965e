"""The qa judge's faithfulness term: golden cases and how it changes the count the rule sees."""

import pytest

from sumpref.config import JudgeConfig
from sumpref.faithfulness import apply_faithfulness, faithfulness, unsupported_sentences
from sumpref.judges import QuestionWriter, SummaryJudge, article_from_json, questions_from_json
from sumpref.mcq import LETTERS, UNSURE
from sumpref.qa_judge import QAScorer

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


def _judge(cfg: JudgeConfig, summaries: list[str]) -> list[dict]:
    writer, judge = QuestionWriter(cfg), SummaryJudge(cfg)
    writer.load(), judge.load()
    q, _ = writer.run([{"id": "a1", "article": ARTICLE, "highlights": HIGHLIGHTS}])
    assert q[0]["error"] is None and article_from_json(q[0]["questions"]) == ARTICLE
    judged, _ = judge.run([{"article_id": "a1", "sample_idx": i, "questions": q[0]["questions"], "summary": s}
                           for i, s in enumerate(summaries)])
    return judged


def test_qa_judge_prefers_the_faithful_summary():
    cfg = JudgeConfig(kind="qa", n_questions=3)
    faithful, number, name = _judge(cfg, [FAITHFUL, INVENTED_NUMBER, INVENTED_NAME])
    assert faithful["faithfulness"] == 1.0 and faithful["n_unsupported"] == 0
    for bad in (number, name):
        assert bad["faithfulness"] < faithful["faithfulness"] and bad["n_unsupported"] == 1
        assert bad["n_correct"] == max(0, bad["n_correct_raw"] - 1) < faithful["n_correct"]
    assert all(len(r["answers"]) == 3 and set(r["answers"]) <= {*LETTERS, UNSURE} for r in (faithful, number, name))


def test_qa_judge_gate_and_none_modes():
    gated = _judge(JudgeConfig(kind="qa", n_questions=3, faithfulness="gate"), [INVENTED_NUMBER])[0]
    plain = _judge(JudgeConfig(kind="qa", n_questions=3, faithfulness="none"), [INVENTED_NUMBER])[0]
    assert gated["n_correct"] == 0 and plain["n_correct"] == plain["n_correct_raw"] > 0


def test_qa_questions_are_cloze_questions_and_read_back_as_a_list():
    cfg = JudgeConfig(kind="qa", n_questions=3)
    q, _ = QuestionWriter(cfg).run([{"id": "a1", "article": ARTICLE, "highlights": HIGHLIGHTS}])
    c, _ = QuestionWriter(JudgeConfig(kind="cloze", n_questions=3)).run([{"id": "a1", "article": ARTICLE, "highlights": HIGHLIGHTS}])
    assert questions_from_json(q[0]["questions"]) == questions_from_json(c[0]["questions"])
    assert article_from_json(c[0]["questions"]) is None


def test_qa_judge_flags_questions_without_an_article():
    c, _ = QuestionWriter(JudgeConfig(kind="cloze", n_questions=3)).run([{"id": "a1", "article": ARTICLE, "highlights": HIGHLIGHTS}])
    judge = SummaryJudge(JudgeConfig(kind="qa", n_questions=3))
    judged, _ = judge.run([{"article_id": "a1", "questions": c[0]["questions"], "summary": FAITHFUL}])
    assert judged[0]["judge_error"] == "qa_needs_qa_questions" and judged[0]["n_correct"] == 0


def test_qa_scorer_lexical_needs_no_model():
    scorer = QAScorer(JudgeConfig(kind="qa"))
    scorer.load()
    assert scorer.encoder is None


def test_config_defaults_and_errors():
    assert JudgeConfig().kind == "qa" and JudgeConfig().faithfulness == "extra_wrong"
    with pytest.raises(ValueError, match="faithfulness"):
        JudgeConfig(faithfulness="sometimes")
    with pytest.raises(ValueError, match="max_novel_bigrams"):
        JudgeConfig(max_novel_bigrams=1.5)
