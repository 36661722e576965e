import os
import socket
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED_DATA / "cnndm_cliff.jsonl").exists():
        pytest.fail(f"the offline CNN/DM files are expected at {SHARED_DATA}")
    return SHARED_DATA


def pytest_collection_modifyitems(config, items):
    try:
        import torch

        cuda = torch.cuda.is_available()
    except ImportError:
        cuda = False
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU (run through the device tool)")
    for item in items:
        if "gpu" in item.keywords and not cuda:
            item.add_marker(skip_gpu)


os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# OpenMP threads that wait spin by default (GNU OpenMP, torch's CPU build). With two pytest-xdist
# workers on two cores, each running torch in its processes, the spinning burns the core the other
# worker computes on: two tiny pipelines at once took 192 busy core-seconds instead of 102, their
# training 5x slower (benchmarks/concurrent_runs.py, benchmarks/RESULTS.md). Set before anything
# loads OpenMP; subprocesses and Ray workers inherit it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# Under pytest-xdist each worker starts its own local Ray clusters: a Ray temp folder per worker keeps
# their sessions (and the address file `ray start` leaves there) apart. Short: Ray's socket paths
# must fit 107 bytes.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("RAY_TMPDIR", os.path.join(tempfile.gettempdir(), f"ray-{os.environ['PYTEST_XDIST_WORKER']}"))
