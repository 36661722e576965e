"""The deployments as users operate them, through ONE real `prefect server` and ONE real process
worker for the whole module (`deployments.stack`, what `make serve` runs): `prefect deploy --all`
applies `prefect.yaml` to the process pool; the pipeline deployment fails on an injected fault,
is retried through the API and completes with its earlier tasks Cached; the nightly deployment
runs for two consecutive dates (night 2 starts from night 1's champion on other articles, a round
made worse on purpose is rejected, a rerun reuses its tasks); headless Chromium renders the UI.

Tiny configs throughout (few articles, short generations, one DPO step).
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from deployments import stack
from sumpref.champion import current_champion, read_history
from sumpref.config import load_config
from tests.conftest import free_port
from tests.integration._pipeline_config import tiny_config

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "runs" / "screenshots"  # ignored by git
STAGE_TASKS = ("load-articles", "write-questions", "sample-summaries", "judge-summaries", "build-pairs")


@pytest.fixture(scope="module")
def prefect_stack(tmp_path_factory):
    home = tmp_path_factory.mktemp("prefect-home")
    port = free_port()
    try:
        state = stack.start(home, port)
    except Exception:
        stack.stop(home)
        raise
    yield {**state, "env": stack.stack_env(home.resolve(), port), "home": home}
    stack.stop(home)


def run_script(env: dict, code: str, *args: str, timeout: int = 1800) -> dict:
    """Run client code in a fresh interpreter against the stack; it prints one JSON line last."""
    out = subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=timeout)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


# A task run's task name: no subflow run (`round-1/`), no number (`-0`). The subflow's task runs
# count too (`task_runs`): the round's stages run in its `round-N` subflow.
TASK_NAME = """
def task_name(name):
    return name.split("/")[-1].rsplit("-", 1)[0]
"""

TRIGGER = """
import json, sys
""" + TASK_NAME + """
from prefect.client.orchestration import get_client
from prefect.deployments import run_deployment
from tests.integration._flow_states import task_runs
run = run_deployment(sys.argv[1], parameters=json.loads(sys.argv[2]), timeout=1800, poll_interval=1)
with get_client(sync_client=True) as c:
    tasks = task_runs(c, run.id)
print(json.dumps({"id": str(run.id), "state": run.state.name,
                  "tasks": [[task_name(n), t.state.name if t.state else None, t.run_count] for n, t in tasks]}))
"""


def trigger(env: dict, name: str, params: dict) -> dict:
    return run_script(env, TRIGGER, name, json.dumps(params))


def tasks_in(run: dict, state: str) -> set[str]:
    return {name for name, s, *_ in run["tasks"] if s == state}


def nightly_params(root: Path, day: str, **dpo) -> dict:
    cfg = tiny_config(root, dpo={"max_steps": 1, **dpo}, eval={"bootstrap_samples": 200},
                      # A candidate that ties the champion everywhere (CI [0.5, 0.5]) passes 0.25; one that
                      # loses most held-out articles does not.
                      nightly={"rounds": 1, "articles_per_round": 10, "promote_threshold": 0.25})
    return {"config": cfg.model_dump(mode="json"), "date": day}


@pytest.fixture(scope="module")
def night1(prefect_stack, tmp_path_factory):
    root = tmp_path_factory.mktemp("nightly") / "runs"
    run = trigger(prefect_stack["env"], "sumpref-nightly/nightly", nightly_params(root, "2026-12-01"))
    return {**run, "root": root}


def test_prefect_yaml_deploys_to_a_process_pool_with_the_demo_recipe(prefect_stack):
    got = run_script(prefect_stack["env"], """
import json
from prefect.client.orchestration import get_client
with get_client(sync_client=True) as c:
    print(json.dumps({d.name: {"pool": d.work_pool_name, "config": d.parameters.get("config"),
                               "cron": [s.schedule.cron for s in d.schedules]} for d in c.read_deployments()}))
""")
    assert set(got) == {"pipeline", "nightly", "evaluate"}
    demo = load_config(ROOT / "configs" / "demo.yaml")
    for d in (got["pipeline"], got["nightly"]):
        assert d["pool"] == stack.POOL
        assert type(demo).model_validate(d["config"]) == demo
    assert got["nightly"]["cron"] == ["0 2 * * *"]


def test_failed_pipeline_run_retried_through_the_api_reuses_finished_tasks(prefect_stack, tmp_path):
    root = tmp_path / "runs"
    cfg = load_config(ROOT / "configs" / "demo.yaml", [
        f"root={root}", "data.num_articles=8", "data.max_article_tokens=96", "sampling.n=3", "sampling.max_new_tokens=16",
        "sampling.shard_size=4", "dpo.trainer=packed", "dpo.max_steps=1", "dpo.max_length=192", "eval.max_new_tokens=16",
        "eval.bootstrap_samples=50", "policy.num_cpus=1", "policy.replicas=1"])
    root.mkdir(parents=True)
    (root / "dpo").write_text("a file where the training stage's folder goes: training cannot write")
    first = trigger(prefect_stack["env"], "sumpref-full-pipeline/pipeline", {"config": cfg.model_dump(mode="json")})
    assert first["state"] == "Failed", first
    assert set(STAGE_TASKS) <= tasks_in(first, "Completed")
    assert "train-dpo" in tasks_in(first, "Failed")
    # A path of the wrong kind is not retried after the task's 30 s delay: no rerun could change it.
    assert [runs for name, _, runs in first["tasks"] if name == "train-dpo"] == [1], first["tasks"]

    (root / "dpo").unlink()
    env = prefect_stack["env"]
    retry = subprocess.run([sys.executable, "-m", "prefect", "flow-run", "retry", first["id"]], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=120)
    assert retry.returncode == 0, retry.stdout + retry.stderr
    after = run_script(env, f"""
import json, time
from prefect.client.orchestration import get_client
from tests.integration._flow_states import task_runs
{TASK_NAME}
with get_client(sync_client=True) as c:
    deadline = time.time() + 1800
    while time.time() < deadline:
        fr = c.read_flow_run({first["id"]!r})
        if fr.state and fr.state.is_final() and fr.run_count > 1:
            break
        time.sleep(1)
    tasks = task_runs(c, fr.id)
    print(json.dumps({{"state": fr.state.name, "tasks": [[task_name(n), t.state.name] for n, t in tasks]}}))
""")
    assert after["state"] == "Completed", after
    assert set(STAGE_TASKS) <= tasks_in(after, "Cached"), after["tasks"]
    assert list(root.glob("eval_compare/*/report.md"))


def test_nightly_continues_from_the_champion_rejects_a_worse_round_and_reruns_cached(prefect_stack, night1):
    env, root = prefect_stack["env"], night1["root"]
    assert night1["state"] == "Completed", night1
    champ1 = current_champion(str(root), "unused")
    assert champ1["id"] == "2026-12-01-r01" and champ1["status"] == "promoted" and champ1["parent"] == "initial"
    assert Path(champ1["model"], "config.json").exists()

    # Night 2, made worse on purpose: a learning rate that wrecks the LoRA update.
    night2 = trigger(env, "sumpref-nightly/nightly", nightly_params(root, "2026-12-02", learning_rate=1.0))
    assert night2["state"] == "Completed", night2
    history = read_history(str(root))
    assert [e["id"] for e in history] == ["2026-12-01-r01", "2026-12-02-r01"]
    n1, n2 = history
    assert n2["parent"] == n1["id"] and n2["parent_model"] == champ1["model"]  # started from night 1's champion
    used1 = {*n1["articles"]["train"], *n1["articles"]["eval"]}
    used2 = {*n2["articles"]["train"], *n2["articles"]["eval"]}
    assert used1 and used2 and not used1 & used2
    assert n2["status"] == "rejected", n2["win_rate"]
    assert not n2["win_rate"]["ci95"][0] > 0.25  # (NaN, when no summary could be judged, is no evidence either)
    assert current_champion(str(root), "unused")["id"] == champ1["id"]  # the champion stays

    rerun = trigger(env, "sumpref-nightly/nightly", nightly_params(root, "2026-12-02", learning_rate=1.0))
    assert rerun["state"] == "Completed", rerun
    assert {*STAGE_TASKS, "train-dpo", "eval-model", "eval-compare", "select-articles"} <= tasks_in(rerun, "Cached"), rerun["tasks"]
    assert len(read_history(str(root))) == 2  # nothing recorded twice
    report = (root / "champion" / "report.md").read_text()
    assert "2026-12-01-r01 | promoted" in report and "2026-12-02-r01 | rejected" in report
    assert (root / "champion" / "rounds.png").stat().st_size > 1000


def chromium(url: str, *args: str, tmp: Path) -> str:
    cmd = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp}", "--virtual-time-budget=20000", *args, url]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def test_ui_shows_the_deployments_and_the_rounds_artifact(prefect_stack, night1, tmp_path):
    ui = prefect_stack["ui"]
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    pages = {"deployments": f"{ui}/v2/deployments", "flow-run": f"{ui}/v2/runs/flow-run/{night1['id']}?tab=Artifacts"}
    dom = {}
    for name, url in pages.items():  # one browser run per page: the rendered DOM and a screenshot
        (SCREENSHOTS / f"{name}.png").unlink(missing_ok=True)
        dom[name] = chromium(url, "--dump-dom", "--window-size=1400,1000", f"--screenshot={SCREENSHOTS / f'{name}.png'}",
                             tmp=tmp_path / f"profile-{name}")
        assert (SCREENSHOTS / f"{name}.png").stat().st_size > 10_000
    assert "pipeline" in dom["deployments"] and "nightly" in dom["deployments"]
    assert "sumpref-rounds" in dom["flow-run"] and "sumpref rounds: it" in dom["flow-run"]  # key and title
