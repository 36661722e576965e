"""Preflight: each unusable input is one problem naming its field, found before any work."""

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from sumpref.config import config_from_dict
from sumpref.preflight import PreflightError, check, check_model, check_ray_address, preflight
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]


ARTICLE = "The council voted on Tuesday to build a new bridge over the river. " * 4


@pytest.fixture
def data_file(tmp_path):
    """Two usable articles: one to train on, one to evaluate (preflight loads a local source)."""
    f = tmp_path / "articles.jsonl"
    f.write_text("".join(json.dumps({"id": str(i), "article": f"{ARTICLE}{i}"}) + "\n" for i in range(2)))
    return f


def cfg(tmp_path, data_file, **sections):
    data = {"root": str(tmp_path / "runs"), "data": {"source": str(data_file)}}
    for k, v in sections.items():
        data[k] = {**data.get(k, {}), **v} if isinstance(v, dict) else v
    return config_from_dict(data)


def fields(problems):
    return [p.field for p in problems]


def test_a_usable_config_has_no_problems(tmp_path, data_file, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert check(cfg(tmp_path, data_file)) == []
    preflight(cfg(tmp_path, data_file))  # does not raise


def test_missing_data_source(tmp_path, data_file, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    problems = check(cfg(tmp_path, data_file, data={"source": str(tmp_path / "nope.jsonl")}))
    assert fields(problems) == ["data.source"] and "does not exist" in problems[0].problem


def test_data_source_without_usable_rows_is_one_problem_with_counts(tmp_path, data_file, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{not json\n{"id": "1"}\n{"id": "2", "article": "too short"}\n')
    problems = check(cfg(tmp_path, data_file, data={"source": str(bad)}))
    assert [str(p) for p in problems] == [f"data.source: {str(bad)!r} has 0 usable articles of 3 rows "
                                          "(invalid_json 1, missing_article 1, too_short 1)"]
    csv = tmp_path / "x.csv"
    csv.write_text("id,article\n")
    problems = check(cfg(tmp_path, data_file, data={"source": str(csv)}))
    assert fields(problems) == ["data.source"] and "supported formats: .jsonl, .json, .parquet" in problems[0].problem


def test_unreadable_data_source(tmp_path, data_file, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    folder = tmp_path / "data"
    (folder / "broken.jsonl").mkdir(parents=True)  # listed as a data file, cannot be read as one
    problems = check(cfg(tmp_path, data_file, data={"source": str(folder)}))
    assert fields(problems) == ["data.source"] and "cannot be read" in problems[0].problem


@pytest.mark.parametrize("spec, ok", [
    ("embedded:smollm2-135m-instruct", True),
    ("HuggingFaceTB/SmolLM2-135M-Instruct", True),
    ("gpt2", True),
    ("embedded:nope", False),
    ("/no/such/model/folder", False),
    ("./relative/missing", False),
    ("not a hub id!", False),
    ("a/b/c", False),
])
def test_model_spec(spec, ok):
    assert (check_model(spec) is None) == ok


def test_model_folder_and_file(tmp_path):
    assert check_model(str(tmp_path)) is None
    (tmp_path / "f").write_text("x")
    assert "is a file" in check_model(str(tmp_path / "f"))


def test_bad_policy_model_names_the_field(tmp_path, data_file, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    problems = check(cfg(tmp_path, data_file, policy={"model": "/no/such/model"}))
    assert fields(problems) == ["policy.model"]


def test_missing_adapter_folder(tmp_path, data_file, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    problems = check(cfg(tmp_path, data_file, policy={"adapter": str(tmp_path / "no-adapter")}))
    assert fields(problems) == ["policy.adapter"]


def test_ray_address():
    assert check_ray_address(None) is None and check_ray_address("auto") is None
    assert "cannot reach" in check_ray_address(f"127.0.0.1:{free_port()}")
    assert "host:port" in check_ray_address("nonsense")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        assert check_ray_address(f"ray://127.0.0.1:{s.getsockname()[1]}") is None


def test_unreachable_ray_address_names_the_variable(tmp_path, data_file, monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{free_port()}")
    assert fields(check(cfg(tmp_path, data_file))) == ["RAY_ADDRESS"]


def test_unwritable_root(tmp_path, data_file, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    (tmp_path / "file").write_text("x")  # a root below a file cannot be created (even as root)
    problems = check(cfg(tmp_path, data_file, root=str(tmp_path / "file" / "runs")))
    assert fields(problems) == ["root"] and "not writable" in problems[0].problem


def test_http_backend_key(tmp_path, data_file, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.delenv("SUMPREF_TEST_KEY", raising=False)
    remote = {"backend": "openai", "model": "m", "base_url": "https://api.example.invalid/v1", "api_key_env": "SUMPREF_TEST_KEY"}
    judge = {"kind": "llm", "backend": remote}
    problems = check(cfg(tmp_path, data_file, judge=judge))
    assert fields(problems) == ["judge.backend.api_key_env"] and "$SUMPREF_TEST_KEY" in problems[0].problem
    monkeypatch.setenv("SUMPREF_TEST_KEY", "k")
    assert check(cfg(tmp_path, data_file, judge=judge)) == []
    monkeypatch.delenv("SUMPREF_TEST_KEY")
    assert check(cfg(tmp_path, data_file, judge={**judge, "backend": {**remote, "api_key_secret_block": "b"}})) == []
    local = {**remote, "base_url": "http://127.0.0.1:8000/v1"}  # a server on this machine may need no key
    assert check(cfg(tmp_path, data_file, policy=local)) == []


def test_every_problem_is_reported_one_line_each(tmp_path, data_file, monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{free_port()}")
    c = cfg(tmp_path, data_file, data={"source": str(tmp_path / "x.jsonl")}, policy={"model": "/no/model"})
    with pytest.raises(PreflightError) as e:
        preflight(c)
    lines = str(e.value).splitlines()
    assert [ln.split(":")[0] for ln in lines] == ["data.source", "policy.model", "RAY_ADDRESS"]


def test_cli_exits_2_with_one_line_naming_the_field(tmp_path, data_file):
    """The real command line, before any work: no traceback, status 2, the field named."""
    env = {k: v for k, v in __import__("os").environ.items() if k != "RAY_ADDRESS"}
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.run([sys.executable, "-m", "flows.full_pipeline", f"root={tmp_path / 'runs'}",
                           f"data.source={data_file}", "policy.model=/no/such/model"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert errors == ["error: policy.model: folder '/no/such/model' does not exist (expected a model folder, "
                      "a hub id like 'org/name', or 'embedded:<name>')"], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and not (tmp_path / "runs" / "articles").exists()
