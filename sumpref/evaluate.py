"""Evaluation metrics with bootstrap confidence intervals, and the run report.

Judged eval rows in (per model): `article_id, summary, n_correct, n_words, article_words`.
Metrics: Accuracy>=3 / >=4, mean correct, median and mean compression (summary words / article
words), too-long rate, two-sentence compliance, invalid-character rate, and the win rate vs the
base model under the preference rule (win 1, tie 0.5). CIs resample articles (paired).
"""

from __future__ import annotations

import re

import numpy as np

from sumpref.config import PairsConfig
from sumpref.pairs import has_junk, prefer

_SENT_RE = re.compile(r"[^.!?]+(?:[.!?]+|$)")


def sentence_count(text: str) -> int:
    return len([s for s in _SENT_RE.findall(text or "") if s.strip()])


def per_row_values(rows: list[dict], max_words: int) -> dict[str, np.ndarray]:
    return {
        "accuracy_ge3": np.array([r["n_correct"] >= 3 for r in rows], float),
        "accuracy_ge4": np.array([r["n_correct"] >= 4 for r in rows], float),
        "mean_correct": np.array([r["n_correct"] for r in rows], float),
        "compression": np.array([r["n_words"] / max(1, r["article_words"]) for r in rows], float),
        "too_long": np.array([r["n_words"] >= max_words for r in rows], float),
        "two_sentences": np.array([1 <= sentence_count(r["summary"]) <= 2 for r in rows], float),
        "invalid_chars": np.array([has_junk(r["summary"] or "") for r in rows], float),
        "words": np.array([r["n_words"] for r in rows], float),
    }


def bootstrap_ci(values: np.ndarray, stat, n: int, rng: np.random.Generator) -> tuple[float, float]:
    if len(values) == 0:
        return (float("nan"), float("nan"))
    idx = rng.integers(0, len(values), size=(n, len(values)))
    stats = np.array([stat(values[i]) for i in idx])
    return float(np.percentile(stats, 2.5)), float(np.percentile(stats, 97.5))


def model_metrics(rows: list[dict], max_words: int, n_boot: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    vals = per_row_values(rows, max_words)
    out = {"n": len(rows)}
    for name, v in vals.items():
        out[name] = {"value": float(np.mean(v)) if len(v) else float("nan"), "ci95": bootstrap_ci(v, np.mean, n_boot, rng)}
    comp = vals["compression"]
    out["median_compression"] = {"value": float(np.median(comp)) if len(comp) else float("nan"),
                                 "ci95": bootstrap_ci(comp, np.median, n_boot, rng)}
    out["mean_compression"] = out.pop("compression")
    return out


def win_rate(tuned: list[dict], base: list[dict], pairs_cfg: PairsConfig, n_boot: int, seed: int) -> dict:
    """Per article: 1 if tuned beats base under the preference rule, 0.5 tie, 0 loss."""
    by_base = {r["article_id"]: r for r in base}
    scores = np.array([(prefer(t, by_base[t["article_id"]], pairs_cfg) + 1) / 2
                       for t in tuned if t["article_id"] in by_base], float)
    rng = np.random.default_rng(seed + 7)
    return {"value": float(scores.mean()) if len(scores) else float("nan"), "n": int(len(scores)),
            "wins": int((scores == 1).sum()), "ties": int((scores == 0.5).sum()), "losses": int((scores == 0).sum()),
            "ci95": bootstrap_ci(scores, np.mean, n_boot, rng)}


METRIC_LABELS = [
    ("accuracy_ge3", "Accuracy >= 3", True), ("accuracy_ge4", "Accuracy >= 4", True),
    ("mean_correct", "Mean correct (of 5)", False), ("median_compression", "Median compression", True),
    ("mean_compression", "Mean compression", True), ("too_long", "Too long", True),
    ("two_sentences", "At most 2 sentences", True), ("invalid_chars", "Invalid characters", True),
    ("words", "Mean words", False),
]


def _fmt(m: dict, pct: bool) -> str:
    v, (lo, hi) = m["value"], m["ci95"]
    if pct:
        return f"{100 * v:.1f}% [{100 * lo:.1f}, {100 * hi:.1f}]"
    return f"{v:.2f} [{lo:.2f}, {hi:.2f}]"


def render_report(report: dict) -> str:
    models = list(report["models"])
    lines = [f"# sumpref report: {report['run_name']}", "",
             f"Evaluation on {report['eval_articles']} held-out articles, greedy summaries, judge: {report['judge']}. "
             "Brackets: bootstrap 95% CI over articles.", "",
             "| metric | " + " | ".join(models) + " |", "|---|" + "---|" * len(models)]
    for key, label, pct in METRIC_LABELS:
        lines.append(f"| {label} | " + " | ".join(_fmt(report["models"][m][key], pct) for m in models) + " |")
    lines += ["", "## Win rate vs base (preference rule; win 1, tie 0.5)", ""]
    for name, w in report["win_rates"].items():
        lines.append(f"- **{name}**: {100 * w['value']:.1f}% [{100 * w['ci95'][0]:.1f}, {100 * w['ci95'][1]:.1f}] "
                     f"({w['wins']} wins, {w['ties']} ties, {w['losses']} losses of {w['n']})")
    lines += ["", "## DPO", ""]
    for i, t in enumerate(report["training"], 1):
        loss = t.get("train_loss")
        lines.append(f"- round {i}: {t.get('pairs_train')} train / {t.get('pairs_valid')} validation pairs, "
                     f"{t.get('steps')} steps, final training loss " + (f"{loss:.4f}" if loss is not None else "n/a")
                     + (f", eval reward accuracy {t['eval_rewards/accuracies']:.2f}" if 'eval_rewards/accuracies' in t else ""))
    lines += ["", "## Rows dropped or flagged, by stage and reason", "", "| stage | reason | count |", "|---|---|---|"]
    for stage, counts in report["drops"].items():
        for reason, c in sorted(counts.items()):
            lines.append(f"| {stage} | {reason} | {c} |")
    lines += ["", "## Generation accounting", "", "| stage | prompt tokens | output tokens | retries | GPU s | cost USD |", "|---|---|---|---|---|---|"]
    for stage, s in report["accounting"].items():
        lines.append(f"| {stage} | {s.get('prompt_tokens', 0)} | {s.get('output_tokens', 0)} | {s.get('retries', 0)} | "
                     f"{s.get('gpu_seconds', 0):.1f} | {s.get('cost_usd', 0):.4f} |")
    if report.get("plot"):
        lines += ["", f"![metrics]({report['plot']})"]
    lines += ["", "## Artifacts", ""] + [f"- {k}: `{v}`" for k, v in report["artifacts"].items()]
    return "\n".join(lines) + "\n"


def plot_report(report: dict, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(report["models"])
    keys = [("accuracy_ge3", "Acc >= 3"), ("accuracy_ge4", "Acc >= 4"), ("two_sentences", "<= 2 sentences"),
            ("median_compression", "Median compression")]
    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.8 / len(models)
    for j, m in enumerate(models):
        vals = [report["models"][m][k]["value"] for k, _ in keys]
        err = [[v - report["models"][m][k]["ci95"][0] for (k, _), v in zip(keys, vals)],
               [report["models"][m][k]["ci95"][1] - v for (k, _), v in zip(keys, vals)]]
        ax.bar(np.arange(len(keys)) + j * width, vals, width, yerr=err, capsize=3, label=m)
    ax.set_xticks(np.arange(len(keys)) + width * (len(models) - 1) / 2, [lbl for _, lbl in keys])
    ax.set_ylim(0, 1)
    ax.set_title("Base vs tuned (95% bootstrap CI)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)



# --- Multi-model comparison (the evaluation flow) ---------------------------------------------
# Judged rows of several models on the same articles and questions in; per-model metrics, two
# metrics that do not come from the judge, and a paired comparison of each model against a
# baseline out. "Paired" means one bootstrap resample of article indices per replicate, applied
# to every model, so article difficulty cancels out of each difference.

_WORD_RE = re.compile(r"[a-z0-9]+")

# (key, label, shown as a percentage); the metrics compared model vs baseline.
PAIRED_METRICS = [
    ("accuracy_ge3", "Accuracy >= 3", True), ("accuracy_ge4", "Accuracy >= 4", True),
    ("mean_correct", "Mean correct (of n questions)", False), ("rouge_l", "ROUGE-L F1 vs highlights", True),
    ("faithfulness", "Summary bigrams found in article", True), ("compression", "Mean compression", True),
    ("too_long", "Too long", True), ("two_sentences", "At most 2 sentences", True),
    ("invalid_chars", "Invalid characters", True), ("words", "Mean words", False),
]


def failed_reason(row: dict) -> str | None:
    """Why a summary is no evidence either way (never generated, or never judged), else None."""
    err = str(row.get("judge_error") or "")
    if row.get("gen_error"):
        return "generation_error"
    if err == "no_judge_output" or err.startswith("generation_error"):
        return err
    return None


def _words(text: str | None) -> list[str]:
    return _WORD_RE.findall((text or "").lower())


def ngram_support(summary: str | None, article: str, n: int = 2) -> float:
    """Share of the summary's word n-grams (with multiplicity) that occur in the article.

    A faithfulness proxy: an unsupported n-gram is new wording or a new claim. It rewards copying,
    so read it beside ROUGE-L and the judge. A summary shorter than n words uses its own length;
    an empty one is NaN (no evidence).
    """
    s = _words(summary)
    if not s:
        return float("nan")
    n = min(n, len(s))
    a = _words(article)
    grams = {tuple(a[i:i + n]) for i in range(len(a) - n + 1)}
    found = [tuple(s[i:i + n]) in grams for i in range(len(s) - n + 1)]
    return float(np.mean(found))


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


def article_values(rows: list[dict], articles: dict[str, dict], article_ids: list[str], max_words: int) -> dict[str, np.ndarray]:
    """Per-article metric values of one model, aligned on `article_ids` (NaN where it has no row).

    `articles`: id -> article row (`article`, `highlights`).
    """
    by_id = {r["article_id"]: r for r in rows}
    present = [by_id[a] for a in article_ids if a in by_id]
    vals = per_row_values(present, max_words) if present else {}
    vals["rouge_l"] = np.array([rouge_l(r["summary"], articles[r["article_id"]].get("highlights")) for r in present], float)
    vals["faithfulness"] = np.array([ngram_support(r["summary"], articles[r["article_id"]]["article"]) for r in present], float)
    pos = [i for i, a in enumerate(article_ids) if a in by_id]
    out = {}
    for key, _, _ in PAIRED_METRICS:
        full = np.full(len(article_ids), np.nan)
        if present:
            full[pos] = vals[key]
        out[key] = full
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
                   max_words: int, n_boot: int, seed: int) -> dict:
    """Per-model metrics (with CIs) and each model's paired comparison against `baseline`."""
    ids = sorted(articles)
    idx = bootstrap_indices(len(ids), n_boot, seed)
    values = {m: article_values(rows, articles, ids, max_words) for m, rows in judged.items()}
    models = {}
    for m, vals in values.items():
        models[m] = {"n": len(judged[m])}
        for key, v in vals.items():
            models[m][key] = paired_mean_diff(v, np.zeros_like(v), idx)
    comparisons = {}
    for m in judged:
        if m == baseline:
            continue
        comparisons[m] = {
            "win_rate": paired_win_rate(win_scores(judged[m], judged[baseline], ids, pairs_cfg), idx),
            "diffs": {key: paired_mean_diff(values[m][key], values[baseline][key], idx) for key, _, _ in PAIRED_METRICS},
        }
    return {"baseline": baseline, "n_articles": len(ids), "bootstrap_samples": n_boot, "models": models,
            "comparisons": comparisons}


def _fmt_diff(m: dict, pct: bool, signed: bool = True) -> str:
    """`12.3% [10.1, 14.2]`, or signed differences: `+2.1 pp [-0.5, +4.0]`, `+0.25 [+0.10, +0.40]`."""
    v, (lo, hi) = m["value"], m["ci95"]
    s, k, f = ("+" if signed else ""), (100 if pct else 1), (".1f" if pct else ".2f")
    unit = (" pp" if signed else "%") if pct else ""
    return f"{k * v:{s}{f}}{unit} [{k * lo:{s}{f}}, {k * hi:{s}{f}}]"


def render_comparison(report: dict) -> str:
    """Markdown: per-model metrics, then each model minus the baseline, with paired 95% CIs."""
    models, base = list(report["models"]), report["baseline"]
    others = [m for m in models if m != base]
    lines = [f"# sumpref evaluation: {report['name']}", "",
             f"{report['n_articles']} articles from `{report['data_source']}`, judge: {report['judge']}, "
             f"baseline: **{base}**. Brackets: 95% CI, bootstrap over articles ({report['bootstrap_samples']} "
             "resamples, the same resamples for every model, so differences are paired).", "",
             "## Per model", "", "| metric | " + " | ".join(models) + " |", "|---|" + "---|" * len(models)]
    for key, label, pct in PAIRED_METRICS:
        lines.append(f"| {label} | " + " | ".join(_fmt_diff(report["models"][m][key], pct, signed=False) for m in models) + " |")
    lines.append("| summaries judged | " + " | ".join(str(report["models"][m]["n"]) for m in models) + " |")
    if others:
        lines += ["", f"## Paired difference vs {base} (model minus baseline)", "",
                  "| metric | " + " | ".join(others) + " |", "|---|" + "---|" * len(others)]
        lines.append("| Win rate (preference rule; win 1, tie 0.5) | " + " | ".join(
            _fmt_diff(report["comparisons"][m]["win_rate"], True, signed=False) for m in others) + " |")
        lines.append("| wins / ties / losses | " + " | ".join(
            "{wins} / {ties} / {losses}".format(**report["comparisons"][m]["win_rate"]) for m in others) + " |")
        for key, label, pct in PAIRED_METRICS:
            lines.append(f"| {label} | " + " | ".join(_fmt_diff(report["comparisons"][m]["diffs"][key], pct) for m in others) + " |")
    lines += ["", "## Rows left out, by model and reason", "", "| model | reason | count |", "|---|---|---|"]
    for m, counts in report.get("drops", {}).items():
        for reason, c in sorted(counts.items()):
            lines.append(f"| {m} | {reason} | {c} |")
    if report.get("plot"):
        lines += ["", f"![paired differences]({report['plot']})"]
    lines += ["", "## Models", ""] + [f"- **{m}**: `{d}`" for m, d in report.get("model_specs", {}).items()]
    return "\n".join(lines) + "\n"


def plot_comparison(report: dict, path) -> None:
    """One panel per compared model: paired differences vs the baseline with 95% CIs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    base = report["baseline"]
    others = list(report["comparisons"]) or [base]
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
        ax.set_title(f"{m} - {base} (paired 95% CI)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
