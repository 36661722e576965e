"""Embedded cloze judge: MCQs from masked reference facts, answered by string matching. No model.

Contract:
- `build_cloze_questions(article, highlights, n_questions, seed)` -> `ParseResult` holding exactly
  `n_questions` `MCQ`s, or `ParseResult(error="empty_article" | "too_few_candidates")`; never raises
  on odd text. Each question is a reference sentence with one span replaced by `_____`. Sources, in
  order: names and numbers of the highlights, then of the article's lead sentences (the only
  source when highlights are missing), then content words of the highlights. The masked span is
  the correct option and always occurs in the article; the four distractors are distinct spans of
  the same type from the article, most frequent first (hard negatives: the spans a summary of
  this article is likely to mention). The correct letter is placed with `random.Random(seed)`;
  everything else is deterministic.
- `answer_from_summary(questions, summary)` -> one letter in `LETTERS` or `UNSURE` per question.
  An option is *present* when its words occur in the summary (a name also by its last word).
  Among present options the judge picks the one whose occurrence is surrounded by the words that
  surround the blank, at similar distances on the same side. So a long extractive summary that
  names several options is answered on evidence rather than refused. No option present, or a tie
  at the top -> `UNSURE`.
- `option_support(questions, summary)` exposes the per-option evidence (for soft scores).

Works on cased, lowercased and PTB-tokenized text (`-LRB-`, `n't`, `` `` ``): names are found
from capitalisation in whichever of article/highlights is cased; when neither is, content words
stand in for names. Pure functions, stdlib only, nothing done at import.
"""

from __future__ import annotations

import functools
import random
import re
from collections import Counter
from dataclasses import dataclass

from sumpref.judging.mcq import LETTERS, MCQ, UNSURE, ParseResult

BLANK = "_____"
N_LEAD_SENTENCES = 3  # lead sentences top up thin highlights; without highlights 5 stand in for them
CONTEXT_WINDOW = 12  # content words on each side of a blank / an option occurrence that count as context

_PTB = {"-lrb-": "(", "-rrb-": ")", "-lsb-": "[", "-rsb-": "]", "-lcb-": "{", "-rcb-": "}", "``": '"', "''": '"'}
_PTB_RE = re.compile(r"-[LR][RSC]B-|``|''", re.IGNORECASE)
# A token: a word or number (keeping 1,000 / 3.5 / o'neill together), or one other symbol.
_TOKEN_RE = re.compile(r"\w+(?:[.,'’]\w+)*|[^\w\s]")
_CLITIC_RE = re.compile(r"^(\w+?)(n['’]t|['’](?:s|re|ve|ll|d|m))$", re.IGNORECASE)
_SENT_SPLIT_RE = re.compile(r"(?<=[.!?])\s+(?=[\"'`“‘(\-]*\s*[A-Z0-9])|\n+")
_NUMBER_RE = re.compile(r"^\d+(?:[.,]\d+)*$")
_ORDINAL_RE = re.compile(r"^\d+(?:st|nd|rd|th)$", re.IGNORECASE)

_NUMBER_WORDS = {
    w: str(i)
    for i, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
        "fifteen sixteen seventeen eighteen nineteen twenty".split()
    )
} | {"thirty": "30", "forty": "40", "fifty": "50", "sixty": "60", "seventy": "70", "eighty": "80",
     "ninety": "90", "hundred": "100", "dozen": "12"}
_SCALES = {"thousand", "million", "billion", "trillion", "hundred", "m", "bn", "k"}
_CURRENCY = {"$", "£", "€", "¥"}
_PERCENT = {"%", "percent", "per"}  # "per cent" is handled as "per" followed by "cent"

_NUMERIC_KINDS = frozenset({"YEAR", "MONEY", "PERCENT", "ORDINAL", "NUMBER"})
_STOPWORDS = frozenset(
    """a about above after again against all also am an and any are as at be because been before being
    below between both but by can could did do does doing down during each few for from further had has
    have having he her here hers herself him himself his how i if in into is it its itself just me more
    most my myself no nor not now of off on once only or other our ours out over own said same says she
    should so some such than that the their theirs them themselves then there these they this those
    through to too under until up very was we were what when where which while who whom why will with
    would you your yours yourself n't nt s t d ll m re ve o y one mr mrs ms dr cnn mail daily
    mailonline per cent percent year years old last first week day time told says say""".split()
)


@dataclass(frozen=True)
class _Span:
    text: str  # surface form, as written in the source
    key: tuple[str, ...]  # normalised tokens used for matching
    kind: str  # "NAME", "WORD", "YEAR", "MONEY", "PERCENT", "ORDINAL", "NUMBER"


# ---------------------------------------------------------------------------------------------
# Normalisation


def _raw_tokens(text: str) -> list[str]:
    """Surface tokens with PTB brackets/quotes undone and clitics split off as PTB does
    ("Zürich's" -> "Zürich", "'s"; "didn't" -> "did", "n't"); case kept."""
    text = _PTB_RE.sub(lambda m: f" {_PTB[m.group(0).lower()]} ", text)
    out = []
    for tok in _TOKEN_RE.findall(text):
        m = _CLITIC_RE.match(tok) if ("'" in tok or "’" in tok) else None
        out.extend(m.groups() if m else (tok,))
    return out


@functools.lru_cache(maxsize=1 << 16)  # the same few thousand words recur across all summaries
def _norm(token: str) -> str:
    """Matching form: lowercase, curly apostrophes straightened, number words and 1,000 -> digits."""
    t = token.lower().replace("’", "'")
    if t in _NUMBER_WORDS:
        return _NUMBER_WORDS[t]
    if _NUMBER_RE.match(t) and "," in t:
        return t.replace(",", "")
    return t


def _content(tokens: list[str]) -> list[str]:
    return [t for t in tokens if t not in _STOPWORDS and (t[0].isalnum())]


def _sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENT_SPLIT_RE.split(text) if s and len(s.split()) >= 4]


def _is_cased(text: str) -> bool:
    """True when capitalisation carries information (not a lowercased source)."""
    words = [w for w in re.findall(r"[^\W\d_]+", text)[:400]]
    caps = sum(w[0].isupper() for w in words)
    return len(words) > 0 and caps / len(words) > 0.04


# ---------------------------------------------------------------------------------------------
# Candidate spans


def _proper_words(cased_text: str) -> set[str]:
    """Lowercased words that the text capitalises more often than not away from sentence starts,
    plus sentence-initial-only words that are never written lowercase and open a name run
    ("Christopher" in "Christopher Lawler said ...")."""
    caps: Counter[str] = Counter()
    lower: Counter[str] = Counter()
    initial: list[tuple[str, str]] = []  # (word, next word) for capitalised sentence starts
    for sent in _sentences(cased_text) or [cased_text]:
        toks = _raw_tokens(sent)
        for i, t in enumerate(toks):
            if not t[0].isalpha():
                continue
            after_start = i > 0 and toks[i - 1] not in {'"', "(", "'", "‘", "“", "-", ":"}
            if t[0].isupper() and after_start:
                caps[t.lower()] += 1
            elif t[0].isupper() and i + 1 < len(toks):
                initial.append((t.lower(), toks[i + 1].lower()))
            elif t[0].islower():
                lower[t.lower()] += 1
    proper = {w for w, c in caps.items() if c > lower[w] and w not in _STOPWORDS}
    proper |= {w for w, nxt in initial if nxt in proper and not lower[w] and w not in _STOPWORDS}
    return proper


def _number_span(toks: list[str], i: int) -> tuple[int, _Span] | None:
    """A number starting at toks[i] (with currency, scale and percent), as (end, span)."""
    t = _norm(toks[i])
    if _ORDINAL_RE.match(t):
        return i + 1, _Span(toks[i], (t,), "ORDINAL")
    if not _NUMBER_RE.match(t):
        return None
    start, end, kind = i, i + 1, "NUMBER"
    if i > 0 and toks[i - 1] in _CURRENCY:
        start, kind = i - 1, "MONEY"
    if end < len(toks) and toks[end].lower() in _SCALES:
        end += 1
    if end < len(toks) and toks[end].lower() in _PERCENT:
        end += 2 if toks[end].lower() == "per" and end + 1 < len(toks) and toks[end + 1].lower() == "cent" else 1
        kind = "PERCENT" if toks[end - 1].lower() in {"%", "percent", "cent"} else kind
    if kind == "NUMBER" and len(t) == 4 and t[:2] in {"19", "20"}:
        kind = "YEAR"
    key = tuple(_norm(x) for x in toks[i:end] if x not in _CURRENCY and x.lower() not in {"per", "cent", "percent", "%"})
    return end, _Span(" ".join(toks[start:end]), key, kind)


def _spans(sentence: str, proper: set[str] | None) -> list[_Span]:
    """Names (maximal runs of proper words, `of` allowed inside) and numbers in one sentence.

    With `proper=None` (no cased text available) single content words stand in for names.
    """
    toks = _raw_tokens(sentence)
    out: list[_Span] = []
    i = 0
    while i < len(toks):
        if (num := _number_span(toks, i)) is not None:
            i, span = num
            out.append(span)
            continue
        if proper is None:
            t = _norm(toks[i])
            if t.isalpha() and len(t) >= 4 and t not in _STOPWORDS:
                out.append(_Span(toks[i], (t,), "WORD"))
            i += 1
            continue
        j = i
        while j < len(toks) and (
            toks[j].lower() in proper
            or (toks[j].lower() in {"of", "de", "van", "von"} and j > i and j + 1 < len(toks) and toks[j + 1].lower() in proper)
        ):
            j += 1
        if j > i:
            out.append(_Span(" ".join(toks[i:j]), tuple(_norm(x) for x in toks[i:j]), "NAME"))
            i = j
        else:
            i += 1
    return out


def _article_pool(article: str, proper: set[str] | None) -> dict[str, list[_Span]]:
    """Distinct spans of each kind in the article, most frequent first (ties: first mention)."""
    counts: Counter[tuple[str, tuple[str, ...]]] = Counter()
    first: dict[tuple[str, tuple[str, ...]], _Span] = {}
    for sent in _sentences(article) or [article]:
        for sp in _spans(sent, proper):
            k = (sp.kind, sp.key)
            counts[k] += 1
            first.setdefault(k, sp)
    pool: dict[str, list[_Span]] = {}
    for k, _ in sorted(counts.items(), key=lambda kv: -kv[1]):  # stable: keeps first-mention order
        pool.setdefault(k[0], []).append(first[k])
    return pool


def _contains(haystack: list[str], needle: tuple[str, ...]) -> bool:
    n = len(needle)
    return any(tuple(haystack[i : i + n]) == needle for i in range(len(haystack) - n + 1))


# ---------------------------------------------------------------------------------------------
# Question building


def _question_for(sentence: str, span: _Span, pool: dict[str, list[_Span]]) -> tuple[str, list[str]] | None:
    """The cloze text and four distractors for `span` in `sentence`, or None if too few distractors."""
    toks = _raw_tokens(sentence)
    sent_norm = [_norm(t) for t in toks]
    used_words = set(span.key) - _STOPWORDS
    distractors: list[str] = []
    seen = {span.key}
    candidates = pool.get(span.kind, [])
    if span.kind in _NUMERIC_KINDS and len(candidates) < len(LETTERS):
        # Few spans of this exact kind: any number of the article will do as a distractor.
        candidates = candidates + [c for k in sorted(_NUMERIC_KINDS) if k != span.kind for c in pool.get(k, [])]
    for cand in candidates:
        # Skip the answer's aliases (shared words: "Townsend" for "Andros Townsend") and spans
        # the question itself shows: either would make the item trivial or ambiguous.
        # Distractors must also be distinct entities: one option per person, not "Falcao" and
        # "Radamel Falcao" side by side.
        if cand.key in seen or used_words & set(cand.key) or _contains(sent_norm, cand.key):
            continue
        seen.add(cand.key)
        used_words |= set(cand.key) - _STOPWORDS
        distractors.append(cand.text)
        if len(distractors) == len(LETTERS) - 1:
            break
    if len(distractors) < len(LETTERS) - 1:
        return None
    surface = " ".join(toks)
    question = surface.replace(span.text, BLANK, 1)
    if question == surface:
        return None
    return question, distractors


def build_cloze_questions(article: str, highlights: str | None, n_questions: int = 5, seed: int = 0) -> ParseResult:
    """Build `n_questions` cloze MCQs for one article; deterministic given (article, highlights, seed).

    Source sentences are the highlight lines (one per line, or split into sentences), topped up
    with the article's lead sentences; without highlights only the lead is used. A blank is a name
    or number of the source sentence that also occurs in the article (so a faithful summary can
    contain it). Questions go round-robin over source sentences so that they cover different
    facts; no answer is asked twice. Returns `ParseResult(error="empty_article")` or
    `ParseResult(error="too_few_candidates")` instead of raising.
    """
    if not article or not article.strip():
        return ParseResult(error="empty_article")
    article_cased = _is_cased(article)
    cased = article if article_cased else (highlights if highlights and _is_cased(highlights) else None)
    proper = _proper_words(cased) if cased else None
    pool = _article_pool(article, proper)
    article_text = _Text.of(article)

    hl_sents: list[str] = []
    for line in (highlights or "").splitlines():
        hl_sents.extend(_sentences(line) or ([line.strip()] if line.strip() else []))
    # Without highlights the lead must carry all questions: take two more sentences of it.
    lead = _sentences(article)[:N_LEAD_SENTENCES if hl_sents else N_LEAD_SENTENCES + 2]
    # Tiers, best first: names and numbers of the highlights, then of the lead; content words of
    # the highlights only when names and numbers run out (short, name-poor stories).
    tiers = [
        lambda: _items(hl_sents, proper, pool, article_text),
        lambda: _items(lead, proper, pool, article_text),
    ]
    if proper is not None:
        tiers.append(lambda: _items(hl_sents or lead, None, _article_pool(article, None), article_text, kinds={"WORD"}))

    rng = random.Random(seed)
    chosen: list[MCQ] = []
    asked: set[str] = set()  # words of answers already used: one question per entity
    for tier in tiers:
        if len(chosen) == n_questions:
            break
        for question, answer, distractors in _round_robin(tier()):
            if len(chosen) == n_questions:
                break
            words = set(_content([_norm(t) for t in _raw_tokens(answer)])) - _SCALES
            if words & asked:
                continue
            asked |= words
            if not article_cased:
                answer = answer.lower()  # distractors are lowercase too: case must not give it away
            pos = rng.randrange(len(LETTERS))
            options = distractors[:pos] + [answer] + distractors[pos:]
            chosen.append(MCQ(question, tuple(options), LETTERS[pos]))
    if len(chosen) < n_questions:
        return ParseResult(error="too_few_candidates")
    return ParseResult(questions=chosen)


_Item = tuple[str, str, list[str]]  # (cloze text, answer, distractors)


def _items(sentences: list[str], proper: set[str] | None, pool: dict[str, list[_Span]],
           article_text: "_Text", kinds: set[str] | None = None) -> list[list[_Item]]:
    """Candidate questions per sentence, in sentence order; the answer must occur in the article."""
    per_sentence = []
    for sent in sentences:
        items = []
        for sp in _spans(sent, proper):
            if kinds is not None and sp.kind not in kinds:
                continue
            if _find(article_text, sp.key) and (q := _question_for(sent, sp, pool)) is not None:
                items.append((q[0], sp.text, q[1]))
        per_sentence.append(items)
    return per_sentence


def _round_robin(per_sentence: list[list[_Item]]) -> list[_Item]:
    """First candidate of every sentence, then every second one...: spreads questions over facts."""
    depth = max((len(items) for items in per_sentence), default=0)
    return [items[d] for d in range(depth) for items in per_sentence if d < len(items)]


# ---------------------------------------------------------------------------------------------
# Answering


def _find(text: "_Text", key: tuple[str, ...]) -> list[tuple[int, int]]:
    """(start, end) of every exact occurrence of `key` in `text`."""
    n = len(key)
    if n == 0:
        return []
    return [(i, i + n) for i in text.positions.get(key[0], ()) if tuple(text.tokens[i : i + n]) == key]


def _occurrences(text: "_Text", key: tuple[str, ...]) -> list[tuple[int, int]]:
    """Exact occurrences of an option; failing those, a multi-word name also matches by its last
    word ("Townsend" for "Andros Townsend"), the way a summary refers to someone already introduced."""
    hits = _find(text, key)
    if not hits and len(key) > 1 and key[-1] not in _STOPWORDS and not key[-1].isdigit():
        hits = [(i, i + 1) for i in text.positions.get(key[-1], ())]
    return hits


@dataclass(frozen=True)
class _Text:
    """A summary prepared for matching: normalised tokens and which of them are content words."""

    tokens: list[str]
    content: list[bool]
    positions: dict[str, list[int]]

    @classmethod
    def of(cls, text: str) -> "_Text":
        toks = [_norm(t) for t in _raw_tokens(text or "")]
        positions: dict[str, list[int]] = {}
        for i, t in enumerate(toks):
            positions.setdefault(t, []).append(i)
        return cls(toks, [t not in _STOPWORDS and t[0].isalnum() for t in toks], positions)

    def side(self, start: int, step: int) -> dict[str, int]:
        """Content words from `start` walking by `step`, up to `CONTEXT_WINDOW` of them, each with
        its distance in content words (1 = adjacent; nearest occurrence kept)."""
        out: dict[str, int] = {}
        i, d = start, 0
        while 0 <= i < len(self.tokens) and d < CONTEXT_WINDOW:
            if self.content[i]:
                d += 1
                out.setdefault(self.tokens[i], d)
            i += step
        return out


def _alignment(q_left: dict[str, int], q_right: dict[str, int], s_left: dict[str, int], s_right: dict[str, int]) -> float:
    """How well the words around an option's occurrence reproduce the words around the blank.

    Each question context word found near the occurrence adds 1 / (1 + offset difference): a
    copied or lightly edited sentence scores close to the number of context words, a shared word
    far away or on the other side of the option (voice changes) much less.
    """
    score = 0.0
    for q_side, same, other in ((q_left, s_left, s_right), (q_right, s_right, s_left)):
        for w, dq in q_side.items():
            best = 0.0
            if w in same:
                best = 1.0 / (1 + abs(same[w] - dq))
            if w in other:
                best = max(best, 0.5 / (1 + abs(other[w] - dq)))
            score += best
    return score


@functools.lru_cache(maxsize=4096)  # a question is answered against many summaries
def _prepare(question: MCQ) -> tuple[list[tuple[str, ...]], dict[str, int], dict[str, int], int]:
    """Option keys and the blank's left/right context (content words with distances)."""
    keys = [tuple(_norm(t) for t in _raw_tokens(o)) for o in question.options]
    option_words = {w for k in keys for w in k}
    left, _, right = question.question.partition(BLANK)
    q_before, q_after = _Text.of(left), _Text.of(right)
    q_left = {w: d for w, d in q_before.side(len(q_before.tokens) - 1, -1).items() if w not in option_words}
    q_right = {w: d for w, d in q_after.side(0, 1).items() if w not in option_words}
    return keys, q_left, q_right, max(1, len(q_left) + len(q_right))


def _support(question: MCQ, summary: _Text) -> list[float]:
    keys, q_left, q_right, n_context = _prepare(question)
    support = []
    for key in keys:
        best = 0.0
        for start, end in _occurrences(summary, key):
            s_left, s_right = summary.side(start - 1, -1), summary.side(end, 1)
            best = max(best, 1.0 + _alignment(q_left, q_right, s_left, s_right) / n_context)
        support.append(best)
    return support


def option_support(questions: list[MCQ], summary: str) -> list[list[float]]:
    """Evidence for each option of each question (A-E order): 0.0 when the option does not occur
    in the summary, otherwise 1 + the share (0-1) of the blank's context that the words around its
    best occurrence reproduce (see `_alignment`; the options' own words never count as context)."""
    prepared = _Text.of(summary)
    return [_support(q, prepared) for q in questions]


def answer_from_summary(questions: list[MCQ], summary: str) -> list[str]:
    """Answer each question from the summary alone: one letter in `LETTERS` or `UNSURE` each.

    The option with the most support wins (see `option_support`). `UNSURE` when no option occurs
    in the summary, or when several do and context does not single one out (a tie at the top).
    """
    answers = []
    for support in option_support(questions, summary):
        top = max(support)
        if top == 0.0 or support.count(top) > 1:
            answers.append(UNSURE)
        else:
            answers.append(LETTERS[support.index(top)])
    return answers
