"""Prompt rendering and judge-output parsing: pure functions with golden tests.

The summary prompt is the published one. The judge prompt puts what all summaries of one
article share (instructions, then the questions) first and the summary last, so a prefix cache
reuses the shared part across the ~10 summaries of an article.
"""

from __future__ import annotations

import json
import re

from sumpref.judging.mcq import LETTERS, MCQ, N_QUESTIONS, UNSURE

SUMMARY_PROMPT = "Given the following text, create a very short summary that is at most 2 sentences.\n\nText:\n{article}"

MCQ_PROMPT = """You are writing a reading-comprehension test about a news article.

Write exactly {n} multiple-choice questions about the key facts that a two-sentence summary of the article would contain. Each question must be answerable from the article, not from common knowledge, and must not ask about minute details. Each question has five options A-E and exactly one correct answer.

Use exactly this format:
Q1) <question>
A. <option>
B. <option>
C. <option>
D. <option>
E. <option>
Q1 Answer: <letter>

Article:
{article}"""

JUDGE_PROMPT = """Answer each multiple-choice question using ONLY the summary below, not your own knowledge. If the summary does not contain the information needed, answer Unsure.

Questions:
{questions}

Reply with one line per question, exactly in the form "Q1) X" where X is A, B, C, D, E or Unsure.

Summary:
{summary}"""


def summary_messages(article: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": SUMMARY_PROMPT.format(article=article)}]


MCQ_JSON_FORMAT = ('\n\nReply with JSON only, instead of the format above: {"questions": [{"question": "...", '
                   '"options": ["...", "...", "...", "...", "..."], "answer": "A"}, ...]} with exactly {n} questions; '
                   'options are listed A to E in order.')
JUDGE_JSON_FORMAT = '\n\nReply with JSON only, instead of lines: {{{keys}}}.'


def mcq_messages(article: str, n: int = N_QUESTIONS, json_format: bool = False) -> list[dict[str, str]]:
    """The published MCQ prompt; `json_format` when decoding is constrained to `mcq_json_schema`."""
    content = MCQ_PROMPT.format(article=article, n=n)
    if json_format:  # the instructions must match the schema the decoder enforces
        head, sep, tail = content.partition("\n\nArticle:\n")
        content = head + MCQ_JSON_FORMAT.replace("{n}", str(n)) + sep + tail
    return [{"role": "user", "content": content}]


def format_questions(questions: list[MCQ]) -> str:
    blocks = []
    for i, q in enumerate(questions, 1):
        opts = "\n".join(f"{letter}. {opt}" for letter, opt in zip(LETTERS, q.options))
        blocks.append(f"Q{i}) {q.question}\n{opts}")
    return "\n\n".join(blocks)


def judge_messages(questions: list[MCQ], summary: str, json_format: bool = False) -> list[dict[str, str]]:
    """Questions first, summary last; `json_format` when decoding is constrained to `judge_json_schema`."""
    content = JUDGE_PROMPT.format(questions=format_questions(questions), summary=summary)
    if json_format:
        keys = ", ".join(f'"Q{i}": "A|B|C|D|E|Unsure"' for i in range(1, len(questions) + 1))
        head, sep, tail = content.partition("\n\nSummary:\n")
        content = head + JUDGE_JSON_FORMAT.format(keys=keys) + sep + tail
    return [{"role": "user", "content": content}]


def mcq_json_schema(n: int = N_QUESTIONS) -> dict:
    """Schema for constrained MCQ writing: exactly n questions, five options, a letter answer."""
    q = {
        "type": "object",
        "properties": {
            "question": {"type": "string"},
            "options": {"type": "array", "items": {"type": "string"}, "minItems": 5, "maxItems": 5},
            "answer": {"type": "string", "enum": list(LETTERS)},
        },
        "required": ["question", "options", "answer"],
        "additionalProperties": False,
    }
    return {"type": "object", "properties": {"questions": {"type": "array", "items": q, "minItems": n, "maxItems": n}},
            "required": ["questions"], "additionalProperties": False}


def judge_json_schema(n: int = N_QUESTIONS) -> dict:
    """Schema for constrained judging: one answer per question, a letter or Unsure."""
    props = {f"Q{i}": {"type": "string", "enum": [*LETTERS, UNSURE]} for i in range(1, n + 1)}
    return {"type": "object", "properties": props, "required": list(props), "additionalProperties": False}


# One answer per line ("Q1) B", "Q2: (c)", "**Q3)** Unsure"); anchored to whole lines so an
# echoed question ("Q1) A man was arrested...") is never read as an answer.
_ANSWER_RE = re.compile(r"^\W*Q\s*(\d+)\s*\W*\s*[\):.\-]?\s*[:\-]?\s*\(?\s*(Unsure|[A-Ea-e])\s*\)?\W*$",
                        re.IGNORECASE | re.MULTILINE)


def parse_judge_answers(text: str, n: int = N_QUESTIONS) -> tuple[list[str], str | None]:
    """Answers for Q1..Qn from judge output (JSON or `Qk) X` lines).

    Missing questions default to Unsure (published behaviour). Returns (answers, error) where
    error is "no_judge_output" for empty output (the row is then dropped) and "unparseable"
    when not a single answer was found (the row is kept with all Unsure, and counted).
    """
    if not text or not text.strip():
        return [UNSURE] * n, "no_judge_output"
    answers: dict[int, str] = {}
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            obj = json.loads(stripped)
            for k, v in obj.items():
                m = re.fullmatch(r"Q?(\d+)", str(k).strip(), re.IGNORECASE)
                if m and isinstance(v, str):
                    answers[int(m.group(1))] = v.strip()
        except json.JSONDecodeError:
            pass
    if not answers:
        for m in _ANSWER_RE.finditer(text):
            answers[int(m.group(1))] = m.group(2)  # the last answer to a question wins
    out = []
    for i in range(1, n + 1):
        a = answers.get(i, UNSURE)
        a = UNSURE if a.lower() == "unsure" else a.upper()
        out.append(a if a in LETTERS else UNSURE)
    return out, (None if answers else "unparseable")
