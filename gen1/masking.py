"""Masks for masked (subject) edits: loading, checking against the video, feathering at latent resolution.

Convention: mask value 1 (white) marks the region to EDIT, 0 (black) the region kept from the source. A mask is
one image applied to every frame, or a video / stack with one mask per frame.

Feathering (:func:`feather_mask`): the pixel mask is reduced to the latent grid by area averaging (the fraction
of each latent cell's pixels that are masked), then blurred with a separable Gaussian of standard deviation
``sigma`` latent cells, truncated at ``radius = ceil(2 * sigma)`` cells and normalised to sum 1, with replicate
padding at the frame borders. So the edit fades in over about ``2 * sigma`` latent cells (16 * sigma pixels
for a Stable Diffusion VAE) and a cell further than ``radius`` cells from the masked region keeps exactly 0.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from gen1.conditioning import resize
from gen1.media import read_frames_or_images
from gen1.media.arrays import read_npy
from gen1.media.images import alpha_mask
from gen1.media.resize import cover_geometry, edited_frames_shape, same_shape
from gen1.seamless import SeamAnchor, blend_seamlessly


def _to_gray_float(array: np.ndarray) -> np.ndarray:
    """uint8 / float array (..., H, W) or (..., H, W, C) -> float32 (..., H, W) in [0, 1]."""
    array = np.asarray(array)
    if array.dtype == np.uint8:
        array = array.astype(np.float32) / 255.0
    else:  # bool or float
        array = array.astype(np.float32)
    if array.ndim >= 3 and array.shape[-1] in (1, 3, 4):
        array = array[..., :3].mean(axis=-1) if array.shape[-1] >= 3 else array[..., 0]
    return array


def read_mask_array(path, max_pixels: int | None = None) -> np.ndarray:
    """A mask saved with ``np.save`` (bool, 0/1 or 0-255 integers, floats in [0, 1]; one ``(H, W)`` or one per frame
    ``(F, H, W)``, ``(F, 1, H, W)``, ``(F, H, W, 1|3)``), read safely (:func:`gen1.media.arrays.read_npy`)."""
    return mask_values(read_npy(path, "mask array", max_pixels), f"mask array '{path}'")


def mask_values(array: np.ndarray, name: str = "mask array") -> np.ndarray:
    """A mask given as numbers (a ``.npy`` file's, or an array passed in Python) as float32 in [0, 1], checked:
    bool; integers 0/1 (a label of the subject) or 0-255 (an 8-bit image), told apart by the largest value; floats
    in [0, 1]; ``(F, 1, H, W)`` made ``(F, H, W)``. ``ValueError`` naming it (``name``) for NaN, values outside
    those ranges, or 2 or 4 channels."""
    array = np.asarray(array)
    if array.ndim >= 3 and array.shape[-1] in (2, 4) and array.shape[-2] > 4:
        raise ValueError(f"{name} has shape {array.shape}: {array.shape[-1]} channels; give a mask with one (grey "
                         "or 0/1) or three")
    if array.dtype.kind == "f" and not bool(np.isfinite(array).all()):
        raise ValueError(f"{name} holds NaN or infinite values; a mask holds 0 (keep) to 1 (edit)")
    if array.dtype.kind == "f" and array.size and (float(array.min()) < 0.0 or float(array.max()) > 1.0):
        raise ValueError(f"{name} holds floats from {float(array.min()):g} to {float(array.max()):g}; a float mask "
                         "holds 0 (keep) to 1 (edit) (0-255 masks: give them as integers)")
    if array.dtype.kind in "iu" and array.size:
        low, high = int(array.min()), int(array.max())
        if low < 0 or high > 255:
            raise ValueError(f"{name} holds integers from {low} to {high}; a mask holds 0/1 or 0-255")
        array = array.astype(np.float32) / (1.0 if high <= 1 else 255.0)
    elif array.dtype.kind in "biu":
        array = array.astype(np.float32)
    elif array.dtype.kind != "f":
        raise ValueError(f"{name} holds {array.dtype} values; a mask holds numbers (bool, int or float)")
    return array[:, 0] if array.ndim == 4 and array.shape[1] == 1 else array


def mask_to_tensor(mask) -> torch.Tensor:
    """Turn a mask given as a path, PIL image, numpy array or tensor into float ``(F, 1, H, W)`` in [0, 1].

    * path: an image file (one mask for all frames) or a video (one mask per frame), read with
      :func:`gen1.media.read_frames_or_images`, or a ``.npy`` array (:func:`read_mask_array`);
    * an image with transparency (file or PIL image) is read as its alpha (:func:`gen1.media.images.alpha_mask`);
    * PIL image or array ``(H, W)``, ``(H, W, C)``: one mask; array ``(F, H, W)``, ``(F, 1, H, W)`` or
      ``(F, H, W, C)``: per frame (its values as :func:`mask_values` takes them);
    * tensor ``(H, W)``, ``(1, H, W)``, ``(F, 1, H, W)`` or ``(F, H, W)``: float in [0, 1] (or bool).
    """
    if isinstance(mask, (str, os.PathLike)):
        path = Path(mask)
        if not path.is_file():
            raise FileNotFoundError(f"mask file not found: '{path}'")
        if path.suffix.lower() == ".npy":
            return mask_to_tensor(read_mask_array(path))
        array = read_frames_or_images(path, mask=True)  # transparency: its alpha is the region
        return torch.from_numpy(_to_gray_float(array)).unsqueeze(1).clamp(0, 1)
    if hasattr(mask, "convert") and hasattr(mask, "size"):  # PIL image: 8-bit grey (or alpha), as a file is read
        alpha = alpha_mask(mask)
        mask = (np.asarray(mask.convert("L")) if alpha is None else alpha).astype(np.float32) / 255.0
    if isinstance(mask, np.ndarray):
        gray = _to_gray_float(mask_values(mask))
        if gray.ndim == 2:
            gray = gray[None]
        if gray.ndim != 3:
            raise ValueError(f"mask array must be (H,W), (H,W,C), (F,H,W) or (F,H,W,C), got shape {mask.shape}")
        return torch.from_numpy(gray).unsqueeze(1).clamp(0, 1)
    if isinstance(mask, torch.Tensor):
        tensor = mask.detach().float() if mask.dtype != torch.bool else mask.detach().float()
        if tensor.ndim == 2:
            tensor = tensor[None, None]
        elif tensor.ndim == 3:
            tensor = tensor[:, None] if tensor.shape[0] != 1 else tensor[None]
        if tensor.ndim != 4 or tensor.shape[1] != 1:
            raise ValueError(f"mask tensor must be (H,W), (F,H,W) or (F,1,H,W), got shape {tuple(mask.shape)}")
        return tensor.cpu().clamp(0, 1)
    raise ValueError(f"mask must be a path, PIL image, numpy array or tensor, got {type(mask).__name__}")


def prepare_mask(mask, num_frames: int, height: int, width: int) -> torch.Tensor:
    """Load ``mask`` and check it against the video: returns float ``(num_frames, 1, height, width)``.

    A mask of the video's shape at another size is scaled to it (:func:`mask_at_size`). Raises ``ValueError`` for
    another shape or if a per-frame mask has a frame count other than ``num_frames``.
    """
    tensor = mask_at_size(mask_to_tensor(mask), (height, width))
    if tensor.shape[0] == 1:
        tensor = tensor.expand(num_frames, -1, -1, -1)
    elif tensor.shape[0] != num_frames:
        raise ValueError(f"mask has {tensor.shape[0]} frames but the video has {num_frames} (give 1 or {num_frames})")
    return tensor.contiguous()


def mask_at_size(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """A float mask ``(F, 1, h, w)`` at the video's ``size`` (H, W): as it is at that size; scaled to it when it has
    the video's shape at another size (within a pixel: a mask painted on a smaller or larger copy of the frame, as
    ``gen1 edit`` scales it), or the shape of the frames an edit reads (:func:`edited_frames_shape`: the video at a
    short side, its long side cut to a multiple of 8; or that enlarged by a whole factor, as the web app's canvas
    is), put back where those frames lie in the video (what they cut away is not in the mask); else ``ValueError``
    naming both sizes."""
    height, width = size
    mask_height, mask_width = mask.shape[-2:]
    if (mask_height, mask_width) == (height, width):
        return mask
    if same_shape(size, (mask_height, mask_width)):
        return resize(mask.float(), (height, width)).clamp(0, 1)
    if not edited_frames_shape(size, (mask_height, mask_width)):
        raise ValueError(f"mask size {mask_width}x{mask_height} (WxH) does not match the video size {width}x{height} "
                         "(a mask has the video's size, or another size of the same shape)")
    scaled_h, scaled_w, top, left = cover_geometry(height, width, mask_height, mask_width)
    uncut = mask.float().new_zeros((*mask.shape[:-2], scaled_h, scaled_w))
    uncut[..., top:top + mask_height, left:left + mask_width] = mask.float()
    return F.interpolate(uncut, size=(height, width), mode="bilinear", antialias=True,
                         align_corners=False).clamp(0, 1)


def grow(mask: torch.Tensor, pixels: int) -> torch.Tensor:
    """Binary ``mask`` ``(F, 1, H, W)`` grown by ``pixels`` (a square max filter, as a row filter then a column filter:
    the same result, in 2 k instead of k² comparisons a pixel for a k-pixel square; 16x faster at 512 px)."""
    if pixels <= 0:
        return mask
    rows = F.max_pool2d(mask.float(), (1, 2 * pixels + 1), stride=1, padding=(0, pixels))
    return F.max_pool2d(rows, (2 * pixels + 1, 1), stride=1, padding=(pixels, 0))


def gaussian_kernel1d(sigma: float) -> torch.Tensor:
    """A normalised 1D Gaussian of standard deviation ``sigma`` truncated at ``ceil(2 * sigma)`` taps each side."""
    radius = max(1, math.ceil(2.0 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    return kernel / kernel.sum()


def feather_mask(mask: torch.Tensor, latent_size: tuple[int, int], sigma: float = 1.0) -> torch.Tensor:
    """Pixel mask ``(F, 1, H, W)`` -> feathered latent mask ``(F, 1, h, w)`` (see module docstring).

    ``sigma <= 0`` disables the blur (area averaging only).
    """
    latent = F.adaptive_avg_pool2d(mask.float(), latent_size)
    if sigma <= 0:
        return latent.clamp(0, 1)
    kernel = gaussian_kernel1d(sigma).to(latent.device)
    radius = kernel.numel() // 2
    latent = F.pad(latent, (radius, radius, radius, radius), mode="replicate")
    latent = F.conv2d(latent, kernel.view(1, 1, 1, -1))
    latent = F.conv2d(latent, kernel.view(1, 1, -1, 1))
    return latent.clamp(0, 1)


class KeptRegion:
    """What a masked edit keeps: the source where the mask is 0, in latents at every step and in pixels at the end.

    * :meth:`__call__` is a :func:`gen1.denoise.denoise` step hook: after each step the kept region of the
      latents is reset to the source latents noised to the *next* step's level (the same ``noise`` the edit
      started from), and to the clean source latents after the last step, blended with the feathered latent
      mask ``latent_mask`` (1 = edit). The model therefore denoises the edited region in the context of the
      real surroundings.
    * :meth:`composite` puts the kept pixels back after decoding. The VAE decoder is not local (GroupNorm
      statistics, mid-block attention) and not lossless, so decoded latents never equal the source; the kept
      region is taken from the source frames themselves. The pixel blend weight is the user's pixel mask times
      the feathered latent mask brought to pixels: 0 wherever the user's mask is 0 (those pixels are the
      source exactly), and the feather falls inside the edited region.
    """

    def __init__(self, pixel_mask: torch.Tensor, latent_mask: torch.Tensor, source_latents: torch.Tensor,
                 noise: torch.Tensor, scheduler, timesteps: torch.Tensor, seamless: bool = False,
                 seam_anchor: SeamAnchor | None = None):
        self.seamless = seamless
        self.seam_anchor = seam_anchor
        self.pixel_mask = pixel_mask
        self.latent_mask = latent_mask
        self.source_latents = source_latents
        self.noise = noise
        self.scheduler = scheduler
        self.timesteps = timesteps

    @classmethod
    def from_pixel_mask(cls, mask: torch.Tensor, size: tuple[int, int], latent_size: tuple[int, int],
                        sigma: float, *, source_latents: torch.Tensor, noise: torch.Tensor, scheduler,
                        timesteps: torch.Tensor, cover: bool = False, seamless: bool = False,
                        seam_anchor: SeamAnchor | None = None) -> "KeptRegion":
        """From the user's mask ``(F, 1, H0, W0)`` at the source size; ``size`` is the output ``(H, W)``.

        ``cover``: every pixel of the mask (> 0.5) is edited fully (pixel weight 1): the latent cells it touches and
        their neighbours are edited at weight 1, the feather only falls outside them. An erase needs this: a
        feathered weight below 1 on the subject would blend the subject back in (a ghost). ``seamless``: the
        redrawn pixels' colours are corrected to meet the kept ones at the mask's edge
        (:func:`gen1.seamless.blend_seamlessly`; an erase's, whose drawing should continue its surroundings), or
        as ``seam_anchor`` says (:class:`gen1.seamless.SeamAnchor`; a drag's: the old place meets the pixels outside
        the subject's old and new places, not the moved subject's own)."""

        pixel_mask = resize(mask.float(), tuple(size)).clamp(0, 1)
        latent = feather_mask(pixel_mask, latent_size, sigma)
        if cover:
            touched = (F.adaptive_max_pool2d(pixel_mask, latent_size) > 0.5).float()
            latent = torch.maximum(latent, F.max_pool2d(touched, 3, stride=1, padding=1))
        latent_mask = latent.permute(1, 0, 2, 3).unsqueeze(0).to(source_latents.device)  # (1, 1, F, h, w)
        return cls(pixel_mask, latent_mask, source_latents, noise, scheduler, timesteps, seamless=seamless,
                   seam_anchor=seam_anchor)

    def __call__(self, index: int, t, latents: torch.Tensor, prediction: torch.Tensor) -> torch.Tensor:
        if index + 1 < len(self.timesteps):
            kept = self.scheduler.add_noise(self.source_latents, self.noise, self.timesteps[index + 1 : index + 2])
        else:
            kept = self.source_latents
        return self.latent_mask * latents + (1.0 - self.latent_mask) * kept

    def pixel_weight(self) -> torch.Tensor:
        """Per-pixel weight of the edit ``(F, 1, H, W)`` on the CPU: user mask x feathered mask at pixel size."""
        feathered = self.latent_mask[0].permute(1, 0, 2, 3).float().cpu()
        feathered = F.interpolate(feathered, size=tuple(self.pixel_mask.shape[-2:]), mode="bilinear",
                                  align_corners=False)
        return (self.pixel_mask.cpu() * feathered).clamp(0, 1)

    def composite(self, edited: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
        """Decoded frames ``(F, 3, H, W)`` with the kept region taken from the ``source`` frames (and with
        ``seamless`` the redrawn region blended into them)."""
        weight = self.pixel_weight()
        composed = weight * edited + (1.0 - weight) * source
        if self.seamless:
            region = self.pixel_mask.cpu() > 0.5
            if self.seam_anchor is not None and self.seam_anchor.redrawn is not None:
                region = region & (self.seam_anchor.redrawn.cpu() > 0.5)
            composed = blend_seamlessly(composed, source, region.float(), anchor=self.seam_anchor)
        return composed
