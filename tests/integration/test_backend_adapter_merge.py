"""The transformers backend folds a LoRA adapter into the weights on load (`merge_adapter`, the default):
in fp32 the greedy summaries equal the unmerged adapter's, and the adapter does change them."""

import pytest

pytestmark = pytest.mark.integration

MESSAGES = [
    [{"role": "user", "content": "Summarize in one sentence: The city council voted on Tuesday to close the old bridge "
                                 "for repairs that will take two years and cost 40 million dollars."}],
    [{"role": "user", "content": "Say what the weather is like on a rainy day in two sentences."}],
]


@pytest.fixture(scope="module")
def adapter(tmp_path_factory):
    from tests.integration._adapters import random_lora

    return str(random_lora(tmp_path_factory.mktemp("adapter")))


def _greedy(**fields):
    from sumpref.backends.transformers_backend import TransformersBackend
    from sumpref.config import TransformersBackendConfig
    from sumpref.backends.base import SamplingParams

    backend = TransformersBackend(TransformersBackendConfig(dtype="float32", batch_size=2, **fields), num_threads=2)
    out = backend.generate(MESSAGES, SamplingParams(n=1, temperature=0.0, max_new_tokens=16, seed=0))
    return backend, [g[0].text for g in out]


def test_merged_adapter_decodes_like_the_unmerged_one(adapter):
    from peft import PeftModel

    merged, merged_text = _greedy(adapter=adapter)
    unmerged, unmerged_text = _greedy(adapter=adapter, merge_adapter=False)
    assert not isinstance(merged._model, PeftModel) and isinstance(unmerged._model, PeftModel)
    assert merged_text == unmerged_text
    assert _greedy()[1] != merged_text  # the adapter is not a no-op, so the equality above means something
