import json

import pytest

from sumpref.config import DataConfig
from sumpref.data import DataError, assign_split, load_articles, require_split, truncate_articles

ARTICLE = "The council voted on Tuesday to build a bridge. " * 10


def write_jsonl(path, rows, raw_lines=()):
    with open(path, "wb") as f:
        for r in rows:
            f.write((json.dumps(r) + "\n").encode())
        for line in raw_lines:
            f.write(line + b"\n")
    return path


def cfg(path, **kw):
    return DataConfig(source=str(path), num_articles=kw.pop("num_articles", 100), min_article_words=5, **kw)


def test_bad_rows_are_counted_drops_and_good_rows_survive(tmp_path):
    rows = [{"id": "a", "article": ARTICLE + "one"}, {"id": "b", "article": ""}, {"id": "a", "article": ARTICLE + "two"},
            {"id": "c", "article": ARTICLE + "one"}, {"id": "d", "highlights": "x"}, {"id": "e", "article": "too short"},
            {"id": "f", "article": ARTICLE + "three"}]
    p = write_jsonl(tmp_path / "in.jsonl", rows, raw_lines=[b'{"id": "g", "article": "caf\xe9 ' + b"x " * 40 + b'"}', b"{not json"])
    res = load_articles(cfg(p))
    assert sorted(r["id"] for r in res.rows) == ["a", "f"]
    assert res.drop_counts() == {"duplicate_id": 1, "duplicate_text": 1, "empty_article": 1, "invalid_json": 1,
                                 "invalid_utf8": 1, "missing_article": 1, "too_short": 1}
    bad_utf8 = next(d for d in res.drops if d["reason"] == "invalid_utf8")
    assert bad_utf8["source"] == "in.jsonl:8"  # names the file and line


def test_file_without_article_column_is_an_error_naming_file_and_column(tmp_path):
    p = write_jsonl(tmp_path / "x.jsonl", [{"id": "a", "text": ARTICLE}])
    with pytest.raises(DataError, match=r"x\.jsonl: no 'article' column.*data\.text_column"):
        load_articles(cfg(p))


def test_missing_local_file_is_an_error(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_articles(cfg(tmp_path / "nope.jsonl"))


def test_parquet_source_and_column_mapping(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"doc_id": ["a", "b"], "text": [ARTICLE + "x", ARTICLE + "y"]}), tmp_path / "d.parquet")
    res = load_articles(cfg(tmp_path / "d.parquet", id_column="doc_id", text_column="text"))
    assert sorted(r["id"] for r in res.rows) == ["a", "b"]


def test_seeded_shuffle_and_subset(tmp_path):
    p = write_jsonl(tmp_path / "in.jsonl", [{"id": str(i), "article": ARTICLE + str(i)} for i in range(30)])
    a = [r["id"] for r in load_articles(cfg(p, num_articles=10, seed=1)).rows]
    b = [r["id"] for r in load_articles(cfg(p, num_articles=10, seed=1)).rows]
    c = [r["id"] for r in load_articles(cfg(p, num_articles=10, seed=2)).rows]
    assert a == b and a != c and len(a) == 10


class CharTokenizer:
    """One token per character: enough to test truncation logic without a model."""

    def __call__(self, texts, add_special_tokens=False):  # a batch, as the fast tokenizers take it
        return {"input_ids": [[ord(c) for c in text] for text in texts]}

    def decode(self, ids):
        return "".join(chr(i) for i in ids)


def test_huge_article_is_truncated_and_flagged():
    rows = [{"article": "x" * 200_000}, {"article": "short one"}]
    truncate_articles(rows, CharTokenizer(), max_tokens=100)
    assert rows[0]["truncated"] and len(rows[0]["article"]) == 100
    assert not rows[1]["truncated"] and rows[1]["article"] == "short one"


def test_split_is_article_level_and_seeded():
    rows = [{"id": str(i)} for i in range(100)]
    assign_split(rows, 0.1, 1, seed=3)
    assert sum(r["split"] == "eval" for r in rows) == 10
    with pytest.raises(DataError, match="too few"):
        assign_split([{"id": "a"}], 0.5, 1, seed=0)


def test_no_usable_row_is_one_line_naming_the_source_with_counts_by_reason(tmp_path):
    rows = [{"id": str(i), "highlights": "x"} for i in range(4)] + [{"id": f"s{i}", "article": "too short"} for i in range(3)]
    p = write_jsonl(tmp_path / "x.jsonl", rows, raw_lines=[b"{not json"] * 5)
    with pytest.raises(DataError) as e:
        load_articles(cfg(p))
    assert str(e.value) == (f"data.source: {str(p)!r} has 0 usable articles of 12 rows "
                            "(invalid_json 5, missing_article 4, too_short 3)")


def test_empty_file_has_no_usable_row(tmp_path):
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(DataError, match=r"has 0 usable articles of 0 rows$"):
        load_articles(cfg(tmp_path / "empty.jsonl"))


@pytest.mark.parametrize("name, message", [
    ("x.csv", "is a .csv file"),
    ("x", "has no file extension"),
])
def test_unsupported_file_format_names_the_supported_ones(tmp_path, name, message):
    (tmp_path / name).write_text("id,article\n1,some text\n")
    with pytest.raises(DataError) as e:
        load_articles(cfg(tmp_path / name))
    assert message in str(e.value) and "supported formats: .jsonl, .json, .parquet" in str(e.value)
    assert "\n" not in str(e.value)


def test_folder_or_glob_without_a_supported_file(tmp_path):
    (tmp_path / "a.csv").write_text("id,article\n")
    (tmp_path / "b.jsonl").write_text(json.dumps({"id": "b", "article": ARTICLE}) + "\n")
    with pytest.raises(DataError, match=r"'.*\*\.csv' holds no file of a supported format \(found: \.csv\); supported formats"):
        load_articles(cfg(tmp_path / "*.csv"))
    assert [r["id"] for r in load_articles(cfg(tmp_path / "*")).rows] == ["b"]  # a glob keeps its supported files
    with pytest.raises(DataError, match="matches no file"):
        load_articles(cfg(tmp_path / "*.nothing"))


def test_too_few_articles_for_the_split_names_the_source_and_counts(tmp_path):
    p = write_jsonl(tmp_path / "x.jsonl", [{"id": "a", "article": ARTICLE}, {"id": "b", "article": "short"}])
    res = load_articles(cfg(p))
    with pytest.raises(DataError) as e:
        require_split(res, cfg(p))
    assert str(e.value).startswith(f"data.source: {str(p)!r} has 1 usable article of 2 rows (too_short 1): too few "
                                   "for 1 evaluation and at least 1 training article")
    require_split(load_articles(cfg(write_jsonl(tmp_path / "y.jsonl", [{"id": "a", "article": ARTICLE + "a"},
                                                                        {"id": "b", "article": ARTICLE + "b"}]))),
                  cfg(tmp_path / "y.jsonl"))  # two are enough for one of each
