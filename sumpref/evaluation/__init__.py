"""The evaluation wing: several models (and extractive baselines) summarize the same articles, are
judged alike and compared in pairs.

- `config`: the evaluation flow's typed config (`EvalFlowConfig`, `EvalModel`).
- `stages`: the evaluation's stages (articles, questions, one per model, the comparison).
- `metrics`: per-model metrics, paired comparisons with bootstrap CIs, the report.
- `format`: per-summary format and copying metrics.
- `baselines`: extractive baselines (`lead:K`, `lead-words:N`) as a shard worker.
- `meta`: meta-evaluation, how well a judge agrees with people.

Nothing is imported here: configs import the light modules alone, and importing the package costs nothing.
"""
