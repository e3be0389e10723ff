"""``params.yaml`` composed from ``ncsn/conf`` with ``-S key=value`` overrides, as ``dvc exp run -S``
does (DVC's Hydra helper), validated before anything runs; and put back afterwards on request.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Sequence

import yaml

from ncsn.config import ConfigError, load_config
from ncsn.config.loading import read_params

if TYPE_CHECKING:
    from ncsn.config import Config

PARAMS = "params.yaml"  # DVC's default params file, the one dvc.yaml's `params:` refer to


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
    :raises ConfigError: for a ``params.yaml`` that is not valid YAML (before anything is written),
        a bad override or a bad resulting value; params.yaml is then restored byte for byte.
    """
    from dvc.utils.cli_parse import to_path_overrides

    from ncsn.config.composition import write_params

    by_file = to_path_overrides(list(overrides)) if overrides else {PARAMS: []}
    others = sorted(f for f in by_file if f != PARAMS)
    if others:
        raise ConfigError(f"{PARAMS}: overrides may only target {PARAMS}, not {', '.join(others)}.")
    path = repo / PARAMS
    original = path.read_bytes() if path.is_file() else None
    # A file the user broke by hand is theirs to fix: say where, and leave it as it is.
    old_values = read_params(path) if original is not None else None
    try:
        write_params(path, by_file[PARAMS], conf_dir(repo))
        if original is not None and yaml.safe_load(path.read_bytes()) == old_values:
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
