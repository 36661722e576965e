"""The run report: evaluation results, training metrics, drops and accounting in one document.

In: per-model judged eval rows (`sumpref.judges` columns), the adapters' and upstream artifacts'
`meta.json` info. Out: `report.json` (the dict `assemble_report` returns), `report.md`
(`evaluate.render_report`), `report.png` (`evaluate.plot_report`) and `summaries_{model}.parquet`.
Metrics and their confidence intervals come from `sumpref.evaluate`; this module only assembles.
"""

from __future__ import annotations

import json
from pathlib import Path

from sumpref.artifacts import ArtifactRef, atomic_write_text, write_table
from sumpref.config import RunConfig
from sumpref.evaluate import model_metrics, plot_report, render_report, win_rate


def assemble_report(cfg: RunConfig, judge_name: str, eval_articles: int, judged: dict[str, list[dict]],
                    adapters: list[ArtifactRef], upstream: dict[str, ArtifactRef], eval_drops: dict[str, dict],
                    accounting: dict[str, dict]) -> dict:
    """The report dict: metrics per model, win rates vs `base`, training, drops, accounting, artifacts.

    `judged` maps model name -> judged rows that count (failed rows already left out, counted in
    `eval_drops`); it must hold `base`.
    """
    e = cfg.eval
    infos = {name: ref.meta()["info"] for name, ref in upstream.items()}
    return {
        "run_name": cfg.name, "eval_articles": eval_articles, "judge": judge_name,
        "models": {m: model_metrics(rows, e.max_words, e.bootstrap_samples, e.seed) for m, rows in judged.items()},
        "win_rates": {f"{m} vs base": win_rate(rows, judged["base"], cfg.pairs, e.bootstrap_samples, e.seed)
                      for m, rows in judged.items() if m != "base"},
        "training": [a.meta()["info"] for a in adapters],
        "drops": {**{name: info.get("drops", {}) for name, info in infos.items()}, **eval_drops},
        "accounting": {**{name: info["backend"] for name, info in infos.items() if "backend" in info}, **accounting},
        "artifacts": {**{name: ref.uri for name, ref in upstream.items()},
                      **{f"adapter_round{i}": a.uri + "/adapter" for i, a in enumerate(adapters, 1)}},
    }


def write_report(out: Path, report: dict, judged: dict[str, list[dict]]) -> None:
    """Write the summaries, the plot, `report.json` and `report.md` into `out`."""
    for name, rows in judged.items():
        write_table(out / f"summaries_{name}.parquet", rows)
    plot_report(report, out / "report.png")
    report["plot"] = "report.png"
    atomic_write_text(out / "report.json", json.dumps(report, indent=2, default=str))
    atomic_write_text(out / "report.md", render_report(report))
