"""gen1: structure- and content-guided video editing with latent video diffusion.

An open implementation of the method of Esser et al., "Structure and Content-Guided Video Synthesis
with Diffusion Models" (Runway Gen-1, arXiv 2302.03011): a pretrained image UNet is inflated with
temporal layers, conditioned on obscured depth (structure) and CLIP embeddings (content).

Heavy submodules are imported lazily so that ``import gen1`` and ``gen1 --help`` stay fast.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> submodule that defines it
_LAZY_EXPORTS = {
    "VideoUNet": "gen1.unet",
    "Gen1Pipeline": "gen1.pipeline",
    "DepthEstimator": "gen1.depth",
    "load_depth_estimator": "gen1.depth",
    "obscure": "gen1.depth",
    "load_structure": "gen1.depth",
    "normalize_clip_depth": "gen1.depth",
    "ContentEncoder": "gen1.content",
    "load_adapter": "gen1.adapters",
    "remove_adapter": "gen1.adapters",
}


def __getattr__(name: str):
    module_name = _LAZY_EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'gen1' has no attribute {name!r}")
    return getattr(importlib.import_module(module_name), name)


def __dir__():
    return sorted(list(globals()) + list(_LAZY_EXPORTS))
