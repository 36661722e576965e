"""Embedded cloze judge: question building and answering from a summary (no model, seconds)."""

from __future__ import annotations

import re
import time

import pytest

from sumpref.judging.cloze import BLANK, answer_from_summary, build_cloze_questions, option_support
from sumpref.judging.mcq import LETTERS, UNSURE, score_answers

ARTICLE = (
    "(CNN) Maria Lopez won the Boston Marathon on Monday, finishing in 2 hours and 21 minutes. "
    "Lopez, who trains in Denver, beat Grace Wanjiru of Kenya by 40 seconds in a sprint finish. "
    "Wanjiru had won the race in 2019 and in 2021, and Lopez had never beaten her before. "
    "Race director Tom Becker said 30,000 runners took part this year. "
    "Becker thanked volunteers from Boston and Cambridge for their help on a hot day. "
    "Officials in Massachusetts said 12 runners were treated for heat exhaustion. "
    "Lopez said she will run in London in April, where Wanjiru is also expected. "
    "Lopez thanked her coach Peter Hale and her sponsor Nike after the race. "
    "Hale said Lopez had trained for 18 months in Denver for the race."
)
HIGHLIGHTS = (
    "Maria Lopez won the Boston Marathon on Monday .\n"
    "She beat Grace Wanjiru of Kenya by 40 seconds .\n"
    "Race director Tom Becker said 30,000 runners took part ."
)
FAITHFUL = (
    "Maria Lopez won the Boston Marathon on Monday, beating Grace Wanjiru of Kenya by 40 seconds. "
    "Tom Becker, the race director, said 30,000 runners took part."
)
SWAPPED = (  # the same names and numbers, attached to the wrong facts
    "Grace Wanjiru won the Boston Marathon on Monday, beating Maria Lopez of Kenya by 12 seconds. "
    "Peter Hale, the race director, said 2021 runners took part."
)
UNRELATED = "The central bank raised interest rates again, citing persistent inflation in the housing market."


def _words(text: str) -> str:
    return " ".join(re.findall(r"\w+", text.lower()))


def _build(article: str = ARTICLE, highlights: str | None = HIGHLIGHTS, seed: int = 0):
    result = build_cloze_questions(article, highlights, n_questions=5, seed=seed)
    assert result.ok, result.error
    assert len(result.questions) == 5
    return result.questions


def _score(questions, summary: str) -> int:
    answers = answer_from_summary(questions, summary)
    assert len(answers) == len(questions)
    assert all(a in LETTERS or a == UNSURE for a in answers)
    return score_answers(questions, answers)


def test_questions_have_five_distinct_options_and_one_blank():
    for q in _build():
        assert len(q.options) == 5
        assert len({o.lower() for o in q.options}) == 5
        assert q.answer in LETTERS
        assert q.question.count(BLANK) == 1


def test_answer_option_is_the_masked_span():
    source = _words(HIGHLIGHTS + "\n" + ARTICLE)
    for q in _build():
        filled = q.question.replace(BLANK, q.options[LETTERS.index(q.answer)])
        assert _words(filled) in source
        for wrong in (o for i, o in enumerate(q.options) if LETTERS[i] != q.answer):
            assert _words(q.question.replace(BLANK, wrong)) not in source
            assert _words(wrong) in _words(ARTICLE)  # distractors come from the article


def test_questions_come_from_the_highlights_first():
    first = _build()[0]
    assert _words(first.question.replace(BLANK, " ")).startswith("won the boston marathon")


def test_deterministic_for_a_seed():
    assert _build(seed=3) == _build(seed=3)


def test_seed_moves_answer_letters_only():
    base = _build(seed=0)
    others = [_build(seed=s) for s in range(1, 6)]
    assert any([q.answer for q in o] != [q.answer for q in base] for o in others)
    for o in others:
        assert [q.question for q in o] == [q.question for q in base]
        for a, b in zip(o, base):
            assert a.options[LETTERS.index(a.answer)] == b.options[LETTERS.index(b.answer)]
            assert set(a.options) == set(b.options)


def test_summary_with_the_facts_beats_unrelated_and_swapped_summaries():
    qs = _build()
    faithful, swapped, unrelated = _score(qs, FAITHFUL), _score(qs, SWAPPED), _score(qs, UNRELATED)
    assert faithful >= 4
    assert unrelated == 0
    assert swapped < faithful


def test_long_extractive_summary_with_several_options_is_answered_from_context():
    # The whole article names every option of most questions; strict "exactly one option
    # present" answering would refuse nearly all of them.
    qs = _build()
    assert _score(qs, ARTICLE) >= 4


def test_support_prefers_the_option_in_the_blanks_context():
    qs = _build()
    for q, support in zip(qs, option_support(qs, FAITHFUL)):
        right = support[LETTERS.index(q.answer)]
        assert right > 1.0
        assert all(right > s for i, s in enumerate(support) if LETTERS[i] != q.answer)


@pytest.mark.parametrize("summary", ["", "   \n", "... !!"])
def test_empty_summary_is_all_unsure(summary):
    assert answer_from_summary(_build(), summary) == [UNSURE] * 5


def test_no_questions_no_answers():
    assert answer_from_summary([], FAITHFUL) == []


@pytest.mark.parametrize(
    "article, highlights",
    [
        ("", None),
        ("   ", "Something happened ."),
        ("the cat sat on the mat and it was fine . then it slept .", None),
        ("Short text.", "Short."),
    ],
)
def test_article_without_candidates_is_an_error_not_an_exception(article, highlights):
    result = build_cloze_questions(article, highlights)
    assert not result.ok
    assert result.error in {"empty_article", "too_few_candidates"}
    assert result.questions == []


def _ptb(text: str) -> str:
    text = text.replace("(CNN)", "-LRB- CNN -RRB-")
    return re.sub(r"([.,])(\s|$)", r" \1\2", text)


def test_ptb_tokenized_cased_text():
    qs = _build(_ptb(ARTICLE), _ptb(HIGHLIGHTS))
    assert all("-LRB-" not in o and "-RRB-" not in o for q in qs for o in q.options)
    assert _score(qs, _ptb(FAITHFUL)) >= 4
    assert _score(qs, FAITHFUL.lower()) >= 4  # lowercased system output, as in SummEval
    assert _score(qs, UNRELATED) == 0


def test_lowercased_article_with_cased_highlights():
    qs = _build(_ptb(ARTICLE).lower(), HIGHLIGHTS)
    assert all(o == o.lower() for q in qs for o in q.options)  # case must not reveal the answer
    assert _score(qs, FAITHFUL) >= 4
    assert _score(qs, UNRELATED) == 0


def test_fully_lowercased_text_falls_back_to_content_words():
    qs = _build(_ptb(ARTICLE).lower(), HIGHLIGHTS.lower())
    assert _score(qs, FAITHFUL.lower()) >= 4
    assert _score(qs, UNRELATED) == 0


def test_no_highlights_uses_the_lead():
    qs = _build(highlights=None)
    lead = _words(" ".join(ARTICLE.split(". ")[:5]))
    assert all(_words(q.question.replace(BLANK, q.options[LETTERS.index(q.answer)])) in lead for q in qs)
    assert _score(qs, ARTICLE) >= 4


def test_unicode_clitics_and_number_words():
    article = (
        "José Müller, the mayor of Zürich, opened a bridge on Tuesday after seven years of work. "
        "Müller said the bridge cost 40 million francs, far more than Anna Keller had planned. "
        "The bridge is 300 metres long, carries 25,000 cars a day and was built by 150 workers. "
        "Keller, who leads the council in Bern, called the project “a lesson for Geneva and Basel”. "
        "Critics in Lausanne said 3 other bridges were delayed. Müller met Keller in Bern on Friday."
    )
    highlights = "José Müller opened the bridge in Zürich after 7 years .\nIt cost 40 million francs ."
    qs = _build(article, highlights)
    answers = {q.options[LETTERS.index(q.answer)] for q in qs}
    assert {"José Müller", "Zürich", "7", "40 million"} <= answers
    summary = "Mayor José Müller opened Zürich’s bridge after seven years; it cost 40 million francs."
    assert _score(qs, summary) >= 4
    assert _score(qs, UNRELATED) == 0


def test_very_long_summary_is_fast():
    qs = _build()
    long_summary = " ".join([ARTICLE] * 300)  # ~45k words
    start = time.perf_counter()
    answers = answer_from_summary(qs, long_summary)
    assert time.perf_counter() - start < 2.0
    assert len(answers) == 5
