"""Judge an evaluation flow's summaries again with another embedded judge setting, without generating.

The evaluation flow judges every model with one judge (`configs/eval_gpu.yaml` pins the earlier
integer count). This reads the summaries of a finished evaluation (its newest `eval_compare`
report under `--root`), judges them with the recipe plus `overrides` (for example the key-content
count that round 2 trained with) and prints the same comparison table: paired bootstrap over
articles against `--baseline`.

    python benchmarks/gpu/rejudge.py --root runs/gpu-eval --config configs/eval_gpu.yaml \\
        --baseline base judge.count=key_content judge.faithfulness=proportional
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from sumpref.artifacts import load_ref, read_table, uri_to_path  # noqa: E402
from sumpref.evaluation.config import load_eval_config  # noqa: E402
from sumpref.evaluation.metrics import compare_models, render_comparison  # noqa: E402
from sumpref.judging.judges import SummaryJudge  # noqa: E402
from sumpref.pairs import failed_reason  # noqa: E402
from sumpref.stages.shards import question_map  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", required=True, help="the evaluation flow's root")
    ap.add_argument("--config", default="configs/eval_gpu.yaml")
    ap.add_argument("--baseline", default=None, help="default: the recipe's baseline")
    ap.add_argument("--out", default=None, help="also write the report (markdown and json) to this folder")
    ap.add_argument("overrides", nargs="*", help="field=value for the recipe, e.g. judge.count=key_content")
    args = ap.parse_args()
    cfg = load_eval_config(args.config, args.overrides)
    reports = sorted(Path(args.root).glob("eval_compare/*/report.json"), key=lambda p: p.stat().st_mtime)
    if not reports:
        raise SystemExit(f"{args.root}: no finished evaluation (eval_compare/*/report.json)")
    done = json.loads(reports[-1].read_text())
    arts = done["artifacts"]
    qmap = question_map(load_ref(arts["questions"]))
    articles = {r["id"]: r for r in read_table(uri_to_path(arts["articles"]) / "articles.parquet")
                if r["id"] in qmap}
    judge = SummaryJudge(cfg.judge)
    judged = {}
    for name in (m.name for m in cfg.models):
        gen = [r for f in sorted((uri_to_path(arts[name]) / "gen" / "shards").glob("*.parquet")) for r in read_table(f)]
        rows, _ = judge.run([{**g, "questions": qmap[g["article_id"]]} for g in gen if g["article_id"] in qmap])
        judged[name] = [r for r in rows if not failed_reason(r)]
        print(f"{name}: {len(judged[name])} of {len(rows)} summaries judged", file=sys.stderr)
    report = compare_models(judged, articles, args.baseline or cfg.baseline, cfg.pairs, cfg.max_words,
                            cfg.bootstrap_samples, cfg.seed)
    report.update(name=f"{cfg.name} (re-judged: {' '.join(args.overrides) or 'recipe judge'})",
                  data_source=done["data_source"], judge="embedded qa", drops={}, model_specs={}, accounting={})
    text = render_comparison(report)
    print(text)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "report.md").write_text(text)
        (out / "report.json").write_text(json.dumps(report, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
