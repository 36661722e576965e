"""Transformers backend: batched, left-padded generation with n samples per prompt, CPU or GPU.

Cheap to construct and pickle; `load()` reads weights (and a LoRA adapter, if configured).
JSON-schema decoding is not available here (`params.json_schema` is ignored); the judge and
question formats are enforced instead with `params.template` (`sumpref.constrained`).
"""

from __future__ import annotations

import time

from sumpref.backends.base import BackendStats, Generation, Messages, SamplingParams
from sumpref.config import TransformersBackendConfig


class TransformersBackend:
    supports_json_schema = False
    supports_template = True  # sumpref.constrained line templates through prefix_allowed_tokens_fn

    def __init__(self, cfg: TransformersBackendConfig, num_threads: int | None = None):
        self.cfg = cfg
        self.num_threads = num_threads
        self.stats = BackendStats()
        self._model = None
        self._tok = None
        self._constraints: dict = {}

    def __getstate__(self) -> dict:  # ship config only; weights load where the work runs
        return {"cfg": self.cfg, "num_threads": self.num_threads}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["cfg"], state["num_threads"])

    def load(self) -> None:
        if self._model is not None:
            return
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from sumpref.model_paths import resolve_model

        if self.num_threads:
            torch.set_num_threads(self.num_threads)
        path = resolve_model(self.cfg.model)
        device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = {"auto": torch.bfloat16 if device == "cuda" else torch.float32, "float32": torch.float32,
                 "bfloat16": torch.bfloat16, "float16": torch.float16}[self.cfg.dtype]
        tok = AutoTokenizer.from_pretrained(path)
        tok.padding_side = "left"
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(device)
        if self.cfg.adapter:
            from peft import PeftModel

            from sumpref.storage import localize

            model = PeftModel.from_pretrained(model, localize(self.cfg.adapter))  # a URI on a remote root
            if self.cfg.merge_adapter:
                model = model.merge_and_unload()
        model.eval()
        self._model, self._tok, self._device = model, tok, device

    def render(self, messages: Messages) -> str:
        return self._tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    def generate(self, prompts: list[Messages], params: SamplingParams) -> list[list[Generation]]:
        import torch

        self.load()
        torch.manual_seed(params.seed)
        out: list[list[Generation]] = []
        t0 = time.perf_counter()
        # n > 1: each prompt prefilled once. On a GPU also n = 1 (greedy evaluation): the sampler's
        # decoding loop (CUDA graphs, groups sized from memory) is several times `generate`'s speed
        # and gives the same tokens (benchmarks/RESULTS.md). Line templates need `generate`.
        if params.n > 1 or (self._device == "cuda" and not params.template):
            out = self._generate_shared_prefix(prompts, params)
        else:
            for start in range(0, len(prompts), self.cfg.batch_size):
                out.extend(self._generate_batch(prompts[start:start + self.cfg.batch_size], params))
        if self._device == "cuda":
            self.stats.gpu_seconds += time.perf_counter() - t0
        return out

    def _constraint(self, spec: str):
        from sumpref.constrained import TemplateConstraint, make_template

        if spec not in self._constraints:
            eos = self._model.generation_config.eos_token_id
            eos = eos[0] if isinstance(eos, list) else (eos if eos is not None else self._tok.eos_token_id)
            self._constraints[spec] = TemplateConstraint(self._tok, make_template(spec), eos)
        return self._constraints[spec]

    def _generate_shared_prefix(self, prompts: list[Messages], params: SamplingParams) -> list[list[Generation]]:
        """n samples per prompt, each prompt prefilled once (`prefix_sampling`).

        On a GPU the decoding group is sized from free memory and the model's shape (a small model needs
        thousands of rows per step to leave the launch-bound regime; `batch_size` bounds the n=1 path only).
        On a CPU it stays `batch_size // n` prompts (decoding there is compute-bound)."""
        from sumpref.backends.prefix_sampling import sample_shared_prefix

        tok = self._tok
        ids = [tok(self.render(m), add_special_tokens=False)["input_ids"] for m in prompts]
        group = None if self._device == "cuda" else max(1, self.cfg.batch_size // params.n)
        rows = sample_shared_prefix(self._model, tok, ids, params.n, params.temperature, params.top_p,
                                    params.max_new_tokens, params.seed, prompts_per_group=group)
        result = []
        for p_ids, samples in zip(ids, rows):
            gens = [Generation(text=tok.decode(t, skip_special_tokens=True).strip(), prompt_tokens=len(p_ids),
                               output_tokens=len(t) + (fr == "stop"), finish_reason=fr) for t, fr in samples]
            self.stats.prompt_tokens += len(p_ids)
            self.stats.output_tokens += sum(g.output_tokens for g in gens)
            self.stats.requests += 1
            result.append(gens)
        return result

    def _generate_batch(self, prompts: list[Messages], params: SamplingParams) -> list[list[Generation]]:
        import torch

        tok, model = self._tok, self._model
        texts = [self.render(m) for m in prompts]
        enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(self._device)
        prompt_lens = enc["attention_mask"].sum(dim=1).tolist()
        sample = params.temperature > 0
        kwargs = dict(max_new_tokens=params.max_new_tokens, do_sample=sample, num_return_sequences=params.n,
                      pad_token_id=tok.pad_token_id)
        if sample:
            kwargs.update(temperature=params.temperature, top_p=params.top_p)
        else:
            kwargs.update(temperature=None, top_p=None, top_k=None)
        if params.template:
            kwargs["prefix_allowed_tokens_fn"] = self._constraint(params.template).prefix_fn(enc["input_ids"].shape[1])
        with torch.inference_mode():
            seqs = model.generate(**enc, **kwargs)
        new = seqs[:, enc["input_ids"].shape[1]:]
        eos_ids = set(model.generation_config.eos_token_id if isinstance(model.generation_config.eos_token_id, list)
                      else [model.generation_config.eos_token_id, tok.eos_token_id])
        result: list[list[Generation]] = []
        for i in range(len(prompts)):
            gens = []
            for j in range(params.n):
                ids = new[i * params.n + j].tolist()
                stop = next((k for k, t in enumerate(ids) if t in eos_ids), None)
                kept = ids if stop is None else ids[:stop]
                kept = [t for t in kept if t != tok.pad_token_id or tok.pad_token_id in eos_ids]
                gens.append(Generation(text=tok.decode(kept, skip_special_tokens=True).strip(),
                                       prompt_tokens=int(prompt_lens[i]), output_tokens=len(kept) + (stop is not None),
                                       finish_reason="stop" if stop is not None else "length"))
                self.stats.prompt_tokens += int(prompt_lens[i]) if j == 0 else 0
                self.stats.output_tokens += gens[-1].output_tokens
            self.stats.requests += 1
            result.append(gens)
        return result
