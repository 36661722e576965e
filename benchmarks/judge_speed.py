"""Time to judge 1,000 summaries with the embedded judges (questions written + answers + faithfulness).

Takes the first 1,000 SummEval summaries (63 articles, 16 systems each), writes each article's
questions once and judges every summary with the pipeline's own `QuestionWriter`/`SummaryJudge`,
in one process (as one judge actor would). Model loading is timed apart.

Kinds: `qa` (the default judge: key-content coverage + proportional faithfulness), `qa-mcq` (the
earlier qa count), `cloze`, `qa-embedding` (MiniLM sentence support; minutes on 2 loaded cores).

Usage: .venv/bin/python benchmarks/judge_speed.py [--n 1000] [--kinds qa,qa-mcq,cloze]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

from sumpref.config import ClozeJudgeConfig, JudgeConfig, QAJudgeConfig
from sumpref.evaluation.meta import HUMAN_SETS, load_set
from sumpref.judging.judges import QuestionWriter, SummaryJudge

REPO = Path(__file__).resolve().parent.parent
KINDS = {"qa": QAJudgeConfig(), "qa-mcq": QAJudgeConfig(count="mcq", faithfulness="extra_wrong"),
         "cloze": ClozeJudgeConfig(), "qa-embedding": QAJudgeConfig(support="embedding")}


def time_judge(cfg: JudgeConfig, rows: list[dict]) -> tuple[float, float]:
    """(load seconds, judging seconds) for all rows."""
    t0 = time.perf_counter()
    writer, judge = QuestionWriter(cfg), SummaryJudge(cfg)
    writer.load(), judge.load()
    t1 = time.perf_counter()
    by_article = defaultdict(list)
    for r in rows:
        by_article[r["article_id"]].append(r)
    for aid, group in by_article.items():
        q, _ = writer.run([{"id": aid, "article": group[0]["article"], "highlights": group[0]["highlights"]}])
        judge.run([{"article_id": aid, "questions": q[0]["questions"], "summary": r["summary"]} for r in group])
    return t1 - t0, time.perf_counter() - t1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--kinds", default="qa,qa-mcq,cloze")
    args = ap.parse_args(argv)
    summeval = next(h for h in HUMAN_SETS if h.name == "summeval")
    rows = load_set(args.data_dir, summeval)[: args.n]
    print(f"{len(rows)} summaries, {len({r['article_id'] for r in rows})} articles, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}")
    for kind in args.kinds.split(","):
        load_s, judge_s = time_judge(KINDS[kind], rows)
        print(f"{kind:14s} load {load_s:6.2f} s   judge {judge_s:6.2f} s   ({len(rows) / judge_s:,.0f} summaries/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
