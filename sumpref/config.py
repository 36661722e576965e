"""Typed run configuration: one pydantic model per stage, composed into `RunConfig`.

Unknown keys and invalid values are errors that name the field (`extra="forbid"`).
YAML recipes live in `configs/`; `load_config(path, overrides)` applies `a.b.c=value` overrides
(values parsed as YAML scalars) before validation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import yaml
from pydantic import (BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError, ValidationInfo, field_validator,
                      model_validator)

from sumpref.evaluation.baselines import SPEC_RE

EMBEDDED_MODEL = "embedded:smollm2-135m-instruct"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _BackendBase(Strict):
    """What every engine shares: the model (and LoRA adapter), prompts per call, context length,
    the Ray resources of each replica and the prices used for cost accounting."""

    backend: Literal["transformers", "vllm", "openai"]  # each engine's config narrows it to its own name
    model: str = EMBEDDED_MODEL
    adapter: str | None = Field(None, description="LoRA adapter directory applied on top of `model`")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    batch_size: int = Field(8, ge=1, description="prompts per generation batch")
    max_model_len: int = Field(4096, ge=128, description="context length (prompt + output)")
    # Ray resources, per replica.
    replicas: int = Field(1, ge=1)
    num_gpus: float = Field(0.0, ge=0, description="GPUs per replica (0 on CPU)")
    num_cpus: float = Field(1.0, ge=0)
    accelerator_type: str | None = None
    # Cost accounting: API price sheets per token, self-hosted engines per GPU hour.
    usd_per_1m_prompt_tokens: float = Field(0.0, ge=0)
    usd_per_1m_output_tokens: float = Field(0.0, ge=0)
    usd_per_gpu_hour: float = Field(0.0, ge=0, description="for GPU-second cost accounting")


class TransformersBackendConfig(_BackendBase):
    """In-process transformers generation (CPU or one GPU per replica)."""

    backend: Literal["transformers"] = "transformers"
    merge_adapter: bool = Field(True, description="fold the LoRA adapter into the weights when loading (decodes "
                                "as fast as the base model; bf16 rounding differs slightly from the unmerged adapter)")

    @field_validator("num_gpus")
    @classmethod
    def _one_device(cls, v: float) -> float:
        if v > 1:
            raise ValueError("at most 1 for backend 'transformers' (one device per replica: raise replicas, "
                             "or use backend 'vllm' with tensor_parallel_size)")
        return v


class VLLMBackendConfig(_BackendBase):
    """vLLM engines in Ray actors; the actors' environment comes from `runtime_env`."""

    backend: Literal["vllm"] = "vllm"
    tensor_parallel_size: int = Field(1, ge=1, description="GPUs one engine spans")
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1, description="share of each GPU for weights + KV cache")
    max_lora_rank: int = Field(64, ge=1, description="largest LoRA rank the engine accepts (adapter set)")
    enforce_eager: bool = Field(False, description="no CUDA graphs: slower, less memory, faster start")
    runtime_env: str | None = Field(
        None, description="Ray runtime_env YAML for the engine actors (None: $SUMPREF_RUNTIME_ENV, else the packaged one)")

    @field_validator("tensor_parallel_size")
    @classmethod
    def _fits_the_replica(cls, v: int, info: ValidationInfo) -> int:
        gpus = info.data.get("num_gpus")  # validated first (a base field); 0 means "tensor_parallel_size GPUs"
        if gpus and gpus < v:
            raise ValueError(f"{v} needs num_gpus >= {v} per replica (got num_gpus={gpus:g}): one engine spans "
                             "tensor_parallel_size GPUs of its replica")
        return v


class OpenAIBackendConfig(_BackendBase):
    """An OpenAI-compatible chat-completions server (OpenAI, vLLM's server, `transformers serve`, ...)."""

    backend: Literal["openai"] = "openai"
    base_url: str = Field(..., description="server root, e.g. https://api.openai.com/v1")
    api_key_env: str = "OPENAI_API_KEY"
    api_key_secret_block: str | None = Field(None, description="Prefect Secret block name holding the key")
    max_concurrency: int = Field(8, ge=1, description="requests in flight at once")
    request_timeout_s: float = Field(120.0, gt=0, description="per attempt")
    max_retries: int = Field(6, ge=0, description="retries after the first attempt (openai SDK policy)")

    @field_validator("num_gpus")
    @classmethod
    def _no_local_gpus(cls, v: float) -> float:
        if v:
            raise ValueError("must be 0 for backend 'openai' (the server runs the model)")
        return v


BACKEND_CONFIGS: dict[str, type[_BackendBase]] = {
    "transformers": TransformersBackendConfig,
    "vllm": VLLMBackendConfig,
    "openai": OpenAIBackendConfig,
}


def _backend_tag(value: Any) -> str | None:
    """The union's discriminator; a missing `backend` key means transformers, as before the split."""
    if isinstance(value, dict):
        return value.get("backend", "transformers")
    return value.backend if isinstance(value, _BackendBase) else None


BackendConfig = Annotated[
    Annotated[TransformersBackendConfig, Tag("transformers")]
    | Annotated[VLLMBackendConfig, Tag("vllm")]
    | Annotated[OpenAIBackendConfig, Tag("openai")],
    Discriminator(_backend_tag, custom_error_type="invalid_backend",
                  custom_error_message=f"must be one of {', '.join(BACKEND_CONFIGS)}"),
]
"""Which engine generates text: the `backend` key selects the config type (and its fields)."""


class EmbeddedJudgeActors(Strict):
    """Where an embedded judge runs: `replicas` Ray actors of `num_cpus` CPUs each, no GPU and no
    model server. It sits in the judge's `backend` field, where the LLM judge has its engine."""

    replicas: int = Field(1, ge=1)
    num_cpus: float = Field(1.0, ge=0)

    @property
    def backend(self) -> str:
        """Not an engine: no API key to resolve, nothing to preflight (read where a stage lists its
        backends by their `backend` name)."""
        return "embedded"


class _JudgeBase(Strict):
    """What every judge shares; each kind's config (below) adds its own fields and properties."""

    kind: Literal["qa", "cloze", "llm"]  # each kind's config narrows it to its own name
    n_questions: int = Field(5, ge=1, le=10)

    # Extra per-summary columns the judge writes, reported beside `n_correct` by the meta-evaluation.
    score_parts: ClassVar[tuple[str, ...]] = ()

    @property
    def model_backend(self) -> BackendConfig | None:
        """The engine the judge calls (its API key, its preflight checks, its Ray resources); None
        for the embedded judges, which run no model."""
        return None

    @property
    def label(self) -> str:
        """The judge's name in reports: its kind, or the LLM judge's model."""
        return self.kind

    def describe(self) -> str:
        """The settings a report states next to the kind ('' when the kind says it all)."""
        return ""

    def actor_resources(self) -> dict:
        """Ray resources of one judging actor (`run_shards` keywords, without the runtime_env)."""
        b = self.backend
        return dict(replicas=b.replicas, num_cpus=b.num_cpus, num_gpus=0)

    def shard_size(self, embedded_rows: int) -> int:
        """Rows per judging shard: `embedded_rows` for the embedded judges (cheap rows)."""
        return embedded_rows


class ClozeJudgeConfig(_JudgeBase):
    """`kind: cloze`: the earlier embedded judge: cloze questions from the reference highlights (lead
    sentences without them), answered by matching options against the summary; no faithfulness term."""

    kind: Literal["cloze"] = "cloze"
    backend: EmbeddedJudgeActors = EmbeddedJudgeActors()


class QAJudgeConfig(_JudgeBase):
    """`kind: qa`: embedded, no LLM (the default). It writes the cloze questions and, with `count:
    key_content` (the default), counts correct answers as `n_questions x` the summary's coverage of
    the article's key content (the content words of the highlights and lead sentences, each a
    cloze item, weighted by how often the article uses the word; `sumpref.judging.key_content`): a float
    in [0, n_questions], so ">= 3 of 5 correct" means "covers at least 60% of the key content,
    after the faithfulness term". `count: mcq` counts the written questions answered correctly
    (the earlier integer count). Faithfulness enters by subtraction: with `faithfulness:
    proportional` (the default) the count loses `n_questions x faithfulness_weight x` the share of
    the summary's word trigrams that the article never uses (`sumpref.judging.faithfulness`).
    """

    kind: Literal["qa"] = "qa"
    count: Literal["key_content", "mcq"] = Field(
        "key_content", description="what the count the preference rule sees is made of: n_questions x the "
        "weighted coverage of the article's key content (key_content, a float), or the number of written cloze "
        "questions answered correctly (mcq, the earlier integer count)")
    faithfulness: Literal["none", "extra_wrong", "gate", "proportional"] = Field(
        "proportional", description="how content the article does not support lowers the count: by "
        "n_questions x faithfulness_weight x the share of the summary's word trigrams absent from the article "
        "(proportional); by one answer per sentence with a new name/number/word or n_questions x the share of new "
        "word pairs, whichever is more (extra_wrong); to 0 (gate); or not at all, only reported (none)")
    faithfulness_weight: float = Field(1.0, ge=0, description="proportional: answers lost per n_questions x unsupported share")
    lead_weight: float = Field(0.25, ge=0, description="key_content: weight of the lead sentences' items next to "
                               "the highlights' (1); without highlights the lead alone counts")
    support: Literal["lexical", "embedding"] = Field(
        "lexical", description="how a sentence counts as supported: no new content word and few new "
        "bigrams (lexical), or MiniLM cosine to the closest article sentence >= embed_threshold (embedding)")
    max_novel_bigrams: float = Field(0.35, ge=0, le=1, description="lexical: a sentence with more new word bigrams than this is listed unsupported")
    embed_threshold: float = Field(0.6, ge=-1, le=1, description="embedding: least cosine for support")
    backend: EmbeddedJudgeActors = EmbeddedJudgeActors()

    score_parts: ClassVar[tuple[str, ...]] = ("coverage", "faithfulness")

    def describe(self) -> str:
        return (f"count `{self.count}`, faithfulness `{self.faithfulness}`"
                + (f" (weight {self.faithfulness_weight})" if self.faithfulness == "proportional" else "")
                + (f", lead weight {self.lead_weight}" if self.count == "key_content" else "")
                + f", support `{self.support}`")


class LLMJudgeConfig(_JudgeBase):
    """`kind: llm`: the published method, with `backend` as the judge model: it writes multiple-choice
    questions from the article and answers them from the summary."""

    kind: Literal["llm"] = "llm"
    backend: BackendConfig = TransformersBackendConfig()
    constrained: bool = Field(True, description="JSON-constrained output where the backend supports it")
    mcq_max_new_tokens: int = Field(1024, ge=16)
    answer_max_new_tokens: int = Field(96, ge=8)

    @model_validator(mode="after")
    def _budget(self) -> "LLMJudgeConfig":
        if self.answer_max_new_tokens < 12 * self.n_questions:
            raise ValueError(f"answer_max_new_tokens must be >= 12 x n_questions = {12 * self.n_questions} "
                             "(a cut-off answer list turns the last answers into Unsure)")
        return self

    @property
    def model_backend(self) -> BackendConfig:
        return self.backend

    @property
    def label(self) -> str:
        return self.backend.model

    def actor_resources(self) -> dict:
        b = self.backend
        return dict(replicas=b.replicas, num_cpus=b.num_cpus, num_gpus=b.num_gpus, accelerator_type=b.accelerator_type)

    def shard_size(self, embedded_rows: int) -> int:
        """A few generation batches of the judge model."""
        return self.backend.batch_size * 4


JUDGE_CONFIGS: dict[str, type[_JudgeBase]] = {"qa": QAJudgeConfig, "cloze": ClozeJudgeConfig, "llm": LLMJudgeConfig}


def _judge_tag(value: Any) -> str | None:
    """The union's discriminator; a missing `kind` key means the `qa` judge (the default)."""
    if isinstance(value, dict):
        return value.get("kind", "qa")
    return value.kind if isinstance(value, _JudgeBase) else None


JudgeConfig = Annotated[
    Annotated[QAJudgeConfig, Tag("qa")] | Annotated[ClozeJudgeConfig, Tag("cloze")]
    | Annotated[LLMJudgeConfig, Tag("llm")],
    Discriminator(_judge_tag, custom_error_type="invalid_kind",
                  custom_error_message=f"must be one of {', '.join(JUDGE_CONFIGS)}"),
]
"""Which judge writes and answers the questions: the `kind` key selects the config type (and its fields)."""


class DataConfig(Strict):
    source: str = Field("abisee/cnn_dailymail", description="hub dataset id, or local .jsonl/.parquet file, dir or glob")
    hub_config: str = "3.0.0"
    split: str = "train"
    id_column: str = "id"
    text_column: str = "article"
    highlights_column: str = "highlights"
    num_articles: int = Field(21000, ge=2, description="articles kept after the seeded shuffle")
    eval_fraction: float = Field(0.01, gt=0, lt=1, description="share of articles held out for evaluation")
    min_eval_articles: int = Field(1, ge=1)
    seed: int = 21
    max_article_tokens: int = Field(3500, ge=32, description="longer articles are truncated (flagged)")
    min_article_words: int = Field(30, ge=1)
    article_formats: tuple[str, ...] = Field((), description="keep only rows whose `article_format` is listed (empty: all)")


class SamplingConfig(Strict):
    n: int = Field(10, ge=2, description="summaries per article")
    temperature: float = Field(0.8, ge=0)
    top_p: float = Field(0.95, gt=0, le=1)
    max_new_tokens: int = Field(100, ge=8)
    stop_sentences: int | None = Field(None, ge=1, description="stop each summary at the end of its Nth sentence (the "
                                       "prompt's limit), as a stop sequence would; None: at end of sequence or "
                                       "max_new_tokens only")
    shard_size: int = Field(16, ge=1, description="articles per shard; a crash loses at most one shard")
    seed: int = 0


class PairsConfig(Strict):
    min_words: int = Field(5, ge=1)
    max_words: int = Field(200, ge=2)
    min_correct_for_length: int = Field(3, ge=0, description="both at least this many correct: shorter wins")
    length_margin: int = Field(3, ge=0, description="word-count difference needed for the shorter to win")
    max_pairs_per_article: int = Field(3, ge=1)
    selection: Literal["rule", "best_worst"] = Field(
        "rule", description="rule: the published preference rule; best_worst: best vs worst of the n samples by score")
    valid_fraction: float = Field(0.1, ge=0, lt=1, description="share of ARTICLES whose pairs go to validation")
    format_rule: bool = Field(False, description="the prompt's format first: a summary cut at the token limit, with "
                              "more than max_sentences sentences or ending mid-sentence loses to one that is not; two such "
                              "summaries make no pair")
    max_sentences: int = Field(2, ge=1, description="the prompt's sentence limit, for format_rule")
    seed: int = 0


class DPOCommon(Strict):
    """Fields both trainers read. The trainer's own class (below) adds its fields and checks."""

    beta: float = Field(0.01, gt=0)
    loss_type: Literal["sigmoid", "ipo", "robust", "sppo_hard", "apo_zero"] = "sigmoid"
    label_smoothing: float = Field(0.0, ge=0, lt=0.5)
    learning_rate: float = Field(5e-6, gt=0)
    num_epochs: float = Field(3.0, gt=0)
    max_steps: int = Field(-1, ge=-1, description="-1: run num_epochs")
    per_device_batch_size: int = Field(2, ge=1)
    gradient_accumulation_steps: int = Field(1, ge=1)
    max_length: int = Field(4096, ge=64)
    lora_r: int = Field(8, ge=1)
    lora_alpha: int = Field(16, ge=1)
    lora_dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    gradient_checkpointing: bool = True
    bf16: bool = False
    deepspeed: Literal["none", "zero2", "zero3"] = "none"
    num_workers: int = Field(1, ge=1, description="Ray Train workers (one per GPU; gloo processes on CPU)")
    use_gpu: bool = False
    warmup_ratio: float = Field(0.0, ge=0, lt=1, description="share of steps with linear warmup, then linear decay")
    weight_decay: float = Field(0.0, ge=0)
    max_grad_norm: float = Field(1.0, gt=0)
    logging_steps: int = Field(5, ge=1)
    save_steps: int = Field(200, ge=1)
    save_total_limit: int = Field(2, ge=1, description="checkpoints kept while training")
    report_to: tuple[str, ...] = ()
    seed: int = 0

    @model_validator(mode="after")
    def _check_common(self) -> "DPOCommon":
        if self.max_steps == 0:
            raise ValueError("dpo.max_steps: 0 trains nothing; use -1 (run num_epochs) or a positive count")
        if self.label_smoothing and self.loss_type not in ("sigmoid", "robust"):
            raise ValueError(f"dpo.label_smoothing: only loss_type sigmoid or robust use it (dpo.loss_type is "
                             f"{self.loss_type!r}); set it to 0")
        return self


class TRLDPOConfig(DPOCommon):
    """`dpo.trainer: trl`: TRL's DPOTrainer with a PEFT LoRA adapter (the reference path)."""

    trainer: Literal["trl"] = Field("trl", description="trl: TRL DPOTrainer (reference path)")
    precompute_ref_log_probs: bool = Field(False, description="TRL runs the reference once before training")


class PackedDPOConfig(DPOCommon):
    """`dpo.trainer: packed`: ours (shared-prompt packing; reference log-probs from the refprobs stage)."""

    trainer: Literal["packed"] = Field("packed", description="packed: shared-prompt packing + precomputed reference")
    length_normalize: bool = Field(False, description="divide sequence log-probs by token count")
    merge_adapter: bool = Field(False, description="also write base+adapter merged")
    max_tokens_per_batch: int | None = Field(None, ge=64, description="padded-token budget of one micro-batch")
    ref_replicas: int = Field(1, ge=1, description="Ray actors computing reference log-probs")
    attention: Literal["dense", "flex"] = Field(
        "dense", description="dense: SDPA with an L x L mask; flex: FlexAttention block mask (skips masked blocks)")
    logprob_chunk_size: int = Field(0, ge=0, description="0: one vocabulary projection for all targets; N: N "
                                    "targets at a time (full-vocabulary logits never materialised at once)")
    fused_lora: bool = Field(True, description="LoRA update as the epilogue of the adapter's GEMM "
                             "(sumpref.training.lora_fused); not applied under deepspeed zero3")
    compile_layers: bool = Field(False, description="torch.compile each decoder layer (dynamic shapes; one graph "
                                 "reused by every layer): pays on GPUs (benchmarks/RESULTS.md), costs compile time")

    @model_validator(mode="after")
    def _check_packed(self) -> "PackedDPOConfig":
        others = [r for r in self.report_to if r != "tensorboard"]
        if others:
            raise ValueError(f"dpo.report_to: the packed trainer writes metrics.jsonl and TensorBoard only; "
                             f"{others} would be ignored")
        if self.merge_adapter and self.deepspeed == "zero3":
            raise ValueError("dpo.merge_adapter with dpo.deepspeed: zero3 would gather the whole base model on "
                             "one rank: merge from the saved adapter afterwards (the merge stage does)")
        if self.compile_layers and self.deepspeed == "zero3":
            raise ValueError("dpo.compile_layers with dpo.deepspeed: zero3: ZeRO-3 gathers parameters through "
                             "module hooks that a compiled layer does not run; use zero2 or none")
        return self


TRAINER_CONFIGS: dict[str, type[DPOCommon]] = {"trl": TRLDPOConfig, "packed": PackedDPOConfig}


def _trainer_tag(value: Any) -> str | None:
    """The union's discriminator; a missing `trainer` key means trl, as before the split."""
    if isinstance(value, dict):
        return value.get("trainer", "trl")
    return value.trainer if isinstance(value, DPOCommon) else None


DPOConfig = Annotated[
    Annotated[TRLDPOConfig, Tag("trl")] | Annotated[PackedDPOConfig, Tag("packed")],
    Discriminator(_trainer_tag, custom_error_type="invalid_trainer",
                  custom_error_message=f"must be one of {', '.join(TRAINER_CONFIGS)}"),
]
"""Which DPO trainer runs: the `trainer` key selects the config type (and its fields)."""


class EvalConfig(Strict):
    max_new_tokens: int = Field(100, ge=8)
    stop_sentences: int | None = Field(None, ge=1, description="as sampling.stop_sentences, for every evaluated model")
    judge: JudgeConfig | None = Field(None, description="evaluation judge; None = the training judge")
    bootstrap_samples: int = Field(1000, ge=10)
    max_words: int = Field(200, ge=2, description="longer summaries count as too long")
    api_baseline: OpenAIBackendConfig | None = Field(
        None, description="an extra, paid API baseline (e.g. {model: gpt-4o, base_url: https://api.openai.com/v1}); "
        "None: none, whatever keys the environment holds")
    baselines: list[Annotated[str, Field(pattern=SPEC_RE.pattern)]] = Field(
        ["lead:3"], description="extractive baselines evaluated beside base and tuned: 'lead:K' (first K sentences), "
        "'lead-words:N' (first N words)")
    equal_length: bool = Field(True, description="also compare tuned with each baseline cut to the tuned summary's "
                               "word count, article by article")
    seed: int = 0


class NightlyConfig(Strict):
    """Nightly iterative DPO that continues from the champion (`flows/nightly.py`)."""

    rounds: int = Field(2, ge=1, description="DPO rounds per night at most")
    patience: int = Field(1, ge=1, description="stop the night after this many rounds in a row without a promotion")
    promote_threshold: float = Field(0.5, ge=0, lt=1, description="promote when the 95% CI lower bound of the paired "
                                     "win rate vs the champion is above this")
    reference: Literal["fixed", "previous"] = Field("previous", description="DPO reference: the initial model (fixed, "
                                                    "needs dpo.trainer 'packed') or the champion (previous)")
    reuse_articles: bool = Field(False, description="allow articles used by earlier nights' rounds")
    articles_per_round: int = Field(48, ge=2, description="fresh articles drawn per round (train + held-out)")


class RunConfig(Strict):
    name: str = "sumpref"
    root: str = Field("runs", description="artifact root: local path or file:// URI")
    policy: BackendConfig = TransformersBackendConfig()
    judge: JudgeConfig = QAJudgeConfig()
    data: DataConfig = DataConfig()
    sampling: SamplingConfig = SamplingConfig()
    pairs: PairsConfig = PairsConfig()
    dpo: DPOConfig = TRLDPOConfig()
    eval: EvalConfig = EvalConfig()
    iterations: int = Field(1, ge=1, description="DPO rounds; round k>1 samples from round k-1's adapter")
    nightly: NightlyConfig = NightlyConfig()


class ConfigError(ValueError):
    """A configuration problem, with the offending field named."""


def _set_path(d: dict, dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    cur = d
    for k in keys[:-1]:
        nxt = cur.get(k)
        if nxt is None:
            nxt = cur[k] = {}
        if not isinstance(nxt, dict):
            raise ConfigError(f"override {dotted!r}: {k!r} is not a section")
        cur = nxt
    cur[keys[-1]] = value


def parse_overrides(overrides: list[str]) -> list[tuple[str, Any]]:
    out = []
    for o in overrides:
        if "=" not in o:
            raise ConfigError(f"override {o!r} must look like section.field=value")
        key, raw = o.split("=", 1)
        out.append((key.strip(), yaml.safe_load(raw) if raw != "" else None))
    return out


def format_validation_error(err: ValidationError, source: str) -> str:
    lines = [f"invalid configuration in {source}:"]
    for e in err.errors():
        # A union puts its tag in the location: a backend's anywhere (no config field is named like an
        # engine), the dpo trainer's likewise, a judge kind's right after a `judge` field.
        raw = [str(p) for p in e["loc"]]
        engine = next((p for p in raw if p in BACKEND_CONFIGS), None)
        trainer = next((p for p in raw if p in TRAINER_CONFIGS), None)
        judge_at = [i for i, p in enumerate(raw) if p in JUDGE_CONFIGS and i and raw[i - 1] == "judge"]
        kind = raw[judge_at[-1]] if judge_at else None
        parts = [p for i, p in enumerate(raw) if p not in BACKEND_CONFIGS and p not in TRAINER_CONFIGS and i not in judge_at]
        got = e.get("input")
        tag_key = {"invalid_backend": "backend", "invalid_trainer": "trainer", "invalid_kind": "kind"}.get(e["type"])
        if tag_key:
            parts.append(tag_key)
            got = got.get(tag_key) if isinstance(got, dict) else got
        loc = ".".join(parts) or "(root)"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown field" + (f" for backend {engine!r}" if engine else "") + (
                f" for dpo.trainer {trainer!r}" if trainer else "")
            if kind and not engine:
                msg += f" for judge kind {kind!r}" + _field_of_other_judges(parts[-1])
        lines.append(f"  {loc}: {msg}" + (f" (got {got!r})" if e["type"] != "extra_forbidden" and not isinstance(got, dict) else ""))
    return "\n".join(lines)


def _field_of_other_judges(field: str) -> str:
    owners = [k for k, c in JUDGE_CONFIGS.items() if field in c.model_fields]
    return f" (a field of kind {' and '.join(repr(k) for k in owners)})" if owners else ""


def read_recipe(path: str | Path | None) -> dict:
    """The mapping of sections in a YAML recipe ({} for None: the built-in defaults)."""
    if path is None:
        return {}
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"config file {p} does not exist")
    loaded = yaml.safe_load(p.read_text())
    if loaded is not None and not isinstance(loaded, dict):
        raise ConfigError(f"{p}: top level must be a mapping of sections")
    return loaded or {}


def validate_recipe(model: type[BaseModel], data: dict, overrides: list[str] | None, source: str, set_path=None):
    """`data` with `a.b=value` overrides applied (by `set_path`, default `_set_path`), validated as
    `model`; a `ConfigError` naming every bad field otherwise. Shared by every flow's config."""
    data = dict(data or {})
    for key, value in parse_overrides(overrides or []):
        (set_path or _set_path)(data, key, value)
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, source)) from None


def config_from_dict(data: dict, overrides: list[str] | None = None, source: str = "config") -> RunConfig:
    return validate_recipe(RunConfig, data, overrides, source)


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Load a YAML recipe (or defaults when `path` is None) and apply `a.b=value` overrides."""
    return config_from_dict(read_recipe(path), overrides, source=str(path or "defaults"))
