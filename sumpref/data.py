"""Load CNN/DailyMail-style articles: hub dataset or local JSONL/Parquet.

Columns in (configurable names): `id`, `article`, optional `highlights`.
Columns out (`articles.parquet`): `id, article, highlights, split ("train"|"eval"), truncated,
n_words, orig_words, source`. Every row that is not kept is recorded in `drops.parquet` with its reason
(`invalid_utf8`, `invalid_json`, `missing_article`, `empty_article`, `too_short`,
`duplicate_id`, `duplicate_text`, `format_filtered`); counts per reason go into stage metadata.
A source that cannot be used at all (missing file, no article column) is an error raised before
any work starts, naming the file and the column.
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
    """The data source cannot be used; the message names the file, row or column."""


@dataclass
class LoadResult:
    rows: list[dict]
    drops: list[dict] = field(default_factory=list)

    def drop_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for d in self.drops:
            counts[d["reason"]] = counts.get(d["reason"], 0) + 1
        return dict(sorted(counts.items()))


def local_files(source: str) -> list[Path] | None:
    """The local files `source` names (file, directory or glob), or None if it is not local."""
    p = Path(source)
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.suffix in (".jsonl", ".json", ".parquet"))
    elif any(ch in source for ch in "*?["):
        files = sorted(Path(f) for f in glob.glob(source))
    elif p.exists():
        files = [p]
    elif p.suffix in (".jsonl", ".json", ".parquet") or source.startswith((".", "/")):
        raise DataError(f"data.source: local file {source!r} does not exist")
    else:
        return None
    if not files:
        raise DataError(f"data.source: {source!r} matches no .jsonl/.parquet files")
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
    """Read, validate, shuffle (seeded), dedup and subset articles; no truncation or split yet."""
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
    return LoadResult(rows=kept, drops=drops)


def truncate_articles(rows: list[dict], tokenizer, max_tokens: int) -> None:
    """Cut articles longer than `max_tokens` tokens (in place); flag them `truncated`."""
    for r in rows:
        text = r["article"]
        r["orig_words"] = len(text.split())  # compression is measured against the full article
        # A cheap character cap first, so a pathological 200k-character row costs no more to
        # tokenize than a normal one (no tokenizer packs more than ~12 chars per token here).
        capped = text[: max_tokens * 12]
        ids = tokenizer(capped, add_special_tokens=False)["input_ids"]
        if len(ids) > max_tokens or len(capped) < len(text):
            r["article"] = tokenizer.decode(ids[:max_tokens]).strip()
            r["truncated"] = True
        else:
            r["truncated"] = False
        r["n_words"] = len(r["article"].split())


def assign_split(rows: list[dict], eval_fraction: float, min_eval: int, seed: int) -> None:
    """Article-level split (in place): no article contributes to both training and evaluation."""
    n_eval = max(min_eval, round(eval_fraction * len(rows)))
    if n_eval >= len(rows):
        raise DataError(f"data: {len(rows)} articles kept, too few for {n_eval} evaluation articles")
    order = list(range(len(rows)))
    random.Random(seed + 1).shuffle(order)
    eval_idx = set(order[:n_eval])
    for i, r in enumerate(rows):
        r["split"] = "eval" if i in eval_idx else "train"
