"""Run the DVC pipeline stage by stage: the runner behind ``ncsn pipeline`` and the Prefect flow.

``dvc.yaml`` is the one definition of the graph; this module only asks DVC for it:

* ``stage_graph`` / ``stage_order`` -- each stage with its upstream stages, in a topological
  order, from DVC's own index (the Prefect flow runs independent stages at the same time);
* ``apply_overrides`` -- ``params.yaml`` composed from ``ncsn/conf`` with ``-S key=value``
  overrides, as ``dvc exp run -S`` does (DVC's Hydra helper), validated before anything runs;
* ``repro_stage`` -- ``dvc repro --single-item STAGE`` in a subprocess, output streamed.

One ``dvc repro`` per stage, inside one MLflow parent run (``ncsn.tracking.runs.pipeline_run``),
makes each stage's MLflow run a child of that parent.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Sequence

import yaml

from ncsn.config import ConfigError, load_config

if TYPE_CHECKING:
    from ncsn.config import Config

PARAMS = "params.yaml"  # DVC's default params file, the one dvc.yaml's `params:` refer to

_STATUS = re.compile(r"exited with (-?\d+)")  # DVC's StageCmdFailedError message
_LOCKED = "Unable to acquire lock"  # DVC's LockError: another dvc process holds the repo
# A stage command killed by one of these was most likely stopped from outside (the OOM
# killer, a preempted machine): running it again may succeed. Seen as -N or as 128 + N.
_KILLED = {int(signal.SIGKILL), int(signal.SIGTERM)}
STOP_GRACE_S = 60.0  # how long an interrupted stage may take to end its run and exit


class StageFailed(RuntimeError):
    """``dvc repro`` of one stage failed.

    :param stage: the stage's name (its DVC address).
    :param returncode: the exit code of ``dvc repro``.
    :param status: the exit status of the stage's command when DVC reports one, else None.
    :param tail: the last lines of the output.
    """

    def __init__(self, stage: str, returncode: int, status: int | None = None, tail: Sequence[str] = ()):
        self.stage, self.returncode, self.status, self.tail = stage, returncode, status, list(tail)
        detail = f"; its command exited with {status}" if status is not None else ""
        super().__init__(f"stage '{stage}' failed: dvc repro exited with {returncode}{detail}")

    def __reduce__(self):  # pickled in Prefect states: rebuild from the fields, not the message
        return type(self), (self.stage, self.returncode, self.status, self.tail)

    @property
    def transient(self) -> bool:
        """Whether running the stage again may succeed: killed from outside, or the repo was locked.

        A user error (``ncsn`` exits with 2) or a crash (exit 1) fails the same way again.
        """
        if self.status is not None:
            return -self.status in _KILLED or self.status - 128 in _KILLED
        return any(_LOCKED in line for line in self.tail)


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


def stage_order(repo: Path) -> list[str]:
    """The pipeline's stages in an order where every stage follows the stages it depends on."""
    return list(stage_graph(repo))


def stage_outputs(repo: Path) -> dict[str, list[str]]:
    """``{stage: [its outs, metrics and plots as written in dvc.yaml, interpolated]}``."""
    stages, _ = _pipeline_stages(repo)
    return {_address(s, repo): [out.def_path for out in s.outs] for s in stages}


def conf_dir(repo: Path) -> Path:
    """The Hydra config folder of ``repo`` (``ncsn/conf``, as ``.dvc/config`` names it), else the package's."""
    from ncsn.config.composition import CONF_DIR

    return repo / "ncsn" / "conf" if (repo / "ncsn" / "conf" / "config.yaml").is_file() else CONF_DIR


def apply_overrides(repo: Path, overrides: Sequence[str]) -> Config:
    """Write ``params.yaml`` as the composition of ``ncsn/conf`` with ``overrides``, and validate it.

    Exactly what ``dvc exp run -S`` does with ``hydra.enabled`` (DVC's ``compose_and_dump``):
    ``profile=smoke``, ``dataset=fashion_mnist``, ``sigma=ncsnv2``, ``train.lr=5e-4``,
    ``inpaint.masks=[center]``, ``params.yaml:train.lr=5e-4``. ``params.yaml`` then holds the
    effective value of every key. The file is rewritten only when a value changes.

    :returns: the validated configuration.
    :raises ConfigError: for a bad override or a bad resulting value; params.yaml is then
        restored byte for byte.
    """
    from dvc.utils.cli_parse import to_path_overrides

    from ncsn.config.composition import write_params

    by_file = to_path_overrides(list(overrides)) if overrides else {PARAMS: []}
    others = sorted(f for f in by_file if f != PARAMS)
    if others:
        raise ConfigError(f"{PARAMS}: overrides may only target {PARAMS}, not {', '.join(others)}.")
    path = repo / PARAMS
    original = path.read_bytes() if path.is_file() else None
    try:
        write_params(path, by_file[PARAMS], conf_dir(repo))
        if original is not None and yaml.safe_load(path.read_bytes()) == yaml.safe_load(original):
            path.write_bytes(original)  # same values: keep the file as it was
        return load_config(path)
    except BaseException:
        if original is not None:
            path.write_bytes(original)
        raise


@contextlib.contextmanager
def params_restored(repo: Path, restore: bool = True) -> Iterator[None]:
    """On exit, put ``params.yaml`` back as it was on entry (when ``restore``)."""
    path = repo / PARAMS
    original = path.read_bytes()
    try:
        yield
    finally:
        if restore and path.read_bytes() != original:
            path.write_bytes(original)


def _stage_env() -> dict[str, str]:
    """The environment of a stage: this interpreter's bin dir first on PATH (the ``ncsn`` script)."""
    bin_dir = str(Path(sys.executable).parent)  # not resolved: a venv's python is a symlink
    path = os.pathsep.join(p for p in (bin_dir, os.environ.get("PATH", "")) if p)
    return {**os.environ, "PATH": path, "PYTHONUNBUFFERED": "1"}


def repro_stage(repo: Path, stage: str, *, wait_for_lock: bool = False) -> None:
    """Run ``dvc repro --single-item STAGE`` in ``repo``, streaming its output to stdout.

    DVC skips the stage when its deps, params and outs are unchanged. It holds the repository
    lock only to check, save and commit the stage, not while its command runs; ``wait_for_lock``
    (``dvc --wait-for-lock``) waits for a lock held by another ``dvc`` instead of failing after 3 s.

    :raises StageFailed: with the stage, dvc's exit code and the command's exit status.
    """
    lock = ["--wait-for-lock"] if wait_for_lock else []
    cmd = [sys.executable, "-m", "dvc", *lock, "repro", "--single-item", stage]
    tail: collections.deque[str] = collections.deque(maxlen=40)
    # Its own process group: Ctrl-C or SIGTERM reach this process only, which then stops the stage
    # (SIGINT to the group: DVC waits for its command, which ends its MLflow run KILLED) and waits for it.
    with subprocess.Popen(cmd, cwd=repo, env=_stage_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, bufsize=1, start_new_session=True) as proc:
        assert proc.stdout is not None
        try:
            for line in proc.stdout:
                print(line, end="", flush=True)
                tail.append(line.rstrip("\n"))
            returncode = proc.wait()
        except BaseException:
            _stop_group(proc)
            raise
    if returncode != 0:
        statuses = [int(m.group(1)) for line in tail for m in _STATUS.finditer(line)]
        raise StageFailed(stage, returncode, statuses[-1] if statuses else None, tail)


def _stop_group(proc: subprocess.Popen, grace_s: float = STOP_GRACE_S) -> None:
    """SIGINT the process group of ``proc`` and wait up to ``grace_s`` for it; then SIGKILL it."""
    for sig, wait_s in ((signal.SIGINT, grace_s), (signal.SIGKILL, 10.0)):
        if proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=wait_s)


def _absolute_paths(cfg: Config, repo: Path) -> Config:
    """``cfg`` with its relative ``paths`` made absolute under ``repo`` (the stages run there)."""
    paths = {k: v if Path(v).is_absolute() else str(repo / v)
             for k, v in dataclasses.asdict(cfg.paths).items()}
    return dataclasses.replace(cfg, paths=type(cfg.paths)(**paths))


def parent_run(cfg: Config, repo: Path) -> contextlib.AbstractContextManager:
    """The MLflow parent run of one pipeline execution (``ncsn.tracking.runs.pipeline_run``).

    It exports ``NCSN_MLFLOW_PARENT_RUN_ID`` so each stage's run nests under it.
    """
    from ncsn.tracking.runs import pipeline_run

    return pipeline_run(_absolute_paths(cfg, repo), repo)


def metrics_report(repo: Path) -> str:
    """The output of ``dvc metrics show`` (an error line if it fails)."""
    cmd = [sys.executable, "-m", "dvc", "metrics", "show"]
    result = subprocess.run(cmd, cwd=repo, env=_stage_env(), capture_output=True, text=True)
    return result.stdout if result.returncode == 0 else f"(dvc metrics show failed: {result.stderr.strip()})\n"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``ncsn pipeline``."""
    parser.add_argument("-S", "--set-param", dest="overrides", action="append", default=[],
                        metavar="KEY=VALUE",
                        help="override a value in params.yaml, as `dvc exp run -S` (repeatable), "
                             "e.g. -S profile=smoke -S train.lr=5e-4")
    parser.add_argument("--restore-params", action="store_true",
                        help="put params.yaml back as it was once the run ends")
    parser.add_argument("--require-tracking", action="store_true",
                        help="exit with 2 when the tracking server cannot be reached, instead of tracking"
                             " into the local store (outputs/mlflow) for a later `ncsn tracking sync`")
    parser.add_argument("--no-wait", action="store_true",
                        help="exit with 2 when another ncsn pipeline runs in this repository, instead of"
                             " waiting for it")


def run(args: argparse.Namespace) -> int:
    """Run the whole pipeline. Exit code 0: done, 1: a stage failed, 2: a user error."""
    from dvc.exceptions import DvcException

    from ncsn.stages.repo_lock import PipelineBusy, pipeline_lock

    try:
        repo = find_repo()
        with pipeline_lock(repo, wait=not args.no_wait, say=lambda line: print(line, flush=True)):
            with params_restored(repo, restore=args.restore_params):
                cfg = apply_overrides(repo, args.overrides)
                stages = stage_order(repo)
                print(f"ncsn pipeline: stages {' -> '.join(stages)} (profile {cfg.profile})", flush=True)
                if (refused := _tracking_refused(cfg, repo, args.require_tracking)) is not None:
                    print(refused, file=sys.stderr)
                    return 2
                with parent_run(cfg, repo) as tracker:
                    for stage in stages:
                        _before_stage(tracker)
                        print(f"ncsn pipeline: running stage '{stage}'", flush=True)
                        repro_stage(repo, stage)
                print(metrics_report(repo), end="")
                print("Outputs:")
                for stage, outs in stage_outputs(repo).items():
                    print(f"  {stage}: {', '.join(outs)}")
                print(f"ncsn pipeline: done; {_tracking_summary(cfg, repo)}", flush=True)
    except PipelineBusy as err:
        print(f"ncsn pipeline: {err}", file=sys.stderr)
        return 2
    except (ConfigError, DvcException) as err:
        print(f"ncsn pipeline: error: {err}", file=sys.stderr)
        return 2
    except StageFailed as err:
        print(f"ncsn pipeline: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as err:  # Ctrl-C, or SIGTERM (ncsn.cli.Terminated)
        print("ncsn pipeline: interrupted", file=sys.stderr)
        return getattr(err, "exit_code", 130)
    return 0


def _tracking_refused(cfg: Config, repo: Path, required: bool) -> str | None:
    """Preflight of the tracking store (``ncsn.tracking.runs.preflight``), and runs left RUNNING by
    dead processes closed; the line to exit with when the server is required and cannot be reached."""
    if not cfg.tracking.enabled:
        return None
    from ncsn.tracking.runs import close_orphan_runs, preflight

    cfg = _absolute_paths(cfg, repo)
    uri, reason = preflight(cfg)
    if reason is not None and required:
        return f"ncsn pipeline: error: tracking server {uri} unavailable ({reason}); not running (--require-tracking)"
    close_orphan_runs(cfg, server_up=reason is None)
    return None


def _before_stage(tracker) -> None:
    from ncsn.tracking.runs import before_stage

    before_stage(tracker)


def _tracking_summary(cfg: Config, repo: Path) -> str:
    """Where the runs went, and how many local runs wait for ``ncsn tracking sync``."""
    if not cfg.tracking.enabled:
        return "tracking off"
    from ncsn.tracking.runs import tracking_uri
    from ncsn.tracking.sync import waiting_runs

    cfg = _absolute_paths(cfg, repo)
    waiting = waiting_runs(cfg)
    line = f"runs tracked in {tracking_uri(cfg)}"
    return line + (f"; {waiting} run(s) in the local store wait for `ncsn tracking sync`" if waiting else "")


def main(argv: Sequence[str] | None = None) -> int:
    """``ncsn pipeline [-S KEY=VALUE ...] [--restore-params]``."""
    parser = argparse.ArgumentParser(prog="ncsn pipeline", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
