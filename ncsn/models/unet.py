"""A small noise-conditional U-Net: the image score network that trains on a CPU."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ncsn.core.precond import PRECONDS, precondition
from ncsn.models.attention import SelfAttention
from ncsn.models.embedding import SigmaEmbedding
from ncsn.models.group_norm import group_norm_silu


def _groups(channels: int) -> int:
    """GroupNorm groups: up to 8, keeping at least 4 channels per group where possible."""
    groups = math.gcd(channels, 8)
    while groups > 1 and channels // groups < 4:
        groups //= 2
    return groups


class LevelResBlock(nn.Module):
    """Pre-activation residual block modulated by the noise level.

    ``h = conv₁(SiLU(GN(x)))``; ``h = conv₂(SiLU(GN(h)·(1 + γ(e)) + β(e)))``;
    ``out = skip(x) + h``, where γ, β come from one Linear of the level embedding
    ``e`` (scale-shift normalisation, the GroupNorm analogue of the paper's
    conditional instance normalisation) and ``skip`` is a 1×1 conv when the
    width changes.

    ``fused``: each GroupNorm (+ FiLM) + SiLU is one op with its backward written out
    (``ncsn.models.group_norm``), the same function within float32 rounding.

    x [B, C_in, H, W], e [B, E] → [B, C_out, H, W].
    """

    def __init__(self, in_ch: int, out_ch: int, emb_dim: int) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(in_ch), in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.film = nn.Linear(emb_dim, 2 * out_ch)
        self.norm2 = nn.GroupNorm(_groups(out_ch), out_ch, affine=False)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.skip = nn.Identity() if in_ch == out_ch else nn.Conv2d(in_ch, out_ch, 1)

    def forward(self, x: Tensor, e: Tensor, *, fused: bool = False) -> Tensor:
        h = self.conv1(group_norm_silu(self.norm1, x, fused=fused))
        scale, shift = self.film(e).chunk(2, dim=1)  # [B, C_out] each
        h = self.conv2(group_norm_silu(self.norm2, h, scale, shift, fused=fused))
        return self.skip(x) + h


class UNet(nn.Module):
    """s_θ(x, i) = net((2x − 1)/√(1 + 4σ_i²), σ_i) / σ_i for images x ∈ [0, 1] (or EDM's form, ``precond``).

    Layout for ``mults = (½, 1, 2)`` and a 28×28 input (widths for ngf = 32)::

        conv 3×3 → ResBlock            28×28×16 ───────────────────────┐ (+)
          conv 3×3 stride 2 → ResBlock 14×14×32 ──────────┐ (+)         │
            conv 3×3 stride 2 → ResBlock → ResBlock 7×7×64 │             │
          ConvTranspose 2×2 → add skip → ResBlock 14×14×32 ┘             │
        ConvTranspose 2×2 → add skip → ResBlock 28×28×16 ────────────────┘
        GroupNorm → SiLU → conv 3×3 (zero-initialised) → C channels

    Design, for 2 CPU cores:

    * Full-resolution features are the expensive ones on a CPU (each is a
      memory-bound pass over B·H·W·C values), yet a residual block at full
      resolution is what denoises at the smallest σ. So the top resolution keeps
      one block each way at half the base width ``ngf``; widths double as the
      resolution halves. ``ngf`` is the width at half resolution.
    * Skips are added, not concatenated, and upsampling is a 2×2 stride-2
      transposed conv (cheaper than nearest upsampling followed by a conv).
    * ``attention``: a ``SelfAttention`` block (4 heads) after the middle block, at the
      lowest resolution, where it is cheap.
    * Conditioning: ``SigmaEmbedding`` of σ_i (Fourier features of log σ + MLP)
      drives a scale and shift after the second GroupNorm of every block.
    * Input: 2x − 1 (as the reference code), divided by √(1 + 4σ_i²), the
      scale of 2x̃ − 1 when the clean 2x − 1 has unit scale, so features stay
      O(1) even for σ₁ ≈ 50 (NCSNv2 technique 1).
      Inputs in another range (logit space) work too; only this scaling
      assumes [0, 1].
    * Output (``precond``): ``"ncsnv2"`` divides it by σ_i (NCSNv2 technique 3): the
      trained quantity σ_i·s_θ is O(1) at every level; the initial score is 0 and the
      initial DSM loss ½·D at every level. ``"edm"`` reads it as EDM's F
      (``ncsn.core.precond.edm_score``): the score of N(½, ¼ I) blurred by σ_i plus
      the network's correction. The last conv starts at zero either way.

    * Layout: weights and activations are channels-last (``channels_last=True``),
      which makes the convolutions faster on CPUs and GPUs for the same numbers;
      inputs and outputs are ordinary NCHW tensors either way.
    * ``fused_norm`` (an attribute, so ``net.fused_norm = True`` switches it on for a built
      network; not part of the state dict): on a CPU in float32, every GroupNorm (+ FiLM) + SiLU
      is one op with its backward written out (``ncsn.models.group_norm``), in training and in
      eval alike. These memory-bound passes are about a quarter of the CPU training step, and
      the library's channels-last GroupNorm is the slowest of them (the cpu-profile step:
      about 1.13× the throughput, bench/bench_cpu_profile.py --fused-vs-unfused). The results
      equal the plain ops' within float32 rounding (≈ 10⁻⁶ relative), not bit for bit, so it is
      off by default: on, the smoke run's weights stop matching tests/golden (its metrics and
      samples do not move). On a GPU, under bf16 autocast and under ``torch.compile`` the plain
      ops run whatever the attribute says.

    Works for 1 or 3 channels and any size divisible by 2^(len(mults) − 1).
    """

    def __init__(self, channels: int, image_size: int, ngf: int, num_levels: int, *, sigmas: Tensor,
                 mults: tuple[float, ...] = (0.5, 1.0, 2.0), channels_last: bool = True,
                 precond: str = "ncsnv2", attention: bool = False, fused_norm: bool = False) -> None:
        super().__init__()
        if precond not in PRECONDS:
            raise ValueError(f"precond must be one of {', '.join(repr(p) for p in PRECONDS)}, got {precond!r}")
        self.precond = precond
        assert sigmas.shape == (num_levels,), f"sigmas must have shape [{num_levels}], got {tuple(sigmas.shape)}"
        factor = 2 ** (len(mults) - 1)
        if image_size % factor:
            raise ValueError(f"image size {image_size} is not divisible by {factor} = 2^(len(mults) - 1) for mults"
                             f" {list(mults)}; give model.mults fewer resolutions or resize the images")
        self.channels, self.image_size = channels, image_size
        self.register_buffer("sigmas", sigmas.detach().clone().float())
        widths = [max(1, round(ngf * m)) for m in mults]
        emb_dim = 4 * ngf
        self.embed = SigmaEmbedding(emb_dim)
        self.conv_in = nn.Conv2d(channels, widths[0], 3, padding=1)
        self.enc = nn.ModuleList([LevelResBlock(w, w, emb_dim) for w in widths])
        self.down = nn.ModuleList([nn.Conv2d(a, b, 3, stride=2, padding=1) for a, b in zip(widths, widths[1:])])
        self.mid = LevelResBlock(widths[-1], widths[-1], emb_dim)
        self.up = nn.ModuleList([nn.ConvTranspose2d(b, a, 2, stride=2) for a, b in zip(widths, widths[1:])])
        self.dec = nn.ModuleList([LevelResBlock(w, w, emb_dim) for w in widths[:-1]])
        self.norm_out = nn.GroupNorm(_groups(widths[0]), widths[0])
        self.conv_out = nn.Conv2d(widths[0], channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)
        self.attn = SelfAttention(widths[-1], _groups(widths[-1])) if attention else None
        self.channels_last = channels_last
        self.fused_norm = fused_norm
        if channels_last:
            self.to(memory_format=torch.channels_last)

    def forward(self, x: Tensor, levels: Tensor) -> Tensor:
        """:param x: [B, C, H, W] noisy images (data range [0, 1]).
        :param levels: [B] int64 in 0..L−1 (0 = largest σ).
        :return: [B, C, H, W] estimated score ∇ₓ log p_σ(x).
        """
        assert levels.shape == (x.shape[0],), f"levels must have shape [{x.shape[0]}], got {tuple(levels.shape)}"
        return self.forward_sigma(x, self.sigmas[levels])

    def forward_sigma(self, x: Tensor, sigma: Tensor) -> Tensor:
        """The score at any noise level: the embedding of σ is continuous.

        :param x: [B, C, H, W] noisy images (data range [0, 1]).
        :param sigma: [B] σ of each example (float32, on x's device).
        :return: [B, C, H, W] estimated score ∇ₓ log p_σ(x).
        """
        assert x.ndim == 4 and x.shape[1] == self.channels, f"expected [B, {self.channels}, H, W], got {tuple(x.shape)}"
        assert sigma.shape == (x.shape[0],), f"sigma must have shape [{x.shape[0]}], got {tuple(sigma.shape)}"
        e = self.embed(sigma)  # [B, E]
        h = (2 * x - 1) / torch.sqrt(1 + 4 * sigma**2)[:, None, None, None]
        if self.channels_last:
            h = h.contiguous(memory_format=torch.channels_last)
        h = self.conv_in(h)
        skips = []
        fused = self.fused_norm
        for k, block in enumerate(self.enc):
            h = block(h, e, fused=fused)
            if k < len(self.down):
                skips.append(h)
                h = self.down[k](h)
        h = self.mid(h, e, fused=fused)
        if self.attn is not None:
            h = self.attn(h)
        for k in reversed(range(len(self.dec))):
            h = self.dec[k](self.up[k](h) + skips.pop(), e, fused=fused)
        h = self.conv_out(group_norm_silu(self.norm_out, h, fused=fused)).contiguous()
        return precondition(self.precond, x, sigma[:, None, None, None], h)
