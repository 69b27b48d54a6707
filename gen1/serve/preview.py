"""The structure preview: the depth an edit will be guided by, at any structure level t_s, without re-estimating.

:func:`prepare_structure` estimates the clip's depth once (or takes your own depth), exactly as the pipeline
prepares it; :meth:`StructurePreview.at` then obscures that cached depth to a level with the route's own
structure function (:meth:`gen1.routes.Route.structure`, the one an edit calls), so moving the t_s slider costs a
blur, not a depth estimate, and shows what the edit's comparison will show.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from gen1.routes import Route


@dataclass
class StructurePreview:
    """A clip's unobscured depth ``(F, 1, H, W)`` in [0, 1] and the route whose structure it will be."""

    depth: torch.Tensor
    latent_size: tuple[int, int]
    route: Route

    def at(self, level: float) -> torch.Tensor:
        """The depth obscured to ``level``, as the edit will see it (``(F, 1, H, W)`` in [0, 1])."""
        return self.route.structure(self.depth, level, self.latent_size)[0]

    def image(self, level: float, frame: int = 0) -> np.ndarray:
        """One frame of :meth:`at` as a grey ``uint8 (H, W)`` image (white = near)."""
        shown = self.at(level)[frame, 0]
        return (shown.clamp(0, 1) * 255).round().to(torch.uint8).numpy()


def prepare_structure(pipe, frames, depth=None) -> StructurePreview:
    """Depth of ``frames`` (uint8 ``(F, H, W, 3)``, the clip an edit reads) as ``pipe`` will prepare it: estimated
    by its depth estimator, or ``depth`` (your own, as :func:`gen1.editing.read_inputs` reads it)."""
    source = pipe.source_as_read(frames)
    with torch.no_grad():
        full = pipe.prepare_depth(source.frames, depth)
    return StructurePreview(depth=full, latent_size=source.latent_size, route=pipe.route)
