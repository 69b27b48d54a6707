"""Routes own everything route-specific: nothing outside gen1/routes/ asks which route it holds, and a third kind of
backbone, written in this file alone, runs every Gen-1 mode the pipeline offers."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from gen1.content import as_unet_context, null_content
from gen1.depth import obscure
from gen1.routes import (Content, ControlNetRoute, GuidedPrediction, NativeRoute, Route, registered_route,
                         route_class)
from tiny_pipeline import tiny_pipeline

PACKAGE = Path(__file__).resolve().parents[1] / "gen1"

#: What asking "which route is this?" looks like in code.
ROUTE_TESTS = re.compile(r'route_name|is_public_model|\bNativeRoute\b|\bControlNetRoute\b|[=!]= *"(controlnet|native)"'
                         r'|"(controlnet|native)" *[=!]=|controlnet is (not )?None|isinstance\([^)]*Route\b')


def test_nothing_outside_the_routes_asks_which_route_it_holds():
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.is_relative_to(PACKAGE / "routes"):
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if ROUTE_TESTS.search(line):
                found.append(f"{path.relative_to(PACKAGE.parent)}:{number}: {line.strip()}")
    assert not found, "route tests outside gen1/routes/:\n" + "\n".join(found)


def test_the_factory_picks_a_route_by_components():
    assert route_class({"unet": object(), "controlnet": object()}) is ControlNetRoute
    assert route_class({"unet": object(), "controlnet": None}) is NativeRoute
    assert route_class({"unet": ["gen1.unet", "VideoUNet"], "controlnet": [None, None]}) is NativeRoute  # an index


def test_a_route_refuses_the_settings_it_does_not_take_naming_them():
    with pytest.raises(ValueError, match="--controlnet-scale does not apply to MODEL, a native Gen-1 model"):
        NativeRoute.check_settings({"controlnet_conditioning_scale": 0.5}, label=lambda n: "--controlnet-scale",
                                   model="MODEL")
    NativeRoute.check_settings({"controlnet_conditioning_scale": 1.0, "negative_prompt": None})  # neutral: fine
    ControlNetRoute.check_settings({"controlnet_conditioning_scale": 0.5, "negative_prompt": "blurry"})
    pipe = tiny_pipeline()
    with pytest.raises(ValueError, match="negative_prompt does not apply"):
        pipe(torch.rand(2, 3, 16, 16), content_embeds=torch.zeros(16), negative_prompt="x", num_inference_steps=1)


# ------------------------------------------------------------------------------------------------ a third route
@dataclass
class PooledPrediction(GuidedPrediction):
    """Structure as one channel pooled to the latent grid (average pooling, unlike the native route's resize)."""

    def evaluate(self, latents, timesteps, hidden, image_mode, frames):
        ToyRoute.calls.append((latents.shape[2], None if image_mode is None else tuple(image_mode)))
        sample = self.terms_of(torch.cat([latents, self.structure_of(frames)], dim=1))
        return self.unet(sample, timesteps, encoder_hidden_states=hidden, image_mode=image_mode,
                         return_dict=False)[0]


class ToyRoute(Route):
    """A backbone of a kind gen1 does not ship: picked for UNets marked ``toy_route``; content only as precomputed
    embeddings; structure obscured on the pixel grid, then average-pooled to the latent grid."""

    description = "a toy model"
    calls: list = []

    @classmethod
    def fits(cls, components):
        return bool(getattr(components.get("unet"), "toy_route", False))

    def encode_content(self, content, *, generator, device):
        embeds = torch.as_tensor(content.content_embeds).float().reshape(1, -1)
        return Content(as_unet_context(embeds), as_unet_context(null_content(1, embeds.shape[-1], device)))

    def structure(self, depth, level, latent_size):
        shown = obscure(depth, level).clamp(0, 1)
        pooled = F.adaptive_avg_pool2d(shown, latent_size)  # (F, 1, h, w)
        return shown, pooled.permute(1, 0, 2, 3)[None]  # (1, 1, F, h, w)

    def bind(self, content, structure, plan, settings):
        return PooledPrediction(self.pipe.unet, plan, content, structure)


def test_a_third_route_in_one_file_runs_every_mode():
    pipe = tiny_pipeline(max_frames=4)
    pipe.unet.toy_route = True
    with torch.no_grad():  # the tiny UNet's structure channels start at zero (identity at start): give them weight
        pipe.unet.image_unet.conv_in.weight[:, 4:].normal_(0, 0.5, generator=torch.Generator().manual_seed(4))
    video = torch.rand(7, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    embeds = torch.randn(16, generator=torch.Generator().manual_seed(1))
    mask = torch.zeros(1, 1, 16, 16)
    mask[..., :, 8:] = 1
    common = dict(content_embeds=embeds, num_inference_steps=2, output_type="pt", window_size=4, window_overlap=1)

    def edit(**kwargs):
        ToyRoute.calls.clear()
        return pipe(video, generator=torch.Generator().manual_seed(3), **{**common, **kwargs})

    with registered_route(ToyRoute):
        assert isinstance(pipe.route, ToyRoute)
        plain = edit()
        assert {frames for frames, _ in ToyRoute.calls} == {4}  # windows of 4 frames over 7: several per step
        assert len(ToyRoute.calls) > 2
        guided = edit(guidance_scale=3.0, temporal_guidance_scale=0.5)  # ω, ω_t: the image-mode term is batched in
        assert all(gate is not None and any(gate) for _, gate in ToyRoute.calls)
        coarse = edit(structure_level=6)
        masked = edit(mask=mask)
    assert not isinstance(pipe.route, ToyRoute)  # the registration ended with the block
    assert not torch.equal(plain.frames, guided.frames)
    assert not torch.equal(plain.frames, coarse.frames) and not torch.equal(plain.depth, coarse.depth)
    keep = mask[0, 0] == 0
    source = video.clamp(0, 1)
    torch.testing.assert_close(masked.frames[..., keep], source[..., keep], rtol=0, atol=0)  # the source exactly
    assert not torch.allclose(masked.frames[..., ~keep], source[..., ~keep], atol=0.05)
