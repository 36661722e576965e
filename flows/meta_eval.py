"""Meta-evaluation: agreement of a judge (and baselines) with people on every human-judgment set.

    python -m flows.meta_eval [--config configs/demo.yaml] [judge.field=value ...] [--sets summeval ...]
        [--max-articles N] [--out benchmarks/META_EVAL.md]

The judge is the recipe's `judge` section (the embedded `qa` judge by default). With `kind: llm`
the flow also measures the judge's position and length bias.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from prefect import flow

from sumpref.config import load_config
from sumpref.evaluation.meta import MetaEvalConfig, selected_sets
from tasks.meta_eval import agreement_with_people, llm_checks, write_report


@flow(name="sumpref-meta-eval")
def meta_eval(config: MetaEvalConfig = MetaEvalConfig()) -> str:
    """One task per set (sequential: the sets share the machine's cores), then the report."""
    results = [agreement_with_people(config, h.name) for h in selected_sets(config)]
    checks = llm_checks(config) if config.judge.model_backend is not None else None
    return write_report(config, results, checks)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", help="YAML recipe whose `judge` section is evaluated (default: JudgeConfig())")
    ap.add_argument("overrides", nargs="*", help="section.field=value, e.g. judge.faithfulness=gate")
    ap.add_argument("--data-dir", type=Path, default=MetaEvalConfig().data_dir)
    ap.add_argument("--sets", nargs="*", default=[])
    ap.add_argument("--max-articles", type=int, default=None)
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--out", type=Path, default=MetaEvalConfig().out)
    args = ap.parse_args(argv)
    try:
        judge = load_config(args.config, args.overrides).judge
        cfg = MetaEvalConfig(data_dir=args.data_dir, sets=tuple(args.sets), max_articles=args.max_articles,
                             judge=judge, n_bootstrap=args.bootstrap, out=args.out)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(meta_eval(cfg))
    return 0


if __name__ == "__main__":
    sys.exit(main())
