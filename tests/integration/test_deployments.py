"""Deployments against a real `prefect server`: both register (the nightly one on its cron
schedule), and a run triggered the way the UI does it completes and writes its report."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.integration._pipeline_config import tiny_config

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory):
    home = tmp_path_factory.mktemp("prefect-home")
    port = free_port()
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_API_URL": f"http://127.0.0.1:{port}/api"}
    proc = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    import httpx

    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(1)
    else:
        proc.kill()
        pytest.fail("prefect server did not become healthy in 120 s")
    yield env
    os.killpg(proc.pid, 15)
    proc.wait(timeout=30)


def test_deployments_register_and_a_triggered_run_completes(prefect_server, tmp_path):
    cfg = tiny_config(tmp_path / "runs", data={"num_articles": 8, "eval_fraction": 0.25}, dpo={"max_steps": 1})
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    env = {**prefect_server, "PYTHONPATH": str(ROOT)}
    serve = subprocess.Popen([sys.executable, "-m", "deployments.serve", "--config", str(recipe), "--nightly-cron", "30 1 * * *"],
                             cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    script = """
import sys, time
from prefect.client.orchestration import get_client
from prefect.deployments import run_deployment
with get_client(sync_client=True) as c:
    deadline = time.time() + 120
    while time.time() < deadline:
        names = {d.name: d for d in c.read_deployments()}
        if {"pipeline", "nightly-iterative-dpo"} <= set(names):
            break
        time.sleep(1)
    nightly = names["nightly-iterative-dpo"]
    print("CRON", [s.schedule.cron for s in nightly.schedules])
    print("ROUNDS", nightly.parameters["rounds"])
run = run_deployment("sumpref-full-pipeline/pipeline", timeout=900)
print("STATE", run.state.name)
with get_client(sync_client=True) as c:
    print("RESULT", c.read_flow_run(run.id).state.name)
"""
    try:
        out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
    finally:
        os.killpg(serve.pid, 15)
        serve.wait(timeout=60)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "CRON ['30 1 * * *']" in out.stdout and "ROUNDS 2" in out.stdout
    assert "STATE Completed" in out.stdout, out.stdout + out.stderr[-3000:]
    assert list((tmp_path / "runs").glob("eval/*/report.md"))
