"""The layers hold: core/ imports nothing of ncsn outside itself, the networks read no config, and
every stage of dvc.yaml depends on exactly the code its command runs (tracking and the CLI left out)."""

from __future__ import annotations

import ast
import subprocess
import sys

import pytest
import yaml

from tests.stage_imports import NOT_DEPS, PACKAGE, REPO, expand, relative, stage_code, suggested_deps

STAGE_NAMES = list(yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"])


def _ncsn_imports(folder: str) -> dict[str, set[str]]:
    """Per file under ``ncsn/<folder>``: the ncsn modules it imports (any level of the file)."""
    out = {}
    for path in sorted((PACKAGE / folder).rglob("*.py")):
        names = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names |= {a.name for a in node.names if a.name.split(".")[0] == "ncsn"}
            elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "ncsn":
                names.add(node.module)
        out[relative(path)] = names
    return out


def test_core_imports_nothing_of_ncsn_outside_core() -> None:
    leaks = {path: sorted(n for n in names if not n.startswith("ncsn.core"))
             for path, names in _ncsn_imports("core").items()}
    assert not {path: names for path, names in leaks.items() if names}


def test_importing_core_loads_no_other_ncsn_module() -> None:
    code = ("import sys, ncsn.core.sampling, ncsn.core.inpaint, ncsn.core.losses.weighting, ncsn.core.precond, "
            "ncsn.core.sigmas, ncsn.core.toy, ncsn.core.masks; "
            "print(sorted(m for m in sys.modules if m.startswith('ncsn') and not m.startswith('ncsn.core')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['ncsn']"


def test_networks_read_no_config() -> None:
    allowed = ("ncsn.core", "ncsn.models")
    leaks = {path: sorted(n for n in names if not n.startswith(allowed))
             for path, names in _ncsn_imports("models").items()}
    assert not {path: names for path, names in leaks.items() if names}


@pytest.mark.parametrize("stage", STAGE_NAMES)
def test_stage_deps_are_the_code_its_command_runs(stage: str) -> None:
    deps = [d for d in yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"][stage]["deps"]
            if isinstance(d, str) and d.startswith("ncsn/")]
    covered = set().union(*(expand(d) for d in deps))
    needed = stage_code(stage)
    hint = f"; dvc.yaml's {stage} deps should read: {suggested_deps(needed)}"
    assert not needed - covered, f"missing from deps: {sorted(needed - covered)}{hint}"
    assert not [d for d in deps if not expand(d) & needed], f"deps that the stage does not run{hint}"
    assert not [d for d in deps if d.startswith(NOT_DEPS)], f"tracking or CLI code in deps{hint}"
