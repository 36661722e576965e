import pytest

from sumpref.constrained import Template, TemplateConstraint, judge_template, make_template, mcq_template
from sumpref.judging.mcq import parse_mcq_text
from sumpref.prompts import parse_judge_answers


class ToyTokenizer:
    """A tiny vocabulary: characters plus a few multi-character pieces."""

    def __init__(self):
        pieces = ["<eos>"] + list("QAnswer:ABCDEUsu) .?\n0123456789xyzWhatwho") + ["Un", "sure", "Q1", ") ", "A\n", "ok\n", "Answer: "]
        self.vocab = list(dict.fromkeys(pieces))
        self.all_special_ids = [0]

    def __len__(self):
        return len(self.vocab)

    def batch_decode(self, ids):
        return [self.decode(i) for i in ids]

    def decode(self, ids, skip_special_tokens=False):
        return "".join(self.vocab[i] for i in ids if not (skip_special_tokens and i == 0))


def greedy_walk(c: TemplateConstraint, tok: ToyTokenizer, prefer: str, limit: int = 400) -> str:
    """Pick, at each step, the allowed token that best matches a preferred text (else the first)."""
    text = ""
    for _ in range(limit):
        allowed = c.allowed(text)
        if allowed == [0]:
            return text
        want = prefer[len(text):]
        best = max(allowed, key=lambda i: (want.startswith(tok.vocab[i]), len(tok.vocab[i]) if want.startswith(tok.vocab[i]) else 0))
        text += tok.vocab[best]
    raise AssertionError("template did not terminate")


def test_judge_template_forces_parseable_answers():
    tok = ToyTokenizer()
    c = TemplateConstraint(tok, judge_template(5), 0)
    out = greedy_walk(c, tok, "Q1) B\nQ2) Unsure\nQ3) zzz")  # the 'model' drifts off format at Q3
    answers, err = parse_judge_answers(out)
    assert err is None and answers[:2] == ["B", "Unsure"] and len(answers) == 5
    assert out.count("\n") == 5


def test_choice_allows_only_option_prefixes():
    tok = ToyTokenizer()
    c = TemplateConstraint(tok, judge_template(1), 0)
    allowed = {tok.vocab[i] for i in c.allowed("Q1) ")}
    assert allowed == {"A", "B", "C", "D", "E", "U", "Un"}
    assert {tok.vocab[i] for i in c.allowed("Q1) Un")} == {"s", "sure"}


def test_mcq_template_output_parses():
    tok = ToyTokenizer()
    c = TemplateConstraint(tok, mcq_template(2, question_chars=12, option_chars=4), 0)
    prefer = "".join(f"Q{i}) What?\nA. x\nB. y\nC. z\nD. W\nE. h\nQ{i} Answer: C\n" for i in (1, 2))
    out = greedy_walk(c, tok, prefer, limit=2000)
    res = parse_mcq_text(out, 2)
    assert res.ok, (res.error, out)


def test_free_lines_end_and_cannot_be_empty():
    tok = ToyTokenizer()
    c = TemplateConstraint(tok, Template((("line", 5),)), 0)
    assert all("\n" not in tok.vocab[i] for i in c.allowed(""))        # no empty line
    assert all(tok.vocab[i].endswith("\n") for i in c.allowed("xxxxx"))  # at the limit: must end


def test_template_specs():
    assert make_template("judge:3") == judge_template(3)
    with pytest.raises(ValueError):
        make_template("poem:3")
    with pytest.raises(ValueError, match="prefixes"):
        Template((("choice", ("A", "AB")),))
