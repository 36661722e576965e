"""The evaluation report recomputed from the summaries a finished evaluation kept
(`summaries_<model>.parquet`, judged) and the source articles: every metric with paired CIs, each
model vs `base` and the comparisons named after OUT.md ("tuned vs lead-3@tuned" ...). For runs
whose report lacks a metric: an old evaluation stage, or a GPU machine without the MiniLM model
package (the similarity is then n/a there and computed here).

    python benchmarks/gpu/paired_from_run.py EVAL_DIR "../shared/data/cnndm_*.jsonl" OUT.md ["tuned vs lead-3" ...]
"""

from __future__ import annotations

import glob
import json
import sys
from pathlib import Path

import pandas as pd

from sumpref.config import PairsConfig
from sumpref.evaluation.metrics import compare_models, render_comparison
from sumpref.pairs import failed_reason


def main(eval_dir: str, source: str, out: str, *compared: str) -> int:
    judged = {p.stem.removeprefix("summaries_"): [r for r in pd.read_parquet(p).to_dict("records") if not failed_reason(r)]
              for p in sorted(Path(eval_dir).glob("summaries_*.parquet"))}
    ids = set.intersection(*({r["article_id"] for r in rows} for rows in judged.values()))
    articles = {}
    for f in glob.glob(source):
        for line in open(f):
            r = json.loads(line)
            if r["id"] in ids:
                articles[r["id"]] = {"article": r["article"], "highlights": r.get("highlights")}
    pairs = [(m, "base") for m in judged if m != "base"] + [tuple(c.split(" vs ")) for c in compared]
    report = compare_models(judged, articles, "base", PairsConfig(), 200, 2000, 0, pairs)
    report.update(name=Path(eval_dir).name, data_source=source, judge="embedded qa (the run's training judge)",
                  plot=None)
    Path(out).write_text(render_comparison(report))
    Path(out).with_suffix(".json").write_text(json.dumps(report, indent=2, default=str))
    print(render_comparison(report))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
