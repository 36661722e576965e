"""OpenAIBackend against a real OpenAI-compatible server (embedded SmolLM2, 127.0.0.1), directly
and through a fault-injecting proxy: every row completes or is a counted drop with its reason,
retries are counted exactly, no row is lost, duplicated or reordered."""

from __future__ import annotations

import asyncio
import logging
import pickle

import pytest

from sumpref.backends.base import SamplingParams
from sumpref.config import OpenAIBackendConfig
from tests.fault_proxy import FaultProxy
from tests.openai_server import ModelServer, ServerThread

pytestmark = pytest.mark.integration

SECRET = "sk-test-Zq81NeverLogMe"
KEY_ENV = "SUMPREF_TEST_OPENAI_KEY"
GREEDY = SamplingParams(n=2, temperature=0.0, max_new_tokens=6, seed=0)


@pytest.fixture(scope="module")
def server():
    from sumpref.model_paths import resolve_model

    model = ModelServer(resolve_model("embedded:smollm2-135m-instruct"))
    with ServerThread(model.app()) as srv:
        srv.model = model
        yield srv


@pytest.fixture(autouse=True)
def key_env(monkeypatch):
    monkeypatch.setenv(KEY_ENV, SECRET)


def _backend(base_url: str, **over):
    from sumpref.backends.openai_http import OpenAIBackend

    fields = dict(model="local", base_url=base_url, api_key_env=KEY_ENV, max_concurrency=3,
                  request_timeout_s=20.0, max_retries=3, usd_per_1m_prompt_tokens=1.0, usd_per_1m_output_tokens=2.0)
    fields.update(over)
    return OpenAIBackend(OpenAIBackendConfig(**fields))


def _msgs(text: str):
    return [{"role": "user", "content": text}]


ARTICLE = "The town council voted on Tuesday to close the old river bridge for two months of repairs."
ROWS = [
    ("[faults:429]", 1), ("[faults:500]", 1), ("[faults:timeout]", 1), ("[faults:malformed]", 1),
    ("[faults:drop]", 1), ("[faults:429,500,drop]", 3), ("", 0),
]


def test_direct_usage_cost_auth_and_schema(server, caplog):
    caplog.set_level(logging.DEBUG)
    be = _backend(server.base_url)
    schema = {"type": "object", "properties": {"summary": {"type": "string"}}, "required": ["summary"]}
    params = SamplingParams(n=3, temperature=0.8, top_p=0.95, max_new_tokens=6, seed=3, json_schema=schema)
    before = len(server.model.requests)
    out = be.generate([_msgs("Summarize: " + ARTICLE), _msgs("Say hello.")], params)
    assert [len(r) for r in out] == [3, 3]
    assert all(g.finish_reason in ("stop", "length") and g.error is None for r in out for g in r)
    seen = server.model.requests[before:]
    assert len(seen) == 2 and be.stats.requests == 2 and be.stats.retries == 0 and not be.stats.errors
    assert all(r["authorization"] == f"Bearer {SECRET}" for r in seen)
    assert all(r["body"]["response_format"]["json_schema"]["schema"] == schema for r in seen)
    assert all(r["body"]["n"] == 3 for r in seen)
    assert be.stats.prompt_tokens == sum(g[0].prompt_tokens for g in out) > 0
    assert be.stats.output_tokens == sum(x.output_tokens for r in out for x in r) > 0
    assert be.cost_usd == pytest.approx((be.stats.prompt_tokens + 2 * be.stats.output_tokens) / 1e6)
    # The key never leaves the Authorization header.
    assert SECRET not in caplog.text and SECRET not in repr(be) and SECRET.encode() not in pickle.dumps(be)


def test_server_returning_fewer_choices_is_topped_up(server):
    be = _backend(server.base_url)
    server.model.max_n = 1
    try:
        before = len(server.model.requests)
        out = be.generate([_msgs("Name a colour."), _msgs("Name a fruit.")], SamplingParams(n=3, temperature=0.8,
                                                                                            max_new_tokens=4))
    finally:
        server.model.max_n = None
    assert [len(r) for r in out] == [3, 3]
    assert all(g.finish_reason != "error" for r in out for g in r)
    bodies = [r["body"] for r in server.model.requests[before:]]
    assert sorted(b["n"] for b in bodies) == [1, 1, 2, 2, 3, 3]  # asked 3, then the remaining 2, then 1
    assert len({(b["messages"][0]["content"], b["seed"]) for b in bodies}) == 6  # top-ups shift the seed


def test_generate_inside_a_running_event_loop(server):
    be = _backend(server.base_url)

    async def caller():
        return be.generate([_msgs("Say yes.")], SamplingParams(n=1, max_new_tokens=3))

    out = asyncio.run(caller())
    assert len(out) == 1 and out[0][0].finish_reason != "error"


def test_faults_are_retried_counted_and_rows_stay_in_place(server):
    prompts = [_msgs(f"{tag} Summarize: {ARTICLE}") for tag, _ in ROWS]
    prompts += [_msgs(f"[faults:always503] Summarize: {ARTICLE}"), _msgs(f"[faults:400] Summarize: {ARTICLE}")]
    direct = _backend(server.base_url).generate(prompts[: len(ROWS)], GREEDY)

    # The held connection must outlast the client's timeout; the timeout itself is generous so that
    # a slow, loaded CI machine queueing real generations never times out a healthy request.
    with FaultProxy(server.port, hold_s=25.0, retry_after="1") as proxy:
        be = _backend(proxy.base_url)
        out = be.generate(prompts, GREEDY)

    assert len(out) == len(prompts) and all(len(r) == GREEDY.n for r in out)
    # Transient faults: every row completes, with the same text it gets without the proxy, in place.
    assert out[: len(ROWS)] == direct
    # Counted drops, with their reasons; a 400 is not retried.
    assert [g.error for g in out[-2]] == ["http_503"] * 2 and [g.error for g in out[-1]] == ["http_400"] * 2
    assert all(g.finish_reason == "error" for r in out[-2:] for g in r)
    assert be.stats.errors == {"http_503": GREEDY.n, "http_400": GREEDY.n}
    assert be.stats.retries == sum(k for _, k in ROWS) + be.cfg.max_retries
    # Nothing lost or duplicated upstream: each completed row was answered exactly once.
    keys = [p[-1]["content"] for p in prompts]
    assert [proxy.passed[k] for k in keys] == [1] * len(ROWS) + [0, 0]
    assert [proxy.attempts[k] for k in keys] == [k + 1 for _, k in ROWS] + [be.cfg.max_retries + 1, 1]
    # Retry-After: 1 was honoured (the SDK's first backoff alone waits at most 0.5 s).
    (f0, t0), (f1, t1) = proxy.log[keys[0]]
    assert f0 == "429" and f1 == "pass" and t1 - t0 >= 0.95


def test_key_from_prefect_secret_block_reaches_the_server(server, monkeypatch, prefect_api):
    from prefect.blocks.system import Secret

    from tasks.secrets import export_backend_secret

    env = "SUMPREF_TEST_BLOCK_KEY"
    monkeypatch.delenv(env, raising=False)
    cfg = OpenAIBackendConfig(model="local", base_url=server.base_url, api_key_env=env,
                              api_key_secret_block="sumpref-test-key")
    Secret(value="sk-from-block-7").save("sumpref-test-key", overwrite=True)
    assert export_backend_secret(cfg) is True
    from sumpref.backends.openai_http import OpenAIBackend

    be = OpenAIBackend(cfg)
    before = len(server.model.requests)
    be.generate([_msgs("Say hi.")], SamplingParams(n=1, max_new_tokens=2))
    assert server.model.requests[before]["authorization"] == "Bearer sk-from-block-7"


def test_without_a_key_no_authorization_is_sent_and_the_sdk_env_key_is_not_used(server, monkeypatch):
    monkeypatch.delenv(KEY_ENV)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-ambient-NotForThisServer")  # the SDK's own fallback
    be = _backend(server.base_url)
    before = len(server.model.requests)
    out = be.generate([_msgs("Say hi.")], SamplingParams(n=1, max_new_tokens=2))
    assert out[0][0].finish_reason != "error"
    assert server.model.requests[before]["authorization"] is None
