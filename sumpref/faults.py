"""Fault injection for the resume tests: SIGKILL this process group at a named point of a stage.

`SUMPREF_KILL_AT=<stage>:<event>[:<n>]` kills the process group (this process, and the local Ray
processes it started) at the n-th (default: first) `<event>` inside stage `<stage>`:

- `file`: a data file was written through `artifacts` (a shard, a table, a report);
- `produced`: the stage wrote all its data, but not yet `meta.json` or `_SUCCESS`;
- `checkpoint`: a training checkpoint is complete.

The kill is a real SIGKILL at a point chosen by the test, so every stage, even one that takes
milliseconds, is interrupted where it matters. Unset (every real run), a check is one lookup.
"""

from __future__ import annotations

import contextvars
import os
import signal
import sys
from contextlib import contextmanager
from typing import Iterator

ENV = "SUMPREF_KILL_AT"

_stage: contextvars.ContextVar[str | None] = contextvars.ContextVar("sumpref_stage", default=None)
_seen: dict[tuple[str, str], int] = {}


@contextmanager
def in_stage(stage: str) -> Iterator[None]:
    """Mark the code inside as belonging to `stage` (for `point`)."""
    token = _stage.set(stage)
    try:
        yield
    finally:
        _stage.reset(token)


def point(event: str) -> None:
    """Kill the process group here if `$SUMPREF_KILL_AT` names this stage, event and count."""
    spec = os.environ.get(ENV)
    stage = _stage.get()
    if not spec or stage is None:
        return
    want_stage, want_event, *n = spec.split(":")
    if (stage, event) != (want_stage, want_event):
        return
    _seen[stage, event] = _seen.get((stage, event), 0) + 1
    if _seen[stage, event] >= int(n[0] if n else 1):
        print(f"sumpref.faults: SIGKILL at {spec}", file=sys.stderr, flush=True)
        sys.stdout.flush()
        os.killpg(os.getpgrp(), signal.SIGKILL)
