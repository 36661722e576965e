"""A tiny shard worker for the store tests: doubles `x`, records which code ran it (Ray actors
import it by module name, so it lives in a module, not in a test script)."""

from __future__ import annotations

import os
import time

from sumpref.backends.base import BackendStats


class Doubler:
    def __init__(self, delay_s: float = 0.0):
        self.delay_s = delay_s

    def load(self) -> None:
        pass

    def run(self, rows: list[dict]) -> tuple[list[dict], BackendStats]:
        import sumpref

        time.sleep(self.delay_s)  # slow enough for a kill to land between shards
        return [{"x": r["x"], "y": 2 * r["x"], "code": os.path.dirname(sumpref.__file__)} for r in rows], BackendStats()


class Failing(Doubler):
    """Every shard fails (for the actor pool's failure test)."""

    def run(self, rows: list[dict]) -> tuple[list[dict], BackendStats]:
        raise RuntimeError("shard failed on purpose")
