"""The attack surface, checked on the source: nothing is unpickled with code execution, and every
server the documentation tells you to start listens on loopback only.

The behaviour behind these rules is tested elsewhere: malicious pickles in test_checkpoint.py and
test_registry.py, a real Prefect server on 127.0.0.1 in test_prefect_server.py, secrets kept out
of logged parameters in test_tracking.py.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGES = [REPO / "ncsn", REPO / "flows"]
UNSAFE_MODULES = {"cloudpickle", "dill", "joblib", "mlflow.pytorch", "mlflow.pyfunc", "shelve", "marshal"}
SERVER = re.compile(r"\b(mlflow (ui|server)|prefect server start|uvicorn|gunicorn|python -m http\.server)\b")


def _sources() -> list[Path]:
    return sorted(p for folder in PACKAGES for p in folder.rglob("*.py"))


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


def test_every_torch_load_is_weights_only_and_nothing_else_unpickles() -> None:
    problems, loads = [], 0
    for path in _sources():
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            where = f"{path.relative_to(REPO)}:{getattr(node, 'lineno', '?')}"
            if isinstance(node, ast.Call):
                name = _dotted(node.func)
                if name == "torch.load":
                    loads += 1
                    flag = next((k.value for k in node.keywords if k.arg == "weights_only"), None)
                    if not (isinstance(flag, ast.Constant) and flag.value is True):
                        problems.append(f"{where}: torch.load without weights_only=True")
                if name in ("pickle.load", "pickle.loads", "numpy.load", "np.load", "torch.jit.load"):
                    problems.append(f"{where}: {name}")
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                modules += [f"{node.module}.{a.name}" for a in node.names] if isinstance(node, ast.ImportFrom) else []
                problems += [f"{where}: imports {m}" for m in modules if m in UNSAFE_MODULES]
    assert loads >= 5, "the scan found no torch.load: it is not looking at the package"
    assert problems == []


def test_servers_in_the_docs_listen_on_loopback_only() -> None:
    files = [REPO / "README.md", REPO / "Makefile", REPO / "dvc.yaml", *sorted((REPO / "docs").glob("*.md")),
             *sorted((REPO / ".github").rglob("*.yml")), *_sources()]
    commands, problems = [], []
    for path in (f for f in files if f.is_file()):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            where = f"{path.relative_to(REPO)}:{number}"
            if "0.0.0.0" in line or "--host=0" in line:
                problems.append(f"{where}: {line.strip()}")
            if SERVER.search(line) and not line.lstrip().startswith(("def ", "import ", "from ")):
                commands.append(where)
                if "--host 127.0.0.1" not in line and "--host=127.0.0.1" not in line:
                    problems.append(f"{where}: server without --host 127.0.0.1: {line.strip()}")
    assert len(commands) >= 2, "no server command found: the scan is not looking at the docs"
    assert problems == []
