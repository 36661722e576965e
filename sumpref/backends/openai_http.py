"""OpenAI-compatible chat-completions backend (OpenAI, vLLM's server, `transformers serve`, ...).

Contract: `OpenAIBackend(cfg).generate(prompts, params)` returns, for every prompt and in order,
exactly `params.n` `Generation`s. A request that still fails after `cfg.max_retries` retries
yields generations with `finish_reason="error"` and `error=<reason>` (reasons: `http_<status>`,
`timeout`, `connection_error`, `malformed_response`, `short_response`); they are counted in
`stats.errors`, never raised. Retries are counted in `stats.retries`; tokens come from the
server's `usage`; `stats.cost_usd` uses the config's prices.

Retry policy (pure functions below, unit-tested): 429, 408, 5xx, timeouts, dropped connections
and unparseable bodies are retried with exponential backoff and full jitter; a `Retry-After`
header is honoured (as a lower bound). Other 4xx are not retried.

`n` samples: one request with `n`; if the server returns fewer choices (some cap `n` or ignore
it), the rest is requested again with the remaining count and a shifted seed, a bounded number
of times. The API key is read from the environment variable `cfg.api_key_env` at `load()`; it
is sent only in the Authorization header, never logged, pickled or put into an error string.
Usable from sync code: `generate` runs its own event loop, in a helper thread when the calling
thread already runs one.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import email.utils
import json
import logging
import os
import random
import time
from dataclasses import dataclass
from typing import Any

from sumpref.backends.base import BackendStats, Generation, Messages, SamplingParams
from sumpref.config import BackendConfig

log = logging.getLogger("sumpref.openai")

RETRYABLE_STATUS = frozenset({408, 409, 425, 429})


# ---------------------------------------------------------------------------------------------
# Pure policy and mapping functions
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 6
    base_s: float = 0.5
    max_s: float = 30.0
    max_retry_after_s: float = 120.0

    def delay(self, attempt: int, retry_after_s: float | None = None, rand: float | None = None) -> float:
        """Seconds to wait before retry number `attempt` (0-based): full jitter over an
        exponentially growing cap, never less than the server's Retry-After (itself capped)."""
        cap = min(self.max_s, self.base_s * (2.0**attempt))
        r = random.random() if rand is None else rand
        wait = cap * r
        if retry_after_s is not None:
            wait = max(wait, min(retry_after_s, self.max_retry_after_s))
        return wait


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """`Retry-After` as seconds: delta-seconds or an HTTP date; None when absent or invalid."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def status_reason(status: int) -> tuple[str, bool]:
    """(error reason, retryable) for a non-200 HTTP status."""
    return f"http_{status}", status in RETRYABLE_STATUS or status >= 500


def exception_reason(exc: BaseException) -> tuple[str, bool]:
    """(error reason, retryable) for a transport exception. Names only: messages may hold URLs."""
    import httpx

    if isinstance(exc, (httpx.TimeoutException, asyncio.TimeoutError, TimeoutError)):
        return "timeout", True
    if isinstance(exc, (httpx.TransportError, ConnectionError)):  # connect/read/write/protocol errors
        return "connection_error", True
    return f"client_error:{type(exc).__name__}", False


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


def error_generations(reason: str, k: int, prompt_tokens: int = 0) -> list[Generation]:
    return [Generation(text="", prompt_tokens=prompt_tokens, output_tokens=0, finish_reason="error", error=reason)
            for _ in range(k)]


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

    supports_json_schema = True

    def __init__(
        self,
        cfg: BackendConfig,
        *,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 30.0,
        max_topups: int | None = None,
        **_: Any,
    ):
        if not cfg.base_url:
            raise ValueError("backend 'openai' needs base_url")
        self.cfg = cfg
        self.policy = RetryPolicy(cfg.max_retries, backoff_base_s, backoff_max_s)
        self.max_topups = max_topups
        self.stats = BackendStats()
        self._api_key: str | None = None
        self._loaded = False

    # Cheap to pickle: config and policy only, never the key.
    def __getstate__(self) -> dict:
        return {"cfg": self.cfg, "policy": self.policy, "max_topups": self.max_topups}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["cfg"], backoff_base_s=state["policy"].base_s, backoff_max_s=state["policy"].max_s,
                      max_topups=state["max_topups"])

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

    def _headers(self) -> dict[str, str]:
        h = {"Content-Type": "application/json"}
        if self._api_key:
            h["Authorization"] = f"Bearer {self._api_key}"
        return h

    async def _generate_all(self, prompts: list[Messages], params: SamplingParams) -> list[list[Generation]]:
        import httpx

        limits = httpx.Limits(max_connections=self.cfg.max_concurrency, max_keepalive_connections=self.cfg.max_concurrency)
        timeout = httpx.Timeout(self.cfg.request_timeout_s)
        sem = asyncio.Semaphore(self.cfg.max_concurrency)
        base = self.cfg.base_url.rstrip("/")
        async with httpx.AsyncClient(base_url=base, timeout=timeout, limits=limits, headers=self._headers()) as client:
            tasks = [self._one_prompt(client, sem, m, params) for m in prompts]
            return list(await asyncio.gather(*tasks))

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
        return error_generations(reason, k)

    async def _request(self, client, sem, body: dict) -> tuple[list[Generation], str | None]:
        """POST with retries. Returns (generations, None) or ([], final error reason)."""
        reason = "unknown"
        self.stats.requests += 1
        attempt = 0
        for attempt in range(self.policy.max_retries + 1):
            retry_after = None
            try:
                async with sem:
                    async with asyncio.timeout(self.cfg.request_timeout_s):
                        resp = await client.post("/chat/completions", json=body)
                        raw = await resp.aread()
                if resp.status_code == 200:
                    try:
                        gens, p_tok, o_tok = parse_response(json.loads(raw))
                    except (ValueError, TypeError, AttributeError):
                        reason, retryable = "malformed_response", True
                    else:
                        self._account(p_tok, o_tok)
                        return gens, None
                else:
                    reason, retryable = status_reason(resp.status_code)
                    retry_after = parse_retry_after(resp.headers.get("retry-after"))
            except Exception as exc:  # noqa: BLE001 - classified below; unknown kinds are not retried
                reason, retryable = exception_reason(exc)
            if not retryable or attempt == self.policy.max_retries:
                break
            self.stats.retries += 1
            wait = self.policy.delay(attempt, retry_after)
            log.debug("retry %d after %s in %.2fs", attempt + 1, reason, wait)
            await asyncio.sleep(wait)
        log.warning("request failed after %d attempt(s): %s", attempt + 1, reason)
        return [], reason

    def _account(self, prompt_tokens: int, output_tokens: int) -> None:
        self.stats.prompt_tokens += prompt_tokens
        self.stats.output_tokens += output_tokens
        cost = (prompt_tokens * self.cfg.usd_per_1m_prompt_tokens + output_tokens * self.cfg.usd_per_1m_output_tokens) / 1e6
        self.stats.cost_usd = getattr(self.stats, "cost_usd", 0.0) + cost
