import pytest

from sumpref.config import PairsConfig
from sumpref.pairs import build_pairs, filter_reason, has_junk, prefer

CFG = PairsConfig()


def row(i, correct, words, aid="a1", summary=None):
    return {"article_id": aid, "sample_idx": i, "n_correct": correct, "n_words": words,
            "summary": summary or " ".join(["w"] * words), "prompt_text": "P"}


@pytest.mark.parametrize("a,b,expected", [
    ((3, 20), (3, 30), 1),      # both >= 3: shorter wins
    ((3, 30), (4, 20), -1),     # both >= 3: shorter wins even with fewer correct
    ((4, 20), (3, 22), 0),      # word counts differ by < 3: tie
    ((5, 20), (3, 23), 1),      # differ by exactly 3: shorter wins
    ((2, 10), (3, 40), -1),     # min <= 2: more correct wins
    ((2, 10), (2, 40), 0),      # min <= 2, equal correct: tie
    ((0, 5), (1, 50), -1),
    ((5, 50), (2, 10), 1),
])
def test_preference_rule(a, b, expected):
    assert prefer(row(0, *a), row(1, *b), CFG) == expected
    assert prefer(row(1, *b), row(0, *a), CFG) == -expected  # antisymmetric


@pytest.mark.parametrize("summary,words,reason", [
    ("", 0, "empty_summary"), ("a b c", 3, "too_short"), ("x " * 200, 200, "too_long"),
    ("ok summary here with\x00 nul", 5, "junk_characters"), ("fine <|im_end|> leak", 5, "junk_characters"),
    ("A perfectly fine summary.", 5, None),
])
def test_filters(summary, words, reason):
    assert filter_reason(summary, words, CFG) == reason


def test_junk_allows_newlines_and_unicode():
    assert not has_junk("Café owners in São Paulo\nprotested.")


def test_at_most_three_pairs_per_article_seeded_and_ties_dropped():
    judged = [row(i, c, w) for i, (c, w) in enumerate([(5, 10), (4, 20), (3, 30), (1, 15), (0, 12), (4, 21)])]
    pairs, drops, counts = build_pairs(judged, CFG)
    assert len(pairs) == 3 and counts["ties"] >= 1
    again, _, _ = build_pairs(list(reversed(judged)), CFG)
    assert [(p["chosen"], p["rejected"]) for p in pairs] == [(p["chosen"], p["rejected"]) for p in again]
    seeds = {tuple(sorted((p["chosen"][1]["content"], p["rejected"][1]["content"]) for p in build_pairs(judged, PairsConfig(seed=s))[0]))
             for s in range(10)}
    assert len(seeds) > 1  # the sample depends on the seed
    for p in pairs:
        assert p["chosen"][0] == p["rejected"][0] == p["prompt"][0] == {"role": "user", "content": "P"}
        assert p["chosen"][1]["role"] == "assistant"


def test_split_is_by_article_never_by_pair():
    judged = [row(i, c, w, aid=f"art{a}") for a in range(60) for i, (c, w) in enumerate([(5, 10), (1, 20), (3, 40)])]
    pairs, _, counts = build_pairs(judged, PairsConfig(valid_fraction=0.3))
    splits = {}
    for p in pairs:
        splits.setdefault(p["article_id"], set()).add(p["split"])
    assert all(len(s) == 1 for s in splits.values())
    assert 0 < counts["pairs_valid"] < counts["pairs_train"]


def test_dropped_rows_keep_their_reason():
    judged = [row(0, 5, 10), row(1, 1, 3), {**row(2, 4, 12), "drop_reason": "no_judge_output"}]
    pairs, drops, counts = build_pairs(judged, CFG)
    assert {d["reason"] for d in drops} == {"too_short", "no_judge_output"}
    assert counts["dropped_too_short"] == 1 and counts["dropped_no_judge_output"] == 1


def test_pairs_stage_drops_summaries_that_were_never_judged(tmp_path):
    """The stage applies the judged-row rule evaluation uses: a judge request that failed for good
    (or gave no output) is a counted drop with its reason, never a zero-correct loser in a pair."""
    from sumpref.artifacts import read_table, write_table
    from sumpref.cachekey import StageSpec
    from sumpref.config import RunConfig
    from sumpref.fanout import shard_path
    from sumpref.stages import pairs_spec

    judged_rows = [{**row(0, 5, 10), "judge_error": None}, {**row(1, 1, 30), "judge_error": None},
                   {**row(2, 0, 40), "judge_error": "generation_error:http_500"},
                   {**row(3, 0, 40), "judge_error": "no_judge_output"}]

    def produce(out):
        write_table(shard_path(out, 0), judged_rows)
        return {"rows": len(judged_rows), "shards": 1}

    cfg = RunConfig(root=str(tmp_path))
    judged = StageSpec(cfg.root, "judged", {"test": 1}, [], "sumpref.stages.judged", produce).run()
    ref = pairs_spec(cfg, judged).run()
    drops = read_table(ref.path / "drops.parquet")
    assert sorted(d["reason"] for d in drops) == ["generation_error:http_500", "no_judge_output"]
    pairs = read_table(ref.path / "train.parquet") + read_table(ref.path / "valid.parquet")
    assert [(p["chosen_correct"], p["rejected_correct"]) for p in pairs] == [(5, 1)]
    assert ref.meta()["info"]["drops"] == {"generation_error:http_500": 1, "no_judge_output": 1}


def test_format_rule_puts_the_prompts_format_first():
    """A summary cut at the token limit or over 2 sentences loses to one in format, whatever its
    count; two out of format make no pair; two in format follow the published rule."""
    from sumpref.pairs import format_ok, prefer_for_training

    cfg = PairsConfig(format_rule=True)
    ok = {"summary": "One sentence. Two sentences.", "finish_reason": "stop", "n_correct": 3, "n_words": 30}
    short_ok = {**ok, "n_words": 12}
    cut = {"summary": "A long copy of the lead that runs on and", "finish_reason": "length", "n_correct": 5, "n_words": 60}
    three = {"summary": "One. Two. Three.", "finish_reason": "stop", "n_correct": 5, "n_words": 60}
    unfinished = {**ok, "summary": "One sentence. Then it stops in the"}  # ended by EOS, mid-sentence
    assert format_ok(ok, cfg) and not format_ok(cut, cfg) and not format_ok(three, cfg)
    assert not format_ok(unfinished, cfg) and prefer_for_training(ok, unfinished, cfg) == 1
    assert prefer_for_training(ok, cut, cfg) == 1 and prefer_for_training(three, ok, cfg) == -1
    assert prefer_for_training(cut, three, cfg) is None
    assert prefer_for_training(short_ok, ok, cfg) == 1  # both in format: the shorter wins
    assert prefer_for_training({**ok, "n_correct": 2}, cut, PairsConfig()) == -1  # off: the published rule alone
    rows = [{**r, "article_id": "a", "sample_idx": i, "prompt_text": "P"} for i, r in enumerate([ok, cut, three])]
    pairs, _, counts = build_pairs(rows, cfg.model_copy(update={"valid_fraction": 0.0}))
    assert sorted((p["chosen_words"], p["rejected_words"]) for p in pairs) == [(30, 60), (30, 60)]
    assert counts["ties"] == 1  # cut vs three: no pair
