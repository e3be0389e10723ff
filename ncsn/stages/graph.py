"""The pipeline's graph, as DVC reads it from ``dvc.yaml`` (the one definition of the graph).

* ``stage_graph`` / ``stage_order`` -- each stage with its upstream stages, in a topological
  order, from DVC's own index (the Prefect flow runs independent stages at the same time);
  ``stage_order(repo, target)`` keeps a target stage and the stages it depends on;
* ``stage_outputs`` -- each stage's outs, metrics and plots.
"""

from __future__ import annotations

from pathlib import Path

from ncsn.config import ConfigError


def find_repo(start: Path | None = None) -> Path:
    """The root of the DVC repository holding ``start`` (default: the working directory)."""
    from dvc.repo import Repo

    return Path(Repo.find_root(str(start or Path.cwd())))


def _pipeline_stages(repo: Path) -> tuple[list, object]:
    """DVC's pipeline stages (those with a ``cmd``, from ``dvc.yaml`` files) and its graph."""
    from dvc.repo import Repo
    from dvc.stage import PipelineStage

    with Repo(str(repo)) as dvc_repo:
        graph = dvc_repo.index.graph  # edges point from a stage to the stages it depends on
        stages = [s for s in dvc_repo.index.stages if isinstance(s, PipelineStage)]
    return stages, graph


def _address(stage, repo: Path) -> str:
    """The stage's address for ``dvc repro`` run in ``repo``: ``name`` or ``sub/dvc.yaml:name``.

    (DVC's own ``stage.addressing`` is relative to the working directory instead.)
    """
    dvcfile = Path(stage.path).relative_to(repo.resolve())
    return stage.name if dvcfile == Path("dvc.yaml") else f"{dvcfile.as_posix()}:{stage.name}"


def stage_graph(repo: Path) -> dict[str, list[str]]:
    """Every pipeline stage with the stages it depends on directly, in ``stage_order``.

    The graph is DVC's (``Repo.index.graph``, after ``${...}`` interpolation); ties are broken
    by the order of the stages in ``dvc.yaml``, so the result is deterministic.

    :returns: ``{stage: [its upstream stages]}``, addresses as ``dvc repro`` takes them.
    """
    import networkx as nx

    stages, graph = _pipeline_stages(repo)
    position = {stage: i for i, stage in enumerate(stages)}  # pipeline stages only
    upstream_first = graph.reverse(copy=True)  # DVC's edges point from a stage to its deps
    ordered = nx.lexicographical_topological_sort(upstream_first, key=lambda s: position.get(s, -1))
    return {_address(s, repo): [_address(u, repo) for u in sorted(graph.successors(s), key=position.get)
                                if u in position]
            for s in ordered if s in position}


def stage_order(repo: Path, target: str | None = None) -> list[str]:
    """The pipeline's stages in an order where every stage follows the stages it depends on; with
    ``target``, only that stage and the stages it depends on (as ``dvc repro TARGET`` runs them).

    :raises ConfigError: when ``target`` is no stage of the pipeline.
    """
    graph = stage_graph(repo)
    if target is None:
        return list(graph)
    if target not in graph:
        raise ConfigError(f"no stage {target!r} in dvc.yaml; the stages: {', '.join(graph)}.")
    needed, todo = set(), [target]
    while todo:
        stage = todo.pop()
        if stage not in needed:
            needed.add(stage)
            todo.extend(graph[stage])
    return [stage for stage in graph if stage in needed]


def stage_outputs(repo: Path) -> dict[str, list[str]]:
    """``{stage: [its outs, metrics and plots as written in dvc.yaml, interpolated]}``."""
    stages, _ = _pipeline_stages(repo)
    return {_address(s, repo): [out.def_path for out in s.outs] for s in stages}
