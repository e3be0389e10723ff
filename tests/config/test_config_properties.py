"""Property tests of params validation: every range rule holds exactly at its boundary, and any
YAML at all either loads or is refused with one ``ConfigError`` line, never another exception."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ncsn.config import SECTIONS, ConfigError, config_from_dict, load_config

REPO = Path(__file__).resolve().parents[2]
PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())
FEW = settings(max_examples=60, deadline=None)

AT_LEAST_ONE = [
    "model.ngf", "model.num_levels", "train.n_iters", "train.batch_size", "train.snapshot_freq", "train.val_freq",
    "train.val_size", "train.log_freq", "sample.n_samples", "sample.batch_size", "sample.n_steps_each",
    "sample.trajectory_samples", "classifier.n_iters", "classifier.batch_size", "evaluate.select_samples",
    "evaluate.select_steps_each", "evaluate.nn_grid", "inpaint.n_images", "inpaint.n_steps_each", "data.n_test",
    "data.gmm_samples", "figures.toy_iters", "figures.toy_batch_size", "figures.n_chains", "figures.n_steps_each",
    "figures.image_iters", "figures.image_batch_size",
]
POSITIVE_FINITE = ["train.lr", "sample.eps", "inpaint.eps", "classifier.lr", "figures.image_noise", "model.sigma_end"]
HALF_OPEN_UNIT = ["train.beta1", "train.ema_rate"]  # [0, 1)


def _with(dotted: str, value) -> dict:
    params = copy.deepcopy(PARAMS)
    section, key = dotted.split(".")
    params[section][key] = value
    if dotted == "model.sigma_end":
        params["model"]["sigma_begin"] = "auto"  # isolate the rule from sigma_begin > sigma_end
    return params


def _check_refused(params: dict, key: str, value) -> None:
    with pytest.raises(ConfigError) as err:
        config_from_dict(params)
    message = str(err.value)
    assert message.startswith("params.yaml: ") and "\n" not in message
    assert f"'{key}' = {value!r} is invalid" in message


@FEW
@given(st.sampled_from(AT_LEAST_ONE), st.integers(-10**6, 10**6))
def test_counts_load_exactly_when_at_least_one(key: str, value: int) -> None:
    if value >= 1:
        section, name = key.split(".")
        assert getattr(getattr(config_from_dict(_with(key, value)), section), name) == value
    else:
        _check_refused(_with(key, value), key, value)


@FEW
@given(st.sampled_from(POSITIVE_FINITE), st.floats(allow_nan=True, allow_infinity=True))
def test_rates_load_exactly_when_positive_and_finite(key: str, value: float) -> None:
    if value > 0 and math.isfinite(value):
        section, name = key.split(".")
        assert getattr(getattr(config_from_dict(_with(key, value)), section), name) == value
    else:
        _check_refused(_with(key, value), key, value)


@FEW
@given(st.sampled_from([*HALF_OPEN_UNIT, "inpaint.random_fraction"]), st.floats(-2.0, 2.0))
def test_fractions_load_exactly_inside_their_interval(key: str, value: float) -> None:
    inside = 0.0 < value < 1.0 if key == "inpaint.random_fraction" else 0.0 <= value < 1.0
    if inside:
        config_from_dict(_with(key, value))
    else:
        _check_refused(_with(key, value), key, value)


_KEYS = [k for cls in SECTIONS.values() for k in cls.__dataclass_fields__]
_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-10**20, 10**20), st.floats(allow_nan=True),
                     st.text(max_size=12), st.sampled_from(["auto", "smoke", "1e-3", "unet", "mnist5k", "folder"]))
_VALUES = st.recursive(_SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                         st.dictionaries(st.text(max_size=6), inner, max_size=3)),
                       max_leaves=6)
_SECTION = st.dictionaries(st.one_of(st.sampled_from(_KEYS), st.text(max_size=8), st.integers(-3, 3)), _VALUES,
                           max_size=4)
_DOCUMENT = st.one_of(
    _VALUES,
    st.dictionaries(st.one_of(st.sampled_from([*SECTIONS, "profile"]), st.text(max_size=8)),
                    st.one_of(_SECTION, _VALUES), max_size=5),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(_DOCUMENT)
def test_any_yaml_document_loads_or_is_one_config_error_line(tmp_path: Path, document) -> None:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True))
    try:
        load_config(path)
    except ConfigError as err:
        assert str(err).startswith(f"{path}: ") and "\n" not in str(err), str(err)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=64) | st.text(max_size=64).map(str.encode))
def test_any_bytes_load_or_are_one_config_error_line(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "params.yaml"
    path.write_bytes(content)
    try:
        load_config(path)
    except ConfigError as err:
        assert str(err).startswith(f"{path}: ") and "\n" not in str(err), str(err)
