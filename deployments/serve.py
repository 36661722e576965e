"""Deployments without a work pool: the pipeline (trigger it from the Prefect UI) and the nightly
run that continues from the champion, both carrying the recipe as their `config` parameter.

    prefect server start                          # or point PREFECT_API_URL at your server
    python -m deployments.serve [--config configs/demo.yaml] [--nightly-cron "0 2 * * *"]

`serve` registers the deployments and executes their runs in this process until stopped.
`make serve` uses the work-pool route instead (`prefect.yaml` on a local process pool, a worker,
a server), the same deployments with the same names.
"""

from __future__ import annotations

import argparse

from prefect import serve

from flows.evaluate import evaluate_models
from flows.full_pipeline import full_pipeline
from flows.nightly import nightly
from sumpref.config import load_config
from sumpref.evaluation.config import load_eval_config

NIGHTLY_CRON = "0 2 * * *"


def build_deployments(config_path: str = "configs/demo.yaml", nightly_cron: str = NIGHTLY_CRON,
                      overrides: list[str] | None = None, eval_config_path: str = "configs/eval_example.yaml") -> list:
    cfg = load_config(config_path, overrides).model_dump(mode="json")
    eval_cfg = load_eval_config(eval_config_path).model_dump(mode="json")
    return [
        full_pipeline.to_deployment(name="pipeline", parameters={"config": cfg}, tags=["sumpref"],
                                    description="Full pipeline; edit the config in the run form."),
        nightly.to_deployment(name="nightly", cron=nightly_cron, parameters={"config": cfg}, tags=["sumpref", "nightly"],
                              description="Nightly iterative DPO continuing from the champion on that day's fresh articles."),
        evaluate_models.to_deployment(name="evaluate", parameters={"config": eval_cfg}, tags=["sumpref", "eval"],
                                      description="Compare any set of models with a baseline; edit the models in the run form."),
    ]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="configs/demo.yaml")
    ap.add_argument("--nightly-cron", default=NIGHTLY_CRON)
    ap.add_argument("--eval-config", default="configs/eval_example.yaml", help="recipe of the `evaluate` deployment")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args(argv)
    serve(*build_deployments(args.config, args.nightly_cron, args.overrides, args.eval_config))


if __name__ == "__main__":
    main()
