import random

import pytest

from sumpref.judging.mcq import LETTERS, MCQ, UNSURE, parse_mcq_json, parse_mcq_text, score_answers, shuffle_questions
from sumpref.prompts import SUMMARY_PROMPT, judge_messages, parse_judge_answers, summary_messages


def test_summary_prompt_is_the_published_one():
    msgs = summary_messages("Some text.")
    assert msgs == [{"role": "user", "content": "Given the following text, create a very short summary that is at most "
                                                 "2 sentences.\n\nText:\nSome text."}]
    assert SUMMARY_PROMPT.endswith("{article}")


def _mcq_text(n=5, answer="B"):
    out = []
    for i in range(1, n + 1):
        out.append(f"Q{i}) Question {i}?\nA. a{i}\nB. b{i}\nC. c{i}\nD. d{i}\nE. e{i}\nQ{i} Answer: {answer}")
    return "\n\n".join(out)


def test_parse_mcq_text_ok():
    res = parse_mcq_text(_mcq_text())
    assert res.ok and len(res.questions) == 5
    assert res.questions[0] == MCQ("Question 1?", ("a1", "b1", "c1", "d1", "e1"), "B")


@pytest.mark.parametrize("text,error", [
    ("", "empty_output"),
    ("   \n ", "empty_output"),
    (_mcq_text(4), "wrong_question_count_4"),
    (_mcq_text().replace("E. e3\n", ""), "q3_options_ABCD"),
    (_mcq_text().replace("Q2 Answer: B", "Q2 Answer: F"), "q2_bad_answer"),
    ("I cannot write questions for this article.", "wrong_question_count_0"),
])
def test_parse_mcq_text_failures_are_reasons_not_exceptions(text, error):
    res = parse_mcq_text(text)
    assert not res.ok and res.error == error


def test_parse_mcq_text_tolerates_markdown_noise():
    noisy = _mcq_text().replace("Q1)", "**Q1)**").replace("Q1 Answer: B", "**Q1 Answer:** B")
    assert parse_mcq_text(noisy).ok


def test_parse_mcq_json():
    obj = {"questions": [{"question": f"q{i}", "options": list("abcde"), "answer": "c"} for i in range(5)]}
    res = parse_mcq_json(obj)
    assert res.ok and all(q.answer == "C" for q in res.questions)
    assert parse_mcq_json({"questions": obj["questions"][:3]}).error == "wrong_question_count_3"
    assert parse_mcq_json([1, 2]).error == "json_no_questions"


def test_shuffle_relabels_answers_to_the_same_option_text():
    qs = parse_mcq_text(_mcq_text()).questions
    shuffled = shuffle_questions(qs, random.Random(3))
    assert sorted(q.question for q in shuffled) == sorted(q.question for q in qs)
    for q in shuffled:
        original = next(o for o in qs if o.question == q.question)
        assert q.options[LETTERS.index(q.answer)] == original.options[LETTERS.index(original.answer)]
    # seeded: same seed, same order; answers are spread over letters
    assert shuffle_questions(qs, random.Random(3)) == shuffled
    letters = {q.answer for s in range(20) for q in shuffle_questions(qs, random.Random(s))}
    assert letters == set(LETTERS)


@pytest.mark.parametrize("text,answers,error", [
    ("Q1) A\nQ2) B\nQ3) Unsure\nQ4) D\nQ5) E", ["A", "B", UNSURE, "D", "E"], None),
    ("Q1) A\nQ3) C", ["A", UNSURE, "C", UNSURE, UNSURE], None),
    ("", [UNSURE] * 5, "no_judge_output"),
    ("I don't know", [UNSURE] * 5, "unparseable"),
    ('{"Q1": "A", "Q2": "Unsure", "Q3": "C", "Q4": "D", "Q5": "B"}', ["A", UNSURE, "C", "D", "B"], None),
    ("Q1: (b)\nQ2 - c\nQ3) unsure", ["B", "C", UNSURE, UNSURE, UNSURE], None),
])
def test_parse_judge_answers(text, answers, error):
    assert parse_judge_answers(text) == (answers, error)


def test_judge_prompt_puts_shared_part_first_and_summary_last():
    qs = parse_mcq_text(_mcq_text()).questions
    a = judge_messages(qs, "Summary one.")[0]["content"]
    b = judge_messages(qs, "Another summary entirely.")[0]["content"]
    import os

    shared = os.path.commonprefix([a, b])
    assert a.endswith("Summary one.") and "Q5)" in shared and "Summary:" in shared


def test_score_counts_unsure_as_wrong():
    qs = [MCQ("q", tuple("abcde"), "A")] * 3
    assert score_answers(qs, ["A", UNSURE, "B"]) == 1


def test_echoed_question_is_not_read_as_an_answer():
    assert parse_judge_answers("Q1) A man was arrested on Tuesday.\nQ1) C")[0][0] == "C"


def test_duplicate_options_are_a_parse_error():
    assert parse_mcq_text(_mcq_text().replace("C. c2", "C. a2")).error == "q2_duplicate_options"


def test_json_prompt_variants_describe_the_enforced_format():
    from sumpref.prompts import judge_messages, mcq_messages

    assert '"questions"' in mcq_messages("Art.", 5, json_format=True)[0]["content"]
    assert '"questions"' not in mcq_messages("Art.", 5)[0]["content"]
    qs = parse_mcq_text(_mcq_text()).questions
    content = judge_messages(qs, "Sum.", json_format=True)[0]["content"]
    assert '"Q5"' in content and content.endswith("Sum.")
