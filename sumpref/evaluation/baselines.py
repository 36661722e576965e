"""Extractive baselines: summaries cut from the article's opening, evaluated like a model.

Specs (`EvalModel.extract` in the evaluation config):
- `lead:K`: the article's first K sentences (lead-3, the baseline every CNN/DM paper reports);
- `lead-words:N`: the article's first N words, cut at a word boundary.

`match_words` truncates any baseline to another model's word count for the same article, so a
baseline and a model can be compared at equal length, article by article.

Sentences are split by `sumpref.sentences.split_sentences`, the splitter that also counts a
summary's sentences for the format metrics (`sumpref.evaluation.format`), so lead-3 has exactly 3
sentences by that count.
"""

from __future__ import annotations

import re

from sumpref.sentences import split_sentences

SPEC_RE = re.compile(r"^(lead):([1-9][0-9]*)$|^(lead-words):([1-9][0-9]*)$")


def parse_spec(spec: str) -> tuple[str, int]:
    """`"lead:3"` -> ("lead", 3); `"lead-words:40"` -> ("lead-words", 40); else ValueError."""
    m = SPEC_RE.match(spec or "")
    if not m:
        raise ValueError(f"{spec!r} is not a baseline spec: use 'lead:K' (first K sentences) or 'lead-words:N' "
                         "(first N words)")
    kind, n = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
    return kind, int(n)


def extract(article: str, spec: str) -> str:
    """The baseline summary of `article` named by `spec`."""
    kind, n = parse_spec(spec)
    if kind == "lead":
        return " ".join(split_sentences(article)[:n])
    return " ".join(article.split()[:n])


def match_words(summary: str, n_words: int) -> str:
    """`summary` cut to its first `n_words` words (whitespace-separated, as `word_count` counts)."""
    return " ".join(summary.split()[:max(0, n_words)])


class LeadSummarizer:
    """Shard worker (`fanout.run_shards`): article rows in, the baseline's summary rows out, in the
    columns `sampling.Summarizer` writes (one summary per article, `finish_reason` "stop"). A row's
    `match_words` (when present) cuts its summary to that many words."""

    def __init__(self, spec: str):
        parse_spec(spec)
        self.spec = spec

    def load(self) -> None:
        pass

    def run(self, rows: list[dict]):
        from sumpref.backends.base import BackendStats

        out = []
        for r in rows:
            text = extract(r["article"], self.spec)
            if r.get("match_words") is not None:
                text = match_words(text, int(r["match_words"]))
            out.append({"article_id": r["id"], "sample_idx": 0, "summary": text, "prompt_text": None,
                        "n_words": len(text.split()), "article_words": r.get("orig_words") or len(r["article"].split()),
                        "output_tokens": 0, "finish_reason": "stop", "gen_error": None})
        return out, BackendStats()
