"""Multi-head self-attention over the pixels of a feature map, as a residual block."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class SelfAttention(nn.Module):
    """``out = x + proj(MHA(GN(x)))``: every pixel attends to every pixel of the same image.

    The map is read as H·W tokens of C features: GroupNorm, one Linear for queries, keys
    and values, ``heads`` heads of scaled dot-product attention, and an output Linear that
    starts at zero, so the block starts as the identity. Used at the lowest resolution of
    the U-Net (7×7 for 28×28 inputs), where 49 tokens make it cheap and let the network
    relate the far ends of a digit.

    x [B, C, H, W] (any memory format) → [B, C, H, W]; C divisible by ``heads``.
    """

    def __init__(self, channels: int, groups: int, heads: int = 4) -> None:
        super().__init__()
        assert channels % heads == 0, f"channels ({channels}) must be divisible by heads ({heads})"
        self.heads = heads
        self.norm = nn.GroupNorm(groups, channels)
        self.qkv = nn.Linear(channels, 3 * channels)
        self.proj = nn.Linear(channels, channels)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        tokens = self.norm(x).permute(0, 2, 3, 1).reshape(b, h * w, c)  # [B, HW, C]
        q, k, v = self.qkv(tokens).reshape(b, h * w, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)  # [B, heads, HW, C/heads]
        out = self.proj(out.transpose(1, 2).reshape(b, h * w, c))
        return x + out.reshape(b, h, w, c).permute(0, 3, 1, 2)
