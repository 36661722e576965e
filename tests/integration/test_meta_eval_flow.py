"""The meta-evaluation flow on a small real subset (real Prefect, real data, the real qa judge)."""

import pytest

from flows.meta_eval import meta_eval
from sumpref.metaeval import MetaEvalConfig
from tests.integration._pipeline_config import SHARED

pytestmark = pytest.mark.integration


def test_meta_eval_flow_writes_the_table(tmp_path):
    out = tmp_path / "META.md"
    cfg = MetaEvalConfig(data_dir=SHARED, sets=("summeval", "cliff_cnndm", "llm_news_pairwise"), max_articles=3,
                         n_bootstrap=20, out=out)
    assert meta_eval(cfg) == str(out)
    text = out.read_text()
    for needle in ("| summeval | relevance | Kendall tau", "| cliff_cnndm | factually_consistent | ROC-AUC",
                   "| llm_news_pairwise | overall_writer_better | agreement", "qa judge: n correct", "ROUGE-1 F"):
        assert needle in text, needle
