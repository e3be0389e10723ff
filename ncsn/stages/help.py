"""What ``ncsn <stage> --help`` says about a stage: what it reads and writes, and where its parameters live.

The reads, writes and parameter sections come from the stage's entry in ``dvc.yaml`` (the one
definition of the pipeline graph), with ``${paths.x}`` filled in from ``params.yaml``; outside a
checkout that has them, the help says where to look instead.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

_PATH = re.compile(r"\$\{paths\.(\w+)\}")


def _name(entry: Any) -> str:
    """A dvc.yaml deps/outs item: a path, or ``{path: options}``."""
    return next(iter(entry)) if isinstance(entry, dict) else str(entry)


def stage_epilog(stage: str, dvc_file: str | Path = "dvc.yaml", params_file: str | Path = "params.yaml") -> str:
    """The text after a stage's options in ``--help``."""
    override = ("To change them: edit params.yaml, or override one run with `ncsn pipeline -S KEY=VALUE` "
                "(as `dvc exp run -S`), e.g. -S profile=smoke -S train.n_iters=200; "
                "`ncsn --params FILE " + stage + "` reads another file.")
    try:
        spec = yaml.safe_load(Path(dvc_file).read_text())["stages"][stage]
        params = yaml.safe_load(Path(params_file).read_text()) or {}
        paths = params.get("paths", {})
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        return f"Reads, writes and parameters: see the '{stage}' stage of dvc.yaml.\n{override}"

    def filled(entry: Any) -> str:
        return _PATH.sub(lambda m: str(paths.get(m.group(1), m.group(0))), _name(entry))

    reads = [filled(d) for d in spec.get("deps", []) if not filled(d).startswith("ncsn/")]
    writes = [filled(o) for kind in ("outs", "metrics", "plots") for o in spec.get(kind, [])]
    sections = [_name(p) + (".*" if isinstance(params.get(_name(p)), dict) else "") for p in spec.get("params", [])]
    lines = [f"Reads: {', '.join(reads) or 'nothing but its parameters'}",
             f"Writes: {', '.join(writes)}",
             f"Parameters: {', '.join(sections)} in params.yaml.", override]
    return "\n".join(lines)
