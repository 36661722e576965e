"""Load CNN/DailyMail-style articles: hub dataset or local JSONL/Parquet.

Columns in (configurable names): `id`, `article`, optional `highlights`.
Columns out (`articles.parquet`): `id, article, highlights, split ("train"|"eval"), truncated,
n_words, orig_words, source`. Every row that is not kept is recorded in `drops.parquet` with its reason
(`invalid_utf8`, `invalid_json`, `missing_article`, `empty_article`, `too_short`,
`duplicate_id`, `duplicate_text`, `format_filtered`); counts per reason go into stage metadata.
A source that cannot be used at all is a `DataError` of one line: a missing file, a format other
than JSON lines (`.jsonl`, `.json`) or Parquet, a file without the article column, or no usable row
(the message names the source and counts the rows by drop reason). Preflight runs the same load on
a local source, so the command line reports these before any work starts.
"""

from __future__ import annotations

import glob
import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from sumpref.config import DataConfig


class DataError(ValueError):
    """The data source cannot be used; the message (one line) names the file, row or column."""


FORMATS = (".jsonl", ".json", ".parquet")  # JSON lines (either suffix) or Parquet: what `_read_local` reads


@dataclass
class LoadResult:
    rows: list[dict]
    drops: list[dict] = field(default_factory=list)

    def drop_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for d in self.drops:
            counts[d["reason"]] = counts.get(d["reason"], 0) + 1
        return dict(sorted(counts.items()))

    def summary(self) -> str:
        """`2 usable articles of 14 rows (invalid_json 5, too_short 4, ...)`: the rows examined, by outcome
        (every drop is one row; the commonest reason first)."""
        n = len(self.rows)
        reasons = sorted(self.drop_counts().items(), key=lambda kv: (-kv[1], kv[0]))
        why = f" ({', '.join(f'{r} {c}' for r, c in reasons)})" if reasons else ""
        return f"{n} usable article{'s' * (n != 1)} of {n + len(self.drops)} rows{why}"


def _unsupported(source: str, found: list[Path]) -> DataError:
    """No file of `found` (what `source` names) has a supported format."""
    if found == [Path(source)]:
        what = f"is a {found[0].suffix} file" if found[0].suffix else "has no file extension"
    elif found:
        kinds = sorted({f.suffix or f.name for f in found})
        what = f"holds no file of a supported format (found: {', '.join(kinds[:6])}{', ...' * (len(kinds) > 6)})"
    else:
        what = "matches no file"
    return DataError(f"data.source: {source!r} {what}; supported formats: {', '.join(FORMATS)} (.json as JSON lines)")


def local_files(source: str) -> list[Path] | None:
    """The local files `source` names (file, directory or glob), or None if it is not local.

    A folder or glob keeps its files of a supported format (`FORMATS`); a file of another format,
    or a folder or glob with none, is a `DataError` naming the supported ones."""
    p = Path(source)
    if p.is_dir():
        found = sorted(p.iterdir())
    elif any(ch in source for ch in "*?["):
        found = sorted(Path(f) for f in glob.glob(source))
    elif p.exists():
        found = [p]
    elif p.suffix in FORMATS or source.startswith((".", "/")):
        raise DataError(f"data.source: local file {source!r} does not exist")
    else:
        return None
    files = [f for f in found if f.suffix in FORMATS]
    if not files:
        raise _unsupported(source, found)
    return files


def source_fingerprint(cfg: DataConfig) -> list[tuple[str, str]] | None:
    """Content hashes of the local files `cfg.source` names (None for a hub dataset), so that an
    edited or added file, or a relative glob resolved elsewhere, is a different input."""
    import hashlib

    files = local_files(cfg.source)
    if files is None:
        return None
    out = []
    for f in files:
        h = hashlib.sha256()
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        out.append((f.name, h.hexdigest()[:16]))
    return out


def _iter_jsonl(path: Path, drops: list[dict]) -> Iterator[tuple[int, dict]]:
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                drops.append({"source": f"{path.name}:{lineno}", "id": None, "reason": "invalid_utf8", "detail": str(e)[:200]})
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as e:
                drops.append({"source": f"{path.name}:{lineno}", "id": None, "reason": "invalid_json", "detail": str(e)[:200]})
                continue
            if not isinstance(obj, dict):
                drops.append({"source": f"{path.name}:{lineno}", "id": None, "reason": "invalid_json", "detail": "not an object"})
                continue
            yield lineno, obj


def _read_local(files: list[Path], cfg: DataConfig, drops: list[dict]) -> list[dict]:
    import pyarrow.parquet as pq

    rows: list[dict] = []
    for path in files:
        if path.suffix == ".parquet":
            names = pq.read_schema(path).names
            if cfg.text_column not in names:
                raise DataError(f"{path}: no {cfg.text_column!r} column (columns: {names}); set data.text_column")
            for i, obj in enumerate(pq.read_table(path).to_pylist(), 1):
                rows.append({**obj, "_source": f"{path.name}:{i}"})
            continue
        file_rows = [{**obj, "_source": f"{path.name}:{n}"} for n, obj in _iter_jsonl(path, drops)]
        if file_rows and not any(cfg.text_column in r for r in file_rows):
            keys = sorted({k for r in file_rows[:50] for k in r if k != "_source"})
            raise DataError(f"{path}: no {cfg.text_column!r} column in any row (keys: {keys}); set data.text_column")
        rows.extend(file_rows)
    return rows


def _read_hub(cfg: DataConfig, limit: int) -> list[dict]:
    try:
        from datasets import load_dataset

        ds = load_dataset(cfg.source, cfg.hub_config, split=cfg.split)
    except Exception as e:  # noqa: BLE001 - re-raised with the field that chose the source
        raise DataError(
            f"data.source {cfg.source!r} (config {cfg.hub_config!r}, split {cfg.split!r}) could not be loaded from the "
            f"hub: {type(e).__name__}: {e}. Offline, point data.source at local .jsonl/.parquet files."
        ) from e
    if cfg.text_column not in ds.column_names:
        raise DataError(f"hub dataset {cfg.source}: no {cfg.text_column!r} column (columns: {ds.column_names})")
    ds = ds.shuffle(seed=cfg.seed).select(range(min(len(ds), limit)))
    return [{**r, "_source": f"{cfg.source}:{i}"} for i, r in enumerate(ds)]


_NORM_RE = re.compile(r"[^a-z0-9]+")


def normalise_text(text: str) -> str:
    """Lowercase, alphanumerics only: the key for duplicate detection."""
    return _NORM_RE.sub(" ", text.lower()).strip()


def load_articles(cfg: DataConfig) -> LoadResult:
    """Read, validate, shuffle (seeded), dedup and subset articles; no truncation or split yet.

    A source with no usable row is a `DataError` naming it, with the drop counts by reason."""
    drops: list[dict] = []
    files = local_files(cfg.source)
    if files is not None:
        raw = _read_local(files, cfg, drops)
        random.Random(cfg.seed).shuffle(raw)
    else:
        raw = _read_hub(cfg, limit=int(cfg.num_articles * 1.3) + 100)
    seen_ids: set[str] = set()
    seen_text: set[str] = set()
    kept: list[dict] = []
    for r in raw:
        if len(kept) >= cfg.num_articles:
            break
        src = r.pop("_source")
        rid = r.get(cfg.id_column)
        rid = str(rid) if rid not in (None, "") else None
        text = r.get(cfg.text_column)

        def drop(reason: str, detail: str = "") -> None:
            drops.append({"source": src, "id": rid, "reason": reason, "detail": detail})

        if text is None:
            drop("missing_article", f"no {cfg.text_column!r} field")
            continue
        if not isinstance(text, str):
            drop("missing_article", f"{cfg.text_column!r} is {type(text).__name__}, not text")
            continue
        if not text.strip():
            drop("empty_article")
            continue
        if cfg.article_formats and r.get("article_format") not in (None, *cfg.article_formats):
            drop("format_filtered", str(r.get("article_format")))
            continue
        if len(text.split()) < cfg.min_article_words:
            drop("too_short", f"{len(text.split())} words")
            continue
        norm = normalise_text(text[:20000])
        if rid is None:
            import hashlib

            rid = "sha-" + hashlib.sha1(norm.encode()).hexdigest()[:16]
        if rid in seen_ids:
            drop("duplicate_id")
            continue
        if norm in seen_text:
            drop("duplicate_text")
            continue
        seen_ids.add(rid)
        seen_text.add(norm)
        hl = r.get(cfg.highlights_column)
        kept.append({"id": rid, "article": text.strip(), "highlights": hl if isinstance(hl, str) and hl.strip() else None, "source": src})
    res = LoadResult(rows=kept, drops=drops)
    if not kept:
        raise DataError(f"data.source: {cfg.source!r} has {res.summary()}")
    return res


def n_eval_articles(n: int, eval_fraction: float, min_eval: int) -> int:
    """How many of `n` articles the split holds out for evaluation."""
    return max(min_eval, round(eval_fraction * n))


def require_split(res: LoadResult, cfg: DataConfig) -> None:
    """A `DataError` (naming the source, with the drop counts) unless `res` leaves at least one
    training article besides the evaluation ones; checked before any model is loaded."""
    n = len(res.rows)
    n_eval = n_eval_articles(n, cfg.eval_fraction, cfg.min_eval_articles)
    if n_eval < n:
        return
    limit = f" (data.num_articles={cfg.num_articles})" if n >= cfg.num_articles else ""
    raise DataError(f"data.source: {cfg.source!r} has {res.summary()}{limit}: too few for {n_eval} evaluation "
                    f"and at least 1 training article (data.min_eval_articles={cfg.min_eval_articles}, "
                    f"data.eval_fraction={cfg.eval_fraction})")


def truncate_articles(rows: list[dict], tokenizer, max_tokens: int, batch: int = 256) -> None:
    """Cut articles longer than `max_tokens` tokens (in place); flag them `truncated`.

    Tokenized `batch` articles per call: a fast tokenizer encodes a batch on all cores, so 2,936
    articles take seconds instead of the 12-22 s of one call per article."""
    for start in range(0, len(rows), batch):
        _truncate_batch(rows[start:start + batch], tokenizer, max_tokens)


def _truncate_batch(rows: list[dict], tokenizer, max_tokens: int) -> None:
    # A cheap character cap first, so a pathological 200k-character row costs no more to
    # tokenize than a normal one (no tokenizer packs more than ~12 chars per token here).
    capped_texts = [r["article"][: max_tokens * 12] for r in rows]
    all_ids = tokenizer(capped_texts, add_special_tokens=False)["input_ids"] if rows else []
    for r, capped, ids in zip(rows, capped_texts, all_ids):
        text = r["article"]
        r["orig_words"] = len(text.split())  # compression is measured against the full article
        if len(ids) > max_tokens or len(capped) < len(text):
            r["article"] = tokenizer.decode(ids[:max_tokens]).strip()
            r["truncated"] = True
        else:
            r["truncated"] = False
        r["n_words"] = len(r["article"].split())


def assign_split(rows: list[dict], eval_fraction: float, min_eval: int, seed: int) -> None:
    """Article-level split (in place): no article contributes to both training and evaluation."""
    n_eval = n_eval_articles(len(rows), eval_fraction, min_eval)
    if n_eval >= len(rows):  # `require_split` says so with the source and its drop counts, earlier
        raise DataError(f"data: {len(rows)} articles kept, too few for {n_eval} evaluation articles")
    order = list(range(len(rows)))
    random.Random(seed + 1).shuffle(order)
    eval_idx = set(order[:n_eval])
    for i, r in enumerate(rows):
        r["split"] = "eval" if i in eval_idx else "train"
