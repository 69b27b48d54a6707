"""The native Gen-1 route: ``VideoUNet([z_t, s], t, c)``, all guidance terms in one batched call.

Structure enters as input channels concatenated to the latents (the depth obscured to t_s on the latent grid,
:func:`gen1.conditioning.video_structure`); content is a CLIP image embedding (a reference image, or a prompt
through the prior) in cross-attention, and the null content is the zero embedding the model was trained with.
A model with inpainting input (``VideoUNet.inpainting_input``) also takes, after the structure, what is known: in a
masked edit the latents of what the edit keeps outside the region, in any other edit nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import torch
from einops import rearrange

from gen1.conditioning import inpainting_input, nothing_known, region_on_latent_grid, video_structure
from gen1.content import as_unet_context, convex_mix, null_content
from gen1.guidance import GuidancePlan
from gen1.routes.base import Content, ContentRequest, GuidedPrediction, Route, load_reference, masked_frames
from gen1.settings import check_content_sources


@dataclass
class NativePrediction(GuidedPrediction):
    """``structure``: the UNet's structure channels ``(1, S, F, h, w)``, concatenated to the latents."""

    def evaluate(self, latents, timesteps, hidden, image_mode, frames):
        dtype = self.unet.dtype
        sample = self.terms_of(torch.cat([latents, self.structure_of(frames)], dim=1).to(dtype))
        return self.unet(sample, timesteps, encoder_hidden_states=hidden.to(dtype), image_mode=image_mode,
                         return_dict=False)[0]


class NativeRoute(Route):
    """gen1's own model: structure as input channels, CLIP image embeddings through cross-attention."""

    description = "a native Gen-1 model (its own content encoder, depth as input channels)"

    @classmethod
    def fits(cls, components: Mapping[str, Any]) -> bool:
        return True  # the fallback: a VideoUNet that takes its structure itself

    def encode_content(self, content: ContentRequest, *, generator, device) -> Content:
        """CLIP-space content ``(1, 1, D)`` from prompts (through the prior), reference images or precomputed
        embeddings, mixed by ``content_weights``; the null content is the zero embedding."""
        pipe = self.pipe
        if content.content_embeds is not None:
            embeds = torch.as_tensor(content.content_embeds).float()
            embeds = convex_mix(embeds.reshape(-1, embeds.shape[-1]), content.content_weights)
        else:
            embeds = self.encode_prompts_and_images(content, generator)
        expected = getattr(pipe.unet, "content_dim", None)
        if expected is not None and embeds.shape[-1] != expected:
            raise ValueError(
                f"content embedding dimension {embeds.shape[-1]} does not match the UNet's content_dim {expected}"
            )
        context = as_unet_context(embeds.to(device=device, dtype=torch.float32))
        null = as_unet_context(null_content(1, embeds.shape[-1], device, torch.float32))
        return Content(context, null)

    def encode_prompts_and_images(self, content: ContentRequest, generator) -> torch.Tensor:
        """Content embedding ``(1, D)`` of the prompts and reference images, mixed with ``content_weights`` (one
        per prompt, then one per image; :func:`gen1.content.convex_mix`)."""
        pipe = self.pipe
        prompts, images = content.prompts, content.images
        if not prompts and not images:
            raise ValueError("give a prompt, a reference_image or content_embeds")
        if pipe.content_encoder is None:
            raise ValueError("this pipeline has no content_encoder; pass content_embeds instead")
        images = [load_reference(image) for image in images]
        embeddings = []
        if prompts:
            embeddings.append(pipe.content_encoder.encode_text(prompts, prior=pipe.prior,
                                                               prior_scheduler=pipe.prior_scheduler,
                                                               generator=generator))
        for image in images:
            embeddings.append(pipe.content_encoder.encode_image(image).reshape(1, -1))
        embeds = torch.cat([e.reshape(e.shape[0], -1).float() for e in embeddings])
        return convex_mix(embeds, content.content_weights)

    def source_content(self, frames, region, content, *, generator, device) -> Content:
        """The mean CLIP image embedding of (up to 8 evenly spaced) source frames, the erased region painted in
        the frame's mean colour, through the pipeline's content encoder: the shot's own look, without the subject."""
        check_content_sources(content.sources(erase=True))
        if self.pipe.content_encoder is None:
            raise ValueError("erase needs the pipeline's content_encoder (the source's CLIP image embedding)")
        picked = torch.linspace(0, frames.shape[0] - 1, min(8, frames.shape[0])).round().long()
        images = masked_frames(frames[picked].float(), region[picked].float())
        embeds = self.pipe.content_encoder.encode_image(images).float().mean(dim=0, keepdim=True)
        return self.encode_content(ContentRequest(content_embeds=embeds), generator=generator, device=device)

    #: The seed of the prior's noise when a direction's texts go through a prior: the same draw for NEUTRAL and
    #: TARGET (the difference is the texts', not the noise's), and none taken from the edit's generator.
    direction_seed = 0

    def source_embedding(self, frames: torch.Tensor) -> torch.Tensor:
        """The source's own content ``(1, D)``: the mean CLIP image embedding of its frames ``(F, 3, H, W)`` in
        [0, 1] through the pipeline's content encoder."""
        if self.pipe.content_encoder is None:
            raise ValueError("this pipeline has no content_encoder: directions need it to embed the source")
        return self.pipe.content_encoder.encode_image(frames).float().mean(dim=0, keepdim=True)

    def own_content(self, frames, content, *, generator, device) -> Content:
        """:meth:`source_embedding` as precomputed content (the same path as ``content_embeds=``)."""
        return self.encode_content(ContentRequest(content_embeds=self.source_embedding(frames)),
                                   generator=generator, device=device)

    def text_direction(self, neutral, target, *, device) -> torch.Tensor:
        """In CLIP image-embedding space: the texts through the content encoder's text tower and, when the model
        has one, the prior (each with the same noise, seeded by :attr:`direction_seed`); without a prior the
        raw CLIP text embeddings (what the model's prompts use too). ``(1, 1, D)``."""
        if self.pipe.content_encoder is None:
            raise ValueError("this pipeline has no content_encoder: directions need its text tower")
        return self.text_embedding(target, device=device) - self.text_embedding(neutral, device=device)

    def text_embedding(self, text, *, device) -> torch.Tensor:
        """The text through the content encoder's text tower and, when the model has one, the prior (its noise
        seeded by :attr:`direction_seed`): ``(1, 1, D)`` in CLIP image-embedding space."""
        pipe = self.pipe
        if pipe.content_encoder is None:
            raise ValueError("this pipeline has no content_encoder: text embeddings need its text tower")
        noise = torch.Generator().manual_seed(self.direction_seed)
        embedding = pipe.content_encoder.encode_text([text], prior=pipe.prior, prior_scheduler=pipe.prior_scheduler,
                                                     generator=noise).float()
        return as_unet_context(embedding.reshape(1, -1).to(device))

    @property
    def takes_inpainting_input(self) -> bool:
        """Whether the UNet takes the inpainting channels after the structure (``VideoUNet.inpainting_input``)."""
        return bool(getattr(self.pipe.unet, "inpainting_input", False))

    def structure(self, depth, level, latent_size):
        """Obscured on the latent grid (:func:`gen1.conditioning.video_structure`): what the UNet sees. A UNet
        with inpainting input is told that nothing is known (:func:`gen1.conditioning.nothing_known`)."""
        shown, structure = video_structure(depth, level, latent_size)
        if self.takes_inpainting_input:
            latents = structure.new_zeros(1, self.pipe.unet.latent_channels, *structure.shape[2:])
            structure = torch.cat([structure, nothing_known(latents)], dim=1)
        return shown, structure

    def masked_structure(self, depth, level, mask_level, region, latent_size, frames=None):
        """The structure of a masked edit (:meth:`Route.masked_structure`). A UNet with inpainting input is shown
        ``frames``, what the edit keeps, around the ``region`` (:meth:`known_input`) in place of "nothing known"."""
        shown, structure = super().masked_structure(depth, level, mask_level, region, latent_size, frames)
        if not self.takes_inpainting_input or frames is None:
            return shown, structure
        known = self.known_input(frames, region, latent_size).to(structure)
        return shown, torch.cat([structure[:, :-known.shape[1]], known], dim=1)

    def known_input(self, frames: torch.Tensor, region: torch.Tensor, latent_size) -> torch.Tensor:
        """The inpainting channels ``(1, 1 + C, F, h, w)`` of ``frames`` ``(F, 3, H, W)`` in [0, 1] (what the edit
        keeps: the source, or an erase's pre-filled one, whose region holds no subject to leak through the VAE into
        the cells around it) whose ``region`` ``(F, 1, H, W)`` the edit draws
        (:func:`gen1.conditioning.inpainting_input`): their latents, encoded as every edit encodes its source, kept
        outside the region's latent cells."""
        latents = self.encode_source(frames, generator=None, device=self.pipe._execution_device, chunk_size=8)
        mask = rearrange(region_on_latent_grid(region, latent_size), "f c h w -> 1 c f h w")
        return inpainting_input(latents, mask.to(latents.device))

    def bind(self, content: Content, structure, plan: GuidancePlan, settings: Mapping[str, Any]) -> NativePrediction:
        return NativePrediction(self.pipe.unet, plan, content, structure.to(content.context.device))
