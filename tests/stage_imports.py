"""The ncsn modules a stage's command runs, read from the code: every ``import`` of every module
it reaches (function-level imports too), transitively from ``ncsn/stages/<stage>.py``.

MLflow tracking (``ncsn/tracking``) and the command line (``ncsn/cli.py``) write no stage output,
so the walk stops there: ``dvc.yaml`` leaves them out of every stage's deps.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "ncsn"
NOT_DEPS = ("ncsn/tracking", "ncsn/cli.py", "ncsn/api.py", "ncsn/__main__.py")


def module_file(dotted: str) -> Path | None:
    """``ncsn.a.b`` → ``ncsn/a/b.py`` or ``ncsn/a/b/__init__.py``; None for a name that is no module."""
    path = REPO.joinpath(*dotted.split("."))
    if path.with_suffix(".py").is_file():
        return path.with_suffix(".py")
    if (path / "__init__.py").is_file():
        return path / "__init__.py"
    return None


def _imported(path: Path) -> set[str]:
    """Dotted names of the ncsn modules that ``path`` imports (a package's __init__ with each of its modules)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names if alias.name.split(".")[0] == "ncsn"}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "ncsn":
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    found = set()
    for name in names:
        parts = name.split(".")
        for k in range(2, len(parts) + 1):  # every package on the way is imported too
            if module_file(".".join(parts[:k])) is not None:
                found.add(".".join(parts[:k]))
    return found


def relative(path: Path) -> str:
    return path.relative_to(REPO).as_posix()


def stage_code(stage: str) -> set[str]:
    """Repository-relative paths of the ncsn files that ``ncsn <stage>`` can run, tracking and CLI left out."""
    todo, seen = [f"ncsn.stages.{stage}"], set()
    while todo:
        name = todo.pop()
        path = module_file(name)
        if name in seen or path is None or relative(path).startswith(NOT_DEPS):
            continue
        seen.add(name)
        todo.extend(_imported(path))
    return {relative(module_file(name)) for name in seen} - {"ncsn/__init__.py"}


def expand(dep: str) -> set[str]:
    """The Python files a ``dvc.yaml`` dep names: itself, or every .py under a folder."""
    path = REPO / dep
    if path.is_dir():
        return {relative(p) for p in path.rglob("*.py")}
    return {dep} if dep.endswith(".py") else set()


LIBRARY = ("ncsn/core", "ncsn/models", "ncsn/data", "ncsn/config", "ncsn/storage")


def suggested_deps(files: set[str]) -> list[str]:
    """``files`` as dvc.yaml deps: the library's folders (:data:`LIBRARY`) whole where any file of
    them is needed, any other folder of ncsn/ whole where all of it is needed, else the files."""
    out: set[str] = set()
    for folder in sorted(p for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()):
        inside = expand(relative(folder))
        needed = files & inside
        if needed and (relative(folder) in LIBRARY or needed == inside):
            out.add(relative(folder))
        else:
            out |= needed
    out |= {f for f in files if f.count("/") == 1}
    return sorted(out)


def rewrite_dvc_yaml() -> None:
    """Replace the ncsn/ code deps of every stage in dvc.yaml with :func:`suggested_deps` (data deps kept)."""
    import re

    path = REPO / "dvc.yaml"
    out, stage, in_deps, written = [], None, False, False
    for line in path.read_text().split("\n"):
        match = re.match(r"^  (\w+):$", line)
        if match:
            stage, in_deps = match.group(1), False
        if line.strip() == "deps:":
            in_deps, written = True, False
        elif in_deps and line.startswith("      - ") and line[8:].startswith("ncsn/"):
            if not written:
                out += [f"      - {dep}" for dep in suggested_deps(stage_code(stage))]
                written = True
            continue
        elif in_deps and not line.startswith("      - "):
            in_deps = False
        out.append(line)
    path.write_text("\n".join(out))


if __name__ == "__main__":  # python -m tests.stage_imports: bring dvc.yaml's code deps up to date
    rewrite_dvc_yaml()
