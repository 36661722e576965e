"""The whole method as one Prefect flow: articles -> questions -> `config.iterations` rounds
(summaries -> judged scores -> pairs -> DPO, the round subflow `flows.round`; iterative DPO:
round k samples from, and is referenced against, round k-1's merged policy) -> evaluation.

    python -m flows.full_pipeline --config configs/demo.yaml [section.field=value ...]
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "sumpref")

from prefect import flow, get_run_logger  # noqa: E402

from sumpref.config import ConfigError, RunConfig, load_config  # noqa: E402
from sumpref.preflight import PreflightError, preflight  # noqa: E402
from flows.evaluate import evaluate_on  # noqa: E402
from sumpref.stages.evaluation import run_eval_config  # noqa: E402
from tasks.evaluate import publish_report  # noqa: E402
from flows.round import dpo_round  # noqa: E402
from sumpref.stages.round import Round, lineage  # noqa: E402
from tasks.stages import load_articles, write_questions  # noqa: E402


@flow(name="sumpref-full-pipeline")
def full_pipeline(config: RunConfig = RunConfig()) -> str:
    """Run every stage; return the path of report.md. Finished stages are reused from cache."""
    cfg = config
    preflight(cfg)  # also for runs started from a deployment, not the command line
    articles = load_articles(cfg).result()
    questions = write_questions(cfg, articles, cfg.judge).result()
    policy = cfg.policy
    adapters, upstream = [], {"articles": articles, "questions": questions}
    eval_questions = questions
    if cfg.eval.judge is not None:
        eval_questions = upstream["eval_questions"] = write_questions(cfg, articles, cfg.eval.judge, "eval").result()
    for rnd in range(1, cfg.iterations + 1):
        r = Round(cfg, articles, questions, policy, merge=rnd < cfg.iterations)
        done = dpo_round(r, rnd)
        adapters.append(done["dpo"])
        upstream.update(lineage(rnd, done))
        tuned, policy = r.tuned(done), r.next_policy(done)
    report = evaluate_on(run_eval_config(cfg, tuned), articles, eval_questions, upstream, adapters)
    path = publish_report(report)
    get_run_logger().info("Report: %s", path)
    return path


def cli(doc: str, argv: list[str] | None, run, extra=lambda ap: None) -> int:
    """Shared command line: `--config recipe.yaml [section.field=value ...]`; exit 2 on a bad config
    or unusable data (preflight loads a local source, so its drop counts come before any work)."""
    from sumpref.data import DataError

    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", help="YAML recipe (default: built-in defaults: hub CNN/DM, embedded model)")
    ap.add_argument("overrides", nargs="*", help="section.field=value")
    extra(ap)
    args = ap.parse_args(argv)
    try:
        cfg = load_config(args.config, args.overrides)
        preflight(cfg)
        report = run(cfg, args)
    except (ConfigError, PreflightError, DataError) as e:  # DataError: a hub dataset, checked only when loaded
        print("\n".join(f"error: {line}" for line in str(e).splitlines()) if isinstance(e, PreflightError) else f"error: {e}",
              file=sys.stderr)
        return 2
    print(f"\nReport: {report}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return cli(__doc__, argv, lambda cfg, _: full_pipeline(cfg))


if __name__ == "__main__":
    sys.exit(main())
