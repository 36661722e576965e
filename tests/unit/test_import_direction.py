"""The library never imports Prefect (nor the task/flow layers): a guard over the source and a
fresh interpreter importing every library module."""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = ("prefect", "tasks", "flows", "deployments")


def test_no_forbidden_imports_in_source():
    offenders = []
    for path in (ROOT / "sumpref").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            offenders += [f"{path.relative_to(ROOT)}: {n}" for n in names if n.split(".")[0] in FORBIDDEN]
    assert offenders == []


def test_importing_the_library_loads_no_prefect():
    modules = sorted(".".join(p.relative_to(ROOT).with_suffix("").parts) for p in (ROOT / "sumpref").rglob("*.py"))
    modules = [m.removesuffix(".__init__") for m in modules]
    code = "import importlib, sys\n" + "".join(f"importlib.import_module({m!r})\n" for m in modules) + \
        "print([m for m in sys.modules if m.split('.')[0] in ('prefect', 'tasks', 'flows')])"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_the_wing_packages_import_nothing():
    """`sumpref.judging` and `sumpref.evaluation` are namespaces with a docstring: configs import one
    light module of a wing (`evaluation.baselines` for its spec pattern), never the whole wing."""
    code = ("import sys, sumpref.judging, sumpref.evaluation; "
            "print(sorted(m for m in sys.modules if m.startswith(('sumpref.judging.', 'sumpref.evaluation.'))))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"
