"""Paired comparison (win rate, judge metrics, ROUGE-L vs the highlights, article bigram support)
of the summaries a finished run's evaluation stage kept (`summaries_<model>.parquet`), against
the source articles. Used for the GPU run, whose evaluation stage predates the paired report.

    python benchmarks/gpu/paired_from_run.py EVAL_DIR "../shared/data/cnndm_*.jsonl" OUT.md
"""

from __future__ import annotations

import glob
import json
import sys
from pathlib import Path

import pandas as pd

from sumpref.config import PairsConfig
from sumpref.evaluate import compare_models, render_comparison


def main(eval_dir: str, source: str, out: str) -> int:
    judged = {p.stem.removeprefix("summaries_"): pd.read_parquet(p).to_dict("records")
              for p in sorted(Path(eval_dir).glob("summaries_*.parquet"))}
    ids = set.intersection(*({r["article_id"] for r in rows} for rows in judged.values()))
    articles = {}
    for f in glob.glob(source):
        for line in open(f):
            r = json.loads(line)
            if r["id"] in ids:
                articles[r["id"]] = {"article": r["article"], "highlights": r.get("highlights")}
    report = compare_models(judged, articles, "base", PairsConfig(), 200, 2000, 0)
    report.update(name=Path(eval_dir).name, data_source=source, judge="embedded qa (the run's training judge)",
                  plot=None)
    Path(out).write_text(render_comparison(report))
    Path(out).with_suffix(".json").write_text(json.dumps(report, indent=2, default=str))
    print(render_comparison(report))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
