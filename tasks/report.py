"""Publish the evaluation report as Prefect artifacts (markdown + metrics table), once per report."""

from __future__ import annotations

import json

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import INPUTS, TASK_SOURCE

from sumpref.artifacts import ArtifactRef
from sumpref.evaluate import METRIC_LABELS


@task(name="publish-report", cache_policy=INPUTS + TASK_SOURCE, persist_result=True)
def publish_report(report: ArtifactRef) -> str:
    data = json.loads((report.path / "report.json").read_text())
    create_markdown_artifact(key="sumpref-report", markdown=(report.path / "report.md").read_text(),
                             description=f"sumpref report {data['run_name']}")
    table = [{"metric": label, **{m: round(data["models"][m][key]["value"], 4) for m in data["models"]}}
             for key, label, _ in METRIC_LABELS]
    create_table_artifact(key="sumpref-metrics", table=table, description="base vs tuned")
    return str(report.path / "report.md")
