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

