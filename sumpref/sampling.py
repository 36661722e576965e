"""Summary sampling: article rows in, one row per (article, sample) out.

Columns out: `article_id, sample_idx, summary, prompt_text, n_words, article_words,
output_tokens, finish_reason`. The published prompt; n samples per prompt (the backend computes
each article's prompt once for its n samples where it can).
"""

from __future__ import annotations

import hashlib
from dataclasses import replace

from sumpref.backends import loaded_backend
from sumpref.backends.base import BackendStats, Generation, SamplingParams, raise_if_transient
from sumpref.config import BackendConfig
from sumpref.prompts import SUMMARY_PROMPT, summary_messages
from sumpref.sentences import stop_after_sentences


def word_count(text: str | None) -> int:
    return len(text.split()) if text else 0


def stop_sentences(g: Generation, n: int | None) -> Generation:
    """`g` stopped at the end of its `n`-th sentence (None: unchanged). A summary that reached its
    `n`-th sentence end stopped there by this rule (`finish_reason` "stop", its tokens still counted),
    however many tokens the backend went on to generate."""
    cut = stop_after_sentences(g.text, n) if n and g.finish_reason != "error" else None
    return g if cut is None else replace(g, text=cut, finish_reason="stop")


class Summarizer:
    """Shard worker: the policy writes `params.n` summaries per article, each stopped after
    `stop_sentences` sentences when that is set."""

    def __init__(self, backend: BackendConfig, params: SamplingParams, stop_sentences: int | None = None):
        self.backend_cfg, self.params, self.backend = backend, params, None
        self.stop_sentences = stop_sentences

    def load(self) -> None:
        kwargs = {"num_threads": max(1, int(self.backend_cfg.num_cpus))} if self.backend_cfg.backend == "transformers" else {}
        self.backend = loaded_backend(self.backend_cfg, **kwargs)

    def run(self, rows: list[dict]) -> tuple[list[dict], BackendStats]:
        # The seed depends on the shard's content only, so a resumed run samples the same text.
        key = "|".join(r["id"] for r in rows)
        seed = int(hashlib.sha256(f"{self.params.seed}:{key}".encode()).hexdigest()[:8], 16)
        params = SamplingParams(n=self.params.n, temperature=self.params.temperature, top_p=self.params.top_p,
                                max_new_tokens=self.params.max_new_tokens, seed=seed)
        gens = self.backend.generate([summary_messages(r["article"]) for r in rows], params)
        raise_if_transient(gens)
        out = []
        for r, gs in zip(rows, gens):
            for j, g in enumerate(gs):
                g = stop_sentences(g, self.stop_sentences)
                out.append({"article_id": r["id"], "sample_idx": j, "summary": g.text,
                            "prompt_text": SUMMARY_PROMPT.format(article=r["article"]),
                            "n_words": word_count(g.text), "article_words": r.get("orig_words") or word_count(r["article"]),
                            "output_tokens": g.output_tokens, "finish_reason": g.finish_reason,
                            "gen_error": g.error if g.finish_reason == "error" else None})
        stats = self.backend.stats
        self.backend.stats = BackendStats()
        return out, stats
