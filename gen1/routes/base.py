"""What every route is: the route-specific half of an edit, and the batching of guidance terms written once.

A *route* is how structure and content reach one kind of backbone. Everything that differs between backbones
lives in its route class, so the pipeline, the editing layer, the web app and the commands ask the route and
never test which one they hold:

* which components make a pipeline of this kind (:meth:`Route.fits`), and which optional settings it accepts
  (:attr:`Route.optional_settings`; :meth:`Route.check_settings` refuses the others in one line);
* its content: prompts, reference images, precomputed embeddings and the null content (:meth:`Route.encode_content`);
* its structure input at a level t_s (:meth:`Route.structure`): the one function both an edit and the web app's
  structure preview call; and at another level inside a mask (:meth:`Route.masked_structure`);
* the content of an erase, the source's own (:meth:`Route.source_content`);
* its noise and source-encoding conventions (:meth:`Route.encode_source`, :meth:`Route.draw_noise`);
* its model function (:meth:`Route.bind` -> :class:`GuidedPrediction`, whose ``predict`` the loop calls).

:class:`GuidedPrediction` holds what every route shares: batch entry ``i`` of one network call is guidance term
``plan.terms[i]`` (the same latents, the real or null content, the image-mode gate), combined by the plan.
A route's prediction only says how to run its networks on that batch (:meth:`GuidedPrediction.evaluate`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Mapping

import torch
import torch.nn.functional as F
from diffusers.utils.torch_utils import randn_tensor
from einops import rearrange, repeat

from gen1.conditioning import encode_latents
from gen1.guidance import GuidancePlan
from gen1.imagic import require_imagic
from gen1.media import read_image
from gen1.settings import OPTIONAL_SETTINGS, check_content_sources, check_directions


def is_present(components: Mapping[str, Any], name: str) -> bool:
    """Whether component ``name`` is there: a loaded module, or a ``model_index.json`` entry other than
    ``[null, null]`` (diffusers' record of an optional component left out)."""
    value = components.get(name)
    if isinstance(value, (list, tuple)):
        return any(part is not None for part in value)
    return value is not None


def load_reference(image):
    """A reference image as given (an array or tensor), or read from its path."""
    return read_image(image) if isinstance(image, (str, os.PathLike)) else image


@dataclass
class Content:
    """The encoded content of one edit: ``context`` / ``null_context`` ``(1, L, D)`` float32 for the terms with
    the real and the null content, and whatever else the route's networks take per content (``extra`` and
    ``null_extra``, e.g. IP-Adapter image embeddings), both ``None`` when it takes nothing else."""

    context: torch.Tensor
    null_context: torch.Tensor
    extra: Any = None
    null_extra: Any = None


@dataclass
class ContentRequest:
    """The content arguments of an edit as the pipeline's ``__call__`` names them."""

    prompt: Any = None
    reference_image: Any = None
    content_weights: Any = None
    content_embeds: Any = None
    negative_prompt: str | None = None
    direction: Any = ()
    direction_scale: Any = ()
    imagic_scale: Any = None

    @property
    def prompts(self) -> list[str]:
        """``prompt`` as a list of texts (``ValueError`` for anything but a text or a list/tuple of texts)."""
        if self.prompt is None:
            return []
        if isinstance(self.prompt, str):
            return [self.prompt]
        if not isinstance(self.prompt, (list, tuple)) or not all(isinstance(text, str) for text in self.prompt):
            raise ValueError(f"prompt must be a text or a list of texts, got {self.prompt!r}")
        return list(self.prompt)

    @property
    def images(self) -> list:
        images = self.reference_image
        return [] if images is None else list(images) if isinstance(images, (list, tuple)) else [images]

    def sources(self, **owners) -> dict:
        """The content settings given, for :func:`gen1.settings.check_content_sources`, with ``owners`` (e.g.
        ``erase=True``) added."""
        return dict(prompt=self.prompts, reference_image=self.images, content_embeds=self.content_embeds,
                    direction=self.direction, imagic_scale=self.imagic_scale, **owners)


@dataclass
class GuidedPrediction:
    """The model function of one edit: ``predict(latents, t, frames)`` -> the guided prediction of a window.

    ``structure``: the route's structure input for the whole video, indexed by frame on dimension
    ``structure_frame_dim`` (what :meth:`Route.structure` returned); ``content``: :class:`Content`.
    """

    unet: torch.nn.Module
    plan: GuidancePlan
    content: Content
    structure: torch.Tensor
    structure_frame_dim: ClassVar[int] = 2

    def structure_of(self, frames: slice) -> torch.Tensor:
        """The structure input of the window ``frames``."""
        index = [slice(None)] * self.structure.ndim
        index[self.structure_frame_dim] = frames
        return self.structure[tuple(index)]

    def per_term(self, real, null) -> list:
        """``real`` for the terms with the content, ``null`` for the others, in the plan's batch order."""
        return [real if cond else null for cond in self.plan.uses_content()]

    def predict(self, latents: torch.Tensor, timestep: torch.Tensor, frames: slice) -> torch.Tensor:
        """Guided prediction ``(1, C, Fw, h, w)`` float32 for the window ``frames``: every guidance term in ONE
        batched network call (:meth:`evaluate`), combined by the plan."""
        plan = self.plan
        hidden = torch.cat(self.per_term(self.content.context, self.content.null_context))
        gate = plan.image_mode()
        image_mode = list(gate) if any(gate) else None  # host-side gate: no device sync per step
        batch = plan.num_evaluations * latents.shape[0]
        timesteps = timestep.reshape(1).expand(batch).to(latents.device)
        return plan.combine(self.evaluate(latents, timesteps, hidden, image_mode, frames))

    def evaluate(self, latents: torch.Tensor, timesteps: torch.Tensor, hidden: torch.Tensor, image_mode,
                 frames: slice) -> torch.Tensor:
        """The networks on the batch of terms: ``latents`` ``(1, C, Fw, h, w)`` of the window (repeat them per
        term), ``timesteps`` / ``hidden`` / ``image_mode`` one entry per term. Returns the term-major batch of
        predictions."""
        raise NotImplementedError

    def terms_of(self, tensor: torch.Tensor) -> torch.Tensor:
        """``tensor`` ``(1, ...)`` repeated once per guidance term (term-major)."""
        return repeat(tensor, "b ... -> (n b) ...", n=self.plan.num_evaluations)


def _blend(outside: torch.Tensor, inside: torch.Tensor, region: torch.Tensor, frame_dim: int) -> torch.Tensor:
    """``outside`` where ``region`` ``(F, 1, H, W)`` is 0, ``inside`` where it is 1: the region brought to the
    tensors' grid (last two dimensions) and frame dimension ``frame_dim``."""

    weight = F.adaptive_avg_pool2d(region.float(), tuple(outside.shape[-2:])).to(outside.device)  # (F, 1, h, w)
    shape = [1] * outside.ndim
    shape[frame_dim], shape[-2], shape[-1] = weight.shape[0], weight.shape[-2], weight.shape[-1]
    weight = weight.reshape(shape).to(outside.dtype)
    return outside * (1 - weight) + inside * weight


def masked_frames(frames: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
    """``frames`` ``(F, 3, H, W)`` with the ``region`` (> 0.5) painted in each frame's mean colour outside it: the
    surroundings without the subject, for an image encoder."""
    inside = (region > 0.5).float()
    outside = 1 - inside
    mean = (frames * outside).sum(dim=(2, 3), keepdim=True) / outside.sum(dim=(2, 3), keepdim=True).clamp_min(1)
    return frames * outside + mean * inside


class Route:
    """The route-specific half of an edit for a pipeline of one kind (see the module docstring).

    A route is made per pipeline (``Route(pipe)``, cheap: it holds the pipeline, no tensors); the pipeline asks it
    for :meth:`encode_content`, :meth:`structure`, :meth:`encode_source` / :meth:`draw_noise` and :meth:`bind`.
    """

    #: What a user reads in a message: "<description>" ("a native Gen-1 model").
    description: ClassVar[str] = ""
    #: Settings beyond the ones every route takes, that this route accepts (API names).
    optional_settings: ClassVar[frozenset[str]] = frozenset()
    #: Whether the content is text through the model's own text encoder (a customisation is tied to a prompt).
    text_content: ClassVar[bool] = False
    #: Whether reference images need an IP-Adapter loaded into the pipeline.
    references_through_ip_adapter: ClassVar[bool] = False
    #: The frame dimension of the structure input :meth:`structure` returns (its last two are height and width):
    #: the one the route's prediction indexes windows on.
    structure_frame_dim: ClassVar[int] = GuidedPrediction.structure_frame_dim

    def __init__(self, pipe):
        self.pipe = pipe

    # ------------------------------------------------------------------------------------------- what it is
    @classmethod
    def fits(cls, components: Mapping[str, Any]) -> bool:
        """Whether a pipeline with ``components`` (name -> the component, or its ``model_index.json`` entry) is of
        this kind (:func:`is_present` says whether one is there)."""
        raise NotImplementedError

    @classmethod
    def check_settings(cls, settings: Mapping[str, Any], *, label=lambda name: name, model: str = "this model"):
        """``ValueError`` for the first optional setting given (not ``None`` and not its neutral value) that this
        route does not accept, naming it with ``label(name)`` (a flag on the command line) and ``model``."""

        for name, neutral in OPTIONAL_SETTINGS.items():
            value = settings.get(name, neutral)
            if name not in cls.optional_settings and value is not None and value != neutral:
                raise ValueError(f"{label(name)} does not apply to {model}, {cls.description}")

    def denoisers(self) -> list[torch.nn.Module]:
        """The networks that run at every denoising step (what ``--compile`` compiles)."""
        return [self.pipe.unet]

    # ------------------------------------------------------------------------------------------- the edit
    def encode_content(self, content: ContentRequest, *, generator, device) -> Content:
        """The content and null content of an edit (see :class:`Content`)."""
        raise NotImplementedError

    def edit_content(self, content: ContentRequest, frames: torch.Tensor, *, generator, device) -> Content:
        """The content of an edit: :meth:`encode_content`, or with global directions (``content.direction``, pairs
        NEUTRAL TARGET with ``content.direction_scale`` alpha each) the source's own content (:meth:`own_content`
        of ``frames`` ``(F, 3, H, W)`` in [0, 1]; or the given prompts / references / embeddings when there are
        some) plus alpha x :meth:`text_direction` for each, in the space the route conditions on. The null content
        is unchanged, so w and w_t act as in any edit; alpha = 0 adds exact zeros (the source-content edit, bit for
        bit). With ``content.imagic_scale`` eta, the Imagic adapter's content (:meth:`imagic_content`)."""

        if content.imagic_scale is not None:
            return self.imagic_content(content, generator=generator, device=device)
        if not content.direction:
            return self.encode_content(content, generator=generator, device=device)
        scales = check_directions(content.direction, content.direction_scale)
        given = content.prompts or content.images or content.content_embeds is not None
        base = (self.encode_content(content, generator=generator, device=device) if given
                else self.own_content(frames, content, generator=generator, device=device))
        context = base.context
        for (neutral, target), alpha in zip(content.direction, scales):
            context = context + alpha * self.text_direction(neutral, target, device=device).to(context)
        return replace(base, context=context)

    def imagic_content(self, content: ContentRequest, *, generator, device) -> Content:
        """eta x target + (1 - eta) x optimised (``content.imagic_scale`` eta) from the Imagic adapter loaded into
        the pipeline (:mod:`gen1.imagic`), as precomputed content: the embeddings are in the space this route
        conditions on, so :meth:`encode_content` takes them as ``content_embeds``, with its null content (and
        ``negative_prompt``) as for any edit. eta = 0 is exactly the optimised embedding, 1 exactly the target's."""

        embeddings = require_imagic(self.pipe)
        check_content_sources(content.sources())
        mixed = embeddings.mix(content.imagic_scale).to(device)
        return self.encode_content(replace(content, content_embeds=mixed, content_weights=None, imagic_scale=None),
                                   generator=generator, device=device)

    def text_embedding(self, text: str, *, device) -> torch.Tensor:
        """text(TEXT) in the space this route conditions on, shaped like :attr:`Content.context` ``(1, L, D)``,
        float32, as :meth:`text_direction` maps each of its texts (an Imagic optimisation starts from it)."""
        raise NotImplementedError(f"{type(self).__name__} has no text embeddings")

    def own_content(self, frames: torch.Tensor, content: ContentRequest, *, generator, device) -> Content:
        """The content that reproduces the source itself (the base a direction moves), for the edit's
        ``negative_prompt`` and other content settings in ``content``."""
        raise NotImplementedError(f"{type(self).__name__} has no source content: directions do not apply to it")

    def text_direction(self, neutral: str, target: str, *, device) -> torch.Tensor:
        """text(TARGET) - text(NEUTRAL), shaped like :attr:`Content.context` ``(1, L, D)``, float32."""
        raise NotImplementedError(f"{type(self).__name__} has no text directions")

    def structure(self, depth: torch.Tensor, level: float, latent_size: tuple[int, int]):
        """(the obscured depth the edit is guided by, ``(F, 1, H, W)`` in [0, 1] at the output size, for display;
        the structure input its networks take) for the unobscured ``depth`` ``(F, 1, H, W)`` at ``level``."""
        raise NotImplementedError

    def masked_structure(self, depth: torch.Tensor, level: float, mask_level: float | None, region: torch.Tensor,
                         latent_size: tuple[int, int], frames: torch.Tensor | None = None):
        """:meth:`structure` at ``level`` outside ``region`` ``(F, 1, H, W)`` (1 = inside) and at ``mask_level``
        inside it (None: ``level`` everywhere): both structure inputs, blended by the region brought to each one's
        grid (area averages on a coarser grid). ``frames``: what the edit keeps outside the region ``(F, 3, H, W)``
        in [0, 1] (the source; an erase's pre-filled source, a drag's moved one), for a route whose structure input
        shows the surroundings of the region too (an inpainting ControlNet's, an inpainting-input model's)."""
        shown, structure = self.structure(depth, level, latent_size)
        if mask_level is None or float(mask_level) == float(level):
            return shown, structure
        shown_in, structure_in = self.structure(depth, mask_level, latent_size)
        return _blend(shown, shown_in, region, 0), _blend(structure, structure_in, region, self.structure_frame_dim)

    def source_content(self, frames: torch.Tensor, region: torch.Tensor, content: ContentRequest, *, generator,
                       device) -> Content:
        """The content of an erase: the source's own surroundings, from its ``frames`` ``(F, 3, H, W)`` in [0, 1]
        and the ``region`` ``(F, 1, H, W)`` being erased (1 = subject); ``content`` holds what else the user gave
        (e.g. a negative prompt naming the subject)."""
        raise ValueError(f"erase is not available on {self.description}")

    def encode_source(self, frames: torch.Tensor, *, generator, device, chunk_size: int) -> torch.Tensor:
        """Source latents ``(1, C, F, h, w)`` float32: the VAE posterior mean (the training convention)."""
        latents = encode_latents(self.pipe.vae, frames, chunk_size=chunk_size, device=device)
        return rearrange(latents, "f c h w -> 1 c f h w").to(device)

    def draw_noise(self, shape: tuple[int, int, int, int, int], *, generator, device) -> torch.Tensor:
        """Initial noise ``(1, C, F, h, w)`` float32, drawn in that order (the training convention)."""
        return randn_tensor(shape, generator=generator, device=device, dtype=torch.float32)

    def bind(self, content: Content, structure, plan: GuidancePlan, settings: Mapping[str, Any]) -> GuidedPrediction:
        """The model function of one edit (its prediction's ``predict`` goes to the loop)."""
        raise NotImplementedError
