"""Failed generations: transient ones fail the shard (so it is redone), permanent ones are drops."""

import pytest

from sumpref.backends.base import Generation, TransientGenerationError, is_transient, raise_if_transient
from sumpref.config import PairsConfig
from sumpref.pairs import build_pairs


def err(reason):
    return Generation(text="", prompt_tokens=0, output_tokens=0, finish_reason="error", error=reason)


@pytest.mark.parametrize("reason,transient", [
    ("timeout", True), ("connection_error", True), ("http_429", True), ("http_503", True), ("malformed_json", True),
    ("http_400", False), ("http_401", False), ("client_error:ValueError", False), (None, False),
])
def test_transient_classification(reason, transient):
    assert is_transient(reason) is transient


def test_shard_with_a_transient_failure_raises_and_permanent_ones_pass():
    ok = Generation(text="fine", prompt_tokens=3, output_tokens=1, finish_reason="stop")
    raise_if_transient([[ok, err("http_400")]])
    with pytest.raises(TransientGenerationError, match="timeout"):
        raise_if_transient([[ok], [err("timeout")]])


def test_generation_errors_are_their_own_drop_reason():
    judged = [{"article_id": "a", "sample_idx": i, "n_correct": 5 - i, "n_words": 10 + 5 * i, "summary": "w " * (10 + 5 * i),
               "prompt_text": "P", "gen_error": "http_400" if i == 2 else None} for i in range(3)]
    pairs, drops, counts = build_pairs(judged, PairsConfig())
    assert [d["reason"] for d in drops] == ["generation_error"] and counts["dropped_generation_error"] == 1
    assert len(pairs) == 1
