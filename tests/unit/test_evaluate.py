"""The pipeline's evaluation (base, tuned, lead-3 and lead-3 at the tuned length, compared in
pairs), extractive baselines, and the per-summary format and copying metrics."""

import numpy as np
import pytest

from sumpref.evaluation.baselines import LeadSummarizer, extract, match_words, parse_spec
from sumpref.evaluation.format import format_metrics, longest_copied_span, novel_ngram_share, words
from sumpref.sentences import split_sentences

ARTICLE = ("(CNN) -- Mr. Smith went to Washington on Monday. He met U.S. officials there! Was it useful? "
           "Nobody said. The talks ended at 5 p.m. with no deal.")


def test_split_sentences_keeps_abbreviations_inside_their_sentence():
    assert split_sentences(ARTICLE) == [
        "(CNN) -- Mr. Smith went to Washington on Monday.", "He met U.S. officials there!", "Was it useful?",
        "Nobody said.", "The talks ended at 5 p.m. with no deal."]
    assert split_sentences("No final stop") == ["No final stop"]
    assert split_sentences("") == [] and split_sentences(None) == []
    assert split_sentences('He said "yes." Then he left.') == ['He said "yes."', "Then he left."]


def test_lead_baselines():
    assert extract(ARTICLE, "lead:2") == "(CNN) -- Mr. Smith went to Washington on Monday. He met U.S. officials there!"
    assert extract(ARTICLE, "lead-words:4") == "(CNN) -- Mr. Smith"
    assert extract("One. Two.", "lead:3") == "One. Two."  # fewer sentences than asked: all of them
    assert match_words("a b c d", 2) == "a b" and match_words("a b", 5) == "a b"
    assert parse_spec("lead-words:40") == ("lead-words", 40)
    for bad in ("lead", "lead:0", "lead:x", "first:3", "lead-3"):
        with pytest.raises(ValueError, match="is not a baseline spec"):
            parse_spec(bad)


def test_lead_summarizer_writes_the_models_columns_and_matches_length():
    rows = [{"id": "a", "article": ARTICLE}, {"id": "b", "article": ARTICLE, "match_words": 3}]
    out, stats = LeadSummarizer("lead:3").run(rows)
    assert out[0]["summary"] == " ".join(split_sentences(ARTICLE)[:3]) and out[0]["n_words"] == 17
    assert out[1]["summary"] == "(CNN) -- Mr." and out[1]["n_words"] == 3
    assert {r["finish_reason"] for r in out} == {"stop"} and stats.output_tokens == 0
    assert set(out[0]) >= {"article_id", "sample_idx", "summary", "n_words", "article_words", "finish_reason", "gen_error"}


def test_format_metrics_of_a_lead_copy_cut_at_the_limit():
    cut = "(CNN) -- Mr. Smith went to Washington on Monday. He met U.S. officials there! Was it"
    m = format_metrics(cut, ARTICLE, "length")
    assert m["sentences"] == 3 and m["at_most_2_sentences"] == 0 and m["cut_at_limit"] == 1
    assert m["ends_with_punctuation"] == 0 and m["lead_copy_share"] == 1.0
    assert m["longest_copied_span"] == len(words(cut)) and m["novel_bigrams"] == 0 and m["novel_trigrams"] == 0


def test_format_metrics_of_an_abstractive_two_sentence_summary():
    s = "Smith visited Washington. The talks with officials failed."
    m = format_metrics(s, ARTICLE, "stop")
    assert m["sentences"] == 2 and m["at_most_2_sentences"] == 1 and m["cut_at_limit"] == 0
    assert m["ends_with_punctuation"] == 1 and m["lead_copy_share"] == 0.0
    assert m["longest_copied_span"] == 2  # "the talks"
    assert 0 < m["novel_bigrams"] < 1 and m["novel_trigrams"] == 1.0
    assert format_metrics('He left."', ARTICLE, "stop")["ends_with_punctuation"] == 1
    empty = format_metrics("", ARTICLE, "stop")
    assert empty["at_most_2_sentences"] == 0 and np.isnan(empty["lead_copy_share"]) and np.isnan(empty["novel_bigrams"])


def test_copy_helpers_by_hand():
    assert longest_copied_span("x a b c y b c".split(), "a b c d b c".split()) == 3
    assert longest_copied_span([], ["a"]) == 0
    assert novel_ngram_share("a b z".split(), "a b c".split(), 2) == 0.5
    assert novel_ngram_share(["q"], ["a", "b"], 3) == 1.0  # shorter than n: its own length


def test_the_run_evaluation_has_base_tuned_and_lead3_at_equal_length(monkeypatch, tmp_path):
    """A key in the environment adds nothing paid; `eval.api_baseline` does, whatever the environment."""
    from sumpref.config import ConfigError, RunConfig, config_from_dict
    from sumpref.stages import run_eval_config

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    cfg = RunConfig(root=str(tmp_path))
    tuned = cfg.policy.model_copy(update={"adapter": str(tmp_path / "dpo" / "k" / "adapter")})
    e = run_eval_config(cfg, tuned)
    assert [m.name for m in e.models] == ["base", "tuned", "lead-3", "lead-3@tuned"]
    assert e.models[3].extract == "lead:3" and e.models[3].match_length == "tuned" and e.split == "eval"
    assert e.pairs_compared() == [("tuned", "base"), ("lead-3", "base"), ("lead-3@tuned", "base"),
                                  ("tuned", "lead-3"), ("tuned", "lead-3@tuned")]
    asked = config_from_dict({"root": str(tmp_path), "eval": {
        "api_baseline": {"model": "gpt-4o", "base_url": "https://api.openai.com/v1"}, "baselines": ["lead-words:30"],
        "equal_length": False}})
    monkeypatch.delenv("OPENAI_API_KEY")
    e = run_eval_config(asked, tuned)
    assert [m.name for m in e.models] == ["base", "tuned", "lead-words-30", "gpt-4o"]
    assert e.models[3].backend.backend == "openai" and ("tuned", "gpt-4o") in e.pairs_compared()
    with pytest.raises(ConfigError, match="eval.openai_model: unknown field"):  # the old implicit switch is gone
        config_from_dict({"eval": {"openai_model": "gpt-4o"}})
    with pytest.raises(ConfigError, match=r"eval\.baselines\.0"):
        config_from_dict({"eval": {"baselines": ["lead3"]}})


def test_eval_model_keys_name_store_paths_relative_to_the_root(tmp_path):
    """The same run under another root reuses its evaluation: no absolute path in a stage key."""
    from sumpref.config import RunConfig
    from sumpref.evaluation.stages import model_spec
    from sumpref.stages import run_eval_config

    def key(root):
        cfg = RunConfig(root=str(root))
        tuned = cfg.policy.model_copy(update={"adapter": str(root / "dpo" / "k" / "adapter")})
        e = run_eval_config(cfg, tuned)
        refs = [_ref(root, s) for s in ("articles", "questions")]
        return model_spec(e, e.models[1], *refs).key

    assert key(tmp_path / "one") == key(tmp_path / "two")


def _ref(root, stage):
    from sumpref.artifacts import ArtifactRef

    return ArtifactRef(uri=f"file://{root}/{stage}/k", stage=stage, key="k", fingerprint=f"fp-{stage}", rows=1)


def test_stop_after_the_prompts_sentence_limit():
    from sumpref.backends.base import Generation
    from sumpref.sampling import stop_sentences

    g = Generation("One thing happened. Then another. And a third that runs on", 10, 80, "length")
    assert stop_sentences(g, 2).text == "One thing happened. Then another." and stop_sentences(g, 2).finish_reason == "stop"
    assert stop_sentences(g, 2).output_tokens == 80  # generated tokens still count
    assert stop_sentences(g, None) is g and stop_sentences(g, 3) is g  # no third sentence end: still cut
    two = Generation("One. Two.", 10, 5, "stop")
    assert stop_sentences(two, 2) is two
