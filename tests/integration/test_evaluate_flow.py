"""The evaluation flow for real: Prefect (the session's test server), local Ray, the embedded model and a LoRA
adapter on it, on articles that are not the demo's training articles."""

import json

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("prefect_api")]


@pytest.fixture(scope="module")
def random_adapter(tmp_path_factory):
    from tests.integration._adapters import random_lora

    return random_lora(tmp_path_factory.mktemp("adapter"))


def test_two_models_paired_report_then_cached_rerun(prefect_api, random_adapter, tmp_path, shared_data):
    from prefect.client.orchestration import get_client

    from flows.evaluate import evaluate_models
    from sumpref.evaluation.config import eval_config_from_dict

    root = tmp_path / "runs"
    backend = {"model": "embedded:smollm2-135m-instruct", "batch_size": 4, "num_cpus": 1}
    cfg = eval_config_from_dict({
        "name": "it-eval", "root": str(root), "baseline": "base",
        "models": [{"name": "base", "backend": backend}, {"name": "lora", "backend": {**backend, "adapter": str(random_adapter)}},
                   {"name": "lead-3", "extract": "lead:3"},
                   {"name": "lead-3@lora", "extract": "lead:3", "match_length": "lora"}],
        "comparisons": ["lora vs lead-3@lora"],
        "data": {"source": str(shared_data / "cnndm_summeval.jsonl"), "max_article_tokens": 160},
        "num_articles": 4, "max_new_tokens": 16, "bootstrap_samples": 200,
    })
    state = evaluate_models(cfg, return_state=True)
    assert state.is_completed()
    report_md = state.result()
    out = root.joinpath(report_md).parent
    report = json.loads((out / "report.json").read_text())
    assert report["n_articles"] == 4 and report["baseline"] == "base" and "cnndm_summeval" in report["data_source"]
    assert list(report["models"]) == ["base", "lora", "lead-3", "lead-3@lora"]
    assert list(report["comparisons"]) == ["lora vs base", "lead-3 vs base", "lead-3@lora vs base", "lora vs lead-3@lora"]
    c = report["comparisons"]["lora vs base"]
    w = c["win_rate"]
    assert w["n"] == 4 and w["wins"] + w["ties"] + w["losses"] == 4 and w["ci95"][0] <= w["value"] <= w["ci95"][1]
    for key in ("accuracy_ge3", "mean_correct", "rouge_l", "similarity", "novel_bigrams"):
        d = c["diffs"][key]
        assert d["n"] == 4 and d["ci95"][0] <= d["value"] <= d["ci95"][1], key
    assert 0 < report["models"]["base"]["rouge_l"]["value"] < 1  # SummEval articles carry reference highlights
    assert 0 < report["models"]["base"]["similarity"]["value"] < 1
    # 16 new tokens cut every model summary at the limit; the lead baseline is never cut, and is judged like a model.
    m = report["models"]
    assert m["lora"]["cut_at_limit"]["value"] > 0 and m["lead-3"]["cut_at_limit"]["value"] == 0
    assert m["lead-3"]["lead_copy_share"]["value"] == 1.0 and m["lead-3"]["n"] == 4
    assert 0 <= m["lead-3"]["mean_correct"]["value"] <= 5 and m["lead-3"]["at_most_2_sentences"]["value"] == 0
    md = (out / "report.md").read_text()
    assert "## Paired comparisons" in md and "ROUGE-L" in md and (out / "report.png").stat().st_size > 0

    # The adapter really ran: it changes what the model writes.
    import pyarrow.parquet as pq

    base_s = {r["article_id"]: r["summary"] for r in pq.read_table(out / "summaries_base.parquet").to_pylist()}
    lora_s = {r["article_id"]: r["summary"] for r in pq.read_table(out / "summaries_lora.parquet").to_pylist()}
    assert base_s.keys() == lora_s.keys() and base_s != lora_s
    # Equal length: lead-3 cut to the lora summary's word count, article by article.
    lead = {r["article_id"]: r for r in pq.read_table(out / "summaries_lead-3@lora.parquet").to_pylist()}
    lora_n = {r["article_id"]: r["n_words"] for r in pq.read_table(out / "summaries_lora.parquet").to_pylist()}
    assert lead.keys() == lora_n.keys() and all(lead[a]["n_words"] == min(lora_n[a], 30) or lead[a]["n_words"] <= lora_n[a]
                                                for a in lead)
    assert sum(lead[a]["n_words"] == lora_n[a] for a in lead) >= 3  # lead-3 is longer than a 16-token summary

    with get_client(sync_client=True) as client:
        keys = {a.key for a in client.read_artifacts()}
    assert {"sumpref-report", "sumpref-paired"} <= keys

    # Rerun: every stage finds its finished artifact; no shard is generated or judged again.
    executions = sorted(root.rglob("executions.jsonl"))
    before = [p.read_text() for p in executions]
    again = evaluate_models(cfg, return_state=True)
    assert again.result() == report_md
    assert sorted(root.rglob("executions.jsonl")) == executions and [p.read_text() for p in executions] == before
