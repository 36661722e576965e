"""Key-content coverage: what a summary is credited for, and what it is not."""

import pytest

from sumpref.judging.key_content import KeyContent, content_stems, coverage, stem

ARTICLE = ("Chelsea beat Arsenal 2-1 at Stamford Bridge on Sunday. Eden Hazard scored the winner in the 78th minute. "
           "Manager Jose Mourinho said the team had shown great spirit. Chelsea are now 10 points clear at the top "
           "of the Premier League. Chelsea fans sang for Hazard. Arsenal manager Arsene Wenger said his side deserved a draw.")
HIGHLIGHTS = "Chelsea beat Arsenal 2-1.\nEden Hazard scored the winner.\nChelsea are 10 points clear."


@pytest.mark.parametrize("word, expected", [("scored", "scor"), ("scores", "scor"), ("scoring", "scor"),
                                            ("goals", "goal"), ("bus", "bus"), ("used", "used"), ("1990s", "1990s")])
def test_stem(word, expected):
    assert stem(word) == expected


def test_content_stems_drop_stopwords_and_normalise():
    assert content_stems("The Goals were SCORED by Hazard, who scores often.") == {"goal": 1, "scor": 2, "hazard": 1, "often": 1}


def test_highlights_copied_cover_everything_and_nothing_covers_nothing():
    key = KeyContent.of(ARTICLE, HIGHLIGHTS)
    assert coverage(key, HIGHLIGHTS, lead_weight=0.0) == pytest.approx(1.0)
    assert coverage(key, "", lead_weight=0.25) == 0.0
    assert 0 < coverage(key, "Hazard scored.") < coverage(key, "Chelsea beat Arsenal. Hazard scored.") < 1


def test_items_the_article_keeps_returning_to_are_worth_more():
    key = KeyContent.of(ARTICLE, HIGHLIGHTS)
    assert key.highlights["chelsea"] > key.highlights["arsenal"] > key.highlights["winner"] > 0
    assert coverage(key, "Chelsea won.", 0.0) > coverage(key, "The winner came.", 0.0)


def test_highlight_words_the_article_never_uses_are_worth_nothing():
    key = KeyContent.of(ARTICLE, HIGHLIGHTS + "\nA thrilling derby.")
    assert "thrill" not in key.highlights and "derby" not in key.highlights
    assert coverage(key, "A thrilling derby.", 0.0) == 0.0


def test_without_highlights_the_lead_alone_counts():
    key = KeyContent.of(ARTICLE, None)
    lead = "Chelsea beat Arsenal 2-1 at Stamford Bridge on Sunday. Eden Hazard scored the winner in the 78th minute. " \
           "Manager Jose Mourinho said the team had shown great spirit."
    assert coverage(key, lead, lead_weight=0.25) == pytest.approx(1.0)
    assert coverage(KeyContent.of("", None), "anything at all", 0.25) == 0.0


def test_lead_weight_mixes_the_two_sources():
    key = KeyContent.of(ARTICLE, HIGHLIGHTS)
    only_lead = "Manager Jose Mourinho said the team had shown great spirit on Sunday at Stamford Bridge."
    assert coverage(key, only_lead, 0.0) < coverage(key, only_lead, 0.25) < coverage(key, only_lead, 1.0)

