"""The structure preview: the depth an edit will be guided by, at any structure level t_s, without re-estimating.

:func:`prepare_structure` estimates the clip's depth once (or takes your own depth), exactly as the pipeline
prepares it; :meth:`StructurePreview.at` then obscures that cached depth to a level on the grid the model sees
structure on (the latent grid for native Gen-1 models, the pixel grid for a depth ControlNet), so moving the
t_s slider costs a blur, not a depth estimate, and shows what the edit's comparison will show.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class StructurePreview:
    """A clip's unobscured depth ``(F, 1, H, W)`` in [0, 1] and where the model sees it."""

    depth: torch.Tensor
    latent_size: tuple[int, int]
    on_pixel_grid: bool  # a ControlNet route: structure obscured on the output's pixel grid

    def at(self, level: float) -> torch.Tensor:
        """The depth obscured to ``level``, as the edit will see it (``(F, 1, H, W)`` in [0, 1])."""
        from gen1.conditioning import video_structure
        from gen1.depth import obscure

        if self.on_pixel_grid:
            return obscure(self.depth, level).clamp(0, 1)
        return video_structure(self.depth, level, self.latent_size)[0]

    def image(self, level: float, frame: int = 0) -> np.ndarray:
        """One frame of :meth:`at` as a grey ``uint8 (H, W)`` image (white = near)."""
        shown = self.at(level)[frame, 0]
        return (shown.clamp(0, 1) * 255).round().to(torch.uint8).numpy()


def prepare_structure(pipe, frames, depth=None) -> StructurePreview:
    """Depth of ``frames`` (uint8 ``(F, H, W, 3)``, the clip an edit reads) as ``pipe`` will prepare it: estimated
    by its depth estimator, or ``depth`` (your own, as :func:`gen1.editing.read_inputs` reads it)."""
    from gen1.pipeline import SourceVideo

    source = SourceVideo.prepare(frames, multiple=pipe.vae_scale_factor)
    with torch.no_grad():
        full = pipe.prepare_depth(source.frames, depth)
    return StructurePreview(depth=full, latent_size=source.latent_size, on_pixel_grid=pipe.route_name == "controlnet")
