"""Hydra composition of ``ncsn/conf`` into the effective parameters (DVC's ``hydra.enabled``).

``ncsn/conf/config.yaml`` holds the shared values and a defaults list: a ``profile``
(smoke | cpu | paper), a ``dataset``, the values that go with that pair
(``profile_dataset/<profile>_<dataset>.yaml``, optional) and an optional ``sigma`` policy.
``dvc exp run -S KEY=VALUE``, ``ncsn pipeline -S KEY=VALUE`` and the Prefect flow all
write the composition to ``params.yaml`` through DVC's own ``compose_and_dump``, so
``params.yaml`` always holds the effective value of every key and DVC sees every change.

:func:`shared_values` reads ``config.yaml`` alone: the values every composition starts from
(``_self_`` comes first in its defaults list), which the schema's ``defaults()`` give.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Sequence

from ncsn.config.messages import suggest
from ncsn.config.errors import ConfigError

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
CONFIG_NAME = "config"
GROUPS = ("profile", "dataset", "sigma")


def group_options(group: str, conf_dir: Path = CONF_DIR) -> list[str]:
    """The options of a config group: the YAML files in ``<conf_dir>/<group>/``."""
    return sorted(p.stem for p in (conf_dir / group).glob("*.yaml"))


def _check_override(text: str, sections: dict[str, type], conf_dir: Path) -> None:
    """One-line errors for an override naming an unknown group option, section or key."""
    import typing

    key, sep, value = text.partition("=")
    key = key.strip().lstrip("+~")
    if not sep:
        raise ConfigError(f"bad override {text!r}: expected KEY=VALUE, e.g. train.lr=5e-4 or profile=smoke")
    if key in GROUPS:
        options = group_options(key, conf_dir)
        if value.strip() not in options:
            raise ConfigError(f"'{key}' = {value.strip()!r} is invalid; expected one of {', '.join(options)}"
                              f" (files in ncsn/conf/{key}/).{suggest(value.strip(), options)}")
        return
    section, _, name = key.partition(".")
    if section not in sections:
        allowed = [*GROUPS, *sections]
        raise ConfigError(f"unknown key '{key}' in override {text!r}.{suggest(section, allowed)}"
                          f" Valid groups and sections: {', '.join(allowed)}.")
    fields = typing.get_type_hints(sections[section])
    if name.split(".")[0] not in fields:
        close = suggest(name, fields).replace("'", f"'{section}.", 1)
        raise ConfigError(f"unknown key '{key}' in override {text!r}.{close}"
                          f" Valid keys in '{section}': {', '.join(fields)}.")


def check_overrides(overrides: Sequence[str], conf_dir: Path = CONF_DIR) -> None:
    """Refuse unknown keys and group options before composing, with the nearest valid name.

    :raises ConfigError: one line naming the override and the fix.
    """
    from ncsn.config.sections import SECTIONS

    for text in overrides:
        _check_override(text, SECTIONS, conf_dir)


@functools.lru_cache(maxsize=32)
def _compose(conf_dir: str, overrides: tuple[str, ...]) -> dict[str, Any]:
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        with initialize_config_dir(conf_dir, version_base=None):
            cfg = compose(config_name=CONFIG_NAME, overrides=list(overrides))
        return OmegaConf.to_container(cfg, resolve=True)
    except (HydraException, OmegaConfBaseException) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"cannot compose the parameters with {' '.join(overrides) or 'no overrides'}: {first}") from None


def compose_params(overrides: Sequence[str] = (), conf_dir: Path = CONF_DIR) -> dict[str, Any]:
    """The effective parameters for Hydra ``overrides`` (``profile=smoke``, ``train.lr=5e-4``, …).

    :return: a fresh nested dict, every key present.
    :raises ConfigError: for an unknown key, group option or a value Hydra refuses.
    """
    import copy

    check_overrides(overrides, conf_dir)
    return copy.deepcopy(_compose(str(Path(conf_dir).resolve()), tuple(overrides)))


@functools.lru_cache(maxsize=4)
def _shared_values(conf_dir: str) -> dict[str, Any]:
    from omegaconf import OmegaConf

    values = OmegaConf.to_container(OmegaConf.load(Path(conf_dir) / f"{CONFIG_NAME}.yaml"), resolve=False)
    choices = {k: v for entry in values.pop("defaults") if isinstance(entry, dict) for k, v in entry.items()}
    values["profile"] = choices["profile"]
    values["base"]["dataset"] = choices["dataset"]
    return values


def shared_values(conf_dir: Path = CONF_DIR) -> dict[str, Any]:
    """The values of ``config.yaml`` itself, before any group sets its own.

    ``profile`` and ``base.dataset``, which only the groups set, are the default choices of the
    ``profile`` and ``dataset`` groups (``cpu``, ``mnist5k``).

    :return: a fresh nested dict, every key of every section present.
    """
    import copy

    return copy.deepcopy(_shared_values(str(Path(conf_dir).resolve())))


def write_params(path: str | Path, overrides: Sequence[str] = (), conf_dir: Path = CONF_DIR) -> None:
    """Write the composition to ``path`` exactly as ``dvc exp run -S`` does (DVC's ``compose_and_dump``).

    :raises ConfigError: as :func:`compose_params`; ``path`` is then left as it was.
    """
    from dvc.utils.hydra import compose_and_dump

    compose_params(overrides, conf_dir)  # the one-line errors, before anything is written
    conf = str(Path(conf_dir).resolve())
    compose_and_dump(path, conf, None, CONFIG_NAME, conf, list(overrides))
