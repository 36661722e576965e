"""Meta-evaluation of the embedded cloze judge against SummEval expert ratings.

Summary level: for each article, Kendall tau-b and Spearman between a score and the human
rating across the article's 16 system summaries, averaged over the 100 articles (an article
where a score is constant counts as 0: a judge that cannot separate the summaries agrees with
nobody). ROUGE-1 F against the reference highlights is the number to beat.

Usage: PYTHONPATH=. .venv/bin/python benchmarks/meta_eval.py [--data-dir ../shared/data] [--out benchmarks/META_EVAL.md]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import sys
import time
from collections import defaultdict
from pathlib import Path

from rouge_score import rouge_scorer

from sumpref.cloze import answer_from_summary, build_cloze_questions, option_support
from sumpref.mcq import LETTERS, MCQ, score_answers

REPO = Path(__file__).resolve().parent.parent
HUMAN_KEYS = ("relevance", "consistency")


def load_articles(data_dir: Path) -> dict[str, list[dict]]:
    """SummEval rows grouped by article, each row carrying the highlights to build questions from."""
    highlights = {}
    with open(data_dir / "cnndm_summeval.jsonl") as f:
        for line in f:
            a = json.loads(line)
            if a.get("highlights"):
                highlights[a["id"]] = a["highlights"]
    groups: dict[str, list[dict]] = defaultdict(list)
    with open(data_dir / "human_summeval.jsonl") as f:
        for line in f:
            r = json.loads(line)
            r["highlights"] = highlights.get(r["article_id"]) or r["reference"]
            groups[r["article_id"]].append(r)
    return groups


def evidence(questions: list[MCQ], summary: str) -> float:
    """Tie-breaker in [0, 1]: mean over questions of the share of the blank's context that the
    summary reproduces around the *correct* option (0 where it is absent). Separates summaries with
    the same number correct by how closely they state the reference facts."""
    if not questions:
        return 0.0
    supports = option_support(questions, summary)
    return sum(max(0.0, s[LETTERS.index(q.answer)] - 1.0) for q, s in zip(questions, supports)) / len(questions)


def strict_correct(questions: list[MCQ], summary: str) -> int:
    """Ablation: the known-bad rule "answer only when exactly one option occurs in the summary"."""
    correct = 0
    for q, support in zip(questions, option_support(questions, summary)):
        present = [i for i, s in enumerate(support) if s > 0]
        correct += len(present) == 1 and LETTERS[present[0]] == q.answer
    return correct


def score_article(rows: list[dict], rouge) -> tuple[dict[str, list[float]], str | None]:
    """All scores of one article's summaries, by score name; plus the question-building error."""
    first = rows[0]
    built = build_cloze_questions(first["article"], first["highlights"], n_questions=5, seed=0)
    built10 = build_cloze_questions(first["article"], first["highlights"], n_questions=10, seed=0)
    scores: dict[str, list[float]] = defaultdict(list)
    for r in rows:
        qs = built.questions
        correct = score_answers(qs, answer_from_summary(qs, r["summary"])) if built.ok else 0
        scores["cloze correct (0-5)"].append(correct)
        scores["cloze correct + evidence tie-break"].append(correct + 0.5 * evidence(qs, r["summary"]))
        scores["ablation: strict exactly-one-present answering"].append(strict_correct(qs, r["summary"]) if built.ok else 0)
        qs10 = built10.questions
        correct10 = score_answers(qs10, answer_from_summary(qs10, r["summary"])) if built10.ok else 0
        scores["cloze correct, 10 questions"].append(correct10)
        scores["cloze correct + tie-break, 10 questions"].append(correct10 + 0.5 * evidence(qs10, r["summary"]))
        scores["ROUGE-1 F vs reference"].append(rouge.score(r["reference"], r["summary"])["rouge1"].fmeasure)
    # A combination, for reference: mean of the two within-article ranks (no tuned weights).
    cloze_ranks = _ranks(scores["cloze correct + evidence tie-break"])
    rouge_ranks = _ranks(scores["ROUGE-1 F vs reference"])
    scores["rank mean: cloze (+tie-break) & ROUGE-1"] = [(a + b) / 2 for a, b in zip(cloze_ranks, rouge_ranks)]
    return scores, built.error


def kendall_tau_b(x: list[float], y: list[float]) -> float:
    """Kendall tau-b (ties in either list handled); NaN when either list is constant."""
    concordant = discordant = ties_x = ties_y = 0
    for i in range(len(x)):
        for j in range(i + 1, len(x)):
            dx, dy = x[i] - x[j], y[i] - y[j]
            if dx == 0 and dy == 0:
                continue
            if dx == 0:
                ties_x += 1
            elif dy == 0:
                ties_y += 1
            elif (dx > 0) == (dy > 0):
                concordant += 1
            else:
                discordant += 1
    denom = math.sqrt((concordant + discordant + ties_x) * (concordant + discordant + ties_y))
    return (concordant - discordant) / denom if denom else math.nan


def _ranks(values: list[float]) -> list[float]:
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def spearman_rho(x: list[float], y: list[float]) -> float:
    """Spearman rho: Pearson correlation of average ranks; NaN when either list is constant."""
    rx, ry = _ranks(x), _ranks(y)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    vx, vy = sum((a - mx) ** 2 for a in rx), sum((b - my) ** 2 for b in ry)
    return cov / math.sqrt(vx * vy) if vx and vy else math.nan


def _corr(fn, x: list[float], y: list[float]) -> float:
    value = fn(x, y)
    return 0.0 if math.isnan(value) else value


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "META_EVAL.md")
    args = ap.parse_args(argv)

    groups = load_articles(args.data_dir)
    rouge = rouge_scorer.RougeScorer(["rouge1"], use_stemmer=True)
    per_score: dict[str, dict[str, list[tuple[float, float]]]] = defaultdict(lambda: defaultdict(list))
    errors: dict[str, int] = defaultdict(int)
    t0 = time.perf_counter()
    cloze_seconds = 0.0
    for rows in groups.values():
        c0 = time.perf_counter()
        built = build_cloze_questions(rows[0]["article"], rows[0]["highlights"])
        for r in rows:
            answer_from_summary(built.questions, r["summary"])
        cloze_seconds += time.perf_counter() - c0
        scores, error = score_article(rows, rouge)
        if error:
            errors[error] += 1
        for name, values in scores.items():
            for key in HUMAN_KEYS:
                human = [r["human_scores"][key] for r in rows]
                per_score[name][key].append((_corr(kendall_tau_b, values, human), _corr(spearman_rho, values, human)))
    elapsed = time.perf_counter() - t0

    n_rows = sum(len(r) for r in groups.values())
    lines = [
        f"SummEval, summary level: {len(groups)} articles x ~{n_rows // max(1, len(groups))} systems "
        f"({n_rows} summaries). Kendall tau-b / Spearman, mean over articles; tau ± 1.96 standard "
        "errors of that mean.",
        "",
        "| score | relevance tau | relevance rho | consistency tau | consistency rho |",
        "|---|---|---|---|---|",
        # +- is 1.96 standard errors of the mean over articles (taus differ a lot between articles).
    ]
    for name, by_key in per_score.items():
        cells = []
        for key in HUMAN_KEYS:
            pairs = by_key[key]
            taus = [p[0] for p in pairs]
            mean = sum(taus) / len(taus)
            half = 1.96 * math.sqrt(sum((t - mean) ** 2 for t in taus) / (len(taus) - 1) / len(taus))
            cells += [f"{mean:.3f} ± {half:.3f}", f"{sum(p[1] for p in pairs) / len(pairs):.3f}"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Question building failed for {sum(errors.values())} article(s): {dict(errors) or 'none'}.",
        f"Cloze judge alone (build 5 questions + answer all summaries): {cloze_seconds:.2f} s for {n_rows} "
        f"summaries on one core; whole benchmark {elapsed:.1f} s.",
    ]
    table = "\n".join(lines)
    print(table)
    if args.out:
        write_report(args.out, table)
    return 0


def write_report(path: Path, table: str) -> None:
    """Write the table into the report, between the markers, keeping the hand-written discussion."""
    begin, end = "<!-- results:begin -->", "<!-- results:end -->"
    stamp = dt.date.today().isoformat()
    block = f"{begin}\nMeasured {stamp} with `PYTHONPATH=. .venv/bin/python benchmarks/meta_eval.py`.\n\n{table}\n{end}"
    text = path.read_text() if path.exists() else f"# Meta-evaluation of the embedded cloze judge\n\n{begin}\n{end}\n"
    if begin in text and end in text:
        text = text[: text.index(begin)] + block + text[text.index(end) + len(end) :]
    else:
        text += "\n" + block + "\n"
    path.write_text(text)


if __name__ == "__main__":
    sys.exit(main())
