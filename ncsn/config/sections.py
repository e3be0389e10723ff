"""The sections of ``params.yaml`` as frozen dataclasses, and ``Config``, which holds them all.

The pipeline's values come from ``ncsn/conf`` (``ncsn.config.composition``); each field's
default here equals the shared value of ``ncsn/conf/config.yaml`` (a test keeps them equal),
for code and tests that build one section directly.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any, Literal, Union

DATASETS = ("mnist5k", "mnist", "fashion_mnist", "cifar10", "celeba", "folder", "gmm")
ARCHS = ("ncsn", "ncsnv2", "unet", "mlp")


@dataclass(frozen=True)
class BaseConfig:
    """Shared by every stage."""

    seed: int = 0
    dataset: Literal["mnist5k", "mnist", "fashion_mnist", "cifar10", "celeba", "folder", "gmm"] = "mnist5k"
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
    precond: Literal["ncsnv2", "edm"] = "ncsnv2"  # unet output: F/sigma, or EDM's c_skip/c_out form
    mults: tuple[float, ...] = (0.5, 1.0, 2.0)  # unet: width per resolution, times ngf (full resolution first)
    attention: bool = False  # unet: a self-attention block after the middle block, at the lowest resolution


@dataclass(frozen=True)
class TrainConfig:
    """Adam on annealed denoising score matching."""

    n_iters: int = 3000
    batch_size: int = 128
    lr: float = 1e-3
    beta1: float = 0.9
    weight_decay: float = 0.0
    anneal_power: float = 2.0  # lambda(sigma) = sigma ** anneal_power
    weighting: Literal["paper", "edm"] = "paper"  # paper: uniform levels, sigma ** anneal_power; edm: ncsn.core.losses.edm
    log_sigma_mean: float = -1.89  # weighting edm: levels drawn with ln(sigma) ~ N(mean, std^2)
    log_sigma_std: float = 1.2
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
    # pc only: [lo, hi], the T corrector steps run only at the levels with lo <= sigma <= hi; null: every level
    corrector_sigmas: tuple[float, ...] | None = None
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
    sampler: Literal["ald", "pc"] = "ald"  # sample.* with these inpaint.* overrides, no denoising step
    n_steps_each: int = 20
    eps: Union[float, Literal["auto"]] = 2e-5  # "auto": NCSNv2 technique 4 for T


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

    profile: str = "cpu"  # the profile group of ncsn/conf (smoke | cpu | paper)
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
    """Tuples (e.g. ``inpaint.masks``) as lists, recursively: what ``yaml.safe_dump`` writes plainly."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
