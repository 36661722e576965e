"""Failed generations: one vocabulary (`backends.base.FAILURES`) for every backend; transient
failures fail the shard (so it is redone), permanent ones are counted drops."""

import ast
from pathlib import Path

import pytest

from sumpref.backends.base import (FAILURES, TRANSIENT_HTTP_STATUS, Generation, TransientGenerationError, failed,
                                   failure_kind, http_reason, is_transient, raise_if_transient)
from sumpref.config import PairsConfig
from sumpref.pairs import build_pairs

BACKENDS_DIR = Path(__file__).resolve().parents[2] / "sumpref" / "backends"


def err(reason):
    return failed(reason)


@pytest.mark.parametrize("reason,transient", [
    ("timeout", True), ("connection_error", True), ("malformed_response", True),
    ("http_408", True), ("http_409", True), ("http_429", True), ("http_500", True), ("http_503", True),
    ("http_400", False), ("http_401", False), ("http_404", False), ("http_425", False),
    ("client_error:ValueError", False), ("short_response", False), ("prompt_too_long", False), (None, False),
])
def test_transient_classification(reason, transient):
    assert is_transient(reason) is transient


@pytest.mark.parametrize("reason", ["malformed_json", "http_transient", "http_permanent", "http_abc", "oops:detail"])
def test_a_reason_outside_the_vocabulary_is_refused(reason):
    with pytest.raises(ValueError, match="unknown generation failure reason"):
        is_transient(reason)
    with pytest.raises(ValueError):
        failed(reason)


def test_failed_generation_shape():
    g = failed("http_400", prompt_tokens=7)
    assert (g.text, g.prompt_tokens, g.output_tokens, g.finish_reason, g.error) == ("", 7, 0, "error", "http_400")


def test_shard_with_a_transient_failure_raises_and_permanent_ones_pass():
    ok = Generation(text="fine", prompt_tokens=3, output_tokens=1, finish_reason="stop")
    raise_if_transient([[ok, err("http_400"), err("short_response"), err("prompt_too_long")]])
    for reason in ("timeout", "malformed_response", "http_408"):  # retried by the HTTP client, redone by the shard
        with pytest.raises(TransientGenerationError, match=reason):
            raise_if_transient([[ok], [err(reason)]])


def test_http_statuses_the_sdk_retries_are_exactly_the_transient_ones():
    """The HTTP backend retries through the openai SDK; the shard logic must call the same statuses
    transient (checked against the SDK's retry decision, without its Retry-After/x-should-retry cases)."""
    import httpx2
    import openai

    client = openai.OpenAI(api_key="unused", base_url="http://127.0.0.1:9/v1")
    for status in range(400, 600):
        sdk = client._should_retry(httpx2.Response(status, request=httpx2.Request("POST", "http://127.0.0.1:9/v1")))
        assert is_transient(http_reason(status)) is sdk, status
    assert TRANSIENT_HTTP_STATUS == {408, 409, 429}


def _literal_reasons(tree: ast.Module) -> list[str]:
    """Reasons a backend module spells: the first argument of `failed(...)` / `._count_errors(...)`
    and the strings of returned tuples (`return "timeout", retries`), as literals, module constants
    or f-string prefixes."""
    consts = {t.id: n.value.value for n in tree.body if isinstance(n, ast.Assign) and isinstance(n.value, ast.Constant)
              for t in n.targets if isinstance(t, ast.Name) and isinstance(n.value.value, str)}
    spelled = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and node.args and (
                (isinstance(node.func, ast.Name) and node.func.id == "failed")
                or (isinstance(node.func, ast.Attribute) and node.func.attr == "_count_errors")):
            spelled.append(node.args[0])
        elif isinstance(node, ast.Return) and isinstance(node.value, ast.Tuple):
            spelled += node.value.elts
    out = []
    for a in spelled:
        if isinstance(a, ast.Constant) and isinstance(a.value, str):
            out.append(a.value)
        elif isinstance(a, ast.Name) and a.id in consts:
            out.append(consts[a.id])
        elif isinstance(a, ast.JoinedStr) and isinstance(a.values[0], ast.Constant):
            out.append(a.values[0].value + "x")  # e.g. f"client_error:{...}"
    return out


@pytest.mark.parametrize("module", sorted(p.name for p in BACKENDS_DIR.glob("*.py") if p.name != "base.py"))
def test_every_reason_a_backend_emits_is_in_the_vocabulary(module):
    tree = ast.parse((BACKENDS_DIR / module).read_text())
    # Failed generations are built with `failed()` only (which checks the reason), never by hand.
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "Generation":
            args = [*node.args[3:4], *(k.value for k in node.keywords if k.arg == "finish_reason")]
            assert not any(isinstance(a, ast.Constant) and a.value == "error" for a in args), \
                f"{module}:{node.lineno} builds an error Generation by hand; use backends.base.failed()"
    for reason in _literal_reasons(tree):
        if reason not in ("stop", "length"):  # finish reasons of successful generations (prefix sampling)
            assert failure_kind(reason) in FAILURES


def test_the_http_backend_maps_every_sdk_failure_into_the_vocabulary():
    import httpx2
    import openai

    from sumpref.backends.openai_http import failure_of

    req = httpx2.Request("POST", "http://127.0.0.1:9/v1/chat/completions", headers={"x-stainless-retry-count": "2"})
    cases = [
        (openai.APITimeoutError(request=req), "timeout"),
        (openai.APIConnectionError(request=req), "connection_error"),
        (openai.InternalServerError("x", response=httpx2.Response(503, request=req), body=None), "http_503"),
        (openai.BadRequestError("x", response=httpx2.Response(400, request=req), body=None), "http_400"),
        (ValueError("secret-bearing message"), "client_error:ValueError"),
    ]
    for exc, reason in cases:
        got, retries = failure_of(exc)
        assert got == reason and failure_kind(got) in FAILURES
        assert retries == (0 if isinstance(exc, ValueError) else 2)


def test_generation_errors_are_their_own_drop_reason():
    judged = [{"article_id": "a", "sample_idx": i, "n_correct": 5 - i, "n_words": 10 + 5 * i, "summary": "w " * (10 + 5 * i),
               "prompt_text": "P", "gen_error": "http_400" if i == 2 else None} for i in range(3)]
    pairs, drops, counts = build_pairs(judged, PairsConfig())
    assert [d["reason"] for d in drops] == ["generation_error"] and counts["dropped_generation_error"] == 1
    assert len(pairs) == 1
