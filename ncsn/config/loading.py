"""Reading ``params.yaml``: sections, types and ranges, into one ``Config``.

``params.yaml`` is the Hydra composition of ``ncsn/conf`` (``ncsn.config.composition``) and
holds every key. A mapping that leaves keys out or ``null`` (a test's, or a hand-written file)
gets them from the composition of its ``profile`` and ``base.dataset``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from ncsn.config.coercion import build_section, key_text, suggest
from ncsn.config.composition import compose_params, group_options
from ncsn.config.errors import ConfigError
from ncsn.config.ranges import check_ranges
from ncsn.config.sections import SECTIONS, BaseConfig, Config


def config_from_dict(params: dict[str, Any], *, source: str = "params.yaml") -> Config:
    """Build and validate a ``Config`` from parsed ``params.yaml`` data.

    :param params: the YAML mapping; unknown sections or keys are errors.
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
    raw_base = params.get("base")
    dataset = raw_base.get("dataset") if isinstance(raw_base, dict) else None
    choices = [f"profile={profile}"]
    if isinstance(dataset, str) and dataset in group_options("dataset"):
        choices.append(f"dataset={dataset}")  # an unknown dataset is named by the type check below
    preset = compose_params(choices)
    sections = {}
    for name, cls in SECTIONS.items():
        raw = params.get(name)
        raw = {} if raw is None else raw
        if not isinstance(raw, dict):
            raise ConfigError(f"{source}: section '{name}' must be a mapping, found {raw!r}.")
        sections[name] = build_section(name, cls, raw, preset.get(name, {}), source)
    cfg = Config(profile=profile, **sections)
    check_ranges(cfg, source)
    return cfg


def load_config(path: str | Path = "params.yaml") -> Config:
    """Read, resolve and validate ``params.yaml``.

    :raises ConfigError: for a missing file, bad YAML, unknown keys or bad values.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: file not found; run from the repository root or pass --params PATH.")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot be read as UTF-8 text ({err}).") from None
    try:
        params = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({str(err).splitlines()[0]}).") from None
    params = {} if params is None else params
    return config_from_dict(params, source=str(path))
