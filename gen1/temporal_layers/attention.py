"""Temporal transformer: self-attention across the frames of a clip at each spatial location.

Layout (the hot path of video sampling, so kept to two rearranges and fused attention):
``(b f) c h w --GroupNorm--> (b h w) f c --proj_in, + frame position--> blocks --proj_out (zero-init)-->
(b f) c h w``. Attention runs on PyTorch's ``scaled_dot_product_attention`` (flash / memory-efficient
kernels where available) or, when chosen, on ``xformers.ops.memory_efficient_attention``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

ATTENTION_BACKENDS = ("sdpa", "xformers")


def require_xformers():
    """Import ``xformers.ops`` or raise a ``ValueError`` that says how to get it."""
    try:
        import xformers.ops as xops
    except ImportError as error:
        raise ValueError(
            "attention backend 'xformers' was chosen but xformers is not importable "
            f"({error}); install it with `pip install 'gen1[xformers]'` or use backend 'sdpa'"
        ) from None
    return xops


class TemporalSelfAttention(nn.Module):
    """Multi-head self-attention over the frame axis of tokens shaped (N, F, C)."""

    def __init__(self, channels: int, num_heads: int, dropout: float = 0.0):
        super().__init__()
        if channels % num_heads:
            raise ValueError(f"temporal attention: channels={channels} is not divisible by num_heads={num_heads}")
        self.num_heads = num_heads
        self.to_qkv = nn.Linear(channels, 3 * channels, bias=False)
        self.to_out = nn.Linear(channels, channels)
        self.dropout = dropout
        self.backend = "sdpa"

    def set_use_memory_efficient_attention_xformers(self, valid: bool, attention_op=None) -> None:
        """diffusers' hook: ``ModelMixin.enable_xformers_memory_efficient_attention`` reaches this layer too."""
        if valid:
            require_xformers()
        self.backend = "xformers" if valid else "sdpa"

    # CUDA launch grids cap the batch dimension of the fused attention kernels (SDPA flash / memory-efficient
    # and xformers) at 2**16 - 1 ("invalid configuration argument" beyond; pytorch#146704, xformers#845).
    # Temporal attention's batch is (b h w), which passes that at e.g. 8 clips of 96x96 latents, so chunk it.
    max_batch = 2**16 - 1

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        if tokens.shape[0] > self.max_batch:
            return torch.cat([self._attend(chunk) for chunk in tokens.split(self.max_batch)], dim=0)
        return self._attend(tokens)

    def _attend(self, tokens: torch.Tensor) -> torch.Tensor:
        p = self.dropout if self.training else 0.0
        if self.backend == "xformers":
            xops = require_xformers()
            q, k, v = rearrange(self.to_qkv(tokens), "n f (three h d) -> three n f h d", three=3, h=self.num_heads)
            out = xops.memory_efficient_attention(q.contiguous(), k.contiguous(), v.contiguous(), p=p)
            out = rearrange(out, "n f h d -> n f (h d)")
        else:
            q, k, v = rearrange(self.to_qkv(tokens), "n f (three h d) -> three n h f d", three=3, h=self.num_heads)
            out = F.scaled_dot_product_attention(q, k, v, dropout_p=p)
            out = rearrange(out, "n h f d -> n f (h d)")
        return self.to_out(out)


class FeedForward(nn.Module):
    """GELU MLP."""

    def __init__(self, channels: int, mult: int = 4, dropout: float = 0.0):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(channels, channels * mult), nn.GELU(), nn.Dropout(dropout), nn.Linear(channels * mult, channels)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class TemporalBlock(nn.Module):
    """Pre-norm transformer block over frames: ``x + attn(LN(x))``, then ``x + ff(LN(x))``."""

    def __init__(self, channels: int, num_heads: int, ff_mult: int = 4, dropout: float = 0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(channels)
        self.attn = TemporalSelfAttention(channels, num_heads, dropout)
        self.norm2 = nn.LayerNorm(channels)
        self.ff = FeedForward(channels, ff_mult, dropout)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        tokens = tokens + self.attn(self.norm1(tokens))
        return tokens + self.ff(self.norm2(tokens))


class TemporalTransformer(nn.Module):
    """Temporal transformer with a learnable frame-position embedding for up to ``max_frames`` frames.

    Returns the delta to add to its input (the caller adds it, gated per sample); ``proj_out`` starts at
    zero so a freshly inflated model equals its image model. Its blocks are gradient-checkpointed when
    diffusers' ``enable_gradient_checkpointing`` sets ``gradient_checkpointing`` on this module.
    """

    def __init__(
        self,
        channels: int,
        *,
        max_frames: int,
        attention_head_dim: int = 64,
        num_layers: int = 1,
        ff_mult: int = 4,
        norm_num_groups: int = 32,
        dropout: float = 0.0,
        eps: float = 1e-6,
    ):
        super().__init__()
        if channels % norm_num_groups:
            raise ValueError(f"temporal norm_num_groups={norm_num_groups} does not divide channels={channels}")
        num_heads = max(1, channels // attention_head_dim)
        self.max_frames = max_frames
        self.norm = nn.GroupNorm(norm_num_groups, channels, eps=eps)
        self.proj_in = nn.Linear(channels, channels)
        self.frame_position = nn.Parameter(torch.empty(max_frames, channels))
        self.blocks = nn.ModuleList(TemporalBlock(channels, num_heads, ff_mult, dropout) for _ in range(num_layers))
        self.proj_out = nn.Linear(channels, channels)
        self.gradient_checkpointing = False
        self._gradient_checkpointing_func = None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Default init for inner layers, N(0, 0.02) frame positions, zero ``proj_out`` (identity at start)."""
        for module in self.modules():
            if module is not self and hasattr(module, "reset_parameters"):
                module.reset_parameters()
        nn.init.normal_(self.frame_position, std=0.02)
        nn.init.zeros_(self.proj_out.weight)
        nn.init.zeros_(self.proj_out.bias)

    def forward(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        """``x``: ((b f), c, h, w) -> delta of the same shape."""
        if num_frames > self.max_frames:
            raise ValueError(f"num_frames={num_frames} exceeds the temporal layers' max_frames={self.max_frames}")
        height, width = x.shape[-2:]
        tokens = rearrange(self.norm(x), "(b f) c h w -> (b h w) f c", f=num_frames)
        tokens = self.proj_in(tokens) + self.frame_position[:num_frames].to(tokens.dtype)
        for block in self.blocks:
            if torch.is_grad_enabled() and self.gradient_checkpointing and self._gradient_checkpointing_func is not None:
                tokens = self._gradient_checkpointing_func(block, tokens)
            else:
                tokens = block(tokens)
        tokens = self.proj_out(tokens)
        return rearrange(tokens, "(b h w) f c -> (b f) c h w", h=height, w=width)

