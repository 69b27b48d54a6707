"""The public-checkpoint route: structure through a depth ControlNet, content through cross-attention.

This is how an SD-1.5-family UNet with AnimateDiff motion modules (a :class:`gen1.unet.VideoUNet` of the
``animatediff`` kind, no structure channels) and a depth ControlNet of the ``control_v11f1p_sd15_depth`` layout
become a Gen-1 model: the ControlNet sees gen1's normalised depth obscured to t_s (three equal channels in
[0, 1], the ControlNet's input convention), and its residuals are added to the UNet's skip connections.

Per step and window there is ONE ControlNet call and ONE UNet call. The ControlNet is a per-frame image model,
so the guidance terms that differ only in the temporal gate (``video_null`` and ``image_null``) need the same
residuals: the ControlNet runs once per *distinct content* (at most two: c and the null content) and its
residuals are gathered to the UNet's batch of terms.

**Inpainting.** A pipeline may also hold an SD-1.5 inpainting ControlNet (``inpaint_controlnet``, e.g.
``lllyasviel/control_v11p_sd15_inpaint``). In a masked edit it joins the depth ControlNet as a multi-ControlNet
(diffusers' ``MultiControlNetModel``: both run on the same latents and their residuals, each times its own scale,
add up): its input is the source frame with the edited region's pixels set to -1, the convention it was trained
on, so the region is drawn to fit the real surroundings it sees around it. The structure input then holds both
images, ``(F, 6, H, W)`` (depth image, then inpainting image), so that windows slice them together. An edit
without a mask has nothing to inpaint and runs the depth ControlNet alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
from diffusers.utils.torch_utils import randn_tensor
from einops import rearrange, repeat

from gen1.conditioning import encode_latents
from gen1.content import convex_mix
from gen1.depth import obscure
from gen1.ip_adapter import encode_reference_images, uses_hidden_states
from gen1.ip_adapter_text import image_direction
from gen1.prompts import encode_prompts, mixed_prompt_context
from gen1.routes.base import Content, ContentRequest, GuidedPrediction, Route, is_present, load_reference, masked_frames
from gen1.settings import check_content_sources, check_directions

#: The prompt of an erase on this route: the surroundings, nothing in particular (the subject goes in
#: ``negative_prompt``).
ERASE_PROMPT = "empty background, nothing in the way"


@dataclass
class ControlNetPrediction(GuidedPrediction):
    """Guided prediction of a UNet + ControlNet pair for one window of frames.

    ``structure``: the ControlNet's input for the whole video, ``(F, 3, H, W)`` float in [0, 1] at the output size.
    ``content``: text encoder hidden states, and with an IP-Adapter the reference images' CLIP embeddings for the
    content terms and the null embeddings for the others (``extra`` / ``null_extra``, ``(1, 1, ...)``).
    ``conditioning_scale``: multiplies the ControlNet's residuals (diffusers' ``controlnet_conditioning_scale``).
    """

    controlnet: torch.nn.Module = None
    conditioning_scale: float = 1.0
    #: The inpainting ControlNet of a masked edit and its scale (None: the depth ControlNet alone).
    inpaint_controlnet: torch.nn.Module | None = None
    inpaint_scale: float = 1.0
    structure_frame_dim = 0
    #: Per timestep of the schedule: whether the ControlNet acts (diffusers' control_guidance_start / _end);
    #: None: at every step.
    acts_at: dict | None = None

    def _acts(self, timestep: torch.Tensor) -> bool:
        return True if self.acts_at is None else self.acts_at[float(timestep)]

    def _controlnet_residuals(self, latents: torch.Tensor, timestep: torch.Tensor, frames: slice):
        """Residuals for every term of the plan, rows ``(term, frame)``; the ControlNet runs once per content."""
        uses_content = list(self.plan.uses_content())
        distinct = sorted(set(uses_content), reverse=True)  # True (content) first, then False (null)
        num_frames = latents.shape[2]
        dtype = self.controlnet.dtype
        sample = repeat(latents, "1 c f h w -> (n f) c h w", n=len(distinct)).to(dtype)
        context = self.content
        hidden = torch.cat([context.context if cond else context.null_context for cond in distinct]).to(dtype)
        hidden = hidden.repeat_interleave(num_frames, dim=0)
        image = self.structure_of(frames).to(device=sample.device, dtype=dtype)
        image = repeat(image, "f c h w -> (n f) c h w", n=len(distinct))
        if self.inpaint_controlnet is None:
            down, mid = self.controlnet(sample, timestep, encoder_hidden_states=hidden, controlnet_cond=image,
                                        conditioning_scale=self.conditioning_scale, return_dict=False)
        else:  # depth and inpainting: diffusers' multi-ControlNet, each image to its own network and scale
            down, mid = self.multi_controlnet(sample, timestep, encoder_hidden_states=hidden,
                                              controlnet_cond=[image[:, :3], image[:, 3:]],
                                              conditioning_scale=[self.conditioning_scale, self.inpaint_scale],
                                              return_dict=False)
        if len(distinct) == len(uses_content) and distinct == uses_content:
            return list(down), mid
        # gather: term i takes the rows of its content's ControlNet entry
        entry = [distinct.index(cond) for cond in uses_content]
        rows = torch.tensor([e * num_frames + f for e in entry for f in range(num_frames)], device=mid.device)
        return [residual.index_select(0, rows) for residual in down], mid.index_select(0, rows)

    @property
    def multi_controlnet(self):
        """The depth and inpainting ControlNets as diffusers' ``MultiControlNetModel`` (made once; it holds the two
        networks, no weights of its own)."""
        if getattr(self, "_multi", None) is None:
            # lazy: only a masked edit with an inpainting ControlNet needs it
            from diffusers.models.controlnets import MultiControlNetModel

            self._multi = MultiControlNetModel([self.controlnet, self.inpaint_controlnet])
        return self._multi

    def evaluate(self, latents, timesteps, hidden, image_mode, frames):
        dtype = self.unet.dtype
        if not self._acts(timesteps[0]):  # outside [start, end): no residuals, no ControlNet evaluation
            return self.unet(self.terms_of(latents).to(dtype), timesteps, encoder_hidden_states=hidden.to(dtype),
                             image_mode=image_mode, added_cond_kwargs=self._added(latents.device, dtype),
                             return_dict=False)[0]
        down, mid = self._controlnet_residuals(latents, timesteps[0], frames)
        sample = self.terms_of(latents).to(dtype)
        return self.unet(sample, timesteps, encoder_hidden_states=hidden.to(dtype), image_mode=image_mode,
                         down_block_additional_residuals=[r.to(dtype) for r in down],
                         mid_block_additional_residual=mid.to(dtype),
                         added_cond_kwargs=self._added(sample.device, dtype), return_dict=False)[0]

    def _added(self, device, dtype):
        """IP-Adapter: the reference images' embeddings for the content terms, the null ones for the rest."""
        if self.content.extra is None:
            return None
        rows = self.per_term(self.content.extra, self.content.null_extra)
        return {"image_embeds": [torch.cat(rows).to(device=device, dtype=dtype)]}


class ControlNetRoute(Route):
    """Public checkpoints: structure through a depth ControlNet, content through the base's text encoder (and an
    IP-Adapter for reference images); diffusers' video-to-video conventions for noise and source latents."""

    description = "a public-checkpoint model (a text-conditioned UNet with a depth ControlNet)"
    optional_settings = frozenset({"negative_prompt", "controlnet_conditioning_scale", "controlnet_guidance_start",
                                   "controlnet_guidance_end", "inpaint_controlnet_scale"})
    text_content = True
    references_through_ip_adapter = True
    structure_frame_dim = ControlNetPrediction.structure_frame_dim

    @classmethod
    def fits(cls, components):
        return is_present(components, "controlnet")

    def denoisers(self):
        inpaint = inpaint_controlnet(self.pipe)
        return [self.pipe.unet, self.pipe.controlnet] + ([inpaint] if inpaint is not None else [])

    def encode_content(self, content: ContentRequest, *, generator, device) -> Content:
        """Text hidden states (prompts or precomputed) and, with an IP-Adapter, reference-image embeddings."""
        pipe = self.pipe
        prompts, images = content.prompts, [load_reference(image) for image in content.images]
        if not prompts and not images and content.content_embeds is None:
            raise ValueError("give a prompt, a reference_image or content_embeds")
        if content.content_embeds is not None:  # precomputed text content: the weights mix its rows
            text_weights, image_weights = content.content_weights, None
        else:
            text_weights, image_weights = _split_weights(content.content_weights, len(prompts), len(images))
        context, null_context = text_content(pipe, prompts, text_weights, content.content_embeds,
                                             content.negative_prompt, device)
        image_embeds, null_image_embeds = image_content(pipe, images, image_weights, device)
        return Content(context.to(device), null_context.to(device), image_embeds, null_image_embeds)

    def source_content(self, frames, region, content, *, generator, device) -> Content:
        """A neutral background prompt (:data:`ERASE_PROMPT`) with the user's ``negative_prompt`` (name the subject
        there) as the null content; with an IP-Adapter loaded, also up to 4 evenly spaced source frames (the erased
        region painted in the frame's mean colour) as reference images."""
        check_content_sources(content.sources(erase=True), hint=" (name the subject with negative_prompt)")
        images = []
        if has_ip_adapter(self.pipe):
            picked = torch.linspace(0, frames.shape[0] - 1, min(4, frames.shape[0])).round().long()
            images = as_reference_images(masked_frames(frames[picked].float(), region[picked].float()))
        request = ContentRequest(prompt=ERASE_PROMPT, reference_image=images or None,
                                 negative_prompt=content.negative_prompt)
        return self.encode_content(request, generator=generator, device=device)

    def own_content(self, frames, content, *, generator, device) -> Content:
        """The content of an edit with the empty prompt (the text hidden states of ``""``, against the
        ``negative_prompt``; the null image tokens when an IP-Adapter is loaded): the depth and the source are all
        that is left of the video, so the source's own content in text space is the empty prompt's."""

        return self.encode_content(replace(content, prompt=[""], reference_image=None, content_weights=None,
                                           content_embeds=None), generator=generator, device=device)

    #: How many evenly spaced source frames make the source's own content in the IP-Adapter's image space.
    own_image_frames = 8

    def edit_content(self, content: ContentRequest, frames, *, generator, device) -> Content:
        """:meth:`Route.edit_content`; with directions, an IP-Adapter and its text tower loaded
        (:func:`has_image_directions`), the directions act in the adapter's image-embedding space instead: the image
        content is the references' (or the source's own, :meth:`source_images`) plus alpha x
        :meth:`image_direction` for each, and the text hidden states are the given prompt's (or the empty
        prompt's), unmoved. The null content is unchanged; alpha = 0 adds exact zeros."""
        if content.imagic_scale is not None or not content.direction or not has_image_directions(self.pipe):
            return super().edit_content(content, frames, generator=generator, device=device)
        scales = check_directions(content.direction, content.direction_scale)
        request = content
        if not content.images:  # the source's own image content; the text stays the given prompt's or ""
            images = self.source_images(frames)
            weights = content.content_weights
            if weights is not None and content.content_embeds is None:
                weights = list(weights) + [1.0] * len(images)
            given_text = content.prompts or content.content_embeds is not None
            request = replace(content, prompt=content.prompt if given_text else [""], reference_image=images,
                              content_weights=weights)
        base = self.encode_content(request, generator=generator, device=device)
        image, norm = base.extra, base.extra.float().norm()
        for (neutral, target), alpha in zip(content.direction, scales, strict=True):
            image = image + alpha * self.image_direction(neutral, target, norm, device=device).to(image).reshape(
                image.shape)
        return replace(base, extra=image)

    def source_images(self, frames) -> list:
        """Up to :attr:`own_image_frames` evenly spaced frames of ``frames`` ``(F, 3, H, W)`` in [0, 1] as
        ``uint8 (H, W, 3)`` images, as a reference image arrives: their IP-Adapter embeddings, mixed equally, are
        the source's own content in the adapter's image space."""
        picked = torch.linspace(0, frames.shape[0] - 1, min(self.own_image_frames, frames.shape[0])).round().long()
        return as_reference_images(frames[picked])

    def image_direction(self, neutral, target, norm, *, device) -> torch.Tensor:
        """A direction in the IP-Adapter's image-embedding space, ``(D,)``: unit(text(TARGET)) - unit(text(NEUTRAL))
        through the adapter's text tower, times ``norm`` (:func:`gen1.ip_adapter_text.image_direction`)."""
        pipe = self.pipe
        return image_direction(pipe.ip_adapter_tokenizer, pipe.ip_adapter_text_encoder, neutral, target, norm,
                               device=device)

    def text_direction(self, neutral, target, *, device) -> torch.Tensor:
        """In the base's text hidden-state space (what cross-attention takes): hidden(TARGET) - hidden(NEUTRAL),
        ``(1, L, D)``, token by token."""
        pipe = self.pipe
        hidden = encode_prompts(pipe.tokenizer, pipe.text_encoder, [target, neutral], device).float()
        return hidden[:1] - hidden[1:]

    def text_embedding(self, text, *, device) -> torch.Tensor:
        """The base's text hidden states of ``text`` (what cross-attention takes), ``(1, L, D)``."""
        return encode_prompts(self.pipe.tokenizer, self.pipe.text_encoder, [text], device).float()

    def structure(self, depth, level, latent_size):
        """Obscured on the pixel grid the ControlNet sees; its input is that depth as three equal channels."""
        shown = obscure(depth, level).clamp(0, 1)
        return shown, depth_to_controlnet_image(shown)

    def masked_structure(self, depth, level, mask_level, region, latent_size, frames=None):
        """The depth ControlNet's input as :meth:`Route.masked_structure` makes it and, when the pipeline holds an
        inpainting ControlNet and the source ``frames`` ``(F, 3, H, W)`` are given, its input after it
        (:func:`inpaint_condition`): ``(F, 6, H, W)``."""
        shown, structure = super().masked_structure(depth, level, mask_level, region, latent_size)
        if inpaint_controlnet(self.pipe) is None or frames is None:
            return shown, structure
        return shown, torch.cat([structure, inpaint_condition(frames, region).to(structure)], dim=1)

    def encode_source(self, frames, *, generator, device, chunk_size):
        """diffusers' video-to-video convention: a posterior sample (drawn from ``generator``)."""
        latents = encode_latents(self.pipe.vae, frames, chunk_size=chunk_size, device=device,
                                 sample_generator=generator)
        return rearrange(latents, "f c h w -> 1 c f h w").to(device)

    def draw_noise(self, shape, *, generator, device):
        """Noise drawn frame-major ``(1, F, C, h, w)`` as diffusers draws it, so a seed gives what it gives there."""
        batch, channels, num_frames, height, width = shape
        return randn_tensor((batch, num_frames, channels, height, width), generator=generator, device=device,
                            dtype=torch.float32).permute(0, 2, 1, 3, 4)

    def bind(self, content, structure, plan, settings):
        scale = check_controlnet_scale(settings.get("controlnet_conditioning_scale", 1.0))
        inpaint_scale = check_controlnet_scale(settings.get("inpaint_controlnet_scale", 1.0),
                                               "inpaint_controlnet_scale")
        inpaint = inpaint_controlnet(self.pipe)
        if inpaint is None and inpaint_scale != 1.0:
            raise ValueError("inpaint_controlnet_scale needs an inpainting ControlNet: load one (gen1 edit "
                             "--inpaint-controlnet lllyasviel/control_v11p_sd15_inpaint)")
        masked = structure.shape[1] == 6  # the depth image and the inpainting image (a masked edit)
        return ControlNetPrediction(self.pipe.unet, plan, content, structure, controlnet=self.pipe.controlnet,
                                    conditioning_scale=scale, acts_at=controlnet_steps(settings),
                                    inpaint_controlnet=inpaint if masked else None, inpaint_scale=inpaint_scale)


def inpaint_controlnet(pipe):
    """The pipeline's inpainting ControlNet, or None when it holds none."""
    return getattr(pipe, "inpaint_controlnet", None)


def inpaint_condition(frames: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
    """The inpainting ControlNet's input: ``frames`` ``(F, 3, H, W)`` in [0, 1] with the pixels of ``region``
    ``(F, 1, H, W)`` above 0.5 set to -1 (``control_v11p_sd15_inpaint``'s convention for "fill this in")."""
    inside = (region.to(frames.device) > 0.5).expand_as(frames)
    return torch.where(inside, torch.full_like(frames, -1.0), frames.float().clamp(0, 1))


def controlnet_steps(settings) -> dict | None:
    """Timestep -> whether the ControlNet acts, for ``controlnet_guidance_start`` / ``_end`` (shares of the steps)
    over the edit's ``timesteps``: step ``i`` of ``n`` acts unless ``i / n < start`` or ``(i + 1) / n > end``, as
    diffusers' ``control_guidance_start`` / ``control_guidance_end``. None when it acts at every step."""
    start = float(settings.get("controlnet_guidance_start", 0.0))
    end = float(settings.get("controlnet_guidance_end", 1.0))
    if not 0.0 <= start < end <= 1.0:
        raise ValueError(f"controlnet_guidance_start must be below controlnet_guidance_end, both in [0, 1]; got "
                         f"{start:g} and {end:g}")
    if start == 0.0 and end == 1.0:
        return None
    timesteps = [float(t) for t in settings["timesteps"]]
    n = len(timesteps)
    return {t: not (i / n < start or (i + 1) / n > end) for i, t in enumerate(timesteps)}


def check_controlnet_scale(scale, name: str = "controlnet_conditioning_scale") -> float:
    """A ControlNet's scale ``name`` as a float, or ``ValueError`` unless it is a finite number >= 0."""
    value = float(scale)
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a finite number >= 0, got {scale!r}")
    return value


def depth_to_controlnet_image(depth: torch.Tensor) -> torch.Tensor:
    """Depth ``(F, 1, H, W)`` in [0, 1] (1 = near) -> the depth ControlNet's input ``(F, 3, H, W)`` in [0, 1].

    ``control_v11f1p_sd15_depth`` was trained on MiDaS inverse depth rendered as a grey image (near = bright),
    which is what gen1's normalised depth is; the three channels are equal.
    """
    return repeat(depth.float().clamp(0, 1), "f 1 h w -> f c h w", c=3).contiguous()


def _split_weights(weights, num_prompts: int, num_images: int):
    """``content_weights`` (one per prompt, then one per reference) -> (prompt weights, reference weights)."""
    if weights is None:
        return None, None
    if len(weights) != num_prompts + num_images:
        raise ValueError(f"content_weights must have one weight per prompt/image ({num_prompts + num_images}), "
                         f"got {len(weights)}")
    return (list(weights[:num_prompts]) or None), (list(weights[num_prompts:]) or None)


def text_content(pipe, prompts, weights, content_embeds, negative_prompt, device):
    """(content, null content) ``(1, L, D)`` float32: the base's CLIP text encoder (:mod:`gen1.prompts`)."""
    if content_embeds is not None:
        embeds = torch.as_tensor(content_embeds).float()
        embeds = embeds[None] if embeds.ndim == 2 else embeds
        if embeds.ndim != 3:
            raise ValueError(f"content_embeds must be text hidden states (L, D) or (N, L, D) on this route, "
                             f"got shape {tuple(embeds.shape)}")
        context = convex_mix(embeds.flatten(1), weights).reshape(1, *embeds.shape[1:]).to(device)
        null = encode_prompts(pipe.tokenizer, pipe.text_encoder, [negative_prompt or ""], device)
    else:
        context, null = mixed_prompt_context(pipe.tokenizer, pipe.text_encoder, prompts or [""], weights,
                                             negative_prompt, device)
    if context.shape[-1] != pipe.unet.content_dim:
        raise ValueError(f"content hidden size {context.shape[-1]} does not match the UNet's cross-attention "
                         f"width {pipe.unet.content_dim}")
    return context, null


def as_reference_images(frames: torch.Tensor) -> list:
    """Frames ``(F, 3, H, W)`` in [0, 1] as ``uint8 (H, W, 3)`` images, as a ``reference_image`` file arrives: the
    IP-Adapter's image processor rescales by 1/255, so float frames in [0, 1] would reach it almost black."""
    pixels = (frames.float().clamp(0, 1) * 255).round().to(torch.uint8)
    return list(rearrange(pixels, "f c h w -> f h w c").cpu().numpy())


def has_ip_adapter(pipe) -> bool:
    """Whether an IP-Adapter (its projection in the UNet and its image encoder) is loaded into ``pipe``."""
    return getattr(pipe.unet.image_unet, "encoder_hid_proj", None) is not None and pipe.image_encoder is not None


def has_image_directions(pipe) -> bool:
    """Whether directions act in the IP-Adapter's image space: an IP-Adapter and its text tower are loaded."""
    return has_ip_adapter(pipe) and getattr(pipe, "ip_adapter_text_encoder", None) is not None


def image_content(pipe, images, weights, device):
    """(embeddings, null embeddings) ``(1, 1, ...)`` of the reference images through the IP-Adapter's encoder,
    mixed convexly by ``weights``; None, None when the pipeline has no IP-Adapter."""
    if not has_ip_adapter(pipe):
        if images:
            raise ValueError("reference images on the public-checkpoint route need an IP-Adapter: load one with "
                             "pipe.load_ip_adapter(...) (gen1 edit --ip-adapter)")
        return None, None
    if not images:  # an IP-Adapter but no reference: its image tokens carry the null content everywhere
        probe = torch.zeros(1, 3, 32, 32)
        _, null = encode_reference_images(pipe.image_encoder, pipe.feature_extractor, [probe[0]],
                                          hidden_states=uses_hidden_states(pipe.unet), device=device)
        return null[None], null[None]
    embeds, null = encode_reference_images(pipe.image_encoder, pipe.feature_extractor, images,
                                           hidden_states=uses_hidden_states(pipe.unet), device=device)
    mixed = convex_mix(embeds.flatten(1), weights).reshape(1, 1, *embeds.shape[1:])
    return mixed, null[:1][None]
