"""The judge wing: how a summary is scored by questions about its article.

- `judges`: the judge protocol, one class per kind (`qa`, `cloze`, `llm`) in `JUDGES`, `make_judge`,
  and the shard workers `QuestionWriter` / `SummaryJudge` the stages run on Ray.
- `qa`: the `qa` embedded judge (cloze questions, key-content coverage, a faithfulness term).
- `cloze`: cloze MCQs from masked reference facts, answered by string matching; no model.
- `key_content`: key-content coverage of an article's salient content.
- `faithfulness`: which summary sentences the article does not support.
- `mcq`: the MCQ record, parsing of judge-written MCQs, and position de-biasing.
- `embed`: cached sentence embeddings for the `qa` judge's `support: embedding`.
- `checks`: an LLM judge's own checks (position and length bias).

Nothing is imported here: configs import the light modules alone, and importing the package costs nothing.
"""
