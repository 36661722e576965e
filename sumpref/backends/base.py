"""The generation backend protocol.

Chat messages in; generations (text, token counts, finish reason) out. A backend is cheap to
construct and to pickle (so Ray can ship it to a worker); weights load in `load()`.
Prompt rendering and output parsing never know which backend ran.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

Messages = list[dict[str, str]]


@dataclass(frozen=True)
class SamplingParams:
    """What to generate: `n` samples per prompt; temperature 0 means greedy."""

    n: int = 1
    temperature: float = 0.0
    top_p: float = 1.0
    max_new_tokens: int = 128
    seed: int = 0
    # A JSON schema the output must follow, where the backend can constrain decoding.
    json_schema: dict | None = None
    # A line-format template ("judge:5", "mcq:5", see sumpref.constrained) for backends that
    # constrain decoding that way instead (transformers).
    template: str | None = None


@dataclass
class Generation:
    """One completion of one prompt."""

    text: str
    prompt_tokens: int
    output_tokens: int
    finish_reason: str  # "stop" | "length" | "error"
    error: str | None = None


class TransientGenerationError(RuntimeError):
    """Generations failed for a reason that may pass (timeouts, 429, 5xx, dropped connections).

    Raised by shard workers so that the shard is not written: the task's retries, or a rerun,
    compute it again. Permanent failures (e.g. HTTP 400) are recorded per row instead.
    """


def is_transient(reason: str | None) -> bool:
    if not reason:
        return False
    if reason.startswith("http_"):
        code = reason[5:]
        return code == "429" or code.startswith("5")
    return reason in ("timeout", "connection_error", "malformed_json")


def raise_if_transient(generations: list[list[Generation]]) -> None:
    bad = [g.error for gs in generations for g in gs if g.finish_reason == "error" and is_transient(g.error)]
    if bad:
        raise TransientGenerationError(f"{len(bad)} generation(s) failed transiently after retries: {sorted(set(bad))}")


@dataclass
class BackendStats:
    """Counters a backend accumulates; they end up in stage metadata."""

    prompt_tokens: int = 0
    output_tokens: int = 0
    requests: int = 0
    retries: int = 0
    gpu_seconds: float = 0.0
    cost_usd: float = 0.0
    errors: dict[str, int] = field(default_factory=dict)

    def add(self, other: "BackendStats") -> None:
        self.prompt_tokens += other.prompt_tokens
        self.output_tokens += other.output_tokens
        self.requests += other.requests
        self.retries += other.retries
        self.gpu_seconds += other.gpu_seconds
        self.cost_usd += other.cost_usd
        for k, v in other.errors.items():
            self.errors[k] = self.errors.get(k, 0) + v


@runtime_checkable
class Backend(Protocol):
    """`generate` returns, for each prompt, a list of `params.n` generations (same order)."""

    def load(self) -> None: ...

    def generate(self, prompts: list[Messages], params: SamplingParams) -> list[list[Generation]]: ...
