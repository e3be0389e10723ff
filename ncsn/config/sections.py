"""The schema of ``params.yaml``: one frozen pydantic dataclass per section, and ``Config``.

The classes carry types and rules, no values: every value comes from ``ncsn/conf``
(``ncsn.config.composition``). Unknown keys are refused (``extra="forbid"``), types are
strict (``ncsn.config.fields``) and the rules that tie fields together run when a
``Config`` is built (``ncsn.config.rules``). ``Section.defaults()`` gives a section as
``ncsn/conf/config.yaml`` itself sets it, for code and tests that build one directly.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, Literal, Optional

from pydantic import ConfigDict, model_validator
from pydantic.dataclasses import dataclass

from ncsn.config.composition import shared_values
from ncsn.config.fields import (Band, Bool, Channels, Count, CountOrOff, Eps, Finite, GradClip, ImageSize, Int,
                                KidSubset, Masks, Mults, NonNegative, NumLevels, OpenFraction, OptionalPositive,
                                Positive, SigmaBegin, SigmaEnd, Str, UnitFraction, WeightDecay)

from ncsn.core.losses.weighting import SIGMA_SAMPLINGS, WEIGHTINGS
from ncsn.core.precond import PRECONDS
from ncsn.core.sampling import CONVENTIONS, SAMPLERS, SCHEDULES
from ncsn.models import ARCHS

# The choices the library defines are read from it; the schema keeps no second list.
Dataset = Literal["mnist5k", "mnist", "fashion_mnist", "cifar10", "celeba", "folder", "gmm"]
Arch = Literal[ARCHS]
Sampler = Literal[tuple(SAMPLERS)]  # ald, pc: on the trained levels | euler, heun, dpmpp_2m: the PF-ODE
Schedule = Literal[SCHEDULES]
Precond = Literal[PRECONDS]
Weighting = Literal[WEIGHTINGS]
SigmaSampling = Literal[SIGMA_SAMPLINGS]
Convention = Literal[CONVENTIONS]
DATASETS: tuple[str, ...] = typing.get_args(Dataset)

_SCHEMA = ConfigDict(extra="forbid")


class _Section:
    """What every section class offers besides its fields."""

    @classmethod
    def defaults(cls, **changes: Any) -> Any:
        """This section as ``ncsn/conf/config.yaml`` sets it, before any group, with ``changes``.

        :raises pydantic.ValidationError: for a change the schema refuses.
        """
        name = next(name for name, section in SECTIONS.items() if section is cls)
        return cls(**{**shared_values()[name], **changes})


@dataclass(frozen=True, config=_SCHEMA)
class BaseConfig(_Section):
    """Shared by every stage."""

    seed: Int
    dataset: Dataset
    device: Literal["auto", "cpu", "cuda"]


@dataclass(frozen=True, config=_SCHEMA)
class DataConfig(_Section):
    """How the ``prepare`` stage reads and splits the data."""

    root: Str  # where torchvision datasets live (or are downloaded to)
    download: Bool
    folder: Optional[Str]  # dataset "folder": a directory of images
    image_size: ImageSize  # None: the dataset's own size (28 MNIST, 32 CIFAR/CelebA)
    channels: Channels  # "folder": 1 (grayscale) or 3 (RGB); None: 3
    n_test: Count  # held-out examples when the dataset has no test split
    split_seed: Int
    flip: Optional[Bool]  # random horizontal flips; None: the paper's choice
    dequantize: Bool  # uniform dequantisation (x*255 + U[0,1)) / 256
    logit_transform: Bool
    gmm_samples: Count


@dataclass(frozen=True, config=_SCHEMA)
class ModelConfig(_Section):
    """The score network and its noise levels."""

    arch: Arch
    ngf: Count  # base width
    sigma_begin: SigmaBegin  # "auto": NCSNv2 technique 1
    sigma_end: SigmaEnd
    num_levels: NumLevels  # "auto": NCSNv2 technique 2
    precond: Precond  # unet output: F/sigma, or EDM's c_skip/c_out form
    mults: Mults  # unet: width per resolution, times ngf (full resolution first)
    attention: Bool  # unet: a self-attention block after the middle block, at the lowest resolution


@dataclass(frozen=True, config=_SCHEMA)
class TrainConfig(_Section):
    """Adam on annealed denoising score matching."""

    n_iters: Count
    batch_size: Count
    lr: Positive
    beta1: UnitFraction
    weight_decay: WeightDecay
    anneal_power: Finite  # lambda(sigma) = sigma ** anneal_power
    weighting: Weighting  # paper: uniform levels, sigma ** anneal_power; edm: ncsn.core.losses.edm
    log_sigma_mean: Finite  # weighting edm: levels drawn with ln(sigma) ~ N(mean, std^2)
    log_sigma_std: Positive
    sigma_sampling: SigmaSampling  # levels: the L trained levels | continuous: any σ in [σ_L, σ_1]
    ema: Bool
    ema_rate: UnitFraction
    grad_clip: GradClip
    snapshot_freq: Count
    val_freq: Count
    val_size: Count  # held-out examples used for the per-level validation loss
    log_freq: Count
    bf16: Bool  # bf16 autocast (CUDA or CPU; not exact)
    channels_last: Bool
    compile: Bool


@dataclass(frozen=True, config=_SCHEMA)
class SampleConfig(_Section):
    """The sampler: annealed Langevin dynamics (paper Algorithm 1), predictor-corrector, or a solver of the
    probability-flow ODE (Euler, Heun = EDM Algorithm 2, DPM-Solver++(2M))."""

    n_samples: Count
    batch_size: Count
    sampler: Sampler
    n_steps_each: Count  # ald, pc: T
    eps: Eps  # ald, pc: "auto": NCSNv2 technique 4 for T
    convention: Convention
    denoise: Bool  # ald, pc
    # pc only: [lo, hi], the T corrector steps run only at the levels with lo <= sigma <= hi; null: every level
    corrector_sigmas: Band
    steps: Count  # euler, heun, dpmpp_2m: levels of the karras schedule (then 0)
    schedule: Schedule  # karras | levels (the trained levels, then 0)
    sigma_min: OptionalPositive  # karras range; None: the model's sigma_L
    sigma_max: OptionalPositive  # None: the model's sigma_1
    rho: Positive
    churn: NonNegative  # heun: S_churn
    s_tmin: NonNegative
    s_tmax: OptionalPositive  # None: no upper bound
    s_noise: NonNegative
    use_ema: Bool
    trajectory_samples: Count
    bf16: Bool  # bf16 autocast of the score network (not exact: ~2 % relative error)
    compile: Bool  # torch.compile the score network (exact; pays off over many steps)


@dataclass(frozen=True, config=_SCHEMA)
class ClassifierConfig(_Section):
    """The digit classifier used as an offline feature extractor."""

    n_iters: Count
    batch_size: Count
    lr: Positive


@dataclass(frozen=True, config=_SCHEMA)
class EvaluateConfig(_Section):
    """IS / FID / KID through torch-fidelity."""

    extractor: Literal["auto", "classifier", "inception", "ssl"]
    weights_path: Optional[Str]  # Inception weights (pt_inception-2015-12-05)
    kid_subset_size: KidSubset
    select_samples: Count  # samples per checkpoint for checkpoint selection
    select_steps_each: Count
    nn_grid: Count
    bootstrap_resamples: CountOrOff  # resamples of each 95 % interval of IS / FID / KID (0: none)
    seed_sets: Count  # k > 1: also the FID of k disjoint seed sets of the samples, min and mean (EDM's way)
    bpd_images: CountOrOff  # test images whose bits/dim the probability-flow ODE measures (0: none)
    bpd_tolerance: Positive  # the ODE solver's rtol = atol


@dataclass(frozen=True, config=_SCHEMA)
class InpaintConfig(_Section):
    """Paper Algorithm 2 on held-out images."""

    n_images: Count
    masks: Masks
    random_fraction: OpenFraction  # fraction of pixels hidden by the "random" mask
    sampler: Sampler  # sample.* with these inpaint.* overrides, no denoising step
    n_steps_each: Count
    eps: Eps  # "auto": NCSNv2 technique 4 for T


@dataclass(frozen=True, config=_SCHEMA)
class FiguresConfig(_Section):
    """Toy-scale versions of the paper's Figures 1-3 (the ``figures`` stage, ``ncsn/figures``)."""

    toy_iters: Count  # Adam steps of each 2-D score network (fig. 1: SSM, fig. 3: DSM)
    toy_batch_size: Count
    n_chains: Count  # Langevin chains per panel of fig. 3 (the known-answer test uses 10,000)
    n_steps_each: Count  # T of annealed Langevin in fig. 3; plain Langevin gets L * T steps
    image_iters: Count  # SSM steps per loss curve of fig. 2
    image_batch_size: Count
    image_noise: Positive  # std of the Gaussian perturbation in fig. 2 (paper: N(0, 0.0001))


@dataclass(frozen=True, config=_SCHEMA)
class TrackingConfig(_Section):
    """MLflow tracking and registry."""

    enabled: Bool
    experiment: Str
    register: Bool


@dataclass(frozen=True, config=_SCHEMA)
class PathsConfig(_Section):
    """Every output folder, written once here and interpolated into dvc.yaml."""

    prepare: Str
    classifier: Str
    train: Str
    sample: Str
    evaluate: Str
    inpaint: Str
    figures: Str
    report: Str
    mlflow: Str


@dataclass(frozen=True, config=_SCHEMA)
class Config:
    """The whole configuration of one pipeline run."""

    profile: Str  # the profile group of ncsn/conf (smoke | cpu | paper)
    base: BaseConfig
    data: DataConfig
    model: ModelConfig
    train: TrainConfig
    sample: SampleConfig
    classifier: ClassifierConfig
    evaluate: EvaluateConfig
    inpaint: InpaintConfig
    figures: FiguresConfig
    tracking: TrackingConfig
    paths: PathsConfig

    @model_validator(mode="after")
    def _rules_across_fields(self) -> Config:
        from ncsn.config.rules import check_rules

        check_rules(self)
        return self

    @classmethod
    def defaults(cls, **changes: Any) -> Config:
        """Every section's :meth:`_Section.defaults`, with the default ``profile``; then ``changes``."""
        values = {"profile": shared_values()["profile"], **{name: s.defaults() for name, s in SECTIONS.items()}}
        return cls(**{**values, **changes})

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
    """Tuples (e.g. ``inpaint.masks``) as lists, recursively: what ``yaml.safe_dump`` writes plainly."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
