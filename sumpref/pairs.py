"""Preference pairs from judged summaries.

Columns in (judged rows): `article_id, sample_idx, summary, n_correct, n_words, prompt_text`.
Columns out (pairs): `article_id, prompt, chosen, rejected` (chat messages, the published
format: chosen/rejected hold the user turn and one assistant turn), plus `chosen_correct,
rejected_correct, chosen_words, rejected_words`. Train/validation split is by ARTICLE, so no
article leaks across splits (the published example split at the pair level).
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import random
import unicodedata

from sumpref.config import PairsConfig
from sumpref.sentences import ends_sentence, split_sentences


def has_junk(text: str) -> bool:
    """Control characters, replacement characters or leaked chat-template markup."""
    if "\ufffd" in text or "<|" in text or "|>" in text:
        return True
    return any(unicodedata.category(ch) in ("Cc", "Cs", "Co") and ch not in "\n\t" for ch in text)


def failed_reason(row: dict) -> str | None:
    """Why a summary is no evidence either way (never generated, or never judged), else None."""
    err = str(row.get("judge_error") or "")
    if row.get("gen_error"):
        return "generation_error"
    if err == "no_judge_output" or err.startswith("generation_error"):
        return err
    return None


def filter_reason(summary: str | None, n_words: int, cfg: PairsConfig) -> str | None:
    """Why a judged summary cannot enter a pair, or None if it can."""
    if not summary or not summary.strip():
        return "empty_summary"
    if n_words < cfg.min_words:
        return "too_short"
    if n_words >= cfg.max_words:
        return "too_long"
    if has_junk(summary):
        return "junk_characters"
    return None


def prefer(a: dict, b: dict, cfg: PairsConfig) -> int:
    """+1 if `a` wins, -1 if `b` wins, 0 for a tie.

    Both at least `min_correct_for_length` correct: the shorter wins if the word counts differ
    by at least `length_margin`, else tie. Otherwise the one with more correct answers wins.
    """
    ca, cb = a["n_correct"], b["n_correct"]
    if min(ca, cb) < cfg.min_correct_for_length:
        return (ca > cb) - (ca < cb)
    diff = b["n_words"] - a["n_words"]
    if abs(diff) < cfg.length_margin:
        return 0
    return 1 if diff > 0 else -1


def format_ok(row: dict, cfg: PairsConfig) -> bool:
    """The summary keeps the prompt's format: generation ended by itself (not cut by the token
    limit), it has 1 to `cfg.max_sentences` sentences, and its last one is complete (ends with
    `.`, `!` or `?`). Without the last condition a policy learns to stop mid-sentence: the first GPU
    round with the rule (benchmarks/RESULTS.md, "Lead-3") ended 49% of its summaries that way."""
    return row.get("finish_reason") != "length" and _complete_sentences(row["summary"], cfg.max_sentences)


@functools.lru_cache(maxsize=65536)
def _complete_sentences(summary: str | None, max_sentences: int) -> bool:
    """1 to `max_sentences` sentences, the last one complete. Cached: each summary meets every other
    summary of its article in `article_pairs`, so it would be split n - 1 times."""
    return 1 <= len(split_sentences(summary)) <= max_sentences and ends_sentence(summary)


def prefer_for_training(a: dict, b: dict, cfg: PairsConfig) -> int | None:
    """`prefer`, after the format rule when `cfg.format_rule`: a summary in the prompt's format beats
    one that is not; two out of format give None (no pair)."""
    if cfg.format_rule:
        fa, fb = format_ok(a, cfg), format_ok(b, cfg)
        if fa != fb:
            return 1 if fa else -1
        if not fa:
            return None
    return prefer(a, b, cfg)


def _rng(seed: int, key: str) -> random.Random:
    return random.Random(int(hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()[:16], 16))


def article_pairs(rows: list[dict], cfg: PairsConfig) -> tuple[list[tuple[dict, dict]], int]:
    """(chosen, rejected) pairs for one article's usable summaries, sampled; plus the count of
    undecided pairs (ties, and with `cfg.format_rule` two summaries out of format)."""
    rows = sorted(rows, key=lambda r: r["sample_idx"])
    decided, ties = [], 0
    for a, b in itertools.combinations(rows, 2):
        p = prefer_for_training(a, b, cfg)
        if not p:
            ties += 1
        else:
            decided.append((a, b) if p > 0 else (b, a))
    if len(decided) > cfg.max_pairs_per_article:
        decided = _rng(cfg.seed, rows[0]["article_id"]).sample(decided, cfg.max_pairs_per_article)
    return decided, ties


def best_worst_pair(rows: list[dict], cfg: PairsConfig) -> tuple[list[tuple[dict, dict]], int]:
    """Best vs worst of one article's usable summaries by score (in the prompt's format first when
    `cfg.format_rule`, then more correct, then fewer words), as iterative-DPO recipes pick pairs;
    no pair (one tie) when the two score the same, or are both out of format."""
    if len(rows) < 2:
        return [], 0

    def score(r: dict) -> tuple:
        return (not format_ok(r, cfg)) if cfg.format_rule else False, -r["n_correct"], r["n_words"]

    ordered = sorted(rows, key=lambda r: (*score(r), r["sample_idx"]))
    best, worst = ordered[0], ordered[-1]
    if score(best) == score(worst) or (cfg.format_rule and not format_ok(best, cfg)):
        return [], 1
    return [(best, worst)], 0


def is_valid_article(article_id: str, cfg: PairsConfig) -> bool:
    """Seeded, stable article-level assignment to the validation split."""
    return _rng(cfg.seed, "split:" + article_id).random() < cfg.valid_fraction


def build_pairs(judged: list[dict], cfg: PairsConfig) -> tuple[list[dict], list[dict], dict]:
    """Return (pair rows, dropped summary rows with reasons, counts)."""
    by_article: dict[str, list[dict]] = {}
    drops: list[dict] = []
    for r in judged:
        reason = (r.get("drop_reason") or ("generation_error" if r.get("gen_error") else None)
                  or filter_reason(r.get("summary"), r.get("n_words", 0), cfg))
        if reason:
            drops.append({"article_id": r["article_id"], "sample_idx": r["sample_idx"], "reason": reason})
            continue
        by_article.setdefault(r["article_id"], []).append(r)
    pairs: list[dict] = []
    counts = {"ties": 0, "articles_with_pairs": 0, "articles_without_pairs": 0}
    for aid in sorted(by_article):
        decided, ties = (best_worst_pair(by_article[aid], cfg) if cfg.selection == "best_worst"
                         else article_pairs(by_article[aid], cfg))
        counts["ties"] += ties
        counts["articles_with_pairs" if decided else "articles_without_pairs"] += 1
        split = "valid" if is_valid_article(aid, cfg) else "train"
        for ch, rj in decided:
            user = {"role": "user", "content": ch["prompt_text"]}
            pairs.append({
                "article_id": aid, "split": split,
                "prompt": [user],
                "chosen": [user, {"role": "assistant", "content": ch["summary"]}],
                "rejected": [user, {"role": "assistant", "content": rj["summary"]}],
                "chosen_correct": ch["n_correct"], "rejected_correct": rj["n_correct"],
                "chosen_words": ch["n_words"], "rejected_words": rj["n_words"],
            })
    for d in drops:
        counts[f"dropped_{d['reason']}"] = counts.get(f"dropped_{d['reason']}", 0) + 1
    counts["pairs_train"] = sum(p["split"] == "train" for p in pairs)
    counts["pairs_valid"] = sum(p["split"] == "valid" for p in pairs)
    return pairs, drops, counts
