"""Pipeline stages, one module each: config slice + upstream refs in, `ArtifactRef` out.

| stage | module | spec (run it: `spec.run()`) | Prefect task (`tasks/stages.py`) |
|---|---|---|---|
| articles | `articles.py` | `articles_spec` | `load_articles` |
| questions | `questions.py` | `questions_spec` | `write_questions` |
| samples | `samples.py` | `samples_spec` | `sample_summaries` |
| judged | `judged.py` | `judged_spec` | `judge_summaries` |
| pairs | `pairs.py` | `pairs_spec` | `build_pairs` |
| refprobs | `refprobs.py` | `refprobs_spec` | `reference_logprobs` |
| dpo | `dpo.py` | `dpo_spec` | `train_dpo` |
| merged | `merged.py` | `merged_spec` | `merge_adapter` |
| eval_model, eval_compare | `evaluation.py` (the stages: `sumpref.evaluation.stages`) | `evaluate` | `flows/evaluate.py` |

A round (samples -> judged -> pairs -> refprobs -> dpo -> merged) is the ordered table
`round.STEPS`, run by `run_round` here and by the round subflow (`flows/round.py`) in Prefect.

Each module is glue only: it names the stage's config slice and upstream artifacts in a
`StageSpec` (`*_spec`, whose key `sumpref.cachekey` computes, code version included) and says
how to produce the files; the logic lives in the domain modules and wings (`data`, `judging/`,
`sampling`, `pairs`, `training/`, `evaluation/`). Generation stages shard their rows and fan the
shards out to Ray through `run_shards`, so a killed run resumes at shard granularity.
"""

from sumpref.stages.articles import articles_spec
from sumpref.stages.dpo import dpo_spec
from sumpref.stages.evaluation import evaluate, run_eval_config
from sumpref.stages.judged import judged_spec
from sumpref.stages.merged import merged_spec
from sumpref.stages.pairs import pairs_spec
from sumpref.stages.questions import questions_spec
from sumpref.stages.refprobs import refprobs_spec
from sumpref.stages.round import Round, run_round
from sumpref.stages.samples import samples_spec

__all__ = [
    "Round", "articles_spec", "dpo_spec", "evaluate", "judged_spec", "merged_spec", "pairs_spec", "questions_spec",
    "refprobs_spec", "run_eval_config", "run_round", "samples_spec",
]
