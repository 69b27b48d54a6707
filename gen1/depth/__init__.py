"""Structure for gen1: monocular depth estimation, per-clip normalisation, structure levels t_s.

Public API:

* :class:`DepthEstimator` — pipeline component; ``estimate(frames, batch_size=8)`` -> (F, 1, H, W)
  inverse depth in [0, 1] normalised per clip (1 = near).
* :func:`load_depth_estimator` — from an original MiDaS ``.pt``, a transformers DPT / Depth Anything
  directory, or a gen1 ``save_pretrained`` directory.
* :func:`normalize_clip_depth` (:func:`normalize_z_depth` for exact z-depth), :func:`load_structure` (user-supplied depth), :func:`obscure` (t_s).
"""

from gen1.depth.base import BACKENDS, DepthEstimator, network_input_size
from gen1.depth.loading import load_depth_estimator
from gen1.depth.normalize import normalize_clip_depth, normalize_z_depth, robust_range
from gen1.depth.obscure import MAX_LEVEL, obscure
from gen1.depth.structure import load_structure

__all__ = [
    "BACKENDS",
    "DepthEstimator",
    "MAX_LEVEL",
    "load_depth_estimator",
    "load_structure",
    "network_input_size",
    "normalize_clip_depth",
    "normalize_z_depth",
    "obscure",
    "robust_range",
]
