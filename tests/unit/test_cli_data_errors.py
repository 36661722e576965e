"""An unusable data file on the command line: one `error:` line naming the source, with the rows'
drop counts by reason, and exit status 2; no traceback, and no flow started."""

import json

import pytest

BAD_ROWS = (['{"id": "%d", "article": "' % i for i in range(5)]  # cut off: invalid JSON
            + [json.dumps({"id": f"m{i}", "highlights": "h"}) for i in range(4)]
            + [json.dumps({"id": f"s{i}", "article": "far too short"}) for i in range(3)])


@pytest.fixture
def bad_file(tmp_path):
    f = tmp_path / "x.jsonl"
    f.write_text("\n".join(BAD_ROWS) + "\n")
    return f


def expected(path) -> str:
    return (f"error: data.source: {str(path)!r} has 0 usable articles of 12 rows "
            "(invalid_json 5, missing_article 4, too_short 3)\n")


@pytest.fixture
def no_flow(monkeypatch):
    """Fail the test if a flow would start."""
    monkeypatch.delenv("RAY_ADDRESS", raising=False)

    def refuse(*a, **k):
        raise AssertionError("the flow started")

    import flows.evaluate
    import flows.full_pipeline

    monkeypatch.setattr(flows.full_pipeline, "full_pipeline", refuse)
    monkeypatch.setattr(flows.evaluate, "evaluate_models", refuse)


def test_pipeline_cli(tmp_path, bad_file, no_flow, capsys):
    from flows.full_pipeline import main

    assert main([f"data.source={bad_file}", f"root={tmp_path / 'runs'}"]) == 2
    out = capsys.readouterr()
    assert out.err == expected(bad_file) and "Traceback" not in out.out


def test_evaluate_cli(tmp_path, bad_file, no_flow, capsys):
    from flows.evaluate import main

    assert main([f"data.source={bad_file}", f"root={tmp_path / 'runs'}"]) == 2
    out = capsys.readouterr()
    assert out.err == expected(bad_file) and "Traceback" not in out.out


@pytest.mark.parametrize("cli", ["flows.full_pipeline", "flows.evaluate"])
def test_unsupported_format(tmp_path, no_flow, capsys, cli):
    import importlib

    csv = tmp_path / "x.csv"
    csv.write_text("id,article\n1,text\n")
    assert importlib.import_module(cli).main([f"data.source={csv}", f"root={tmp_path / 'runs'}"]) == 2
    err = capsys.readouterr().err
    assert err == (f"error: data.source: {str(csv)!r} is a .csv file; supported formats: .jsonl, .json, .parquet "
                   "(.json as JSON lines)\n")


def test_too_few_for_the_split(tmp_path, no_flow, capsys):
    from flows.full_pipeline import main

    f = tmp_path / "one.jsonl"
    f.write_text(json.dumps({"id": "a", "article": "word " * 40}) + "\n" + json.dumps({"id": "b", "article": "short"}) + "\n")
    assert main([f"data.source={f}", f"root={tmp_path / 'runs'}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: data.source: {str(f)!r} has 1 usable article of 2 rows (too_short 1): too few for 1 "
                          "evaluation") and err.count("\n") == 1


def test_the_load_stage_fails_with_the_same_line_and_no_retry(tmp_path, bad_file):
    """From a deployment (no command line), the load task's error is the same line, and a failure
    that no retry can help (`tasks/retry.py`)."""
    from prefect.states import Failed

    from sumpref.config import config_from_dict
    from sumpref.data import DataError
    from sumpref.stages.articles import articles_spec
    from tasks.retry import retry_can_help

    cfg = config_from_dict({"root": str(tmp_path / "runs"), "data": {"source": str(bad_file)}})
    with pytest.raises(DataError) as e:
        articles_spec(cfg).run()
    assert f"error: {e.value}\n" == expected(bad_file)
    assert not retry_can_help(None, None, Failed(data=e.value))
    assert not list((tmp_path / "runs").rglob("_SUCCESS"))
