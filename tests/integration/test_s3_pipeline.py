"""The demo flow with its artifact root and Prefect results on a real S3-compatible server (moto's
server mode on 127.0.0.1), then its rerun: every task Cached, nothing written outside the store
but the local download cache."""

import json

import pytest

from sumpref import storage
from sumpref.artifacts import SUCCESS, read_table
from tests.integration._flow_states import task_states
from tests.integration._pipeline_config import tiny_config
from tests.s3_store import new_bucket

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_api")]

STAGES = ("articles", "questions", "samples", "judged", "pairs", "dpo", "eval_compare")


def test_demo_flow_on_s3_then_cached_rerun(s3, tmp_path, monkeypatch):
    from prefect.filesystems import RemoteFileSystem

    from flows.full_pipeline import full_pipeline

    monkeypatch.setenv("SUMPREF_ARTIFACT_CACHE", str(tmp_path / "cache"))
    bucket = new_bucket()
    root = f"{bucket}/runs"
    results = RemoteFileSystem(basepath=f"{bucket}/prefect-results")
    results.save(bucket.removeprefix("s3://"), overwrite=True)  # Prefect stores results only in saved blocks
    flow = full_pipeline.with_options(result_storage=results)
    cfg = tiny_config(tmp_path / "unused").model_copy(update={"root": root})

    state = flow(cfg, return_state=True)
    assert state.is_completed(), state
    first = task_states(state)
    assert first and all(s == "Completed" for s in first.values()), first
    for stage in STAGES:
        keys = {f.split("/")[0] for f in storage.list_files(f"{root}/{stage}")}
        assert len(keys) == 1 and storage.exists(f"{root}/{stage}/{keys.pop()}/{SUCCESS}"), stage
    for stage in ("questions", "samples", "judged"):  # every shard was written by its Ray actor, not the driver
        log = f"{root}/{stage}/" + storage.list_files(f"{root}/{stage}")[0].split("/")[0] + "/logs/executions.jsonl"
        writers = {json.loads(x)["written_by"] for x in storage.read_text(log).splitlines()}
        assert writers == {"actor"}, (stage, writers)
    assert len({f.split("/")[0] for f in storage.list_files(f"{root}/eval_model")}) == 2  # base, tuned
    eval_dir = f"{root}/eval_compare/" + storage.list_files(f"{root}/eval_compare")[0].split("/")[0]
    report = json.loads(storage.read_text(f"{eval_dir}/report.json"))
    assert set(report["models"]) == {"base", "tuned"} and report["n_articles"] >= 1
    assert all(uri.startswith(root) for uri in report["artifacts"].values()), report["artifacts"]
    assert read_table(f"{eval_dir}/summaries_tuned.parquet")
    assert storage.list_files(f"{bucket}/prefect-results"), "task results are persisted in the store"
    assert not (tmp_path / "unused").exists()

    again = flow(cfg, return_state=True)
    states = task_states(again, expected=len(first))
    assert len(states) == len(first), states
    assert all(s == "Cached" for n, s in states.items() if not n.startswith("publish-report")), states
    assert again.result() == state.result()
