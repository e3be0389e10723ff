"""One typed configuration, mirroring the sections of ``params.yaml``.

Every section is a frozen dataclass. ``load_config`` reads ``params.yaml`` once at
an entry point, fills each ``null`` value from the selected profile
(``ncsn.profiles``), validates every key and value, and returns a ``Config`` that
is passed explicitly to the code that needs it and logged whole.

Precedence, lowest first: dataclass default < profile value < explicit value in
``params.yaml`` (so ``dvc exp run -S train.lr=5e-4`` always wins).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from ncsn import profiles

DATASETS = ("mnist5k", "mnist", "cifar10", "celeba", "folder", "gmm")
ARCHS = ("ncsn", "ncsnv2", "unet", "mlp")


_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


class ConfigError(ValueError):
    """A user error in the parameters: one line naming file, key, value and fix."""


@dataclass(frozen=True)
class BaseConfig:
    """Shared by every stage."""

    seed: int = 0
    dataset: Literal["mnist5k", "mnist", "cifar10", "celeba", "folder", "gmm"] = "mnist5k"
    device: Literal["auto", "cpu", "cuda"] = "auto"


@dataclass(frozen=True)
class DataConfig:
    """How the ``prepare`` stage reads and splits the data."""

    root: str = "data/raw"  # where torchvision datasets live (or are downloaded to)
    download: bool = False
    folder: str | None = None  # dataset "folder": a directory of images
    image_size: int | None = None  # None: the dataset's own size (28 MNIST, 32 CIFAR/CelebA)
    channels: int | None = None  # "folder": 1 (grayscale) or 3 (RGB); None: 3
    n_test: int = 1000  # held-out examples when the dataset has no test split
    split_seed: int = 0
    flip: bool | None = None  # random horizontal flips; None: the paper's choice
    dequantize: bool = False  # uniform dequantisation (x*255 + U[0,1)) / 256
    logit_transform: bool = False
    gmm_samples: int = 10000


@dataclass(frozen=True)
class ModelConfig:
    """The score network and its noise levels."""

    arch: Literal["ncsn", "ncsnv2", "unet", "mlp"] = "unet"
    ngf: int = 32  # base width
    sigma_begin: Union[float, Literal["auto"]] = 1.0  # "auto": NCSNv2 technique 1
    sigma_end: float = 0.01
    num_levels: Union[int, Literal["auto"]] = 10  # "auto": NCSNv2 technique 2


@dataclass(frozen=True)
class TrainConfig:
    """Adam on annealed denoising score matching."""

    n_iters: int = 3000
    batch_size: int = 128
    lr: float = 1e-3
    beta1: float = 0.9
    weight_decay: float = 0.0
    anneal_power: float = 2.0  # lambda(sigma) = sigma ** anneal_power
    ema: bool = True
    ema_rate: float = 0.999
    grad_clip: float | None = None
    snapshot_freq: int = 500
    val_freq: int = 250
    val_size: int = 500  # held-out examples used for the per-level validation loss
    log_freq: int = 25
    bf16: bool = False  # bf16 autocast (CUDA or CPU; not exact)
    channels_last: bool = False
    compile: bool = False


@dataclass(frozen=True)
class SampleConfig:
    """The sampler: annealed Langevin dynamics (paper Algorithm 1) or predictor-corrector."""

    n_samples: int = 1000
    batch_size: int = 250
    sampler: Literal["ald", "pc"] = "ald"  # ald: Algorithm 1, L*T evaluations | pc: L*(T+1)
    n_steps_each: int = 20  # T
    eps: Union[float, Literal["auto"]] = 2e-5  # "auto": NCSNv2 technique 4 for T
    convention: Literal["paper", "reference"] = "paper"
    denoise: bool = True
    use_ema: bool = True
    trajectory_samples: int = 16
    bf16: bool = False  # bf16 autocast of the score network (not exact: ~2 % relative error)
    compile: bool = False  # torch.compile the score network (exact; pays off over many steps)


@dataclass(frozen=True)
class ClassifierConfig:
    """The digit classifier used as an offline feature extractor."""

    n_iters: int = 600
    batch_size: int = 128
    lr: float = 1e-3


@dataclass(frozen=True)
class EvaluateConfig:
    """IS / FID / KID through torch-fidelity."""

    extractor: Literal["auto", "classifier", "inception"] = "auto"
    weights_path: str | None = None  # Inception weights (pt_inception-2015-12-05)
    kid_subset_size: int = 100
    select_samples: int = 250  # samples per checkpoint for checkpoint selection
    select_steps_each: int = 10
    nn_grid: int = 8


@dataclass(frozen=True)
class InpaintConfig:
    """Paper Algorithm 2 on held-out images."""

    n_images: int = 8
    masks: tuple[str, ...] = ("right_half", "center", "random")
    random_fraction: float = 0.7  # fraction of pixels hidden by the "random" mask
    n_steps_each: int = 20
    eps: float = 2e-5


@dataclass(frozen=True)
class FiguresConfig:
    """Toy-scale versions of the paper's Figures 1-3 (the ``figures`` stage, ``ncsn/figures``)."""

    toy_iters: int = 2000  # Adam steps of each 2-D score network (fig. 1: SSM, fig. 3: DSM)
    toy_batch_size: int = 256
    n_chains: int = 1280  # Langevin chains per panel of fig. 3 (the known-answer test uses 10,000)
    n_steps_each: int = 100  # T of annealed Langevin in fig. 3; plain Langevin gets L * T steps
    image_iters: int = 300  # SSM steps per loss curve of fig. 2
    image_batch_size: int = 32
    image_noise: float = 0.01  # std of the Gaussian perturbation in fig. 2 (paper: N(0, 0.0001))


@dataclass(frozen=True)
class TrackingConfig:
    """MLflow tracking and registry."""

    enabled: bool = True
    experiment: str = "ncsn"
    register: bool = True


@dataclass(frozen=True)
class PathsConfig:
    """Every output folder, written once here and interpolated into dvc.yaml."""

    prepare: str = "outputs/prepare"
    classifier: str = "outputs/classifier"
    train: str = "outputs/train"
    sample: str = "outputs/sample"
    evaluate: str = "outputs/evaluate"
    inpaint: str = "outputs/inpaint"
    figures: str = "outputs/figures"
    report: str = "outputs/report"
    mlflow: str = "outputs/mlflow"


@dataclass(frozen=True)
class Config:
    """The whole configuration of one pipeline run."""

    profile: Literal["smoke", "cpu", "paper"] = "cpu"
    base: BaseConfig = field(default_factory=BaseConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    inpaint: InpaintConfig = field(default_factory=InpaintConfig)
    figures: FiguresConfig = field(default_factory=FiguresConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)

    def to_dict(self) -> dict[str, Any]:
        """The resolved configuration as plain YAML-able data."""
        return _plain(dataclasses.asdict(self))

    def flat(self) -> dict[str, Any]:
        """``{"train.lr": 0.001, ...}``: for logging as parameters."""
        out: dict[str, Any] = {"profile": self.profile}
        for section, values in self.to_dict().items():
            if isinstance(values, dict):
                out.update({f"{section}.{k}": v for k, v in values.items()})
        return out


SECTIONS: dict[str, type] = {name: tp for name, tp in typing.get_type_hints(Config).items() if name != "profile"}


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _key_text(key: Any) -> str:
    """A key as it appears in one-line messages: as is when printable text, else its repr."""
    return key if isinstance(key, str) and key.isprintable() else repr(key)


def _suggest(key: Any, allowed: typing.Iterable[str]) -> str:
    close = difflib.get_close_matches(str(key), list(allowed), n=1, cutoff=0.6)
    return f" Did you mean '{close[0]}'?" if close else ""


def _describe(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " or ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(tp))
    if origin is tuple:
        return "a list"
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any) -> tuple[bool, Any]:
    """Return (ok, value converted to ``tp``); ints are accepted where floats are."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        return (value in typing.get_args(tp), value)
    if origin in (Union, types.UnionType):
        for arg in typing.get_args(tp):
            ok, converted = _coerce(value, arg)
            if ok:
                return True, converted
        return False, value
    if origin is tuple:
        if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
            return True, tuple(value)
        return False, value
    if tp is type(None):
        return (value is None, value)
    if tp is bool:
        return (isinstance(value, bool), value)
    if tp is int:
        return (isinstance(value, int) and not isinstance(value, bool), value)
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" as a string
            ok = _NUMBER.fullmatch(value.strip()) is not None
            return (ok, float(value) if ok else value)
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return (ok, float(value) if ok else value)
    if tp is str:
        return (isinstance(value, str), value)
    raise TypeError(f"unsupported config type {tp!r}")


def _build_section(name: str, cls: type, raw: dict[str, Any], profile_values: dict[str, Any], source: str) -> Any:
    hints = typing.get_type_hints(cls)
    for key in raw:
        if key not in hints:
            raise ConfigError(
                f"{source}: unknown key '{name}.{_key_text(key)}'.{_suggest(key, hints)}"
                f" Valid keys in '{name}': {', '.join(hints)}."
            )
    kwargs = {}
    for key, tp in hints.items():
        value = raw.get(key)
        if value is None:
            value = profile_values.get(key)
        if value is None:
            continue  # dataclass default (which may itself be None)
        ok, converted = _coerce(value, tp)
        if not ok:
            raise ConfigError(f"{source}: '{name}.{key}' = {value!r} is invalid; expected {_describe(tp)}.")
        kwargs[key] = converted
    return cls(**kwargs)


def _check_ranges(cfg: Config, source: str) -> None:
    def fail(key: str, value: Any, allowed: str) -> None:
        raise ConfigError(f"{source}: '{key}' = {value!r} is invalid; {allowed}.")

    m, t, s, i, d = cfg.model, cfg.train, cfg.sample, cfg.inpaint, cfg.data
    if not (isinstance(m.sigma_end, float) and m.sigma_end > 0 and math.isfinite(m.sigma_end)):
        fail("model.sigma_end", m.sigma_end, "it must be > 0 and finite")
    if m.sigma_begin != "auto" and not (m.sigma_begin > m.sigma_end and math.isfinite(m.sigma_begin)):
        fail("model.sigma_begin", m.sigma_begin, f"it must be > model.sigma_end ({m.sigma_end}) or 'auto'")
    if m.num_levels != "auto" and m.num_levels < 1:
        fail("model.num_levels", m.num_levels, "it must be >= 1 or 'auto'")
    if m.ngf < 1:
        fail("model.ngf", m.ngf, "it must be >= 1")
    for key, value in (
        ("train.n_iters", t.n_iters), ("train.batch_size", t.batch_size), ("train.snapshot_freq", t.snapshot_freq),
        ("train.val_freq", t.val_freq), ("train.val_size", t.val_size), ("train.log_freq", t.log_freq),
        ("sample.n_samples", s.n_samples), ("sample.batch_size", s.batch_size),
        ("sample.n_steps_each", s.n_steps_each), ("inpaint.n_images", i.n_images),
        ("inpaint.n_steps_each", i.n_steps_each), ("classifier.n_iters", cfg.classifier.n_iters),
        ("classifier.batch_size", cfg.classifier.batch_size), ("data.n_test", d.n_test),
        ("evaluate.select_samples", cfg.evaluate.select_samples),
        ("evaluate.select_steps_each", cfg.evaluate.select_steps_each), ("evaluate.nn_grid", cfg.evaluate.nn_grid),
        ("sample.trajectory_samples", s.trajectory_samples), ("data.gmm_samples", d.gmm_samples),
    ):
        if value < 1:
            fail(key, value, "it must be >= 1")
    for key, value in (("train.lr", t.lr), ("inpaint.eps", i.eps), ("classifier.lr", cfg.classifier.lr)):
        if not (value > 0 and math.isfinite(value)):
            fail(key, value, "it must be > 0")
    if s.eps != "auto" and not (s.eps > 0 and math.isfinite(s.eps)):
        fail("sample.eps", s.eps, "it must be > 0 or 'auto' (NCSNv2 technique 4)")
    if s.sampler == "pc" and s.convention != "paper":
        fail("sample.convention", s.convention, "sampler 'pc' takes eps in the 'paper' convention")
    if not 0.0 <= t.beta1 < 1.0:
        fail("train.beta1", t.beta1, "it must be in [0, 1)")
    if not (t.weight_decay >= 0 and math.isfinite(t.weight_decay)):
        fail("train.weight_decay", t.weight_decay, "it must be >= 0")
    if not math.isfinite(t.anneal_power):
        fail("train.anneal_power", t.anneal_power, "it must be a finite number")
    if not 0.0 <= t.ema_rate < 1.0:
        fail("train.ema_rate", t.ema_rate, "it must be in [0, 1)")
    if t.grad_clip is not None and not t.grad_clip > 0:
        fail("train.grad_clip", t.grad_clip, "it must be > 0 or null")
    if cfg.evaluate.kid_subset_size < 2:
        fail("evaluate.kid_subset_size", cfg.evaluate.kid_subset_size, "it must be >= 2")
    if not 0.0 < i.random_fraction < 1.0:
        fail("inpaint.random_fraction", i.random_fraction, "it must be in (0, 1)")
    f = cfg.figures
    for key, value in (("figures.toy_iters", f.toy_iters), ("figures.toy_batch_size", f.toy_batch_size),
                       ("figures.n_chains", f.n_chains), ("figures.n_steps_each", f.n_steps_each),
                       ("figures.image_iters", f.image_iters), ("figures.image_batch_size", f.image_batch_size)):
        if value < 1:
            fail(key, value, "it must be >= 1")
    if not (f.image_noise > 0 and math.isfinite(f.image_noise)):
        fail("figures.image_noise", f.image_noise, "it must be > 0")
    unknown_masks = [k for k in i.masks if k not in ("right_half", "center", "random")]
    if unknown_masks or not i.masks:
        fail("inpaint.masks", list(i.masks), "allowed masks are 'right_half', 'center', 'random'")
    if d.channels is not None and d.channels not in (1, 3):
        fail("data.channels", d.channels, "it must be 1, 3 or null")
    if cfg.base.dataset == "folder" and not d.folder:
        fail("data.folder", d.folder, "dataset 'folder' needs data.folder set to a directory of images")
    if d.image_size is not None:
        if d.image_size < 8:
            fail("data.image_size", d.image_size, "it must be >= 8")
        if m.arch in ("ncsn", "ncsnv2") and d.image_size not in (28, 32, 64):
            fail("data.image_size", d.image_size, "the paper network supports 28, 32 or 64")
        if m.arch == "unet" and d.image_size % 4:
            fail("data.image_size", d.image_size, "the unet needs a multiple of 4")
    if (cfg.base.dataset == "gmm") != (m.arch == "mlp"):
        fail("model.arch", m.arch, "dataset 'gmm' goes with arch 'mlp', image datasets with ncsn, ncsnv2 or unet")


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
                f"{source}: unknown section '{_key_text(key)}'.{_suggest(key, allowed_top)}"
                f" Valid sections: {', '.join(sorted(allowed_top))}."
            )
    profile = params.get("profile")
    profile = "cpu" if profile is None else profile
    if not isinstance(profile, str) or profile not in profiles.PROFILES:
        raise ConfigError(
            f"{source}: 'profile' = {profile!r} is invalid; expected one of {', '.join(profiles.PROFILES)}."
        )
    raw_base = params.get("base")
    dataset = raw_base.get("dataset", BaseConfig.dataset) if isinstance(raw_base, dict) else BaseConfig.dataset
    preset = profiles.profile_values(profile, dataset)
    sections = {}
    for name, cls in SECTIONS.items():
        raw = params.get(name)
        raw = {} if raw is None else raw
        if not isinstance(raw, dict):
            raise ConfigError(f"{source}: section '{name}' must be a mapping, found {raw!r}.")
        sections[name] = _build_section(name, cls, raw, preset.get(name, {}), source)
    cfg = Config(profile=profile, **sections)
    _check_ranges(cfg, source)
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
