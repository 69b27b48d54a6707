"""Conditioning routes: how structure and content reach the network, as model functions for the denoising loop.

A route holds everything prepared for one edit (structure, content, guidance plan) and answers one question:
``route.predict(latents, t, frames) -> guided prediction`` for the latents of the frames ``frames`` (a slice of
the video). The denoising loop (:mod:`gen1.denoise`), the temporal windows (:mod:`gen1.windows`), the masks
(:mod:`gen1.masking`) and the video I/O never look inside a route, so a new way of conditioning is a new
route, not a branch in the loop.

* :class:`NativeRoute`: gen1's own model (:class:`gen1.unet.VideoUNet` with depth concatenated to the latents and
  CLIP image embeddings in cross-attention).
* :class:`ControlNetRoute`: public checkpoints (a VideoUNet with AnimateDiff motion modules, depth through a
  ControlNet, text through the base's CLIP text encoder).
"""

from gen1.routes.controlnet import ControlNetRoute
from gen1.routes.native import NativeRoute

__all__ = ["ControlNetRoute", "NativeRoute"]
