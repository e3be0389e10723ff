"""Reading ``params.yaml`` into one validated ``Config``.

``params.yaml`` is the Hydra composition of ``ncsn/conf`` (``ncsn.config.composition``), written
once by ``dvc exp run`` or ``ncsn pipeline``: it holds every key, and is read as it is, its
nulls included (``-S sample.corrector_sigmas=null`` stays null). A mapping that leaves keys out
(a test's, or a hand-written file) is completed from one composition, that of its ``profile``
and ``base.dataset``: each key left out or null takes the composed value. The schema itself
holds no values (``ncsn.config.sections``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import TypeAdapter, ValidationError

from ncsn.config.composition import compose_params, group_options, shared_values
from ncsn.config.errors import ConfigError
from ncsn.config.messages import key_text, one_line, suggest
from ncsn.config.sections import SECTIONS, Config

_CONFIG = TypeAdapter(Config)


def _completed(raw: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """``values`` with those of ``raw`` that are not null on top; unknown keys kept, to be refused."""
    return {**values, **{k: v for k, v in raw.items() if v is not None or k not in values}}


def _complete(sections: dict[str, dict[str, Any]]) -> bool:
    return all(set(cls.__dataclass_fields__) <= set(sections[name]) for name, cls in SECTIONS.items())


def config_from_dict(params: dict[str, Any], *, source: str = "params.yaml") -> Config:
    """Build and validate a ``Config`` from parsed ``params.yaml`` data.

    :param params: the YAML mapping; unknown sections or keys are errors. One that leaves keys
        out is completed from the composition of its profile and dataset (module docstring).
    :param source: the file name used in error messages.
    :raises ConfigError: naming the file, key, bad value and what is allowed.
    """
    if not isinstance(params, dict):
        raise ConfigError(f"{source}: expected a mapping of sections, found {type(params).__name__}.")
    allowed_top = {"profile", *SECTIONS}
    for key in params:
        if key not in allowed_top:
            raise ConfigError(
                f"{source}: unknown section '{key_text(key)}'.{suggest(key, allowed_top)}"
                f" Valid sections: {', '.join(sorted(allowed_top))}."
            )
    profile = params.get("profile")
    profiles = group_options("profile")
    profile = "cpu" if profile is None else profile
    if not isinstance(profile, str) or profile not in profiles:
        raise ConfigError(f"{source}: 'profile' = {profile!r} is invalid; expected one of {', '.join(profiles)}.")
    sections = {}
    for name in SECTIONS:
        raw = params.get(name)
        sections[name] = {} if raw is None else raw
        if not isinstance(sections[name], dict):
            raise ConfigError(f"{source}: section '{name}' must be a mapping, found {raw!r}.")
    if not _complete(sections):
        dataset = sections["base"].get("dataset")
        choices = [f"profile={profile}"]
        if isinstance(dataset, str) and dataset in group_options("dataset"):
            choices.append(f"dataset={dataset}")  # an unknown dataset is named by the type check
        composed = compose_params(choices)
        sections = {name: _completed(raw, composed[name]) for name, raw in sections.items()}
    data = {"profile": profile, **sections}
    try:
        return _CONFIG.validate_python(data)
    except ValidationError as err:
        raise ConfigError(one_line(err.errors(), data, SECTIONS, source)) from None


def build_section(name: str, raw: dict[str, Any], source: str) -> Any:
    """One section on its own (a checkpoint's ``model``), validated as in :func:`config_from_dict`.

    A key left out or null takes its value in ``ncsn/conf/config.yaml`` (``shared_values``): a
    key added after the mapping was written reads as the value it had before it existed.

    :raises ConfigError: naming ``source``, the key, the bad value and what is allowed.
    """
    cls = SECTIONS[name]
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: section '{name}' must be a mapping, found {raw!r}.")
    data = _completed(raw, shared_values()[name])
    try:
        return TypeAdapter(cls).validate_python(data)
    except ValidationError as err:
        errors = [{**error, "loc": (name, *error["loc"])} for error in err.errors()]
        raise ConfigError(one_line(errors, {name: data}, {name: cls}, source)) from None


def load_config(path: str | Path = "params.yaml") -> Config:
    """Read and validate ``params.yaml``.

    :raises ConfigError: for a missing file, bad YAML, unknown keys or bad values.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: file not found; run from the repository root or pass --params PATH.")
    return config_from_dict(read_params(path), source=str(path))


def read_params(path: str | Path) -> Any:
    """The YAML document in ``path`` (``{}`` for an empty file), not validated.

    :raises ConfigError: for a file that cannot be read as UTF-8 text or is not valid YAML (one
        line, with the line and column where the parser stopped).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot be read as UTF-8 text ({err}).") from None
    try:
        params = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ConfigError(f"{path}: not valid YAML ({str(err).splitlines()[0]}{where}).") from None
    return {} if params is None else params
