"""OpenAI-compatible chat-completions backend (OpenAI, vLLM's server, `transformers serve`, ...),
on the `openai` SDK.

Contract: `OpenAIBackend(cfg).generate(prompts, params)` returns, for every prompt and in order,
exactly `params.n` `Generation`s. A request that still fails after `cfg.max_retries` retries
yields generations with `finish_reason="error"` and `error=<reason>` (reasons from the one
vocabulary in `backends.base.FAILURES`: `http_<status>`, `timeout`, `connection_error`,
`malformed_response`, `short_response`, `client_error:<type>`); they are counted in
`stats.errors`, never raised. Retries are counted in `stats.retries`; tokens come from the
server's `usage`; `stats.cost_usd` uses the config's prices.

Retries, timeouts and Retry-After are the SDK's (its documented policy): 408, 409, 429, 5xx,
timeouts and dropped connections are retried up to `cfg.max_retries` times with exponential
backoff from 0.5 s (up to 25 % jitter, at most 8 s); a `Retry-After` of up to two minutes is used
as the wait instead; other 4xx are not retried; `cfg.request_timeout_s` bounds each attempt.
The SDK does not retry a 200 whose body is not a chat completion: that one is retried here, at
once, from the same budget. Retries taken are read from the SDK (`retries_taken` of a response,
the retry-count header of the last request of a failure).

`n` samples: one request with `n`; if the server returns fewer choices (some cap `n` or ignore
it), the rest is requested again with the remaining count and a shifted seed, a bounded number
of times. The API key is read from the environment variable `cfg.api_key_env` at `load()` (never
the SDK's own `OPENAI_API_KEY` fallback); it is sent only in the Authorization header, never
logged, pickled or put into an error string. Usable from sync code: `generate` runs its own event
loop, in a helper thread when the calling thread already runs one.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import os
from typing import Any

from sumpref.backends.base import BackendStats, Generation, Messages, SamplingParams, failed, http_reason
from sumpref.config import OpenAIBackendConfig

log = logging.getLogger("sumpref.openai")

# The SDK names each attempt's index in this request header; a failure carries its last request.
RETRY_COUNT_HEADER = "x-stainless-retry-count"


# ---------------------------------------------------------------------------------------------
# Pure mapping functions
# ---------------------------------------------------------------------------------------------


def failure_of(exc: BaseException) -> tuple[str, int]:
    """(failure reason, retries the SDK took) for an exception from a chat-completions call.
    Names only, never messages: those may hold URLs."""
    import openai

    if not isinstance(exc, openai.APIError):
        return f"client_error:{type(exc).__name__}", 0
    retries = int(exc.request.headers.get(RETRY_COUNT_HEADER, "0"))
    if isinstance(exc, openai.APIStatusError):
        return http_reason(exc.status_code), retries
    if isinstance(exc, openai.APITimeoutError):
        return "timeout", retries
    if isinstance(exc, openai.APIConnectionError):
        return "connection_error", retries
    return f"client_error:{type(exc).__name__}", retries


def response_format(schema: dict | None) -> dict | None:
    if schema is None:
        return None
    return {"type": "json_schema", "json_schema": {"name": "output", "schema": schema, "strict": True}}


def build_request(model: str, messages: Messages, params: SamplingParams, n: int, seed_offset: int = 0) -> dict:
    """The chat-completions body for `n` samples of one prompt."""
    body: dict[str, Any] = {
        "model": model,
        "messages": messages,
        "n": n,
        "max_tokens": params.max_new_tokens,
        "temperature": params.temperature,
        "top_p": params.top_p if params.temperature > 0 else 1.0,
        "seed": params.seed + seed_offset,
    }
    fmt = response_format(params.json_schema)
    if fmt is not None:
        body["response_format"] = fmt
    return body


def _split_tokens(total: int, texts: list[str]) -> list[int]:
    """`usage` counts all choices together: share it by text length (exact when one choice)."""
    if not texts:
        return []
    weights = [max(1, len(t)) for t in texts]
    shares = [total * w // sum(weights) for w in weights]
    shares[0] += total - sum(shares)
    return shares


def parse_response(payload: Any) -> tuple[list[Generation], int, int]:
    """Choices -> generations; returns (generations, usage prompt tokens, usage output tokens).
    Raises ValueError when the payload is not a chat-completions response."""
    if not isinstance(payload, dict) or not isinstance(payload.get("choices"), list):
        raise ValueError("no choices")
    choices = sorted(payload["choices"], key=lambda c: c.get("index", 0) if isinstance(c, dict) else 0)
    texts: list[str] = []
    reasons: list[str] = []
    for c in choices:
        msg = c.get("message") if isinstance(c, dict) else None
        if not isinstance(msg, dict):
            raise ValueError("choice without message")
        texts.append(msg.get("content") or "")
        reasons.append("length" if c.get("finish_reason") == "length" else "stop")
    usage = payload.get("usage") or {}
    p_tok = int(usage.get("prompt_tokens") or 0)
    o_tok = int(usage.get("completion_tokens") or 0)
    gens = [
        Generation(text=t, prompt_tokens=p_tok, output_tokens=o, finish_reason=r)
        for t, o, r in zip(texts, _split_tokens(o_tok, texts), reasons)
    ]
    return gens, p_tok, o_tok


def run_sync(coro):
    """Run a coroutine to completion from sync code, also when this thread already runs a loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


# ---------------------------------------------------------------------------------------------
# The backend
# ---------------------------------------------------------------------------------------------


class OpenAIBackend:
    """Bounded-concurrency client for `POST {base_url}/chat/completions`."""

    supports_json_schema = True  # the server's `response_format` json_schema
    supports_template = False

    def __init__(self, cfg: OpenAIBackendConfig, *, max_topups: int | None = None):
        self.cfg = cfg
        self.max_topups = max_topups
        self.stats = BackendStats()
        self._api_key: str | None = None
        self._loaded = False

    # Cheap to pickle: config only, never the key.
    def __getstate__(self) -> dict:
        return {"cfg": self.cfg, "max_topups": self.max_topups}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["cfg"], max_topups=state["max_topups"])

    def __repr__(self) -> str:
        return f"OpenAIBackend(base_url={self.cfg.base_url!r}, model={self.cfg.model!r})"

    @property
    def cost_usd(self) -> float:
        return self.stats.cost_usd

    def load(self) -> None:
        self._api_key = os.environ.get(self.cfg.api_key_env) or None
        if self._api_key is None:
            log.info("no API key in $%s; sending requests without Authorization", self.cfg.api_key_env)
        self._loaded = True

    def generate(self, prompts: list[Messages], params: SamplingParams) -> list[list[Generation]]:
        if not self._loaded:
            self.load()
        if not prompts:
            return []
        return run_sync(self._generate_all(prompts, params))

    # -- async internals ------------------------------------------------------------------------

    async def _generate_all(self, prompts: list[Messages], params: SamplingParams) -> list[list[Generation]]:
        import openai

        # The SDK would fall back to $OPENAI_API_KEY; we never send a key we were not given. Without
        # one, the Authorization header is omitted on every request (see `_request`).
        client = openai.AsyncOpenAI(api_key=self._api_key or "no-key", base_url=self.cfg.base_url,
                                    timeout=self.cfg.request_timeout_s, max_retries=self.cfg.max_retries)
        sem = asyncio.Semaphore(self.cfg.max_concurrency)
        async with client:
            return list(await asyncio.gather(*(self._one_prompt(client, sem, m, params) for m in prompts)))

    async def _one_prompt(self, client, sem, messages: Messages, params: SamplingParams) -> list[Generation]:
        gens: list[Generation] = []
        topups = self.max_topups if self.max_topups is not None else params.n
        for k in range(topups + 1):
            need = params.n - len(gens)
            if need <= 0:
                break
            got, reason = await self._request(client, sem, build_request(self.cfg.model, messages, params, need, k))
            if reason is not None:
                gens.extend(self._count_errors(reason, need))
                return gens
            gens.extend(got[:need])
        if len(gens) < params.n:
            gens.extend(self._count_errors("short_response", params.n - len(gens)))
        return gens

    def _count_errors(self, reason: str, k: int) -> list[Generation]:
        self.stats.errors[reason] = self.stats.errors.get(reason, 0) + k
        return [failed(reason) for _ in range(k)]

    async def _request(self, client, sem, body: dict) -> tuple[list[Generation], str | None]:
        """One logical request, with the SDK's retries. Returns (generations, None) or ([], reason)."""
        import openai

        self.stats.requests += 1
        extra = {} if self._api_key else {"extra_headers": {"Authorization": openai.omit}}
        budget = self.cfg.max_retries
        while True:
            try:
                async with sem:
                    raw = await client.with_options(max_retries=budget).chat.completions.with_raw_response.create(
                        **body, **extra)
                    content = raw.http_response.content
            except Exception as exc:  # noqa: BLE001 - every kind maps to a counted failure reason
                reason, retries = failure_of(exc)
                self.stats.retries += retries
                log.warning("request failed after %d attempt(s): %s", retries + 1, reason)
                return [], reason
            self.stats.retries += raw.retries_taken
            budget -= raw.retries_taken
            try:
                gens, p_tok, o_tok = parse_response(json.loads(content))
            except (ValueError, TypeError, AttributeError):
                if budget <= 0:
                    log.warning("request failed: malformed_response")
                    return [], "malformed_response"
                self.stats.retries += 1
                budget -= 1
                continue
            self._account(p_tok, o_tok)
            return gens, None

    def _account(self, prompt_tokens: int, output_tokens: int) -> None:
        self.stats.prompt_tokens += prompt_tokens
        self.stats.output_tokens += output_tokens
        self.stats.cost_usd += (prompt_tokens * self.cfg.usd_per_1m_prompt_tokens
                                + output_tokens * self.cfg.usd_per_1m_output_tokens) / 1e6
