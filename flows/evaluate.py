"""Evaluate any set of models on the same articles, questions and judge; compare each with a baseline.

    python -m flows.evaluate --config configs/eval_example.yaml [field=value ...]
    python -m flows.evaluate --config configs/eval_example.yaml models.1.backend.adapter=path/to/adapter

Every model (a base, LoRA adapters on a base, merged model folders, an OpenAI-compatible API
model) summarizes the same articles; the judge answers the same questions from each summary.
The report gives per-model metrics and paired differences vs `baseline` with 95% CIs.
"""

from __future__ import annotations

import argparse
import sys

import flows  # noqa: F401  (process defaults before Prefect starts)
from prefect import flow, get_run_logger

from sumpref.artifacts import ArtifactRef
from sumpref.config import ConfigError
from sumpref.evaluation.config import EvalFlowConfig, load_eval_config, preflight_eval
from sumpref.preflight import PreflightError
from sumpref.stages.evaluation import model_order
from tasks.evaluate import eval_articles, eval_compare, eval_model, eval_questions, publish_report


def evaluate_on(config: EvalFlowConfig, articles: ArtifactRef, questions: ArtifactRef,
                run: dict[str, ArtifactRef] | None = None, adapters: list[ArtifactRef] | None = None) -> ArtifactRef:
    """Every model's summaries judged (a task each; a length-matched baseline after its model), then
    the comparison: the one evaluation path of this flow, the pipeline and the nightly rounds."""
    judged: dict[str, ArtifactRef] = {}
    for m in model_order(config):
        judged[m.name] = eval_model(config, m, articles, questions, judged.get(m.match_length or "")).result()
    ordered = {m.name: judged[m.name] for m in config.models}
    return eval_compare(config, articles, questions, ordered, run, adapters).result()


@flow(name="sumpref-evaluate")
def evaluate_models(config: EvalFlowConfig = EvalFlowConfig()) -> str:
    """Summaries of every model, judged, compared with the baseline; returns the path of report.md."""
    preflight_eval(config)  # missing adapters or data fail here, before any work (also from a deployment)
    articles = eval_articles(config).result()
    questions = eval_questions(config, articles).result()
    path = publish_report(evaluate_on(config, articles, questions))
    get_run_logger().info("Report: %s", path)
    return path


def main(argv: list[str] | None = None) -> int:
    from sumpref.data import DataError
    from sumpref.preflight import preflight_data

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", help="YAML recipe (configs/eval_example.yaml); default: built-in defaults")
    ap.add_argument("overrides", nargs="*", help="field=value, e.g. num_articles=50 or models.1.temperature=0.7")
    args = ap.parse_args(argv)
    try:
        cfg = load_eval_config(args.config, args.overrides)
        preflight_eval(cfg)
        preflight_data(cfg.data, split=False)  # the rows too: no usable article is one line, before any work
        report = evaluate_models(cfg)
    except (ConfigError, PreflightError, DataError) as e:  # DataError: a hub dataset, checked only when loaded
        print("\n".join(f"error: {line}" for line in str(e).splitlines()), file=sys.stderr)
        return 2
    print(f"\nReport: {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
