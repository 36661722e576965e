"""Multiple-choice questions: the record type, parsing of judge-written MCQs, and position de-biasing.

A question set for one article is a list of `MCQ`. Each has exactly five options lettered A-E
and one correct letter. Judges (LLM or embedded) answer a question set from a summary with one
letter per question or `UNSURE`.
"""

from __future__ import annotations

import random
import re
from dataclasses import asdict, dataclass, field

LETTERS = ("A", "B", "C", "D", "E")
UNSURE = "Unsure"
N_QUESTIONS = 5


@dataclass(frozen=True)
class MCQ:
    """One multiple-choice question: text, five options (A-E in order) and the correct letter."""

    question: str
    options: tuple[str, ...]
    answer: str

    def __post_init__(self) -> None:
        if len(self.options) != len(LETTERS):
            raise ValueError(f"MCQ needs {len(LETTERS)} options, got {len(self.options)}")
        if self.answer not in LETTERS:
            raise ValueError(f"MCQ answer must be one of {LETTERS}, got {self.answer!r}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["options"] = list(self.options)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "MCQ":
        return cls(question=d["question"], options=tuple(d["options"]), answer=d["answer"])


@dataclass
class ParseResult:
    """Parsed questions, or an empty list with the reason parsing failed."""

    questions: list[MCQ] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


_Q_RE = re.compile(r"^\s*\**\s*Q(\d+)\s*[\).:]\s*(.+?)\s*$", re.IGNORECASE)
_OPT_RE = re.compile(r"^\s*\**\s*([A-E])\s*[\.\)]\s*(.+?)\s*$")
_ANS_RE = re.compile(r"^\s*\**\s*Q(\d+)\s*Answer\s*[:\-]\s*\**\s*\(?([A-Za-z]+)\)?", re.IGNORECASE)


def parse_mcq_text(text: str, n_questions: int = N_QUESTIONS) -> ParseResult:
    """Parse the published MCQ format (`Q1) ...`, `A. ...`-`E. ...`, `Q1 Answer: X`).

    Demands exactly `n_questions` questions, each with five options and a valid answer letter;
    anything else is an explicit failure with a reason, never an exception.
    """
    if not text or not text.strip():
        return ParseResult(error="empty_output")
    blocks: dict[int, dict] = {}
    current: int | None = None
    for line in text.splitlines():
        if m := _ANS_RE.match(line):
            qn = int(m.group(1))
            blocks.setdefault(qn, {"q": None, "opts": {}, "ans": None})["ans"] = m.group(2).upper()
            continue
        if m := _Q_RE.match(line):
            current = int(m.group(1))
            blocks.setdefault(current, {"q": None, "opts": {}, "ans": None})["q"] = m.group(2)
            continue
        if current is not None and (m := _OPT_RE.match(line)):
            blocks[current]["opts"].setdefault(m.group(1), m.group(2))
    questions: list[MCQ] = []
    for qn in sorted(blocks):
        b = blocks[qn]
        if not b["q"]:
            return ParseResult(error=f"q{qn}_missing_text")
        if sorted(b["opts"]) != list(LETTERS):
            return ParseResult(error=f"q{qn}_options_{''.join(sorted(b['opts'])) or 'none'}")
        if b["ans"] not in LETTERS:
            return ParseResult(error=f"q{qn}_bad_answer")
        if len({o.strip().lower() for o in b["opts"].values()}) < len(LETTERS):
            return ParseResult(error=f"q{qn}_duplicate_options")
        questions.append(MCQ(b["q"], tuple(b["opts"][k] for k in LETTERS), b["ans"]))
    if len(questions) != n_questions:
        return ParseResult(error=f"wrong_question_count_{len(questions)}")
    return ParseResult(questions=questions)


def parse_mcq_json(obj: object, n_questions: int = N_QUESTIONS) -> ParseResult:
    """Parse the JSON form used with constrained decoding:
    `{"questions": [{"question": str, "options": [5 str], "answer": "A".."E"}, ...]}`."""
    if not isinstance(obj, dict) or not isinstance(obj.get("questions"), list):
        return ParseResult(error="json_no_questions")
    out = []
    for i, q in enumerate(obj["questions"], 1):
        try:
            out.append(MCQ(str(q["question"]), tuple(str(o) for o in q["options"]), str(q["answer"]).strip().upper()))
        except (KeyError, TypeError, ValueError):
            return ParseResult(error=f"q{i}_invalid")
        if len({o.strip().lower() for o in out[-1].options}) < len(LETTERS):
            return ParseResult(error=f"q{i}_duplicate_options")
    if len(out) != n_questions:
        return ParseResult(error=f"wrong_question_count_{len(out)}")
    return ParseResult(questions=out)


def shuffle_questions(questions: list[MCQ], rng: random.Random) -> list[MCQ]:
    """Shuffle question order and each question's option order, re-lettering the answer.

    Position de-biasing: LLM-written MCQs put the right answer in early slots far more often
    than chance, and judges prefer early options too.
    """
    qs = list(questions)
    rng.shuffle(qs)
    out = []
    for q in qs:
        correct = q.options[LETTERS.index(q.answer)]
        order = list(range(len(LETTERS)))
        rng.shuffle(order)
        opts = tuple(q.options[i] for i in order)
        out.append(MCQ(q.question, opts, LETTERS[[q.options[i] for i in order].index(correct)]))
    return out


def score_answers(questions: list[MCQ], answers: list[str]) -> int:
    """Number of answers equal to the ground truth; `Unsure` and missing answers count wrong."""
    return sum(1 for q, a in zip(questions, answers) if a == q.answer)
