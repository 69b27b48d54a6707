"""Full-reference metrics against a ground-truth edit: PSNR, SSIM, and style accuracy.

All inputs are float videos (F,3,H,W) in [0, 1] (see :func:`as_float_video` for uint8 (F,H,W,3) arrays).

- **PSNR** per frame, ``10 log10(1 / MSE)`` over all pixels and channels of the frame, capped at
  :data:`PSNR_CAP` (100 dB) so identical frames give a finite number; the clip's value is the mean over frames.
- **SSIM** (Wang et al. 2004): Gaussian window 11x11, sigma 1.5, ``C1 = 0.01^2``, ``C2 = 0.03^2`` (data
  range 1), computed per channel on the 'valid' region (no padding) and averaged over channels, pixels and
  frames. For frames smaller than 11 pixels the window shrinks to the largest odd size that fits.
- **Style accuracy**: each video is summarised by its colour histogram (8x8x8 RGB bins over all pixels of
  all frames, normalised to sum to 1). With ``d`` the L1 distance between histograms, a clip scores 1 if
  ``d(output, target) < d(output, source)`` (the output looks more like the ground-truth edit than like the
  source rendering), 0 if ``>``, and 0.5 on a tie. Averaged over clips it is the fraction of edits that
  reached the target style. :func:`style_score` also gives the continuous
  ``d(out, source) / (d(out, source) + d(out, target))`` in [0, 1].
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

PSNR_CAP = 100.0
HISTOGRAM_BINS = 8


def as_float_video(frames) -> torch.Tensor:
    """uint8 (F,H,W,3) numpy/tensor or float (F,3,H,W) [0,1] tensor -> float32 (F,3,H,W) tensor on CPU."""
    if isinstance(frames, np.ndarray):
        frames = torch.from_numpy(np.ascontiguousarray(frames))
    if not isinstance(frames, torch.Tensor):
        raise ValueError(f"frames must be a numpy array or a torch tensor, got {type(frames).__name__}")
    if frames.dtype == torch.uint8:
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"uint8 frames must have shape (F,H,W,3), got {tuple(frames.shape)}")
        return frames.permute(0, 3, 1, 2).float().div(255.0)
    if frames.ndim != 4 or frames.shape[1] != 3:
        raise ValueError(f"float frames must have shape (F,3,H,W), got {tuple(frames.shape)}")
    return frames.detach().float().cpu()


def _check_same_shape(a: torch.Tensor, b: torch.Tensor, names=("output", "reference")) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{names[0]} and {names[1]} must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")


def psnr(output, reference) -> float:
    """Mean over frames of per-frame PSNR in dB (pixels in [0,1]), each capped at ``PSNR_CAP``."""
    x, y = as_float_video(output), as_float_video(reference)
    _check_same_shape(x, y)
    mse = (x - y).square().flatten(1).mean(1)
    values = [PSNR_CAP if m <= 10 ** (-PSNR_CAP / 10) else min(PSNR_CAP, -10 * math.log10(m)) for m in mse.tolist()]
    return float(sum(values) / len(values))


def _gaussian_window(size: int, sigma: float) -> torch.Tensor:
    coords = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    g = torch.exp(-coords.square() / (2 * sigma**2))
    return g / g.sum()


def ssim(output, reference, *, window_size: int = 11, sigma: float = 1.5) -> float:
    """Mean SSIM over frames, channels and valid pixels (Gaussian window; see the module docstring)."""
    x, y = as_float_video(output), as_float_video(reference)
    _check_same_shape(x, y)
    size = min(window_size, x.shape[-2], x.shape[-1])
    size = size if size % 2 == 1 else size - 1
    g = _gaussian_window(size, sigma)
    channels = x.shape[1]
    kh = g.view(1, 1, size, 1).expand(channels, 1, size, 1)
    kw = g.view(1, 1, 1, size).expand(channels, 1, 1, size)

    def blur(z):
        return F.conv2d(F.conv2d(z, kh, groups=channels), kw, groups=channels)

    c1, c2 = 0.01**2, 0.03**2
    mu_x, mu_y = blur(x), blur(y)
    sxx = blur(x * x) - mu_x.square()
    syy = blur(y * y) - mu_y.square()
    sxy = blur(x * y) - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x.square() + mu_y.square() + c1) * (sxx + syy + c2))
    return float(ssim_map.mean())


def color_histogram(frames, bins: int = HISTOGRAM_BINS) -> torch.Tensor:
    """Normalised joint RGB histogram (bins**3,) over all pixels of all frames."""
    x = as_float_video(frames)
    idx = (x.clamp(0, 1) * bins).long().clamp_max(bins - 1)  # (F,3,H,W)
    flat = (idx[:, 0] * bins + idx[:, 1]) * bins + idx[:, 2]
    hist = torch.bincount(flat.flatten(), minlength=bins**3).float()
    return hist / hist.sum()


def style_distances(output, source, target, bins: int = HISTOGRAM_BINS) -> tuple[float, float]:
    """(L1 histogram distance output-source, output-target)."""
    h_out, h_src, h_tgt = (color_histogram(v, bins) for v in (output, source, target))
    return float((h_out - h_src).abs().sum()), float((h_out - h_tgt).abs().sum())


def style_accuracy(output, source, target, bins: int = HISTOGRAM_BINS) -> float:
    """1.0 if the output's colours are closer to ``target`` (the ground-truth edit) than to ``source``, 0.0 if
    farther, 0.5 on a tie. Average it over clips for a fraction."""
    d_src, d_tgt = style_distances(output, source, target, bins)
    if math.isclose(d_src, d_tgt, abs_tol=1e-9):
        return 0.5
    return 1.0 if d_tgt < d_src else 0.0


def style_score(output, source, target, bins: int = HISTOGRAM_BINS) -> float:
    """Continuous version: ``d_src / (d_src + d_tgt)`` in [0, 1] (1 = target's colours, 0 = source's)."""
    d_src, d_tgt = style_distances(output, source, target, bins)
    total = d_src + d_tgt
    return 0.5 if total == 0 else d_src / total
