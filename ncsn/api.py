"""The Python API: load a trained model, then sample, inpaint, score and denoise in one line each.

>>> import ncsn
>>> model = ncsn.load("outputs/train/model.pt")    # a checkpoint, its folder, or "models:/ncsn-mnist5k@champion"
>>> x = model.sample(16, seed=0)                    # [16, C, H, W] in [0, 1], the run's own sampler
>>> y = model.inpaint(images, masks, seed=0)        # masks: True/1 = observed; those pixels come back exactly
>>> s, d = model.score(x, 0.1), model.denoise(x, 0.1)   # d = x + sigma^2 * s

Sample ``i`` of ``model.sample(n, seed)`` starts from its own generator seeded with
``seed + i``, as sample ``i`` of the pipeline's sample stage does with ``base.seed + i``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ncsn.config import Config, config_from_dict
from ncsn.core.rng import make_generators
from ncsn.data.transforms import from_model_input, logit
from ncsn.stages.sampler import SamplerSpec, complete, resolve_inpaint_sampler, resolve_sampler, sample_batch
from ncsn.storage.checkpoint import MODEL_FILE, load_checkpoint
from ncsn.storage.score_model import ScoreModel, load_score_model

__all__ = ["Model", "load"]


class Model:
    """A trained score network with its noise levels, its run's configuration and its samplers.

    ``sigmas`` is the [L] descending schedule it was trained on; ``config`` the run's ``Config``;
    ``sampler`` and ``inpaint_sampler`` the resolved settings of ``sample.*`` and ``inpaint.*``.
    """

    def __init__(self, score_model: ScoreModel, config: Config) -> None:
        self._model = score_model
        self.config = config
        self.sampler: SamplerSpec = resolve_sampler(config.sample, score_model.sigmas)
        self.inpaint_sampler: SamplerSpec = resolve_inpaint_sampler(config, score_model.sigmas)

    @property
    def sigmas(self) -> Tensor:
        """[L] noise levels, descending, on the model's device."""
        return self._model.sigmas

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape of one example: (C, H, W), or (D,) for vector data."""
        return self._model.shape

    @property
    def device(self) -> torch.device:
        return self._model.sigmas.device

    def sample(self, n: int, seed: int = 0, *, batch_size: int | None = None) -> Tensor:
        """``n`` samples drawn by the run's sampler (``model.sampler``), sample i from seed ``seed + i``.

        :param batch_size: samples per network call (default ``sample.batch_size``); the result
            does not depend on it beyond the float rounding of the network's kernels.
        :return: [n, C, H, W] float32 images in [0, 1] (or [n, D] points), on the CPU.
        """
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n = {n!r}: the number of samples must be a whole number >= 1")
        size = batch_size or self.config.sample.batch_size
        parts = [sample_batch(self._model, range(start, min(start + size, seed + n)), self.sampler)
                 for start in range(seed, seed + n, size)]
        return self._to_data(torch.cat(parts))

    def inpaint(self, images: Tensor, masks: Tensor, seed: int = 0) -> Tensor:
        """Complete the unobserved pixels of ``images`` (paper Algorithm 2, the run's ``inpaint.*`` sampler).

        :param images: [B, C, H, W] in [0, 1] (float) or uint8 pixels.
        :param masks: [B or 1, 1 or C, H, W], True/1 where the pixel is observed.
        :param seed: image i draws from the generator seeded with ``seed + i``.
        :return: [B, C, H, W] float32 in [0, 1] on the CPU, equal to ``images`` wherever observed.
        """
        y = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
        if y.shape[1:] != self.shape:
            shape = ", ".join(map(str, self.shape))
            raise ValueError(f"images of shape {tuple(images.shape)}; this model takes [B, {shape}]")
        y = y.to(self.device)
        observed = masks.to(self.device)
        completed = complete(self._model, self.inpaint_sampler, self._to_model(y), observed,
                             make_generators(range(seed, seed + len(y)), self.device))
        return torch.where(observed.bool(), y, self._to_data(completed).to(self.device)).cpu()

    def score(self, x: Tensor, sigma: float | Tensor) -> Tensor:
        """s_θ(x, σ) ≈ ∇ₓ log p_σ(x) in the model's input space.

        :param x: [B, *shape] noisy inputs, on any device (the result comes back on it).
        :param sigma: a number or [B] values: trained levels for every network; any σ for
            networks with a continuous embedding of σ (``unet``, ``mlp``).
        :raises ValueError: for a σ the network cannot take, naming its levels.
        """
        sigma_b = torch.as_tensor(sigma, dtype=torch.float32, device=self.device).expand(x.shape[0])
        with torch.inference_mode():
            out = self._model.sigma_score()(x.to(self.device), sigma_b)
        return out.clone().to(x.device)

    def denoise(self, x: Tensor, sigma: float | Tensor) -> Tensor:
        """D(x; σ) = x + σ² s_θ(x, σ): Tweedie's estimate of the clean data.

        :param x: [B, *shape]; :param sigma: as :meth:`score`.
        """
        sigma_b = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).expand(x.shape[0])
        return x + sigma_b.view(-1, *[1] * (x.ndim - 1)) ** 2 * self.score(x, sigma_b)

    def bits_per_dim(self, images: Tensor, seed: int = 0, *, tolerance: float | None = None) -> Tensor:
        """Bits/dim of each 8-bit image through the probability-flow ODE (``ncsn.evaluation.likelihood``).

        :param images: uint8 [B, C, H, W] pixels.
        :param seed: image i is dequantised (and probed) from the generator seeded with ``seed + i``.
        :param tolerance: the ODE solver's rtol = atol (default ``evaluate.bpd_tolerance``).
        :return: [B] float64; −log p/(D ln 2) + 8 of the dequantised images.
        :raises ValueError: for images that are not uint8 of this model's shape, or a network that
            takes only its trained levels.
        """
        from ncsn.evaluation.likelihood import image_bits_per_dim

        if images.dtype != torch.uint8 or images.shape[1:] != self.shape:
            shape = ", ".join(map(str, self.shape))
            raise ValueError(f"images of {images.dtype} {tuple(images.shape)}; bits/dim takes uint8 [B, {shape}]")
        return image_bits_per_dim(self._model, images, seed=seed,
                                  tolerance=tolerance or self.config.evaluate.bpd_tolerance)

    def _to_data(self, x: Tensor) -> Tensor:
        """Model space → data: images clamped to [0, 1] (logit transform undone), points as they are."""
        if x.ndim == 4:
            return from_model_input(x, logit_transform=self._model.logit_transform).float().cpu()
        return x.float().cpu()

    def _to_model(self, y: Tensor) -> Tensor:
        """Data in [0, 1] → model space (the logit transform when the run used it)."""
        return logit(y) if self._model.logit_transform else y


def load(source: str | Path, device: str | torch.device = "cpu", *, use_ema: bool = True) -> Model:
    """A trained model from a checkpoint file, the train stage's folder, or a registry URI.

    :param source: ``outputs/train/model.pt`` (or any checkpoint of ours), ``outputs/train``
        (its ``model.pt``), or ``models:/<name>@<alias>`` / ``models:/<name>/<version>``.
    :param use_ema: the EMA weights when the checkpoint has them.
    :raises CheckpointError: for a missing, unreadable or unsafe file.
    """
    path = _resolve(source)
    ckpt: dict[str, Any] = load_checkpoint(path)
    config = config_from_dict(ckpt["config"], source=f"{path} (its config)")
    model = load_score_model(ckpt, device, use_ema=use_ema, bf16=config.sample.bf16, compile=config.sample.compile)
    return Model(model, config)


def _resolve(source: str | Path) -> Path:
    text = str(source)
    if text.startswith("models:/"):
        from ncsn.config import load_config
        from ncsn.tracking.model_uri import resolve_model_uri

        return resolve_model_uri(text, load_config() if Path("params.yaml").is_file() else None)
    path = Path(text)
    return path / MODEL_FILE if (path / MODEL_FILE).is_file() else path  # a train stage folder: its model.pt
