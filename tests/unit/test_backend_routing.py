"""Which decoding path the transformers backend takes (logic only: the paths themselves are stubs here;
tests/integration/test_prefix_sampling.py and test_backend_adapter_merge.py run them for real)."""

import pytest

from sumpref.backends.base import Generation, SamplingParams
from sumpref.backends.transformers_backend import TransformersBackend
from sumpref.config import TransformersBackendConfig


def _routed(device: str, **params) -> list[str]:
    backend = TransformersBackend(TransformersBackendConfig(batch_size=2))
    backend._model, backend._device = object(), device  # as if loaded
    calls = []

    def path(name):
        def run(prompts, p):
            calls.append(name)
            return [[Generation(text="s", prompt_tokens=1, output_tokens=1, finish_reason="stop")] for _ in prompts]
        return run

    backend._generate_shared_prefix, backend._generate_batch = path("shared"), path("generate")
    out = backend.generate([[{"role": "user", "content": "x"}]] * 3, SamplingParams(**params))
    assert len(out) == 3
    return calls


@pytest.mark.parametrize("device, params, expected", [
    ("cuda", dict(n=1), ["shared"]),                         # greedy evaluation on a GPU: the sampler's loop
    ("cpu", dict(n=1), ["generate", "generate"]),            # on a CPU: generate, in batches of batch_size
    ("cpu", dict(n=4, temperature=0.8), ["shared"]),         # n samples per prompt: prefix shared everywhere
    ("cuda", dict(n=1, template="judge:5"), ["generate", "generate"]),  # line templates need generate
])
def test_decoding_path(device, params, expected):
    assert _routed(device, **params) == expected
