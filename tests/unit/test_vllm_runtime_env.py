"""Where the vLLM actors run: the runtime_env files and their checks (no vLLM, no Ray)."""

from pathlib import Path

import yaml

from sumpref.backends.vllm_ray import load_runtime_env
from sumpref.config import VLLMBackendConfig
from sumpref.preflight import check_backend

ROOT = Path(__file__).resolve().parents[2]


def test_cpu_runtime_env_names_the_worker_environment_the_makefile_builds():
    env = yaml.safe_load((ROOT / "docker" / "runtime_env.cpu.yaml").read_text())
    assert env["py_executable"] == ".venv-vllm/bin/python"
    assert "WORKER_VENV ?= .venv-vllm" in (ROOT / "Makefile").read_text()
    assert env["env_vars"]["VLLM_CPU_KVCACHE_SPACE"] and all(isinstance(v, str) for v in env["env_vars"].values())


def test_relative_interpreter_is_made_absolute_against_the_working_directory(tmp_path, monkeypatch):
    (tmp_path / "venv" / "bin").mkdir(parents=True)
    (tmp_path / "venv" / "bin" / "python").write_text("")
    own = tmp_path / "env.yaml"
    own.write_text("py_executable: venv/bin/python\nenv_vars: {A: '1'}\n")
    monkeypatch.chdir(tmp_path)
    assert load_runtime_env(str(own)) == {"py_executable": str(tmp_path / "venv" / "bin" / "python"), "env_vars": {"A": "1"}}


def test_missing_worker_interpreter_is_a_preflight_problem_naming_the_field(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    own = tmp_path / "env.yaml"
    own.write_text("py_executable: venv-that-is-not-there/bin/python\n")
    problems = check_backend(VLLMBackendConfig(runtime_env=str(own)), "policy")
    assert [p.field for p in problems] == ["policy.runtime_env"]
    assert "make worker-env" in problems[0].problem
    missing = check_backend(VLLMBackendConfig(runtime_env=str(tmp_path / "nope.yaml")), "judge.backend")
    assert [p.field for p in missing] == ["judge.backend.runtime_env"]
