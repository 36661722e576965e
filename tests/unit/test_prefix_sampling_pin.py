"""The shared-prefix sampler relies on private transformers internals: it runs only on the
transformers versions it was tested with, and says so (then uses the public-API path) elsewhere."""

import pytest

from sumpref.backends import prefix_sampling as ps


@pytest.mark.parametrize("version", [ps.TESTED_TRANSFORMERS[0], ps.TESTED_TRANSFORMERS[1], "5.20.1", "5.25.3"])
def test_tested_versions_take_the_shared_path(version, recwarn):
    assert ps.tested_transformers(version) is True
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


@pytest.mark.parametrize("version", ["5.16.0", "5.26.0", "6.0.0"])
def test_other_versions_warn_and_fall_back(version):
    ps.tested_transformers.cache_clear()
    with pytest.warns(RuntimeWarning, match=f"not {version}.*mode='expand'"):
        assert ps.tested_transformers(version) is False
