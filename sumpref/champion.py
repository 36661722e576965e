"""The champion registry: which model is the current best, and every round that tried to beat it.

Lives next to the artifacts, at `{root}/champion/` (local folder or object store, through
`sumpref.storage`):

- `history/{round_id}.json`: one object per decided round (promoted or rejected), written once and
  never rewritten (append-only also on object stores, which have no append). `round_id` is
  `{date}-r{round:02d}`, so names sort by time.
- `registry.json`: the current champion and its lineage, replaced atomically after a promotion.

A round is promoted only if the 95% CI lower bound of its paired win rate against the champion
(same held-out articles, win 1, tie 0.5) is above `promote_threshold`. The champion *as of a date*
is the last promotion recorded for an earlier date, so a rerun of a night starts from the same
champion and excludes the same articles even after its first attempt recorded rounds.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from typing import Any

from sumpref import storage

REGISTRY = "registry.json"
HISTORY = "history"


def registry_uri(root: str) -> str:
    """`{root}/champion`: the one place that decides where the registry lives."""
    return storage.join(str(root), "champion")


def round_id(day: str, rnd: int) -> str:
    return f"{day}-r{rnd:02d}"


def initial_champion(model: str) -> dict:
    """The starting point before any promotion: the configured policy model, no adapter."""
    return {"id": "initial", "status": "initial", "model": model, "adapter": None, "base_model": model,
            "parent": None, "date": None, "round": 0}


def read_history(root: str) -> list[dict]:
    """Every decided round, oldest first."""
    base = storage.join(registry_uri(root), HISTORY)
    names = [n for n in storage.list_files(base) if n.endswith(".json") and "/" not in n]
    return [json.loads(storage.read_text(storage.join(base, n))) for n in sorted(names)]


def champion_as_of(history: list[dict], initial_model: str, before: str | None = None) -> dict:
    """The last promoted round dated before `before` (all rounds when None), else the initial model."""
    promoted = [e for e in history if e["status"] == "promoted" and (before is None or e["date"] < before)]
    return promoted[-1] if promoted else initial_champion(initial_model)


def used_article_ids(history: list[dict], before: str) -> list[str]:
    """Ids of every article (training and held-out) used by rounds dated before `before`."""
    ids = {a for e in history if e["date"] < before for a in (*e["articles"]["train"], *e["articles"]["eval"])}
    return sorted(ids)


def should_promote(win: dict, threshold: float) -> bool:
    """Promote only when the paired win rate's 95% CI lower bound is above `threshold`."""
    lo = win.get("ci95", (float("nan"),))[0]
    return bool(win.get("n", 0) > 0 and lo is not None and not math.isnan(lo) and lo > threshold)


def record_round(root: str, entry: dict) -> dict:
    """Record a decided round; promote it in `registry.json` if its status says so.

    Idempotent: a round already recorded (same id) is returned as recorded, never rewritten, so a
    rerun of the same night cannot change history.
    """
    if entry["status"] not in ("promoted", "rejected"):
        raise ValueError(f"round status must be 'promoted' or 'rejected', got {entry['status']!r}")
    uri = storage.join(registry_uri(root), HISTORY, f"{entry['id']}.json")
    if storage.exists(uri):
        entry = json.loads(storage.read_text(uri))
    else:
        entry = {**entry, "recorded_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        storage.write_bytes(uri, _dumps(entry))
    _sync_registry(root, entry["base_model"])
    return entry


def _sync_registry(root: str, initial_model: str) -> None:
    """Point `registry.json` at the last promotion in history (also repairs a write that a crash cut
    off between the history object and the registry)."""
    best = champion_as_of(read_history(root), initial_model)
    uri = storage.join(registry_uri(root), REGISTRY)
    if best["status"] == "promoted" and (not storage.exists(uri)
                                         or json.loads(storage.read_text(uri))["champion"]["id"] != best["id"]):
        storage.write_bytes(uri, _dumps({"champion": best}))


def current_champion(root: str, initial_model: str) -> dict:
    """The registry's champion (the initial model when nothing was ever promoted)."""
    uri = storage.join(registry_uri(root), REGISTRY)
    if not storage.exists(uri):
        return initial_champion(initial_model)
    return json.loads(storage.read_text(uri))["champion"]


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, indent=2, sort_keys=True, default=str).encode()
