"""Evaluation metrics of several models on the same articles, paired comparisons with bootstrap
CIs, and the evaluation report (markdown and plot).

Judged rows in (per model): `article_id, summary, n_correct, n_words, article_words,
finish_reason` (plus the judge's columns). Per article and model (`article_values`):
- the judge: Accuracy >= 3 / >= 4, mean correct;
- not the judge: ROUGE-L F1 and MiniLM cosine similarity vs the reference highlights
  (`sumpref.similarity`);
- format and copying (`sumpref.evaluation.format`): at most 2 sentences, cut at the token limit, ends
  with sentence punctuation, share copied verbatim from the article's start, longest copied span,
  novel bigrams and trigrams; words, compression, too long, invalid characters.
Every model's metrics and every paired difference use the same bootstrap resamples of articles,
so article difficulty cancels out of each difference. Win rates follow the preference rule
(`pairs.prefer`: win 1, tie 0.5, loss 0).
"""

from __future__ import annotations

import numpy as np

from sumpref.config import PairsConfig
from sumpref.evaluation.format import format_metrics
from sumpref.pairs import has_junk, prefer

# (key, label, shown as a percentage); every metric is per article, compared model vs model.
PAIRED_METRICS = [
    ("accuracy_ge3", "Accuracy >= 3 (judge)", True), ("accuracy_ge4", "Accuracy >= 4 (judge)", True),
    ("mean_correct", "Mean correct of 5 (judge)", False), ("rouge_l", "ROUGE-L F1 vs highlights", True),
    ("similarity", "MiniLM similarity to highlights", False), ("words", "Mean words", False),
    ("compression", "Mean compression", True), ("at_most_2_sentences", "At most 2 sentences", True),
    ("cut_at_limit", "Cut at the token limit", True), ("ends_with_punctuation", "Ends with . ! or ?", True),
    ("lead_copy_share", "Words copied from the article's start", True),
    ("longest_copied_span", "Longest copied span (words)", False), ("novel_bigrams", "Novel bigrams", True),
    ("novel_trigrams", "Novel trigrams", True), ("too_long", "Too long", True),
    ("invalid_chars", "Invalid characters", True),
]
# Per model only (a median is not a mean of per-article differences).
MEDIAN_METRICS = [("median_compression", "compression", "Median compression", True)]


def rouge_l(summary: str | None, reference: str | None) -> float:
    """ROUGE-L F1 (stemmed) of the summary against the reference highlights; NaN without reference."""
    if not reference or not reference.strip():
        return float("nan")
    return float(_rouge_scorer().score(reference, summary or "")["rougeL"].fmeasure)


def _rouge_scorer():
    global _SCORER
    if _SCORER is None:
        from rouge_score import rouge_scorer

        _SCORER = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    return _SCORER


_SCORER = None


def row_values(row: dict, article: dict, max_words: int) -> dict[str, float]:
    """Every per-article metric of one judged summary except the similarity (computed in batch)."""
    summary = row["summary"] or ""
    return {
        "accuracy_ge3": float(row["n_correct"] >= 3), "accuracy_ge4": float(row["n_correct"] >= 4),
        "mean_correct": float(row["n_correct"]), "rouge_l": rouge_l(summary, article.get("highlights")),
        "words": float(row["n_words"]), "compression": row["n_words"] / max(1, row["article_words"]),
        "too_long": float(row["n_words"] >= max_words), "invalid_chars": float(has_junk(summary)),
        **format_metrics(summary, article["article"], row.get("finish_reason")),
    }


def semantic_similarity_or_nan(summaries: list[str], references: list[str | None]) -> np.ndarray:
    """MiniLM similarity (`sumpref.similarity`); NaN, with a warning, where its model package is not
    installed (a dependency of sumpref: only a stripped-down environment lacks it). The report then
    shows the metric as n/a, and it can be recomputed from the judged summaries elsewhere."""
    import warnings

    from sumpref.similarity import MiniLMModelMissing, semantic_similarity

    try:
        return semantic_similarity(summaries, references)
    except MiniLMModelMissing as e:
        warnings.warn(f"MiniLM similarity left out (NaN): {e}", stacklevel=2)
        return np.full(len(summaries), np.nan)


def article_values(rows: list[dict], articles: dict[str, dict], article_ids: list[str], max_words: int,
                   similarity=None) -> dict[str, np.ndarray]:
    """Per-article metric values of one model, aligned on `article_ids` (NaN where it has no row).

    `articles`: id -> article row (`article`, `highlights`). `similarity(summaries, references)`
    scores in batch (default: `sumpref.similarity.semantic_similarity`, MiniLM).
    """
    by_id = {r["article_id"]: r for r in rows}
    pos = [i for i, a in enumerate(article_ids) if a in by_id]
    present = [by_id[article_ids[i]] for i in pos]
    out = {key: np.full(len(article_ids), np.nan) for key, _, _ in PAIRED_METRICS}
    if not present:
        return out
    per_row = [row_values(r, articles[r["article_id"]], max_words) for r in present]
    sims = (similarity or semantic_similarity_or_nan)([r["summary"] or "" for r in present], [articles[r["article_id"]].get("highlights") for r in present])
    for key in out:
        out[key][pos] = sims if key == "similarity" else [v[key] for v in per_row]
    return out


def bootstrap_indices(n_items: int, n_boot: int, seed: int) -> np.ndarray:
    """`n_boot` resamples of item indices, drawn once and shared by every model compared."""
    return np.random.default_rng(seed).integers(0, n_items, size=(n_boot, n_items))


def paired_mean_diff(a: np.ndarray, b: np.ndarray, idx: np.ndarray) -> dict:
    """Mean of a - b over items where both exist, with a percentile 95% CI from the shared `idx`."""
    d = np.asarray(a, float) - np.asarray(b, float)
    ok = ~np.isnan(d)
    if not ok.any():
        return {"value": float("nan"), "ci95": (float("nan"), float("nan")), "n": 0}
    sums = np.where(ok, d, 0.0)[idx].sum(axis=1)
    counts = ok[idx].sum(axis=1)
    stats = sums[counts > 0] / counts[counts > 0]
    return {"value": float(d[ok].mean()), "ci95": (float(np.percentile(stats, 2.5)), float(np.percentile(stats, 97.5))),
            "n": int(ok.sum())}


def bootstrap_median(v: np.ndarray, idx: np.ndarray) -> dict:
    """Median of the non-NaN values with a percentile 95% CI from the shared resamples `idx`."""
    v = np.asarray(v, float)
    ok = ~np.isnan(v)
    if not ok.any():
        return {"value": float("nan"), "ci95": (float("nan"), float("nan")), "n": 0}
    stats = np.array([np.nanmedian(v[i]) for i in idx if ok[i].any()])
    return {"value": float(np.median(v[ok])), "ci95": (float(np.percentile(stats, 2.5)), float(np.percentile(stats, 97.5))),
            "n": int(ok.sum())}


def win_scores(rows: list[dict], base_rows: list[dict], article_ids: list[str], pairs_cfg: PairsConfig) -> np.ndarray:
    """Per article: 1 if the model beats the baseline under the preference rule, 0.5 tie, 0 loss
    (as `win_rate`); NaN where either has no row."""
    mine, base = {r["article_id"]: r for r in rows}, {r["article_id"]: r for r in base_rows}
    return np.array([(prefer(mine[a], base[a], pairs_cfg) + 1) / 2 if a in mine and a in base else np.nan
                     for a in article_ids], float)


def paired_win_rate(scores: np.ndarray, idx: np.ndarray) -> dict:
    """Win rate (win 1, tie 0.5) with its CI from the shared resamples; 0.5 means no difference."""
    out = paired_mean_diff(scores, np.zeros_like(scores), idx)
    ok = scores[~np.isnan(scores)]
    out.update(wins=int((ok == 1).sum()), ties=int((ok == 0.5).sum()), losses=int((ok == 0).sum()))
    return out


def compare_models(judged: dict[str, list[dict]], articles: dict[str, dict], baseline: str, pairs_cfg: PairsConfig,
                   max_words: int, n_boot: int, seed: int, compared: list[tuple[str, str]] | None = None,
                   similarity=None) -> dict:
    """Per-model metrics (with CIs) and paired comparisons: each (model, other) in `compared`
    (default: every model vs `baseline`), keyed `"model vs other"`."""
    ids = sorted(articles)
    idx = bootstrap_indices(len(ids), n_boot, seed)
    values = {m: article_values(rows, articles, ids, max_words, similarity) for m, rows in judged.items()}
    models = {}
    for m, vals in values.items():
        models[m] = {"n": len(judged[m])}
        for key, v in vals.items():
            models[m][key] = paired_mean_diff(v, np.zeros_like(v), idx)
        for key, source, _, _ in MEDIAN_METRICS:
            models[m][key] = bootstrap_median(vals[source], idx)
    compared = compared if compared is not None else [(m, baseline) for m in judged if m != baseline]
    comparisons = {}
    for m, other in compared:
        comparisons[f"{m} vs {other}"] = {
            "model": m, "baseline": other,
            "win_rate": paired_win_rate(win_scores(judged[m], judged[other], ids, pairs_cfg), idx),
            "diffs": {key: paired_mean_diff(values[m][key], values[other][key], idx) for key, _, _ in PAIRED_METRICS},
        }
    return {"baseline": baseline, "n_articles": len(ids), "bootstrap_samples": n_boot, "models": models,
            "comparisons": comparisons}


def _fmt_diff(m: dict, pct: bool, signed: bool = True) -> str:
    """`12.3% [10.1, 14.2]`, or signed differences: `+2.1 pp [-0.5, +4.0]`, `+0.25 [+0.10, +0.40]`;
    `n/a` where no article has the value (no reference highlights, no similarity model)."""
    v, (lo, hi) = m["value"], m["ci95"]
    if v != v:
        return "n/a"
    s, k, f = ("+" if signed else ""), (100 if pct else 1), (".1f" if pct else ".2f")
    unit = (" pp" if signed else "%") if pct else ""
    return f"{k * v:{s}{f}}{unit} [{k * lo:{s}{f}}, {k * hi:{s}{f}}]"


def render_comparison(report: dict) -> str:
    """Markdown: per-model metrics, the paired comparisons, then (for a pipeline run) training, drops
    and generation accounting; 95% CIs from the shared bootstrap resamples."""
    models, comps = list(report["models"]), report["comparisons"]
    lines = [f"# sumpref evaluation: {report['name']}", "",
             f"{report['n_articles']} articles from `{report['data_source']}`, judge: {report['judge']}. "
             f"Brackets: 95% CI, bootstrap over articles ({report['bootstrap_samples']} resamples, the same resamples "
             "for every model, so differences are paired).", "",
             "## Per model", "", "| metric | " + " | ".join(models) + " |", "|---|" + "---|" * len(models)]
    rows = [(k, lbl, pct) for k, lbl, pct in PAIRED_METRICS] + [(k, lbl, pct) for k, _, lbl, pct in MEDIAN_METRICS]
    for key, label, pct in rows:
        lines.append(f"| {label} | " + " | ".join(_fmt_diff(report["models"][m][key], pct, signed=False) for m in models) + " |")
    lines.append("| summaries judged | " + " | ".join(str(report["models"][m]["n"]) for m in models) + " |")
    if comps:
        names = list(comps)
        lines += ["", "## Paired comparisons (first minus second)", "",
                  "| metric | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
        lines.append("| Win rate (preference rule; win 1, tie 0.5) | " + " | ".join(
            _fmt_diff(comps[c]["win_rate"], True, signed=False) for c in names) + " |")
        lines.append("| wins / ties / losses | " + " | ".join(
            "{wins} / {ties} / {losses}".format(**comps[c]["win_rate"]) for c in names) + " |")
        for key, label, pct in PAIRED_METRICS:
            lines.append(f"| {label} | " + " | ".join(_fmt_diff(comps[c]["diffs"][key], pct) for c in names) + " |")
    if report.get("training"):
        lines += ["", "## DPO", ""]
        for i, t in enumerate(report["training"], 1):
            loss = t.get("train_loss")
            lines.append(f"- round {i}: {t.get('pairs_train')} train / {t.get('pairs_valid')} validation pairs, "
                         f"{t.get('steps')} steps, final training loss " + (f"{loss:.4f}" if loss is not None else "n/a")
                         + (f", eval reward accuracy {t['eval_rewards/accuracies']:.2f}"
                            if "eval_rewards/accuracies" in t else ""))
    lines += ["", "## Rows dropped or left out, by stage or model and reason", "", "| stage or model | reason | count |",
              "|---|---|---|"]
    for m, counts in report.get("drops", {}).items():
        for reason, c in sorted(counts.items()):
            lines.append(f"| {m} | {reason} | {c} |")
    if report.get("accounting"):
        lines += ["", "## Generation accounting", "", "| stage | prompt tokens | output tokens | retries | GPU s | cost USD |",
                  "|---|---|---|---|---|---|"]
        for stage, s in report["accounting"].items():
            lines.append(f"| {stage} | {s.get('prompt_tokens', 0)} | {s.get('output_tokens', 0)} | {s.get('retries', 0)} | "
                         f"{s.get('gpu_seconds', 0):.1f} | {s.get('cost_usd', 0):.4f} |")
    if report.get("plot"):
        lines += ["", f"![paired differences]({report['plot']})"]
    lines += ["", "## Models", ""] + [f"- **{m}**: `{d}`" for m, d in report.get("model_specs", {}).items()]
    if report.get("artifacts"):
        lines += ["", "## Artifacts", ""] + [f"- {k}: `{v}`" for k, v in report["artifacts"].items()]
    return "\n".join(lines) + "\n"


def plot_comparison(report: dict, path) -> None:
    """One panel per compared model: paired differences vs the baseline with 95% CIs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    others = list(report["comparisons"]) or [report["baseline"]]
    keys = [(k, lbl) for k, lbl, pct in PAIRED_METRICS if pct and k != "invalid_chars"]
    fig, axes = plt.subplots(1, len(others), figsize=(5 * len(others), 0.5 * len(keys) + 1.5), squeeze=False)
    for ax, m in zip(axes[0], others):
        rows = [("win_rate - 0.5", report["comparisons"].get(m, {}).get("win_rate"))] + \
               [(lbl, report["comparisons"].get(m, {}).get("diffs", {}).get(k)) for k, lbl in keys]
        for y, (lbl, d) in enumerate(rows):
            if not d or d["value"] != d["value"]:
                continue
            shift = 0.5 if lbl.startswith("win_rate") else 0.0
            v, lo, hi = (100 * (x - shift) for x in (d["value"], *d["ci95"]))
            ax.errorbar(v, y, xerr=[[v - lo], [hi - v]], fmt="o", capsize=3)
        ax.axvline(0, color="grey", lw=0.8)
        ax.set_yticks(range(len(rows)), [lbl for lbl, _ in rows])
        ax.invert_yaxis()
        ax.set_xlabel("percentage points")
        ax.set_title(f"{m} (paired 95% CI)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
