"""Nightly rounds that continue from the champion: each round's article sample, its run
configuration, its registry entry, and the view of every round so far.

- `round_articles_spec`: the stage (`nightly_articles`) of that date's fresh article sample for one
  round (articles used by earlier rounds excluded unless `nightly.reuse_articles`), written as a
  JSONL source the ordinary articles stage then loads, so every later stage is the unchanged
  pipeline. Its key is every stage's key (`sumpref.cachekey`): its code version covers this
  module's import closure, so an edit of this module or of any module it imports rekeys it and,
  through the sample's path in the next stage's `data.source`, everything after it.
- `round_config`: the run config of one round: data = that sample, policy = the champion.
- `round_entry`: the registry entry of a decided round (lineage: data, config, round, parent,
  evaluation numbers, article ids).
- `render_rounds` / `plot_rounds`: every recorded round (metrics with 95% CIs, promoted or not).
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

from sumpref.artifacts import ArtifactRef, read_table
from sumpref.cachekey import StageSpec
from sumpref.config import ConfigError, RunConfig

ROUND_METRICS = [("accuracy_ge3", "Accuracy >= 3", True), ("mean_correct", "Mean correct", False),
                 ("median_compression", "Median compression", True), ("at_most_2_sentences", "At most 2 sentences", True)]


def check_nightly(cfg: RunConfig) -> None:
    """Fail before any work on settings the nightly flow cannot honour, naming the field."""
    if cfg.nightly.reference == "fixed" and cfg.dpo.trainer != "packed":
        raise ConfigError("nightly.reference: 'fixed' needs dpo.trainer 'packed' (reference log-probs from the initial "
                          "model, training from the champion); use 'previous' with dpo.trainer 'trl'")


def select_articles(pool: list[dict], exclude: set[str], n: int, seed: str) -> list[dict]:
    """`n` articles of `pool` not in `exclude`, in a seeded order (the seed names the date and round)."""
    fresh = [r for r in pool if r["id"] not in exclude]
    if len(fresh) < n:
        raise ConfigError(f"nightly.articles_per_round: {n} fresh articles needed, {len(fresh)} left in data.source "
                          f"after excluding {len(exclude)} used ones (lower it, add data, or set nightly.reuse_articles)")
    rng = random.Random(int(hashlib.sha256(seed.encode()).hexdigest()[:16], 16))
    return rng.sample(fresh, n)


def round_articles_spec(cfg: RunConfig, day: str, rnd: int, exclude: list[str]) -> StageSpec:
    """`{root}/nightly_articles/{key}/articles.jsonl`: the round's sample of `cfg.data.source`."""
    from sumpref.data import load_articles, source_fingerprint

    n = cfg.nightly.articles_per_round
    excluded = [] if cfg.nightly.reuse_articles else sorted(exclude)

    def produce(out: Path) -> dict:
        pool = load_articles(cfg.data.model_copy(update={"num_articles": 10**9})).rows
        rows = select_articles(pool, set(excluded), n, f"{cfg.data.seed}:{day}:{rnd}")
        text = "".join(json.dumps({"id": r["id"], "article": r["article"], "highlights": r["highlights"]}) + "\n"
                       for r in rows)
        (out / "articles.jsonl").write_text(text)
        return {"rows": len(rows), "pool": len(pool), "excluded": len(excluded)}

    excluded_hash = hashlib.sha256("\n".join(excluded).encode()).hexdigest()[:16]
    slice_ = {"data": cfg.data.model_dump(), "files": source_fingerprint(cfg.data), "date": day, "round": rnd,
              "n": n, "excluded": excluded_hash}
    return StageSpec(cfg.root, "nightly_articles", slice_, [], __name__, produce)


def round_config(cfg: RunConfig, sample: ArtifactRef, champion_model: str) -> RunConfig:
    """One round: the pipeline on the round's sample, sampling from (and evaluated against) the champion."""
    data = cfg.data.model_copy(update={"source": sample.child("articles.jsonl"), "num_articles": sample.rows,
                                       "article_formats": ()})
    policy = cfg.policy.model_copy(update={"model": champion_model, "adapter": None})
    return cfg.model_copy(update={"data": data, "policy": policy, "iterations": 1})


def reference_model(cfg: RunConfig, champion: dict) -> str:
    """DPO's reference in a round from `champion`: the initial model (`nightly.reference: fixed`)
    or the champion itself (`previous`)."""
    return champion["base_model"] if cfg.nightly.reference == "fixed" else champion["model"]


def round_win_rate(report: dict) -> dict:
    """The candidate's paired win rate against the champion (the report's baseline)."""
    return report["comparisons"]["tuned vs base"]["win_rate"]


def round_promoted(report_ref: ArtifactRef, threshold: float) -> bool:
    """The promotion rule (`champion.should_promote`) applied to a round's evaluation report."""
    from sumpref.champion import should_promote

    return should_promote(round_win_rate(_report(report_ref)), threshold)


def _report(report_ref: ArtifactRef) -> dict:
    from sumpref import storage

    return json.loads(storage.read_text(storage.join(report_ref.uri, "report.json")))


def round_entry(cfg: RunConfig, day: str, rnd: int, parent: dict, adapter: ArtifactRef, report_ref: ArtifactRef,
                articles: ArtifactRef, promoted: bool, merged_model: str | None) -> dict:
    """The registry entry of a decided round (see `sumpref.champion`)."""
    from sumpref.champion import round_id

    report = _report(report_ref)
    rows = read_table(articles.child("articles.parquet"))
    return {
        "id": round_id(day, rnd), "date": day, "round": rnd, "status": "promoted" if promoted else "rejected",
        "model": merged_model, "adapter": adapter.child("adapter"), "base_model": parent["base_model"],
        "parent": parent["id"], "parent_model": parent["model"], "reference": cfg.nightly.reference,
        "threshold": cfg.nightly.promote_threshold, "win_rate": round_win_rate(report),
        "metrics": {"candidate": report["models"]["tuned"], "champion": report["models"]["base"]},
        "articles": {"train": sorted(r["id"] for r in rows if r["split"] == "train"),
                     "eval": sorted(r["id"] for r in rows if r["split"] == "eval")},
        "data": {"source": cfg.data.source, "sample": articles.uri}, "report": report_ref.uri,
        "config": cfg.model_dump(mode="json"),
    }


def _pct(m: dict, pct: bool) -> str:
    v, (lo, hi) = m["value"], m["ci95"]
    return f"{100 * v:.1f}% [{100 * lo:.1f}, {100 * hi:.1f}]" if pct else f"{v:.2f} [{lo:.2f}, {hi:.2f}]"


def rounds_table(history: list[dict]) -> list[dict]:
    """One flat row per recorded round (the Prefect table artifact and the markdown table)."""
    out = []
    for e in history:
        row = {"round": e["id"], "status": e["status"], "parent": e["parent"], "win_rate_vs_champion": _pct(e["win_rate"], True)}
        row.update({key: _pct(e["metrics"]["candidate"][key], pct) for key, _, pct in ROUND_METRICS})
        out.append(row)
    return out


def render_rounds(history: list[dict], champion: dict, title: str) -> str:
    lines = [f"# {title}", "", f"Champion: **{champion['id']}** (`{champion['model']}`). A round is promoted when the "
             "95% CI lower bound of its paired win rate against the champion (same held-out articles; win 1, tie 0.5) "
             "is above its threshold. Brackets: bootstrap 95% CIs over articles.", ""]
    rows = rounds_table(history)
    if not rows:
        return "\n".join(lines + ["No round recorded yet."]) + "\n"
    labels = ["round", "status", "parent", "win rate vs champion", *(label for _, label, _ in ROUND_METRICS)]
    lines += ["| " + " | ".join(labels) + " |", "|" + "---|" * len(labels)]
    lines += ["| " + " | ".join(str(v) for v in r.values()) + " |" for r in rows]
    lines += ["", "![rounds](rounds.png)"]
    return "\n".join(lines) + "\n"


def plot_rounds(history: list[dict], path: Path) -> None:
    """Win rate vs the champion and candidate Accuracy >= 3 per round, with CIs; promoted rounds filled."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(5, 1.2 * len(history) + 2), 3.5))
    x = list(range(len(history)))
    for k, (label, get) in enumerate([("win rate vs champion", lambda e: e["win_rate"]),
                                       ("candidate Acc >= 3", lambda e: e["metrics"]["candidate"]["accuracy_ge3"])]):
        vals = [get(e)["value"] for e in history]
        err = [[v - get(e)["ci95"][0] for v, e in zip(vals, history)], [get(e)["ci95"][1] - v for v, e in zip(vals, history)]]
        xs = [i + (k - 0.5) * 0.2 for i in x]
        ax.errorbar(xs, vals, yerr=err, fmt="none", capsize=3, color=f"C{k}")
        for xi, v, e in zip(xs, vals, history):
            ax.plot(xi, v, "o", color=f"C{k}", fillstyle="full" if e["status"] == "promoted" else "none")
        ax.plot([], [], "o", color=f"C{k}", label=label)
    if history:
        ax.axhline(history[-1]["threshold"], ls="--", color="grey", lw=1, label="threshold (last round)")
    ax.set_xticks(x, [e["id"] for e in history], rotation=20, fontsize=8)
    ax.set_ylim(-0.05, 1.05)
    ax.set_title("Rounds (filled: promoted; 95% CI)")
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def write_rounds_report(root: str, initial_model: str, title: str) -> dict:
    """Write `{root}/champion/report.md` and `rounds.png` for every recorded round; returns their
    URIs, the table rows and the champion (what the Prefect artifacts show)."""
    import tempfile

    from sumpref import storage
    from sumpref.champion import champion_as_of, read_history, registry_uri

    history = read_history(root)
    champ = champion_as_of(history, initial_model)
    md = render_rounds(history, champ, title)
    base = registry_uri(root)
    png_uri = storage.join(base, "rounds.png")
    with tempfile.TemporaryDirectory() as tmp:
        plot_rounds(history, Path(tmp) / "rounds.png")
        png = (Path(tmp) / "rounds.png").read_bytes()
    storage.write_bytes(png_uri, png)
    storage.write_bytes(storage.join(base, "report.md"), md.encode())
    return {"markdown": md, "report": storage.join(base, "report.md"), "plot": png_uri, "plot_png": png,
            "table": rounds_table(history), "champion": champ["id"]}
