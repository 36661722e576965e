"""Sentences: a rule-based splitter, the end-of-sentence test, and the stop-after-N-sentences rule.

`split_sentences` splits at end punctuation followed by space and a capital, digit or quote, and
keeps common abbreviations ("Mr.", "U.S.", single initials) inside their sentence. One splitter
for everyone who counts or cuts sentences: the lead-K baseline (`sumpref.evaluation.baselines`),
the format metrics (`sumpref.evaluation.format`), the format rule in pairs (`sumpref.pairs`) and
the sampler's sentence stop (`sumpref.sampling`), so lead-3 has exactly 3 sentences by every count.
"""

from __future__ import annotations

import re

# Tokens that end in a period without ending a sentence.
_ABBREV = {"mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "gen", "col", "lt", "sgt", "capt", "gov", "sen", "rep",
           "rev", "hon", "no", "vs", "etc", "inc", "ltd", "co", "corp", "jan", "feb", "mar", "apr", "aug", "sept",
           "sep", "oct", "nov", "dec", "mt", "ft", "u.s", "u.k", "u.n", "e.g", "i.e", "a.m", "p.m", "d.c"}
_BOUNDARY = re.compile(r"([.!?]+['\"\u2019\u201d)]*)\s+(?=[\"'\u2018\u201c(]?[A-Z0-9])")


def _ends_abbreviation(text: str) -> bool:
    last = text.rsplit(None, 1)[-1] if text.split() else ""
    word = last.rstrip(".").lstrip("(\"'").lower()
    return word in _ABBREV or (len(word) == 1 and word.isalpha())


def split_sentences(text: str | None) -> list[str]:
    """The sentences of `text`, in order, stripped; an empty text has none."""
    text = " ".join((text or "").split())
    out, start = [], 0
    for m in _BOUNDARY.finditer(text):
        piece = text[start:m.end(1)]
        if m.group(1) == "." and _ends_abbreviation(piece):
            continue
        out.append(piece.strip())
        start = m.end()
    tail = text[start:].strip()
    if tail:
        out.append(tail)
    return [s for s in out if s]


def stop_after_sentences(text: str, n: int) -> str | None:
    """`text` cut after its `n`-th sentence when more follows, else None: the stop rule of a decoder
    asked for at most `n` sentences (applied to the text, as an API's stop sequence would be)."""
    sentences = split_sentences(text)
    if len(sentences) <= n:
        return None
    return " ".join(sentences[:n])


_END_RE = re.compile(r"[.!?][\"'\u2019\u201d)\]]*$")


def ends_sentence(text: str | None) -> bool:
    """The text's last character (before closing quotes or brackets) is `.`, `!` or `?`."""
    return bool(_END_RE.search((text or "").rstrip()))
