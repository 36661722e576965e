"""The LLM judge path with the real embedded model: constrained decoding makes every output
parse, even from a 135M model that cannot write sensible questions."""

import json

import pytest

from sumpref.config import LLMJudgeConfig, TransformersBackendConfig
from sumpref.judging.judges import QuestionWriter, SummaryJudge, questions_from_json
from sumpref.judging.mcq import LETTERS, UNSURE
from tests.integration._pipeline_config import SHARED

pytestmark = pytest.mark.integration


def test_llm_judge_writes_and_answers_parseable_questions():
    art = json.loads(open(SHARED / "cnndm_cliff.jsonl").readline())
    rows = [{"id": art["id"], "article": " ".join(art["article"].split()[:120]), "highlights": None}]
    judge = LLMJudgeConfig(backend=TransformersBackendConfig(batch_size=1), n_questions=2, mcq_max_new_tokens=400)
    writer = QuestionWriter(judge)
    writer.load()
    out, _ = writer.run(rows)
    assert out[0]["error"] is None, out[0]
    qs = questions_from_json(out[0]["questions"])
    assert len(qs) == 2 and all(len(q.options) == 5 and q.answer in LETTERS for q in qs)

    scorer = SummaryJudge(judge)
    scorer.load()
    judged, stats = scorer.run([{"article_id": art["id"], "questions": out[0]["questions"], "summary": "A short summary."}])
    assert judged[0]["judge_error"] is None
    assert all(a in (*LETTERS, UNSURE) for a in judged[0]["answers"]) and 0 <= judged[0]["n_correct"] <= 2
    assert stats.output_tokens > 0
