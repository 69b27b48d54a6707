"""A subject's depth moved by an image-plane transform, composited over the scene with a z-test: the structure of a
drag (:mod:`gen1.drag`).

gen1's depth is normalised inverse depth in [0, 1], larger = nearer (:mod:`gen1.depth`). A drag moves the subject
(its pixels under a mask) by a 2D affine map per frame and keeps its depth values: a move in the image plane at the
subject's own distance. Two pieces, both exact on pixel grids:

* :func:`warp_layer`: the subject's values and mask carried by the transform. Every target pixel looks up the source
  pixel the inverse transform sends it to (nearest pixel): for a whole-pixel translation the layer lands exactly,
  and for a rotation or a scale-up no target pixel is left as a hole (splatting source pixels forward would leave
  some). An affine map is one-to-one, so no two subject pixels compete for a target pixel;
* :func:`composite_nearer`: the moved layer over the scene without the subject (its place filled as an erase fills
  it), with a z-buffer test: where the subject lands on something nearer than itself (by more than ``tolerance``),
  that something stays in front and the subject is hidden there; elsewhere the subject is in front.
"""

from __future__ import annotations

import torch


def warp_layer(values: torch.Tensor, mask: torch.Tensor, transforms: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """``values`` ``(F, C, H, W)`` where ``mask`` ``(F, 1, H, W)`` (> 0.5) is set, moved by ``transforms``
    ``(F, 2, 3)`` (per frame, the affine map ``[x', y'] = A [x, y] + b`` from a source pixel's column and row to its
    target's). Returns (the moved values, 0 where nothing lands; the moved mask as float 0/1)."""
    num_frames, _, height, width = values.shape
    if mask.shape != (num_frames, 1, height, width):
        raise ValueError(f"mask must be (F, 1, H, W) like the values, got {tuple(mask.shape)}")
    if transforms.shape != (num_frames, 2, 3):
        raise ValueError(f"transforms must be (F, 2, 3), one affine map per frame, got {tuple(transforms.shape)}")
    transforms = transforms.double()
    linear, shift = transforms[:, :, :2], transforms[:, :, 2:]
    if bool((torch.linalg.det(linear).abs() < 1e-9).any()):
        raise ValueError("a drag's transform flattens the subject to a line or a point (not invertible)")
    rows, cols = torch.meshgrid(torch.arange(height, dtype=torch.float64), torch.arange(width, dtype=torch.float64),
                                indexing="ij")
    targets = torch.stack([cols.flatten(), rows.flatten()])  # (2, H*W): every target pixel's (x, y)
    sources = torch.linalg.solve(linear, targets[None] - shift)  # (F, 2, H*W): where each one comes from
    source_x = torch.floor(sources[:, 0] + 0.5).long()  # the nearest source pixel
    source_y = torch.floor(sources[:, 1] + 0.5).long()
    inside = (source_x >= 0) & (source_x < width) & (source_y >= 0) & (source_y < height)
    index = (source_y.clamp(0, height - 1) * width + source_x.clamp(0, width - 1))  # (F, H*W)
    flat_mask = (mask > 0.5).flatten(1)  # (F, H*W)
    landed = inside & torch.gather(flat_mask, 1, index)
    flat_values = values.flatten(2)  # (F, C, H*W)
    moved = torch.gather(flat_values, 2, index[:, None].expand(-1, values.shape[1], -1))
    moved = torch.where(landed[:, None], moved, torch.zeros_like(moved))
    return moved.reshape(values.shape), landed.reshape(num_frames, 1, height, width).to(values.dtype)


def composite_nearer(background: torch.Tensor, layer: torch.Tensor, layer_mask: torch.Tensor,
                     tolerance: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """The inverse depth ``layer`` (where ``layer_mask`` > 0.5) over ``background`` (both ``(F, 1, H, W)``, larger =
    nearer) with a z-test: the layer wins where it is not farther than the background by more than ``tolerance``.
    Returns (the composite depth, the mask of where the layer is visible as float 0/1)."""
    visible = (layer_mask > 0.5) & (layer >= background - float(tolerance))
    return torch.where(visible, layer, background), visible.to(background.dtype)


__all__ = ["composite_nearer", "warp_layer"]
