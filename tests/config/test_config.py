"""Params loading: composition of ncsn/conf, precedence, and one clear error per bad value."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from ncsn.config import SECTIONS, Config, ConfigError, config_from_dict, load_config
from ncsn.config.composition import CONF_DIR, compose_params, group_options

REPO = Path(__file__).resolve().parents[2]
PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())


def with_value(section: str, key: str, value) -> dict:
    params = copy.deepcopy(PARAMS)
    params.setdefault(section, {})[key] = value
    return params


def test_repository_params_load_with_the_cpu_profile() -> None:
    cfg = load_config(REPO / "params.yaml")
    assert cfg.profile == "cpu"
    assert cfg.train.n_iters == 1800
    assert cfg.model.arch == "unet"


def test_params_yaml_is_the_composition_of_the_defaults() -> None:
    """params.yaml holds the effective value of every key: what `dvc exp run` with no -S composes."""
    assert PARAMS == compose_params([])
    assert not [f"{s}.{k}" for s, v in PARAMS.items() if isinstance(v, dict) for k, x in v.items()
                if x is None and f"{s}.{k}" not in {"data.folder", "data.image_size", "data.channels",
                                                     "train.grad_clip", "evaluate.weights_path", "sample.sigma_min",
                                                     "sample.sigma_max", "sample.s_tmax"}]


def test_the_schema_holds_no_values_and_its_defaults_are_the_shared_values_of_conf() -> None:
    import dataclasses

    for cls in (Config, *SECTIONS.values()):
        assert all(f.default is f.default_factory is dataclasses.MISSING for f in dataclasses.fields(cls)), cls
    shared = yaml.safe_load((CONF_DIR / "config.yaml").read_text())
    assert Config.defaults().to_dict() | {"profile": None} == {
        **{k: v for k, v in shared.items() if k != "defaults"}, "base": {**shared["base"], "dataset": "mnist5k"},
        "profile": None}


def test_params_yaml_lists_every_key_so_dvc_set_param_can_override_it() -> None:
    for name, cls in SECTIONS.items():
        assert set(PARAMS[name]) == set(cls.__dataclass_fields__), name


@pytest.mark.parametrize("profile", ["smoke", "cpu", "paper"])
def test_every_profile_resolves(profile: str) -> None:
    assert profile in group_options("profile")
    cfg = config_from_dict(compose_params([f"profile={profile}"]))
    assert cfg.profile == profile
    assert config_from_dict({"profile": profile}) == cfg  # keys left out come from the same composition


def test_paper_profile_follows_the_paper() -> None:
    cifar = config_from_dict(compose_params(["profile=paper", "dataset=cifar10"]))
    assert (cifar.model.arch, cifar.model.ngf, cifar.model.num_levels) == ("ncsn", 128, 10)
    assert (cifar.train.lr, cifar.train.batch_size, cifar.train.n_iters) == (1e-3, 128, 200_000)
    assert (cifar.sample.eps, cifar.sample.n_steps_each) == (2e-5, 100)
    for dataset in ("mnist5k", "mnist", "fashion_mnist"):  # 28x28 grayscale: ngf 64 (paper, Appendix B)
        assert config_from_dict(compose_params(["profile=paper", f"dataset={dataset}"])).model.ngf == 64


def test_a_dataset_group_switches_its_settings_together() -> None:
    cpu = config_from_dict(compose_params(["dataset=mnist"]))
    assert (cpu.base.dataset, cpu.data.flip, cpu.model.ngf, cpu.model.sigma_begin, cpu.model.num_levels) == (
        "mnist", False, 32, 5.0, 40)  # profile_dataset/cpu_mnist.yaml
    assert cpu.sample.corrector_sigmas == (0.1, 1.0)  # the digits' band (profile/cpu.yaml)
    fashion = config_from_dict(compose_params(["dataset=fashion_mnist"]))
    assert (fashion.model.sigma_begin, fashion.model.num_levels) == (5.0, 40)
    assert fashion.sample.corrector_sigmas == (0.3, 5.0)  # clothes: from sigma_1 down to 0.3
    assert config_from_dict(compose_params(["profile=paper", "dataset=fashion_mnist"])).sample.corrector_sigmas is None
    paper = config_from_dict(compose_params(["profile=paper", "dataset=mnist"]))
    assert (paper.model.ngf, paper.model.sigma_begin, paper.model.num_levels) == (64, 1.0, 10)  # the paper's MNIST
    v2_cpu = config_from_dict(compose_params(["dataset=mnist", "sigma=ncsnv2"]))
    assert (v2_cpu.model.sigma_begin, v2_cpu.model.num_levels) == ("auto", "auto")  # the sigma policy comes last
    cifar = config_from_dict(compose_params(["dataset=cifar10"]))
    assert (cifar.base.dataset, cifar.data.flip) == ("cifar10", True)
    celeba = config_from_dict(compose_params(["dataset=celeba"]))
    assert (celeba.data.image_size, celeba.data.flip) == (32, True)
    gmm = config_from_dict(compose_params(["profile=paper", "dataset=gmm"]))
    assert (gmm.model.arch, gmm.model.sigma_begin, gmm.model.sigma_end) == ("mlp", 20.0, 1.0)
    v2 = config_from_dict(compose_params(["dataset=cifar10", "sigma=ncsnv2"]))
    assert (v2.model.sigma_begin, v2.model.num_levels) == ("auto", "auto")


def test_an_override_beats_the_profile_and_the_dataset() -> None:
    cfg = config_from_dict(compose_params(["profile=smoke", "dataset=cifar10", "data.flip=false", "train.lr=5e-4"]))
    assert (cfg.profile, cfg.data.flip, cfg.train.lr, cfg.train.n_iters) == ("smoke", False, 5e-4, 40)


def test_a_composition_is_read_as_it_is_and_a_partial_mapping_is_completed_from_one() -> None:
    """params.yaml holds every key: its nulls are values (``-S sample.corrector_sigmas=null``: every
    level). A mapping that leaves keys out takes them, and its nulls, from its profile's composition."""
    everywhere = config_from_dict(compose_params(["sample.corrector_sigmas=null", "dataset=cifar10", "data.flip=null"]))
    assert (everywhere.sample.corrector_sigmas, everywhere.data.flip) == (None, None)
    partial = config_from_dict({"base": {"dataset": "cifar10"}, "sample": {"corrector_sigmas": None}})
    assert (partial.sample.corrector_sigmas, partial.data.flip) == ((0.1, 1.0), True)
    with pytest.raises(ConfigError, match=r"^params.yaml: 'train.lr' = None is invalid; expected float.$"):
        config_from_dict(with_value("train", "lr", None))


def test_a_section_alone_takes_the_shared_values_for_keys_it_predates() -> None:
    from ncsn.config import ModelConfig
    from ncsn.config.loading import build_section

    old = {"arch": "unet", "ngf": 8, "sigma_begin": 1.0, "sigma_end": 0.01, "num_levels": 10}
    assert build_section("model", old, "model.pt") == ModelConfig.defaults(ngf=8)
    with pytest.raises(ConfigError, match=r"^model.pt: 'model.ngf' = 0 is invalid; it must be >= 1.$"):
        build_section("model", {**old, "ngf": 0}, "model.pt")


@pytest.mark.parametrize(("override", "fragment"), [
    ("profile=fast", "'profile' = 'fast' is invalid; expected one of cpu, paper, smoke"),
    ("dataset=fashion", "Did you mean 'fashion_mnist'?"),
    ("train.lrr=1", "unknown key 'train.lrr' in override 'train.lrr=1'. Did you mean 'train.lr'?"),
    ("trian.lr=1", "Did you mean 'train'?"),
    ("train.lr", "expected KEY=VALUE"),
])
def test_bad_overrides_are_one_line_with_the_nearest_name(override: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as err:
        compose_params([override])
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_unet_widths_and_attention_are_overridable() -> None:
    cfg = config_from_dict(compose_params(["model.mults=[0.25,1,3]", "model.attention=true"]))
    assert (cfg.model.mults, cfg.model.attention) == ((0.25, 1.0, 3.0), True)
    with pytest.raises(ConfigError, match="multiple of 8"):  # four resolutions: 28 → 14 → 7 → 3.5
        config_from_dict(compose_params(["model.mults=[0.5,1,2,2]", "data.image_size=28"]))


def test_explicit_value_beats_the_profile() -> None:
    cfg = config_from_dict(with_value("train", "lr", 5e-4))
    assert cfg.train.lr == 5e-4
    assert config_from_dict(with_value("train", "lr", "5e-4")).train.lr == 5e-4  # YAML 1.1 string


def test_unknown_key_suggests_the_nearest() -> None:
    with pytest.raises(ConfigError, match=r"params.yaml: unknown key 'train.learning_rat'.*") as err:
        config_from_dict(with_value("train", "learning_rat", 1e-3))
    bad = with_value("train", "n_iter", 10)
    with pytest.raises(ConfigError, match=r"Did you mean 'n_iters'\?"):
        config_from_dict(bad)
    assert "Valid keys" in str(err.value)


def test_unknown_section_is_rejected() -> None:
    with pytest.raises(ConfigError, match=r"unknown section 'trian'.*Did you mean 'train'"):
        config_from_dict({**PARAMS, "trian": {}})


@pytest.mark.parametrize(
    ("section", "key", "value", "fragment"),
    [
        ("model", "sigma_end", 0.0, "must be > 0"),
        ("model", "sigma_begin", 0.005, "must be > model.sigma_end"),
        ("model", "num_levels", 0, ">= 1"),
        ("train", "batch_size", 0, ">= 1"),
        ("sample", "n_steps_each", 0, ">= 1"),
        ("sample", "eps", -1.0, "> 0"),
        ("sample", "eps", "automatic", "expected float or 'auto'"),
        ("sample", "sampler", "langevin", "expected 'ald' or 'pc'"),
        ("sample", "n_samples", 0, ">= 1"),
        ("train", "batch_size", 1.5, "expected int"),
        ("train", "ema", "yes", "expected bool"),
        ("base", "dataset", "imagenet", "expected 'mnist5k' or"),
        ("model", "arch", "resnet", "expected 'ncsn' or"),
        ("data", "image_size", 30, "multiple of 4"),
        ("model", "mults", [], "one width multiple > 0 per resolution"),
        ("model", "mults", [0.5, -1.0, 2.0], "one width multiple > 0 per resolution"),
        ("model", "mults", ["wide"], "expected a list of float"),
        ("sample", "corrector_sigmas", [1.0, 0.1], "give [lo, hi] with 0 < lo < hi"),
        ("sample", "corrector_sigmas", [0.1], "give [lo, hi] with 0 < lo < hi"),
    ],
)
def test_bad_values_name_file_key_value_and_rule(section: str, key: str, value, fragment: str) -> None:
    with pytest.raises(ConfigError) as err:
        config_from_dict(with_value(section, key, value))
    message = str(err.value)
    assert message.startswith("params.yaml: ")
    assert f"{section}.{key}" in message and repr(value) in message and fragment in message


def test_predictor_corrector_needs_the_paper_eps_convention() -> None:
    params = with_value("sample", "sampler", "pc")
    params["sample"]["convention"] = "reference"
    with pytest.raises(ConfigError, match=r"'sample.convention' = 'reference' is invalid; sampler 'pc'"):
        config_from_dict(params)
    params["sample"]["convention"] = "paper"
    params["sample"]["eps"] = "auto"
    cfg = config_from_dict(params)
    assert (cfg.sample.sampler, cfg.sample.eps) == ("pc", "auto")


def test_a_corrector_band_is_for_predictor_corrector_only() -> None:
    params = with_value("sample", "sampler", "ald")
    params["sample"]["corrector_sigmas"] = [0.1, 1.0]
    with pytest.raises(ConfigError, match=r"'sample.corrector_sigmas' = \[0.1, 1.0\] is invalid; it is for sampler 'pc'"):
        config_from_dict(params)
    params["sample"]["sampler"] = "pc"
    assert config_from_dict(params).sample.corrector_sigmas == (0.1, 1.0)


def test_paper_network_image_sizes_are_checked() -> None:
    params = with_value("model", "arch", "ncsn")
    params["model"]["precond"] = "ncsnv2"
    params["data"]["image_size"] = 48
    with pytest.raises(ConfigError, match="28, 32 or 64"):
        config_from_dict(params)


def test_unknown_profile(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="'profile' = 'fast'.*cpu, paper, smoke"):
        config_from_dict({**PARAMS, "profile": "fast"})


def test_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "params.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_flat_names_every_key() -> None:
    flat = Config.defaults().flat()
    assert flat["train.lr"] == 1e-3 and flat["profile"] == "cpu"


_KEYS = [(s, k) for s, cls in SECTIONS.items() for k in cls.__dataclass_fields__]
_JUNK = st.one_of(st.text(max_size=8), st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(_KEYS), _JUNK)
def test_random_wrong_values_raise_config_error_or_load(key: tuple[str, str], value) -> None:
    """Any value either loads into the declared type or raises ConfigError, never anything else."""
    section, name = key
    try:
        cfg = config_from_dict(with_value(section, name, value))
    except ConfigError as err:
        assert f"{section}.{name}" in str(err) or "model.arch" in str(err) or "data.folder" in str(err)
    else:
        loaded = getattr(getattr(cfg, section), name)
        if isinstance(value, str) and isinstance(loaded, float):
            assert loaded == float(value)  # YAML 1.1 leaves "1e-3" a string
        else:
            assert loaded == value or (isinstance(value, list) and loaded == tuple(value))


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(list(SECTIONS)), st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12))
def test_random_unknown_keys_are_rejected(section: str, key: str) -> None:
    if key in SECTIONS[section].__dataclass_fields__:
        return
    with pytest.raises(ConfigError, match=f"unknown key '{section}.{key}'"):
        config_from_dict(with_value(section, key, 1))
