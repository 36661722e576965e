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


# ---------------------------------------------------------------------------------------------
# The failure vocabulary: every reason a backend may put in `Generation.error`, and whether it is
# transient (may pass on a retry: the shard is redone) or permanent (the row is a counted drop).
# Backends build failed generations with `failed()` only, which refuses a reason not listed here.
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Failure:
    transient: bool
    meaning: str


FAILURES: dict[str, Failure] = {
    "timeout": Failure(True, "no answer within the request timeout"),
    "connection_error": Failure(True, "connection refused, reset or dropped"),
    "malformed_response": Failure(True, "a 200 answer that is not a chat completion (truncated body)"),
    "http_transient": Failure(True, "HTTP 408, 409, 429 or 5xx: overloaded, rate-limited or restarting"),
    "http_permanent": Failure(False, "any other HTTP error status (400 bad request, 401 key, 404 model)"),
    "client_error": Failure(False, "the client could not build or send the request (`client_error:<type>`)"),
    "short_response": Failure(False, "fewer samples than asked for (after bounded top-ups, for HTTP)"),
    "prompt_too_long": Failure(False, "the prompt does not fit the engine's max_model_len: not sent"),
}

# The statuses the openai SDK retries (its documented policy); the shard logic agrees with it.
TRANSIENT_HTTP_STATUS = frozenset({408, 409, 429})


def http_reason(status: int) -> str:
    return f"http_{status}"


def failure_kind(reason: str) -> str:
    """The FAILURES key of a recorded reason: `http_503` -> `http_transient`,
    `client_error:ValueError` -> `client_error`. An unlisted reason is a ValueError."""
    if reason.startswith("http_") and reason[5:].isdigit():
        status = int(reason[5:])
        return "http_transient" if status in TRANSIENT_HTTP_STATUS or status >= 500 else "http_permanent"
    kind = reason.split(":", 1)[0]
    if kind not in FAILURES or kind.startswith("http_"):
        raise ValueError(f"unknown generation failure reason {reason!r}: add it to backends.base.FAILURES")
    return kind


def is_transient(reason: str | None) -> bool:
    return bool(reason) and FAILURES[failure_kind(reason)].transient


def failed(reason: str, prompt_tokens: int = 0) -> Generation:
    """A generation that failed for `reason` (checked against the vocabulary)."""
    failure_kind(reason)
    return Generation(text="", prompt_tokens=prompt_tokens, output_tokens=0, finish_reason="error", error=reason)


class TransientGenerationError(RuntimeError):
    """Generations failed for a transient reason (see FAILURES).

    Raised by shard workers so that the shard is not written: the task's retries, or a rerun,
    compute it again. Permanent failures (e.g. HTTP 400) are recorded per row instead.
    """


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
    """`generate` returns, for each prompt, a list of `params.n` generations (same order).

    Capability flags, declared by every backend class, say which constraints of `SamplingParams`
    it honours; callers read them to choose (`sumpref.judging.judges`: a JSON schema, else a template)."""

    supports_json_schema: bool  # honours `SamplingParams.json_schema` (structured output)
    supports_template: bool  # honours `SamplingParams.template` (`sumpref.constrained` line formats)
    stats: BackendStats  # counters since the caller last replaced them

    def load(self) -> None: ...

    def generate(self, prompts: list[Messages], params: SamplingParams) -> list[list[Generation]]: ...
