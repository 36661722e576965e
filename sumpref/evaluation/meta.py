"""Meta-evaluation: how well a judge (and fixed baselines) agree with people, on every human set.

Contract:
- `HUMAN_SETS`: one `HumanSet` per `human_*.jsonl` file, saying how it was labelled: `graded`
  dimensions (Likert means, pyramid recall...), `binary` consistency labels, or `pairwise`
  preferences (writer summary `reference` vs system `summary`). `level="article"`: correlations
  are computed among one article's summaries and averaged over articles (summary level);
  `level="corpus"`: one summary per article, so over all rows.
- `load_set(data_dir, hset, max_articles)` -> rows `{id, article_id, article, summary, compare,
  reference, highlights, human}`. `highlights` (what questions are written from) come from the
  `cnndm_*.jsonl` article files, else the row's `reference` unless that is a compared summary.
- `score_set(rows, scorers)` -> `{score name: [value per row]}` (pairwise sets also get
  `name + COMPARE_SUFFIX` for the compared summary). A scorer is called once per article.
- Baselines beside the judge: `rouge_scorers()` (ROUGE-1 F vs the reference, ROUGE-1 precision vs
  the article) and `similarity_scorer()` (MiniLM cosine vs the reference, `sumpref.similarity`).
- `agreement_with_people(hset, rows, scores, n_boot, seed)` -> list of `Metric` rows: Kendall tau-b and
  Spearman (graded), ROC-AUC and balanced accuracy (binary; predicted consistent = score at least
  the set's median score), agreement rate (pairwise; a judge tie counts one half). Every value has
  a 95% percentile-bootstrap interval over articles. NaN (shown as n/a) where undefined, e.g. one class.
- Stats are pure functions of lists; `render_table` writes the markdown. No I/O beyond `load_set`.
"""

from __future__ import annotations

import glob
import json
import math
import random
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Literal

from pydantic import Field, model_validator

from sumpref.config import ClozeJudgeConfig, JudgeConfig, QAJudgeConfig, Strict

COMPARE_SUFFIX = " [compared]"

# ---------------------------------------------------------------------------------------------
# Statistics


def kendall_tau_b(x: list[float], y: list[float]) -> float:
    """Kendall tau-b (ties in either list handled); NaN when either list is constant."""
    from scipy.stats import kendalltau

    if len(set(x)) < 2 or len(set(y)) < 2:
        return math.nan
    return float(kendalltau(x, y).statistic)


def ranks(values: list[float]) -> list[float]:
    """1-based ranks, ties sharing their average rank."""
    from scipy.stats import rankdata

    return [float(r) for r in rankdata(values)]


def spearman_rho(x: list[float], y: list[float]) -> float:
    """Pearson correlation of average ranks; NaN when either list is constant."""
    from scipy.stats import spearmanr

    if len(set(x)) < 2 or len(set(y)) < 2:
        return math.nan
    return float(spearmanr(x, y).statistic)


def roc_auc(scores: list[float], labels: list[int]) -> float:
    """P(score of a random positive > score of a random negative), ties count one half; NaN with one class."""
    n_pos = sum(1 for y in labels if y)
    n_neg = len(labels) - n_pos
    if not n_pos or not n_neg:
        return math.nan
    r = ranks(scores)
    return (sum(ri for ri, y in zip(r, labels) if y) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def balanced_accuracy(predicted: list[int], labels: list[int]) -> float:
    """Mean of the recall on each class; NaN with one class."""
    pos = [p for p, y in zip(predicted, labels) if y]
    neg = [p for p, y in zip(predicted, labels) if not y]
    if not pos or not neg:
        return math.nan
    return (sum(pos) / len(pos) + sum(1 - p for p in neg) / len(neg)) / 2


def pairwise_agreement(diffs: list[float], human: list[int]) -> float:
    """Share of decisive human preferences (+1 / -1) that the sign of the score difference matches;
    a judge tie counts one half. NaN when no preference is decisive."""
    pts = [1.0 if (d > 0) == (h > 0) and d != 0 else 0.5 if d == 0 else 0.0 for d, h in zip(diffs, human) if h != 0]
    return sum(pts) / len(pts) if pts else math.nan


def _nan_to_zero(v: float) -> float:
    return 0.0 if math.isnan(v) else v


def summary_level(xs: list[list[float]], ys: list[list[float]], fn: Callable) -> list[float]:
    """Per-article correlation; an article where either list is constant counts 0 (a judge that
    cannot separate the summaries agrees with nobody)."""
    return [_nan_to_zero(fn(x, y)) if len(x) > 1 else math.nan for x, y in zip(xs, ys)]


def bootstrap_ci(groups: list, stat: Callable[[list], float], n_boot: int = 1000, seed: int = 0,
                 alpha: float = 0.05) -> tuple[float, float, float]:
    """(value, low, high): `stat` of all groups, and the percentile interval of `stat` over
    `n_boot` resamples of the groups (articles) with replacement; NaN resamples are left out."""
    value = stat(groups)
    rng = random.Random(seed)
    boots = sorted(v for _ in range(n_boot) if not math.isnan(v := stat([rng.choice(groups) for _ in groups])))
    if math.isnan(value) or not boots:
        return value, math.nan, math.nan
    lo, hi = boots[int(alpha / 2 * (len(boots) - 1))], boots[int((1 - alpha / 2) * (len(boots) - 1))]
    return value, lo, hi


def _mean(values: list[float]) -> float:
    vals = [v for v in values if not math.isnan(v)]
    return sum(vals) / len(vals) if vals else math.nan


# ---------------------------------------------------------------------------------------------
# Sets


@dataclass(frozen=True)
class HumanSet:
    name: str
    file: str
    level: Literal["article", "corpus"] = "article"
    graded: tuple[str, ...] = ()
    binary: tuple[str, ...] = ()  # 1 = consistent
    pairwise: tuple[str, ...] = ()  # True = `compare` (writer) better, False = `summary` better
    note: str = ""


HUMAN_SETS: tuple[HumanSet, ...] = (
    HumanSet("summeval", "human_summeval.jsonl", graded=("relevance", "consistency", "coherence", "fluency"),
             note="mean of 3 experts, 1-5; 100 articles x 16 systems"),
    HumanSet("realsumm", "human_realsumm.jsonl", graded=("litepyramid_recall",),
             note="share of reference content units present (crowd); 100 articles x 24 systems"),
    HumanSet("qags_cnndm", "human_qags_cnndm.jsonl", level="corpus", graded=("consistency_sentence_majority_mean",),
             binary=("all_sentences_consistent",), note="3 crowd votes per sentence; one summary per article"),
    HumanSet("fib_cnndm", "human_fib_cnndm.jsonl", binary=("factually_consistent",), note="binary, FIB authors"),
    HumanSet("cliff_cnndm", "human_cliff_cnndm.jsonl", binary=("factually_consistent",), note="binary, span annotation"),
    HumanSet("goyal21_cnndm", "human_goyal21_cnndm.jsonl", binary=("factually_consistent",),
             note="binary; every labelled summary has an error (one class: AUC undefined)"),
    HumanSet("blanc_cnndm", "human_blanc_cnndm.jsonl", graded=("generic_quality_mean",),
             note="generic quality, mean of 10 annotators; 3-4 summaries per article"),
    HumanSet("llm_news_pairwise", "human_llm_news_benchmark_pairwise.jsonl",
             pairwise=("overall_writer_better", "informative_writer_better"),
             note="writer vs text-davinci-002 summary, pairwise"),
)
UNLABELLED_SETS = {"human_llm_news_benchmark_writer_summaries.jsonl": "summaries only, no human scores"}


def article_highlights(data_dir: Path) -> dict[str, str]:
    """Reference highlights by article id, from every `cnndm_*.jsonl`."""
    out = {}
    for path in sorted(glob.glob(str(Path(data_dir) / "cnndm_*.jsonl"))):
        with open(path) as f:
            for line in f:
                a = json.loads(line)
                if a.get("highlights"):
                    out[a["id"]] = a["highlights"]
    return out


def _pairwise_label(v) -> int:
    return 1 if v is True or v == "True" else -1 if v is False or v == "False" else 0


def load_set(data_dir: Path, hset: HumanSet, max_articles: int | None = None,
             highlights: dict[str, str] | None = None) -> list[dict]:
    """Rows of one set (first `max_articles` articles in file order when given)."""
    highlights = article_highlights(data_dir) if highlights is None else highlights
    rows, seen = [], []
    with open(Path(data_dir) / hset.file) as f:
        for line in f:
            r = json.loads(line)
            if r["article_id"] not in seen:
                if max_articles is not None and len(seen) >= max_articles:
                    continue
                seen.append(r["article_id"])
            compare = r["reference"] if hset.pairwise else None
            hl = highlights.get(r["article_id"]) or (None if hset.pairwise else r.get("reference"))
            human = {k: r["human_scores"].get(k) for k in (*hset.graded, *hset.binary)}
            human |= {k: _pairwise_label(r["human_scores"].get(k)) for k in hset.pairwise}
            rows.append({"id": r["id"], "article_id": r["article_id"], "article": r["article"], "summary": r["summary"] or "",
                         "compare": compare, "reference": hl, "highlights": hl, "human": human})
    return rows


# ---------------------------------------------------------------------------------------------
# Scoring

# A scorer sees one article's rows (same article, same highlights) and the texts to score; it
# returns {score name: [value per text]}.
Scorer = Callable[[dict, list[str]], dict[str, list[float]]]


def score_set(rows: list[dict], scorers: list[Scorer]) -> dict[str, list[float]]:
    by_article: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(rows):
        by_article[r["article_id"]].append(i)
    out: dict[str, list[float]] = defaultdict(lambda: [math.nan] * len(rows))
    for idx in by_article.values():
        texts = [rows[i]["summary"] for i in idx]
        compares = [rows[i]["compare"] for i in idx if rows[i]["compare"] is not None]
        for scorer in scorers:
            for name, values in scorer(rows[idx[0]], texts + compares).items():
                for k, i in enumerate(idx):
                    out[name][i] = values[k]
                    if compares:
                        out.setdefault(name + COMPARE_SUFFIX, [math.nan] * len(rows))[i] = values[len(idx) + k]
    return dict(out)


def rouge_scorers() -> list[Scorer]:
    """Baselines: ROUGE-1 F against the reference highlights, ROUGE-1 precision against the article."""
    from rouge_score import rouge_scorer

    r1 = rouge_scorer.RougeScorer(["rouge1"], use_stemmer=True)

    def rouge(row: dict, texts: list[str]) -> dict[str, list[float]]:
        ref = row["reference"]
        return {"ROUGE-1 F": [r1.score(ref, t)["rouge1"].fmeasure if ref else math.nan for t in texts],
                "article precision": [r1.score(row["article"], t)["rouge1"].precision for t in texts]}

    return [rouge]


SIMILARITY = "MiniLM similarity"


def similarity_scorer(device: str = "cpu") -> Scorer:
    """A second metric against the reference highlights: MiniLM cosine similarity
    (`sumpref.similarity`); NaN where the set has no reference."""
    from sumpref.similarity import semantic_similarity

    def similarity(row: dict, texts: list[str]) -> dict[str, list[float]]:
        return {SIMILARITY: [float(v) for v in semantic_similarity(texts, [row["reference"]] * len(texts), device=device)]}

    return [similarity]


def judge_scorer(cfg, label: str, seed: int = 0) -> Scorer:
    """The pipeline's own judge code (`sumpref.judging.judges`), in process: write the article's questions
    once, judge every text. Reports `n_correct` (what the preference rule sees), and for `qa` also
    `faithfulness` and the key-content `coverage` it is made from. A question-writing failure scores every text 0 (the pipeline drops them)."""
    from sumpref.judging.judges import QuestionWriter, SummaryJudge

    writer, judge = QuestionWriter(cfg, seed=seed), SummaryJudge(cfg)
    loaded = []

    def score(row: dict, texts: list[str]) -> dict[str, list[float]]:
        if not loaded:
            writer.load(), judge.load()
            loaded.append(True)
        q, _ = writer.run([{"id": row["article_id"], "article": row["article"], "highlights": row["highlights"]}])
        if q[0]["questions"] is None:
            return {label: [0.0] * len(texts)}
        judged, _ = judge.run([{"article_id": row["article_id"], "questions": q[0]["questions"], "summary": t} for t in texts])
        out = {label: [float(j["n_correct"]) for j in judged]}
        for part in cfg.score_parts:  # qa: coverage and faithfulness
            out[label.replace("n correct", part)] = [float(j[part]) for j in judged]
        return out

    return score


# ---------------------------------------------------------------------------------------------
# Evaluation


@dataclass(frozen=True)
class Metric:
    set: str
    label: str  # human dimension
    metric: str  # "Kendall tau", "Spearman", "ROC-AUC", "balanced acc.", "agreement"
    values: dict[str, tuple[float, float, float]] = field(default_factory=dict)  # score -> (value, lo, hi)
    n: int = 0  # rows with a label


def _groups(rows: list[dict], keep: Callable[[dict], bool]) -> list[list[int]]:
    by: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(rows):
        if keep(r):
            by[r["article_id"]].append(i)
    return list(by.values())


def agreement_with_people(hset: HumanSet, rows: list[dict], scores: dict[str, list[float]], n_boot: int = 1000,
                 seed: int = 0) -> list[Metric]:
    names = [s for s in scores if not s.endswith(COMPARE_SUFFIX)]
    out = []
    for dim in hset.graded:
        groups = _groups(rows, lambda r: r["human"][dim] is not None)
        for mname, fn in (("Kendall tau", kendall_tau_b), ("Spearman", spearman_rho)):
            vals = {}
            for s in names:
                if hset.level == "article":
                    per = dict(zip(map(tuple, groups), summary_level(
                        [[scores[s][i] for i in g] for g in groups], [[rows[i]["human"][dim] for i in g] for g in groups], fn)))
                    stat = lambda gs, per=per: _mean([per[tuple(g)] for g in gs])
                else:
                    stat = lambda gs, s=s, fn=fn: fn([scores[s][i] for g in gs for i in g], [rows[i]["human"][dim] for g in gs for i in g])
                vals[s] = bootstrap_ci(groups, stat, n_boot, seed)
            out.append(Metric(hset.name, dim, mname + (" (summary level)" if hset.level == "article" else " (over rows)"),
                              vals, sum(map(len, groups))))
    for dim in hset.binary:
        groups = _groups(rows, lambda r: r["human"][dim] is not None)
        flat = lambda gs: [i for g in gs for i in g]
        labels = lambda gs: [int(rows[i]["human"][dim]) for i in flat(gs)]
        auc, bacc = {}, {}
        for s in names:
            median = sorted(scores[s][i] for i in flat(groups))[len(flat(groups)) // 2] if groups else 0.0
            auc[s] = bootstrap_ci(groups, lambda gs, s=s: roc_auc([scores[s][i] for i in flat(gs)], labels(gs)), n_boot, seed)
            bacc[s] = bootstrap_ci(groups, lambda gs, s=s, m=median: balanced_accuracy(
                [int(scores[s][i] >= m) for i in flat(gs)], labels(gs)), n_boot, seed)
        n = len(flat(groups))
        out += [Metric(hset.name, dim, "ROC-AUC", auc, n), Metric(hset.name, dim, "balanced acc. (>= median)", bacc, n)]
    for dim in hset.pairwise:
        groups = _groups(rows, lambda r: r["human"][dim] != 0)
        vals = {}
        for s in names:
            diff = lambda i, s=s: scores[s + COMPARE_SUFFIX][i] - scores[s][i]
            vals[s] = bootstrap_ci(groups, lambda gs, d=diff: pairwise_agreement(
                [d(i) for g in gs for i in g], [rows[i]["human"][dim] for g in gs for i in g]), n_boot, seed)
        out.append(Metric(hset.name, dim, "agreement (writer vs model)", vals, sum(map(len, groups))))
    return out


def _cell(v: tuple[float, float, float]) -> str:
    value, lo, hi = v
    if math.isnan(value):
        return "n/a"
    return f"{value:.3f} [{lo:.2f}, {hi:.2f}]" if not math.isnan(lo) else f"{value:.3f}"


def render_table(metrics: list[Metric], score_names: list[str]) -> str:
    """One markdown table: a row per (set, human label, metric), a column per score."""
    head = "| set | human label | metric | n | " + " | ".join(score_names) + " |"
    lines = [head, "|" + "---|" * (4 + len(score_names))]
    for m in metrics:
        cells = [_cell(m.values[s]) if s in m.values else "n/a" for s in score_names]
        lines.append(f"| {m.set} | {m.label} | {m.metric} | {m.n} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# One set, end to end (what the flow's task calls)


class MetaEvalConfig(Strict):
    """What the meta-evaluation flow measures: which judge, on which sets, how many articles."""

    data_dir: Path = Field(Path("../shared/data"), description="folder with human_*.jsonl and cnndm_*.jsonl")
    sets: tuple[str, ...] = Field((), description="names from HUMAN_SETS; empty: all")
    max_articles: int | None = Field(None, ge=1, description="first N articles of each set (a quick subset)")
    judge: JudgeConfig = QAJudgeConfig()
    n_bootstrap: int = Field(1000, ge=10)
    seed: int = 0
    llm_check_items: int = Field(8, ge=1, description="llm judge: summaries re-asked for position/length bias")
    out: Path | None = Field(Path("benchmarks/META_EVAL.md"), description="report to rewrite between its markers")

    @model_validator(mode="after")
    def _known_sets(self) -> "MetaEvalConfig":
        unknown = set(self.sets) - {h.name for h in HUMAN_SETS}
        if unknown:
            raise ValueError(f"sets: unknown {sorted(unknown)}; known: {[h.name for h in HUMAN_SETS]}")
        return self


def selected_sets(cfg: MetaEvalConfig) -> list[HumanSet]:
    return [h for h in HUMAN_SETS if not cfg.sets or h.name in cfg.sets]


def judge_label(judge: JudgeConfig) -> str:
    return f"{judge.kind} judge: n correct"


def score_names(judge: JudgeConfig) -> list[str]:
    """Table columns: the judge under test, then the baselines that are always reported."""
    names = [judge_label(judge)] + [f"{judge.kind} judge: {part}" for part in judge.score_parts]
    if cloze_baseline(judge) is not None:
        names.append(CLOZE_BASELINE)
    return names + ["ROUGE-1 F", SIMILARITY, "article precision"]


CLOZE_BASELINE = "cloze judge (baseline)"


def cloze_baseline(judge: JudgeConfig) -> ClozeJudgeConfig | None:
    """The earlier cloze judge with as many questions, reported beside any other judge (None when it
    is the judge under test)."""
    return None if isinstance(judge, ClozeJudgeConfig) else ClozeJudgeConfig(n_questions=judge.n_questions)


def meta_eval_set(cfg: MetaEvalConfig, name: str) -> dict:
    """Load, score and evaluate one set: `{set, note, rows, articles, seconds, metrics}` (JSON-able)."""
    import time

    hset = next(h for h in HUMAN_SETS if h.name == name)
    rows = load_set(cfg.data_dir, hset, cfg.max_articles)
    scorers = [judge_scorer(cfg.judge, judge_label(cfg.judge), cfg.seed)]
    if (baseline := cloze_baseline(cfg.judge)) is not None:
        scorers.append(judge_scorer(baseline, CLOZE_BASELINE, cfg.seed))
    t0 = time.perf_counter()
    scores = score_set(rows, scorers + rouge_scorers() + similarity_scorer())
    seconds = time.perf_counter() - t0
    metrics = agreement_with_people(hset, rows, scores, cfg.n_bootstrap, cfg.seed)
    return {"set": name, "note": hset.note, "rows": len(rows), "articles": len({r["article_id"] for r in rows}),
            "seconds": round(seconds, 1), "metrics": [asdict(m) for m in metrics]}


def metrics_from_dicts(results: list[dict]) -> list[Metric]:
    return [Metric(m["set"], m["label"], m["metric"], {k: tuple(v) for k, v in m["values"].items()}, m["n"])
            for r in results for m in r["metrics"]]


def llm_checks(cfg: MetaEvalConfig) -> dict:
    """Position and length bias of the judge (`sumpref.judging.checks`) on the first
    `llm_check_items` SummEval summaries (one per article)."""
    from sumpref.judging.checks import length_bias, position_bias

    hset = next(h for h in HUMAN_SETS if h.name == "summeval")
    rows = load_set(cfg.data_dir, hset, cfg.llm_check_items)
    items = list({r["article_id"]: r for r in rows}.values())[: cfg.llm_check_items]
    return {"position": position_bias(cfg.judge, items, cfg.seed), "length": length_bias(cfg.judge, items)}


BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"


def render_report(cfg: MetaEvalConfig, results: list[dict], checks: dict | None, date: str) -> str:
    """The generated block: how it was made, the table for all sets, per-set notes, LLM checks."""
    names = score_names(cfg.judge)
    subset = f", first {cfg.max_articles} articles of each set" if cfg.max_articles else ""
    settings = cfg.judge.describe()
    lines = [f"Measured {date} by `make meta-eval` (flow `flows/meta_eval.py`): judge `kind: {cfg.judge.kind}`"
             + (f", {settings}" if settings else "")
             + f", {cfg.judge.n_questions} questions{subset}. Values with 95% bootstrap intervals over articles "
             f"({cfg.n_bootstrap} resamples).", "", render_table(metrics_from_dicts(results), names), "",
             "| set | rows | articles | labels | scoring time (s) |", "|---|---|---|---|---|"]
    lines += [f"| {r['set']} | {r['rows']} | {r['articles']} | {r['note']} | {r['seconds']} |" for r in results]
    lines += [f"| {f.removeprefix('human_').removesuffix('.jsonl')} | - | - | not evaluated: {why} | - |"
              for f, why in UNLABELLED_SETS.items()]
    if checks:
        p, ln = checks["position"], checks["length"]
        lines += ["", f"LLM judge checks ({cfg.judge.label}): position bias, options shuffled and re-asked: "
                  f"{p['agreement']:.3f} of {p['questions']} answers unchanged ({p['items']} summaries); length bias, "
                  f"every sentence restated (same content, ~2x words): mean n_correct(long) - n_correct(short) = "
                  f"{ln['mean_diff']:+.2f}, longer wins {ln['longer_wins']}, shorter wins {ln['shorter_wins']} of {ln['items']}."]
    return "\n".join(lines)


def write_report(path: Path, block: str) -> Path:
    """Rewrite the text between the markers, keeping the hand-written discussion around it."""
    path = Path(path)
    text = path.read_text() if path.exists() else f"# Meta-evaluation of the judges\n\n{BEGIN}\n{END}\n"
    if BEGIN in text and END in text:
        text = text[: text.index(BEGIN)] + f"{BEGIN}\n{block}\n{END}" + text[text.index(END) + len(END):]
    else:
        text += f"\n{BEGIN}\n{block}\n{END}\n"
    path.write_text(text)
    return path
