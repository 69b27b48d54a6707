"""Temporal convolution: a residual 1D convolution over frames at every spatial location."""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn


class TemporalConv(nn.Module):
    """``GroupNorm -> SiLU -> Conv(k over frames) -> GroupNorm -> SiLU -> Conv(k over frames, zero-init)``.

    Returns the *delta* to add to the input (the caller adds it, gated per sample). The output
    convolution starts at zero, so a freshly inflated model equals its image model. The convolutions are
    ``Conv3d`` with kernel ``(k, 1, 1)`` on ``b c f h w``: a 1D convolution over frames that needs no
    reshuffle of the spatial dimensions. Frames are zero-padded at both ends.
    """

    def __init__(self, channels: int, *, kernel_size: int = 3, norm_num_groups: int = 32, dropout: float = 0.0, eps: float = 1e-6):
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"temporal kernel_size must be a positive odd number, got {kernel_size}")
        if channels % norm_num_groups:
            raise ValueError(f"temporal norm_num_groups={norm_num_groups} does not divide channels={channels}")
        padding = (kernel_size // 2, 0, 0)
        self.norm1 = nn.GroupNorm(norm_num_groups, channels, eps=eps)
        self.conv1 = nn.Conv3d(channels, channels, (kernel_size, 1, 1), padding=padding)
        self.norm2 = nn.GroupNorm(norm_num_groups, channels, eps=eps)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv3d(channels, channels, (kernel_size, 1, 1), padding=padding)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Default init for the inner layers, zero for the output convolution (identity at start)."""
        for module in (self.norm1, self.conv1, self.norm2, self.conv2):
            module.reset_parameters()
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        """``x``: ((b f), c, h, w) -> delta of the same shape."""
        h = rearrange(x, "(b f) c h w -> b c f h w", f=num_frames)
        h = self.conv1(nn.functional.silu(self.norm1(h)))
        h = self.conv2(self.dropout(nn.functional.silu(self.norm2(h))))
        return rearrange(h, "b c f h w -> (b f) c h w")
