"""The one cache key of a stage, and the stage spec that carries it.

A stage's output lives at `{root}/{stage}/{key}/`; `key` is sha256 over sorted JSON of exactly
what decides that output (`artifacts.stage_key`):

- the stage's config slice,
- the content fingerprints of its upstream artifacts,
- its code version: a hash over the source of every `sumpref` module in the import closure of
  the stage's module, computed here by reading `import` / `from ... import` statements
  (function-level ones included) and string literals naming a `sumpref` module (the backend
  table imports its entries by name). Parent packages imported only implicitly do not count.

Both the library (`StageSpec.run`) and the Prefect tasks (`StageSpec.finished`) use this key, so
there is one cache: editing any module a stage runs gives that stage a new key, and its new
output gives every downstream stage new upstream fingerprints, hence new keys.
"""

from __future__ import annotations

import ast
import functools
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from sumpref import storage
from sumpref.artifacts import SUCCESS, ArtifactRef, load_ref, run_stage, stage_key

PACKAGE = "sumpref"


@functools.lru_cache(maxsize=None)
def _module_file(name: str) -> Path | None:
    """The source file of `sumpref` module `name` (found on disk, nothing imported), or None when
    `name` is not a module (a function, a class)."""
    parts = name.split(".")
    if parts[0] != PACKAGE:
        return None
    base = Path(__file__).resolve().parent.joinpath(*parts[1:])
    for f in (base / "__init__.py", base.with_suffix(".py")):
        if f.is_file():
            return f
    return None


@functools.lru_cache(maxsize=None)
def _module_source(name: str) -> str:
    """Source text of a `sumpref` module, read once per process: a process runs the code it
    imported, so a file edited while it runs must not change its keys (tests replace this)."""
    return _module_file(name).read_text()


def _is_module(name: str) -> bool:
    return (name == PACKAGE or name.startswith(PACKAGE + ".")) and _module_file(name) is not None


def _resolve(module: str | None, level: int, current: str) -> str | None:
    """Absolute module name of a (possibly relative) `from` import."""
    if level == 0:
        return module
    is_pkg = _module_file(current) is not None and _module_file(current).name == "__init__.py"
    base = current.split(".") if is_pkg else current.split(".")[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def direct_imports(name: str) -> set[str]:
    """The `sumpref` modules that module `name` imports, anywhere in its body."""
    return set(_imports_in(name, _module_source(name)))


@functools.lru_cache(maxsize=None)
def _imports_in(name: str, source: str) -> frozenset[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(node.module, node.level, name)
            if base:
                found.add(base)
                found.update(f"{base}.{a.name}" for a in node.names)  # `from pkg import submodule`
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith(PACKAGE + "."):
            found.add(node.value)
    return frozenset(m for m in found if _is_module(m))


def import_closure(roots: tuple[str, ...]) -> list[str]:
    """Every `sumpref` module reachable from `roots` through imports, sorted."""
    seen: set[str] = set()
    todo = [r for r in roots if _is_module(r)]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(direct_imports(name) - seen)
    return sorted(seen)


def code_version(roots: tuple[str, ...]) -> str:
    """sha256 over the names and sources of the import closure of `roots`."""
    h = hashlib.sha256()
    for name in import_closure(roots):
        h.update(name.encode() + b"\0" + _module_source(name).encode() + b"\0")
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class StageSpec:
    """One stage's inputs: where it writes, what decides its output, and how to produce it.

    `module` is the stage's own module (the root of its import closure); `produce(out_dir)` writes
    the data files and returns `{"rows": int, ...counts}` (see `artifacts.run_stage`).
    """

    root: str
    stage: str
    config: Any
    upstream: list[ArtifactRef] = field(default_factory=list)
    module: str = ""
    produce: Callable[[Path], dict] | None = field(default=None, compare=False, repr=False)

    @functools.cached_property
    def code(self) -> str:
        return code_version((self.module,))

    @functools.cached_property
    def key(self) -> str:
        return stage_key(self.stage, self.config, self.upstream, self.code, self.root)

    @property
    def uri(self) -> str:
        return storage.join(storage.normalise(self.root), self.stage, self.key)

    def finished(self) -> ArtifactRef | None:
        """The finished artifact for exactly these inputs, if the store holds it."""
        uri = self.uri
        return load_ref(uri) if storage.exists(storage.join(uri, SUCCESS)) else None

    def run(self) -> ArtifactRef:
        """The finished artifact, produced now if missing (a killed attempt's files are reused)."""
        return run_stage(self.root, self.stage, self.config, self.upstream, self.code, self.produce)
