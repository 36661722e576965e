"""The whole flow for real: Prefect (a test server), local Ray, the embedded model."""

import json

import pytest

from tests.integration._flow_states import task_states
from tests.integration._pipeline_config import tiny_config

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_api")]


def artifact_dirs(root, stage):
    """A stage's artifact folders (not the lock files beside them)."""
    d = root / stage
    return sorted(p for p in d.iterdir() if p.is_dir() and not p.name.startswith(".")) if d.exists() else []


def stage_dirs(root, stage):
    return [p.name for p in artifact_dirs(root, stage)]


def test_full_flow_then_cached_rerun_then_beta_change(prefect_api, tmp_path_factory, monkeypatch):
    from flows.full_pipeline import full_pipeline

    monkeypatch.setenv("OPENAI_API_KEY", "sk-not-a-key")  # a key alone adds no paid baseline (eval.api_baseline does)
    root = tmp_path_factory.mktemp("runs")
    trl = {"trainer": "trl"}  # TRL's DPOTrainer here (the tiny config's default is our packed trainer)
    with_lead = {"baselines": ["lead:3"], "equal_length": True}  # the pipeline's default evaluation (the tiny config has none)
    cfg = tiny_config(root, dpo=trl, eval=with_lead)

    state = full_pipeline(cfg, return_state=True)
    assert state.is_completed()
    report_md = state.result()
    report = json.loads((root.joinpath(report_md).parent / "report.json").read_text())
    md = open(report_md).read()
    assert list(report["models"]) == ["base", "tuned", "lead-3", "lead-3@tuned"] and report["n_articles"] >= 1
    assert list(report["comparisons"]) == ["tuned vs base", "lead-3 vs base", "lead-3@tuned vs base", "tuned vs lead-3",
                                           "tuned vs lead-3@tuned"]
    assert report["training"][0]["steps"] == 2 and report["training"][0]["pairs_train"] > 0
    assert "Paired comparisons" in md and "Rows dropped or left out" in md and "| Cut at the token limit |" in md
    ci = report["comparisons"]["tuned vs base"]["win_rate"]["ci95"]
    assert ci[0] <= report["comparisons"]["tuned vs base"]["win_rate"]["value"] <= ci[1]
    # lead-3 is three sentences of the article, never cut; at the tuned length it has the tuned word counts.
    lead = report["models"]["lead-3"]
    assert lead["lead_copy_share"]["value"] == 1.0 and lead["cut_at_limit"]["value"] == 0.0
    assert report["models"]["lead-3@tuned"]["words"]["value"] <= report["models"]["tuned"]["words"]["value"]
    first = task_states(state)
    assert first and all(s == "Completed" for s in first.values()), first

    again = full_pipeline(cfg, return_state=True)
    assert again.result() == report_md
    states = task_states(again, expected=len(first))
    assert len(states) == len(first), states
    # Every stage comes from the store; the report is published again, for this flow run.
    assert all(s == "Cached" for n, s in states.items() if not n.startswith("publish-report")), states
    # The task's cache is the library's key: the cached pairs ref is the folder the stage spec names.
    from sumpref import stages
    from sumpref.artifacts import ArtifactRef

    pairs_ref = json.loads(artifact_dirs(root, "pairs")[0].joinpath("meta.json").read_text())["ref"]
    judged_ref = json.loads(artifact_dirs(root, "judged")[0].joinpath("meta.json").read_text())["ref"]
    assert stages.pairs_spec(cfg, ArtifactRef(**judged_ref)).key == pairs_ref["key"]

    # A cached task whose artifact folder was deleted is recomputed, not trusted.
    import shutil

    pairs_dir = artifact_dirs(root, "pairs")[0]
    shutil.rmtree(pairs_dir)
    healed = full_pipeline(cfg, return_state=True)
    assert healed.is_completed() and (pairs_dir / "_SUCCESS").exists()

    before = {s: stage_dirs(root, s) for s in ("articles", "questions", "samples", "judged", "pairs", "dpo", "eval_model",
                                               "eval_compare")}
    changed = full_pipeline(tiny_config(root, dpo={**trl, "beta": 0.3}, eval=with_lead), return_state=True)
    assert changed.is_completed()
    after = {s: stage_dirs(root, s) for s in before}
    for stage in ("articles", "questions", "samples", "judged", "pairs"):
        assert after[stage] == before[stage], stage
    # A new adapter: its summaries and the two baselines that follow its length are new; base and
    # lead-3 come from the store.
    assert len(after["dpo"]) == len(before["dpo"]) + 1 and len(after["eval_compare"]) == len(before["eval_compare"]) + 1
    assert len(after["eval_model"]) == len(before["eval_model"]) + 2
    states = task_states(changed, expected=len(first))
    recomputed = {name if name.startswith("eval-model-") else name.rsplit("-", 1)[0]  # its own run name, no suffix
                  for name, s in states.items() if s != "Cached"}
    assert recomputed == {"round-1/train-dpo", "eval-model-tuned", "eval-model-lead-3@tuned", "eval-compare",
                          "publish-report"}, states

    # Iterative DPO with our packed trainer: reference log-probs are their own cached stage; round
    # 1's sampling comes from cache (same inputs), round 2 samples from the merged round-1 policy
    # and trains against it as the reference.
    packed = full_pipeline(tiny_config(root, iterations=2, dpo={"trainer": "packed"}, eval=with_lead), return_state=True)
    assert packed.is_completed()
    import pyarrow.parquet as pq

    ref_dirs = artifact_dirs(root, "refprobs")
    assert len(ref_dirs) == 2  # one per round
    assert {"ref_chosen_logp", "ref_rejected_logp"} <= set(pq.read_schema(ref_dirs[0] / "train.parquet").names)
    report = json.loads((root.joinpath(packed.result()).parent / "report.json").read_text())
    assert [t["steps"] for t in report["training"]] == [2, 2] and report["training"][1]["train_loss"] is not None
    merged = artifact_dirs(root, "merged")[0]
    samples_meta = [json.loads((d / "meta.json").read_text()) for d in artifact_dirs(root, "samples")]
    assert any(m["config"]["policy"]["model"] == str(merged / "model") for m in samples_meta)
    states = task_states(packed)
    # Each round is its subflow `round-N`, its tasks named `round-N/{task}-{id}`.
    rounds = {n.rsplit("-", 1)[0]: s for n, s in states.items() if n.startswith("round-")}
    assert len(rounds) == sum(n.startswith("round-") for n in states) == 11, states  # 5 stages + merge, 5 stages
    assert {n: s for n, s in rounds.items() if n.endswith("sample-summaries")} == {
        "round-1/sample-summaries": "Cached", "round-2/sample-summaries": "Completed"}, states
    assert rounds["round-1/merge-adapter"] == "Completed" and "round-2/merge-adapter" not in rounds, states
