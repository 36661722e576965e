"""A run that uses an API key (the evaluation's API baseline against a local OpenAI-compatible
server) leaves the key in no log, artifact, Prefect result, Prefect database or report.

Searched: the artifact root, the local artifact cache, Prefect's database and result storage,
the Ray session directory (its logs and runtime_env state) and everything the run printed."""

import os
import shutil
import tempfile
import uuid
from pathlib import Path

import pytest

from tests.integration._pipeline_config import tiny_config

pytestmark = pytest.mark.integration

KEY_ENV = "SUMPREF_TEST_SECRET_KEY"


def files_containing(root: Path, needle: bytes) -> list[str]:
    hits = []
    for p in root.rglob("*"):
        try:
            if p.is_file() and not p.is_symlink() and needle in p.read_bytes():
                hits.append(str(p))
        except OSError:
            pass  # a socket or a file removed while we walk
    return hits


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """Prefect (database, results) and Ray (session logs) inside tmp_path, so the search sees them."""
    import ray
    from prefect.settings import PREFECT_LOCAL_STORAGE_PATH, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    ray.shutdown()
    ray_dir = Path(tempfile.mkdtemp(prefix="rs-", dir="/tmp"))  # short: Ray's socket paths must fit 107 bytes
    monkeypatch.setenv("RAY_TMPDIR", str(ray_dir))
    monkeypatch.setenv("SUMPREF_ARTIFACT_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    with prefect_test_harness(server_startup_timeout=120), \
            temporary_settings(updates={PREFECT_LOCAL_STORAGE_PATH: str(tmp_path / "prefect-results")}):
        from prefect.settings import get_current_settings

        db_url = get_current_settings().server.database.connection_url.get_secret_value()
        yield Path(db_url.split("///", 1)[1]), ray_dir
    ray.shutdown()
    shutil.rmtree(ray_dir, ignore_errors=True)


def test_api_key_leaves_no_trace(isolated, tmp_path, monkeypatch, capfd):
    from flows.full_pipeline import full_pipeline
    from sumpref.model_paths import resolve_model
    from tests.openai_server import ModelServer, ServerThread

    key = f"sk-sumpref-fake-{uuid.uuid4().hex}"
    monkeypatch.setenv(KEY_ENV, key)
    server = ModelServer(resolve_model("embedded:smollm2-135m-instruct"))
    with ServerThread(server.app()) as srv:
        cfg = tiny_config(tmp_path / "runs", eval={"api_baseline": {"model": "local", "base_url": srv.base_url,
                                                                    "api_key_env": KEY_ENV, "max_concurrency": 2}})
        state = full_pipeline(cfg, return_state=True)
        assert state.is_completed(), state
    out, err = capfd.readouterr()
    auth = {r.get("authorization") for r in server.requests}
    assert auth == {f"Bearer {key}"}, auth  # the key was really used, by every request

    db, ray_dir = isolated
    searched = [tmp_path / "runs", tmp_path / "cache", tmp_path / "prefect-results", ray_dir, db.parent]
    assert (tmp_path / "runs").exists() and ray_dir.exists() and db.exists()  # the others only if the run made them
    assert (tmp_path / "runs" / "eval_compare").exists() and list(ray_dir.rglob("*.log")), "nothing to search"
    leaks = [f for root in searched for f in files_containing(root, key.encode())]
    assert leaks == [], leaks
    assert key not in out and key not in err
    assert os.environ[KEY_ENV] == key
