"""Pipeline stages, one module each: config slice + upstream refs in, `ArtifactRef` out.

| stage | module | function |
|---|---|---|
| articles | `articles.py` | `load_stage` |
| questions | `questions.py` | `questions_stage` |
| samples | `samples.py` | `sample_stage` |
| judged | `judged.py` | `judge_stage` |
| pairs | `pairs.py` | `pairs_stage` |
| refprobs | `refprobs.py` | `refprobs_stage` |
| dpo | `dpo.py` | `train_stage` |
| merged | `merged.py` | `merge_stage` |
| eval_model, eval_compare | `evaluation.py` (the stages: `sumpref.evaluation.stages`) | `evaluate` |

A round (samples -> judged -> pairs -> refprobs -> dpo -> merged) is the ordered table
`round.STEPS`, run by `run_round` here and by the round subflow (`flows/round.py`) in Prefect.

Each module is glue only: it names the stage's config slice and upstream artifacts in a
`StageSpec` (`*_spec`, whose key `sumpref.cachekey` computes, code version included) and says
how to produce the files; the logic lives in the domain modules and wings (`data`, `judging/`,
`sampling`, `pairs`, `training/`, `evaluation/`). Generation stages shard their rows and fan the
shards out to Ray through `run_shards`, so a killed run resumes at shard granularity.
"""

from sumpref.stages.articles import articles_spec, load_stage
from sumpref.stages.dpo import dpo_spec, train_stage
from sumpref.stages.evaluation import evaluate, run_eval_config
from sumpref.stages.judged import judge_stage, judged_spec
from sumpref.stages.merged import merge_stage, merged_spec
from sumpref.stages.pairs import pairs_spec, pairs_stage
from sumpref.stages.questions import questions_spec, questions_stage
from sumpref.stages.refprobs import refprobs_spec, refprobs_stage
from sumpref.stages.round import Round, run_round
from sumpref.stages.samples import sample_stage, samples_spec

__all__ = [
    "Round", "articles_spec", "dpo_spec", "evaluate", "judge_stage", "judged_spec", "load_stage",
    "merge_stage", "merged_spec", "pairs_spec", "pairs_stage", "questions_spec", "questions_stage", "refprobs_spec",
    "refprobs_stage", "run_eval_config", "run_round", "sample_stage", "samples_spec", "train_stage",
]
