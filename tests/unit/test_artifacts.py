import json

from sumpref.artifacts import ArtifactRef, SUCCESS, fingerprint_dir, run_stage, stage_key, write_table


def ref(fp="f1"):
    return ArtifactRef(uri="file:///x", stage="s", key="k", fingerprint=fp, rows=1)


def test_stage_key_is_deterministic_and_order_insensitive_for_config():
    a = stage_key("pairs", {"a": 1, "b": [1, 2]}, [ref()], "1")
    assert a == stage_key("pairs", {"b": [1, 2], "a": 1}, [ref()], "1")


def test_stage_key_changes_with_config_upstream_and_code():
    base = stage_key("pairs", {"a": 1}, [ref()], "1")
    assert base != stage_key("pairs", {"a": 2}, [ref()], "1")
    assert base != stage_key("pairs", {"a": 1}, [ref("f2")], "1")
    assert base != stage_key("pairs", {"a": 1}, [ref()], "2")
    assert base != stage_key("judged", {"a": 1}, [ref()], "1")


def test_run_stage_produces_once_then_returns_the_finished_artifact(tmp_path):
    calls = []

    def produce(out):
        calls.append(out)
        write_table(out / "data.parquet", [{"x": 1}, {"x": 2}])
        return {"rows": 2, "drops": {"bad": 1}}

    r1 = run_stage(tmp_path, "demo", {"a": 1}, [], "1", produce)
    r2 = run_stage(tmp_path, "demo", {"a": 1}, [], "1", produce)
    assert len(calls) == 1 and r1 == r2 and r1.rows == 2
    assert (r1.path / SUCCESS).exists()
    meta = json.loads((r1.path / "meta.json").read_text())
    assert meta["info"]["drops"] == {"bad": 1} and meta["config"] == {"a": 1}
    assert r1.fingerprint == fingerprint_dir(r1.path)


def test_unfinished_stage_is_redone_and_can_reuse_partial_files(tmp_path):
    seen = []

    def crash(out):
        write_table(out / "part-0.parquet", [{"x": 1}])
        raise RuntimeError("killed")

    def finish(out):
        seen.append(sorted(p.name for p in out.iterdir()))
        write_table(out / "part-1.parquet", [{"x": 2}])
        return {"rows": 2}

    try:
        run_stage(tmp_path, "demo", {}, [], "1", crash)
    except RuntimeError:
        pass
    r = run_stage(tmp_path, "demo", {}, [], "1", finish)
    assert seen == [["part-0.parquet"]] and r.rows == 2


def test_fingerprint_depends_on_content_not_on_logs(tmp_path):
    write_table(tmp_path / "a.parquet", [{"x": 1}])
    fp = fingerprint_dir(tmp_path)
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "executions.jsonl").write_text("{}\n")
    assert fingerprint_dir(tmp_path) == fp
    write_table(tmp_path / "a.parquet", [{"x": 2}])
    assert fingerprint_dir(tmp_path) != fp


def test_fault_point_kills_only_at_the_named_stage_event_and_count(tmp_path, monkeypatch):
    import signal

    from sumpref import faults

    kills = []
    monkeypatch.setattr(faults.os, "killpg", lambda pgid, sig: kills.append(sig))
    monkeypatch.setattr(faults, "_seen", {})
    monkeypatch.delenv(faults.ENV, raising=False)
    run_stage(tmp_path, "demo", {}, [], "1", lambda out: {"rows": write_table(out / "a.parquet", [{"x": 1}])})
    assert kills == []  # unset: never

    monkeypatch.setenv(faults.ENV, "demo:file:2")

    def two_files(out):
        write_table(out / "a.parquet", [{"x": 1}])
        assert kills == []  # the first file is not the second
        write_table(out / "b.parquet", [{"x": 2}])
        assert kills == [signal.SIGKILL]
        return {"rows": 2}

    run_stage(tmp_path, "other", {}, [], "1", lambda out: {"rows": write_table(out / "a.parquet", [{"x": 1}])})
    write_table(tmp_path / "outside.parquet", [{"x": 1}])  # outside any stage: never
    assert kills == []
    run_stage(tmp_path, "demo", {"b": 1}, [], "1", two_files)
    monkeypatch.setenv(faults.ENV, "demo2:produced")
    run_stage(tmp_path, "demo2", {}, [], "1", lambda out: {"rows": 0})
    assert kills == [signal.SIGKILL] * 2
