"""Conditioning routes: how structure and content reach one kind of backbone (see :mod:`gen1.routes.base`).

A route owns everything route-specific: its content encoding, its structure input at a level t_s, its noise and
source-encoding conventions, the settings it accepts, and its model function. The denoising loop
(:mod:`gen1.denoise`), the temporal windows (:mod:`gen1.windows`), the masks (:mod:`gen1.masking`), the pipeline,
the editing layer and the front ends never ask which route they hold: they ask the route.

* :class:`NativeRoute`: gen1's own model (:class:`gen1.unet.VideoUNet` with depth concatenated to the latents and
  CLIP image embeddings in cross-attention).
* :class:`ControlNetRoute`: public checkpoints (a VideoUNet with AnimateDiff motion modules, depth through a
  ControlNet, text through the base's CLIP text encoder, reference images through an IP-Adapter).

This module is the factory: :func:`route_class` picks the first registered route that fits a pipeline's
components. A new kind of backbone is one new file here and one line in :data:`ROUTES` (or, outside gen1,
:func:`register_route`).
"""

from __future__ import annotations

import contextlib
from typing import Iterator, Mapping

from gen1.routes.base import Content, ContentRequest, GuidedPrediction, Route, is_present
from gen1.routes.controlnet import ControlNetRoute
from gen1.routes.native import NativeRoute

#: Routes in the order they are tried; the last one fits any pipeline.
ROUTES: list[type[Route]] = [ControlNetRoute, NativeRoute]


def route_class(components: Mapping[str, object]) -> type[Route]:
    """The route of a pipeline whose components are ``components`` (name -> the component, or its
    ``model_index.json`` entry for a model not loaded yet)."""
    for route in ROUTES:
        if route.fits(components):
            return route
    present = sorted(name for name in components if is_present(components, name))
    raise ValueError(f"no route fits a pipeline with the components {present}")


def register_route(route: type[Route]) -> None:
    """Add a route of another kind of backbone, tried before the built-in ones."""
    if route not in ROUTES:
        ROUTES.insert(0, route)


@contextlib.contextmanager
def registered_route(route: type[Route]) -> Iterator[type[Route]]:
    """:func:`register_route` for the duration of a ``with`` block (tests, experiments)."""
    register_route(route)
    try:
        yield route
    finally:
        ROUTES.remove(route)


__all__ = ["ROUTES", "Content", "ContentRequest", "ControlNetRoute", "GuidedPrediction", "NativeRoute", "Route",
           "is_present", "register_route", "registered_route", "route_class"]
