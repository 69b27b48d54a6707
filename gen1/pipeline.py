"""``Gen1Pipeline``: structure- and content-guided video editing (a diffusers ``DiffusionPipeline``).

One call edits one video, as a sequence of ``prepare_*`` steps (diffusers style) around a loop that knows nothing
of Gen-1:

1. :meth:`~Gen1Pipeline.check_inputs`, :meth:`~Gen1Pipeline.prepare_windows`, :class:`SourceVideo` (frames resized
   to the output size) and the mask (:func:`gen1.masked_edits.load_mask`): everything the user gave is checked
   before any model runs;
2. :meth:`~Gen1Pipeline.prepare_route`: content (prompt through the prior and/or reference images, mixed; an
   erase's is the source's own), and structure (estimated or user depth, obscured at ``structure_level``; for a
   masked edit the region is tracked from one frame and its depth filled as asked, :mod:`gen1.masked_edits`),
   packed into a route (:mod:`gen1.routes`) whose ``predict`` evaluates all guidance terms (:mod:`gen1.guidance`)
   in ONE batched call;
3. :meth:`~Gen1Pipeline.prepare_timesteps` and :meth:`~Gen1Pipeline.prepare_latents` (noise, source latents);
4. :func:`gen1.denoise.denoise` with the route's prediction blended over temporal windows
   (:class:`gen1.windows.WindowBlender`) and, for masked edits, the kept region reset after every step
   (:class:`gen1.masking.KeptRegion`);
5. VAE decode in chunks -> frames; a masked edit takes its kept pixels from the source frames.

Latents, noise and all scheduler arithmetic are float32 whatever the components' dtype; only UNet and VAE inputs
are cast to the models' dtype.
"""

from __future__ import annotations

import importlib
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from diffusers import DiffusionPipeline
from diffusers.utils import BaseOutput
from einops import rearrange

from gen1.adapters import load_lora_weights
from gen1.animatediff import from_animatediff
from gen1.assembly import from_stable_diffusion
from gen1.conditioning import decode_latents, encode_latents, resize, target_size, video_at_size
from gen1.denoise import denoise, make_scheduler
from gen1.depth import load_structure
from gen1.depth.cache import estimate_depth
from gen1.depth.structure import check_depth_shape
from gen1.drag import check_drag, check_drag_arguments, drag_content, drag_layers, drag_start, moved_frames
from gen1.guidance import GuidancePlan, plan_guidance
from gen1.hub import resolve_pipeline
from gen1.imagic import require_imagic
from gen1.ip_adapter import load_ip_adapter_into
from gen1.ip_adapter_text import attach_text_encoder
from gen1.masked_edits import (check_mask_arguments, edit_region, erase_start, given_background, hidden_background,
                               load_mask, prefilled, structure_depth)
from gen1.masking import KeptRegion
from gen1.media import unit_to_uint8
from gen1.model_defaults import ModelDefaults, check_defaults, edit_size, far_from_trained, image_model_size
from gen1.model_folders import check_pipeline_folder, not_a_pipeline_hint
from gen1.routes import ContentRequest, Route, route_class
from gen1.seamless import SeamAnchor
from gen1.settings import check_content_sources, check_setting, check_settings
from gen1.tracking import check_clicks, make_tracker
from gen1.weights import check_no_missing_weights, missing_weight_reports_held
from gen1.windows import WindowBlender, check_window_arguments

OUTPUT_TYPES = ("np", "pt", "pil", "latent")


@dataclass
class Gen1PipelineOutput(BaseOutput):
    """Result of :class:`Gen1Pipeline`.

    ``frames``: ``"np"`` float32 ``(F, H, W, 3)`` in [0, 1]; ``"pt"`` float ``(F, 3, H, W)`` in [0, 1]; ``"pil"`` a
    list of PIL images; ``"latent"`` the final latents ``(1, 4, F, h, w)``. ``depth``: the obscured structure
    that guided the edit at output resolution, ``(F, 1, H, W)`` float in [0, 1] (numpy for ``"np"``/``"pil"``).
    ``fps``: the source's frame rate when the video came from a file, else None.
    """

    frames: Any
    depth: Any = None
    fps: Any = None


class Gen1Pipeline(DiffusionPipeline):
    """Edit a video by structure (depth, obscured to ``structure_level``) and content (prompt / reference image).

    Components: ``vae`` (``AutoencoderKL``), ``unet`` (:class:`gen1.unet.VideoUNet`), ``scheduler`` (any diffusers
    scheduler; DDIM by default, eps- or v-prediction per its config), ``depth_estimator``
    (:class:`gen1.depth.DepthEstimator`), and the components of one of two routes (:mod:`gen1.routes`):

    * native Gen-1 models: ``content_encoder`` (:class:`gen1.content.ContentEncoder`, CLIP image embeddings) and
      the optional text-to-image-embedding ``prior`` (``PriorTransformer``) with its ``prior_scheduler``; depth
      enters the UNet as input channels;
    * public checkpoints (SD-1.5 + AnimateDiff motion modules + depth ControlNet): ``controlnet``
      (``ControlNetModel``) carries the depth, ``text_encoder`` / ``tokenizer`` (the base's CLIP text model) the
      prompt, and with an IP-Adapter (:meth:`load_ip_adapter`) ``image_encoder`` / ``feature_extractor`` (CLIP vision)
      the reference images.

    The pipeline's config also records the model's own defaults (:mod:`gen1.model_defaults`): ``trained_size``,
    the short side in pixels it was trained at, and ``recommended_guidance_scale``; ``__call__`` uses them when
    ``size`` / ``guidance_scale`` are not given, and ``save_pretrained`` writes them to ``model_index.json``.
    """

    model_cpu_offload_seq = ("text_encoder->image_encoder->content_encoder->prior->depth_estimator->controlnet->"
                             "inpaint_controlnet->unet->vae")
    _optional_components = ["depth_estimator", "content_encoder", "prior", "prior_scheduler", "controlnet",
                            "text_encoder", "tokenizer", "image_encoder", "feature_extractor", "inpaint_controlnet",
                            "ip_adapter_text_encoder", "ip_adapter_tokenizer"]
    _callback_tensor_inputs = ["latents", "noise_pred"]

    def __init__(
        self,
        vae,
        unet,
        scheduler,
        depth_estimator=None,
        content_encoder=None,
        prior=None,
        prior_scheduler=None,
        controlnet=None,
        text_encoder=None,
        tokenizer=None,
        image_encoder=None,
        feature_extractor=None,
        inpaint_controlnet=None,
        ip_adapter_text_encoder=None,
        ip_adapter_tokenizer=None,
        trained_size: int | None = None,
        recommended_guidance_scale: float | None = None,
        recommended_num_inference_steps: int | None = None,
    ):
        super().__init__()

        check_defaults(trained_size, recommended_guidance_scale, num_inference_steps=recommended_num_inference_steps)
        self.register_to_config(trained_size=trained_size, recommended_guidance_scale=recommended_guidance_scale,
                                recommended_num_inference_steps=recommended_num_inference_steps)
        self.register_modules(
            vae=vae,
            unet=unet,
            scheduler=scheduler,
            depth_estimator=depth_estimator,
            content_encoder=content_encoder,
            prior=prior,
            prior_scheduler=prior_scheduler,
            controlnet=controlnet,
            text_encoder=text_encoder,
            tokenizer=tokenizer,
            image_encoder=image_encoder,
            feature_extractor=feature_extractor,
            inpaint_controlnet=inpaint_controlnet,
            ip_adapter_text_encoder=ip_adapter_text_encoder,
            ip_adapter_tokenizer=ip_adapter_tokenizer,
        )

    @property
    def recorded_defaults(self):
        """The size and guidance this model records (:class:`gen1.model_defaults.ModelDefaults`)."""

        return ModelDefaults(self.config.trained_size, self.config.recommended_guidance_scale,
                             self.config.get("recommended_num_inference_steps"))

    @property
    def default_guidance_scale(self) -> float:
        """The content guidance ``__call__`` uses when none is given: the model's recorded
        ``recommended_guidance_scale``, else 7.5 (:mod:`gen1.model_defaults`)."""
        return self.recorded_defaults.guidance_or()

    def _record_image_model_size(self) -> "Gen1Pipeline":
        """Record the image model's own size (``sample_size`` x VAE factor, 512 for SD 1.5) as ``trained_size``
        unless a size is recorded already: the default of pipelines assembled from a Stable Diffusion base."""

        if self.config.trained_size is None:
            size = image_model_size(dict(self.unet.image_unet.config), dict(self.vae.config))
            self.register_to_config(trained_size=size)
        return self

    @property
    def route(self) -> Route:
        """The route this pipeline's components make (:mod:`gen1.routes`): what carries structure and content."""
        return route_class(self.components)(self)

    # ----------------------------------------------------------------------------------------------- assembly
    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs) -> "Gen1Pipeline":
        """diffusers' ``from_pretrained``, after importing the gen1 modules that define the components.

        ``save_pretrained`` records a gen1 component in ``model_index.json`` under its defining module (e.g.
        ``["gen1.unet", "VideoUNet"]``, since ``gen1`` is not one of diffusers' libraries), and diffusers only
        resolves such a module if it is already imported (it never imports code a repository names). gen1's
        own component modules are trusted code, so they are imported here: the standard ones (unet, depth, content)
        and those the folder's ``model_index.json`` names, once :func:`gen1.model_folders.check_pipeline_folder`
        has checked every entry against its allow-list (a module outside it is refused, never imported).

        ``pretrained_model_name_or_path`` is a local folder or a Hub repo id (``ORG/NAME[/SUBFOLDER]``), fetched
        through huggingface_hub's cache by :func:`gen1.hub.resolve_pipeline` (offline: from the cache, with one-line
        errors for what is missing).
        """

        if not Path(pretrained_model_name_or_path).exists():
            pretrained_model_name_or_path = resolve_pipeline(pretrained_model_name_or_path,
                                                             flag="pretrained_model_name_or_path")
        modules = {"gen1.unet", "gen1.depth", "gen1.content"}
        index = Path(pretrained_model_name_or_path) / "model_index.json"
        if index.is_file():
            modules.update(check_pipeline_folder(pretrained_model_name_or_path))
        elif Path(pretrained_model_name_or_path).is_dir():

            raise ValueError(f"'{pretrained_model_name_or_path}' is not a pipeline directory (no model_index.json): "
                             f"{not_a_pipeline_hint(pretrained_model_name_or_path)}")
        elif Path(pretrained_model_name_or_path).is_file():
            raise ValueError(f"'{pretrained_model_name_or_path}' is a file: give the pipeline's folder (the one "
                             "holding model_index.json)")
        for module in sorted(modules):
            importlib.import_module(module)
        with missing_weight_reports_held():  # the check names a missing key: diffusers' "TRAIN this model" dropped
            pipe = super().from_pretrained(pretrained_model_name_or_path, **kwargs)
            check_no_missing_weights(pipe.components, f"'{pretrained_model_name_or_path}'",
                                     folder=pretrained_model_name_or_path)
        return pipe

    def save_pretrained(self, save_directory, *args, **kwargs):
        """diffusers' ``save_pretrained``, with a path that is a file refused in one line (it failed deep inside
        with ``NotADirectoryError: '<file>/vae'``)."""
        if Path(save_directory).exists() and not Path(save_directory).is_dir():
            raise ValueError(f"save_pretrained: '{save_directory}' is a file; give a folder to save the pipeline in")
        return super().save_pretrained(save_directory, *args, **kwargs)

    def cast(self, dtype: torch.dtype) -> "Gen1Pipeline":
        """Cast every model component to ``dtype`` (in place; returns self).

        Uses ``torch.nn.Module.to`` directly: diffusers' ``ModelMixin.to`` warns on every dtype cast, and the
        ``torch_dtype`` / ``dtype`` loading argument changed names across diffusers versions. Scheduler math
        stays float32 regardless (see the module docstring).
        """
        for component in self.components.values():
            if isinstance(component, torch.nn.Module):
                torch.nn.Module.to(component, dtype=dtype)
        return self

    def compile_denoiser(self, **compile_kwargs) -> list[torch.nn.Module]:
        """``torch.compile`` in place the networks that run at every denoising step: the UNet and, on the public
        route, the ControlNet (``compile_kwargs`` go to ``torch.compile``). The components stay the same objects
        with their attributes, so adapters and guidance see no difference; the first step pays the compilation.
        Returns the modules compiled."""
        networks = self.route.denoisers()
        for module in networks:
            module.compile(**compile_kwargs)
        return networks

    @property
    def vae_scale_factor(self) -> int:
        """Pixels per latent cell (8 for Stable Diffusion's VAE)."""
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def size_multiple(self) -> int:
        """What an output's sides are rounded down to: a multiple of 8 (gen1's one resize policy, by which
        ``gen1 edit`` and ``gen1 serve`` read a video) and of the VAE factor. A model whose VAE halves fewer
        times (the bundled demo model's 4) thus gives the same size from Python as from the command line."""
        return math.lcm(8, self.vae_scale_factor)

    @classmethod
    def from_stable_diffusion(
        cls,
        sd_dir: str | os.PathLike,
        *,
        depth_estimator,
        content_encoder,
        temporal_weights: str | os.PathLike | None = None,
        unet=None,
        structure_channels: int = 1,
        max_frames: int = 32,
        clip_length: int | None = None,
        scheduler=None,
        prior=None,
        prior_scheduler=None,
        torch_dtype: torch.dtype | None = None,
        **temporal_kwargs,
    ) -> "Gen1Pipeline":
        """Assemble a pipeline from a Stable Diffusion directory in diffusers layout (``unet/``, ``vae/``,
        ``scheduler/``), inflating its UNet into a :class:`~gen1.unet.VideoUNet` and loading ``temporal_weights``
        (from :meth:`VideoUNet.save_new_layers`) if given.

        From a training run: pass ``unet=`` a trained :class:`~gen1.unet.VideoUNet` or its folder (a training
        ``OUTPUT/export/unet``, or the ``OUTPUT/export`` holding it). It is used as is, with all its trained
        weights, instead of inflating ``sd_dir/unet`` (``structure_channels``, ``max_frames``, ``clip_length``
        and ``temporal_kwargs`` then come from its config and must not be given). ``temporal_weights`` alone
        holds only the new layers: loading it from a run that trained more (``export/training.json`` records
        ``trainable``) onto the original SD UNet drops the trained image weights, and warns.

        ``depth_estimator`` / ``content_encoder`` are instances, or paths loaded with
        :func:`gen1.depth.load_depth_estimator` / :func:`gen1.content.load_content_encoder` (a gen1
        ``ContentEncoder`` folder or a transformers CLIP checkpoint folder). ``scheduler`` defaults to a
        ``DDIMScheduler`` with the checkpoint's scheduler config (so its ``prediction_type`` is kept).
        ``clip_length`` is the clip length the temporal weights were trained on (the default temporal window).
        Weights load in float32 and every component is then cast to ``torch_dtype`` (:meth:`cast`). The pipeline's
        default size (``trained_size``) is the Stable Diffusion UNet's (``sample_size`` x VAE factor: 512 for SD 1.5).
        """

        return from_stable_diffusion(
            cls, sd_dir, depth_estimator=depth_estimator, content_encoder=content_encoder,
            temporal_weights=temporal_weights, unet=unet, structure_channels=structure_channels,
            max_frames=max_frames, clip_length=clip_length, scheduler=scheduler, prior=prior,
            prior_scheduler=prior_scheduler, torch_dtype=torch_dtype, **temporal_kwargs,
        )._record_image_model_size()

    @classmethod
    def from_animatediff(cls, base, *, motion_adapter, controlnet, depth_estimator=None, scheduler=None,
                         max_frames: int | None = None, clip_length: int | None = None, adapter_config=None,
                         torch_dtype: torch.dtype | None = None, inpaint_controlnet=None) -> "Gen1Pipeline":
        """Assemble the public-checkpoint route: an SD-1.5-family ``base`` folder (diffusers layout) with AnimateDiff
        ``motion_adapter`` (a MotionAdapter folder or instance, or an original ``mm_sd_v15_v2``-style file) as its
        temporal layers, a depth ``controlnet`` (ControlNetModel folder or instance) carrying the structure, the
        base's CLIP text encoder carrying the prompt, and a ``depth_estimator`` (instance or checkpoint path).

        Each part given by name is a local path or a Hub name (``ORG/NAME``, or ``ORG/NAME/path/in/repo`` for one
        file, e.g. ``guoyww/animatediff/mm_sd_v15_v2.ckpt``), fetched through huggingface_hub's cache
        (:mod:`gen1.hub`). Configs are checked against each other before any weights load or download
        (:mod:`gen1.animatediff`). ``scheduler``
        defaults to DDIM with AnimateDiff's settings (linear betas, no sample clipping, linspace spacing).
        ``max_frames`` defaults to the adapter's ``motion_max_seq_length``; ``clip_length`` (the default temporal
        window) to 16, the clip length AnimateDiff v2 modules were trained on. Its default size (``trained_size``) is
        the base's (512 for SD 1.5), its default guidance 7.5. Save the result with
        ``save_pretrained``; it loads with :meth:`from_pretrained` like any gen1 model. ``inpaint_controlnet``: an
        SD-1.5 inpainting ControlNet (folder, Hub name or instance, e.g. ``lllyasviel/control_v11p_sd15_inpaint``)
        that joins the depth ControlNet in masked edits (:mod:`gen1.routes.controlnet`).
        """

        return from_animatediff(cls, base, motion_adapter=motion_adapter, controlnet=controlnet,
                                depth_estimator=depth_estimator, scheduler=scheduler, max_frames=max_frames,
                                clip_length=clip_length,
                                adapter_config=adapter_config, torch_dtype=torch_dtype,
                                inpaint_controlnet=inpaint_controlnet)._record_image_model_size()

    def load_lora_weights(self, path, *, scale: float = 1.0, adapter_name: str = "lora") -> list[str]:
        """Apply a Stable Diffusion LoRA file (diffusers or kohya format) to the UNet (:func:`gen1.adapters.load_lora_weights`)."""

        return load_lora_weights(self.unet, path, scale=scale, adapter_name=adapter_name)

    # ----------------------------------------------------------------------------------------------- structure
    def prepare_depth(self, frames: torch.Tensor, depth, batch_size: int = 8, cache=True,
                      input_size: tuple[int, int] | None = None) -> torch.Tensor:
        """Unobscured depth ``(F, 1, H, W)`` in [0, 1] at the frames' size: estimated, or the user's ``depth``.

        An estimate is kept between edits of the same clip (:mod:`gen1.depth.cache`): ``cache`` True = in the user's
        cache directory, False = estimate every time (``gen1 edit --no-cache``), or a ``DepthCache``. ``input_size``:
        the (H, W) of the video as given; the user's depth must have its shape or the frames' (at any size): one of
        another aspect ratio would be cropped off the frames, and is refused."""
        num_frames = frames.shape[0]
        if depth is None:
            if self.depth_estimator is None:
                raise ValueError("this pipeline has no depth_estimator; pass depth")

            depth = estimate_depth(self.depth_estimator, frames, batch_size=batch_size, cache=cache)
        elif isinstance(depth, torch.Tensor):
            if depth.ndim != 4 or depth.shape[1] != 1:
                raise ValueError(f"depth tensor must be (F, 1, H, W) in [0, 1], got shape {tuple(depth.shape)}")
            depth = depth.detach().float().cpu().clamp(0, 1)
        else:

            if isinstance(depth, (str, os.PathLike)) and not os.path.isfile(depth):
                raise FileNotFoundError(f"depth file not found: '{depth}'")
            depth = load_structure(depth)
        depth = depth.float().cpu()
        if input_size is not None:
            check_depth_shape(tuple(depth.shape[-2:]), input_size, frames_size=tuple(frames.shape[-2:]))
        if depth.shape[0] == 1 and num_frames > 1:
            depth = depth.expand(num_frames, -1, -1, -1)
        if depth.shape[0] != num_frames:
            raise ValueError(f"depth has {depth.shape[0]} frames but the video has {num_frames} (give 1 or {num_frames})")
        return resize(depth, tuple(frames.shape[-2:]))

    # ----------------------------------------------------------------------------------------------- route
    def prepare_route(self, source: "SourceVideo", content: ContentRequest, *, depth, structure_level: float,
                      plan: GuidancePlan, generator, device, settings: dict | None = None,
                      masked: "MaskedEdit | None" = None, depth_cache=True):
        """The model function of this edit (the route's :class:`gen1.routes.GuidedPrediction`), the obscured
        depth it is guided by (for display, ``(F, 1, H, W)`` in [0, 1] at the output size) and the region a masked
        edit changes (``(F, 1, H, W)`` at the output size, or None; :func:`gen1.masked_edits.edit_region`).

        Content is encoded before anything else draws from ``generator`` (a prior samples). ``settings``: the
        route-specific settings of the call (e.g. ``controlnet_conditioning_scale``), already checked. ``masked``:
        the mask and how to use it (tracked, erased, the structure inside it; :mod:`gen1.masked_edits`).
        """
        route = self.route
        if masked is None or not (masked.erase or masked.drag is not None):
            encoded = route.edit_content(content, source.frames, generator=generator, device=device)
        depth_full = self.prepare_depth(source.frames, depth, cache=depth_cache, input_size=source.input_size)
        if masked is None:
            depth_shown, structure = route.structure(depth_full, structure_level, source.latent_size)
            return route.bind(encoded, structure, plan, settings or {}), depth_shown, None
        region = edit_region(masked.mask, source.frames, source.input_size, mask_frame=masked.mask_frame,
                             depth=depth_full, erase=masked.erase, tracker=masked.tracker, clicks=masked.clicks)
        if masked.erase:
            encoded = route.source_content(source.frames, region, content, generator=generator, device=device)
            hidden = hidden_background(source.frames, region, masked.fill)
            masked.start_frames = prefilled(source.frames, region, hidden)
        if masked.drag is not None:  # the subject's depth moved over the filled background; region: old and new
            layers = drag_layers(depth_full, region, masked.drag, source.input_size, drag_frame=masked.mask_frame or 0)
            region, guided = layers.region, layers.depth
            masked.start_frames = moved_frames(source.frames, layers, masked.fill)
            masked.seam_anchor = SeamAnchor(1.0 - layers.union, layers.old_place)
            encoded = drag_content(route, content, source.frames, layers, generator=generator, device=device)
        else:
            guided = structure_depth(depth_full, region, masked.structure)
        if masked.structure_given and masked.structure == "keep" and not masked.redraws_background:
            # a replace guided by the user's depth of the new object: the background it leaves is composited
            # seamlessly, the new object not (gen1.masked_edits.given_background)
            masked.seam_anchor = SeamAnchor(1.0 - (region > 0.5).float(), redrawn=given_background(depth_full, region))
        # what the edit keeps outside the region: the source, or an erase's pre-filled / a drag's moved source (the
        # latents the loop keeps there come from it), for a route shown the surroundings
        kept = masked.start_frames if masked.start_frames is not None else source.frames
        depth_shown, structure = route.masked_structure(guided, structure_level, masked.structure_level, region,
                                                        source.latent_size, frames=kept)
        return route.bind(encoded, structure, plan, settings or {}), depth_shown, region

    def load_ip_adapter(self, path, *, image_encoder=None, scale: float = 1.0, text_encoder=None) -> None:
        """Reference images as content on the public route: an IP-Adapter file (diffusers / original format, e.g.
        ``ip-adapter_sd15.safetensors``) and its CLIP vision encoder (a ``CLIPVisionModelWithProjection`` folder or
        instance; default: ``image_encoder/`` beside the file, the ``h94/IP-Adapter`` layout). Both may be Hub names,
        e.g. ``h94/IP-Adapter/models/ip-adapter_sd15.safetensors`` (:mod:`gen1.hub`). ``scale`` is how strongly
        references act (:func:`gen1.ip_adapter.set_ip_adapter_scale`). ``text_encoder``: the CLIP text tower that
        matches the image encoder, for directions in the adapter's image space (:meth:`load_ip_adapter_text_encoder`).
        """

        load_ip_adapter_into(self, path, image_encoder=image_encoder, scale=scale)
        if text_encoder is not None:
            self.load_ip_adapter_text_encoder(text_encoder)

    def load_ip_adapter_text_encoder(self, text_encoder, tokenizer=None) -> None:
        """The CLIP text tower (with projection) of the loaded IP-Adapter's image encoder, e.g.
        ``laion/CLIP-ViT-H-14-laion2B-s32B-b79K`` for h94/IP-Adapter's SD-1.5 adapters: a folder, Hub name or
        ``CLIPTextModelWithProjection`` (then with its ``tokenizer``). Global directions then act in the adapter's
        image-embedding space (docs/directions.md); a tower of another projection width is refused
        (:func:`gen1.ip_adapter_text.attach_text_encoder`)."""

        attach_text_encoder(self, text_encoder, tokenizer)

    # ----------------------------------------------------------------------------------------------- VAE
    @torch.no_grad()
    def encode_video(self, frames: torch.Tensor, chunk_size: int = 8) -> torch.Tensor:
        """Float frames ``(F, 3, H, W)`` in [0, 1] -> latents ``(1, 4, F, h, w)`` float32, encoding ``chunk_size``
        frames at a time (:func:`gen1.conditioning.encode_latents`: the convention training data uses)."""
        latents = encode_latents(self.vae, frames, chunk_size=chunk_size, device=self._execution_device)
        return rearrange(latents, "f c h w -> 1 c f h w")

    @torch.no_grad()
    def decode_latents(self, latents: torch.Tensor, chunk_size: int = 8) -> torch.Tensor:
        """Latents ``(1, 4, F, h, w)`` -> float frames ``(F, 3, H, W)`` in [0, 1] on the CPU, in chunks."""
        flat = rearrange(latents, "1 c f h w -> f c h w").to(self._execution_device)
        return decode_latents(self.vae, flat, chunk_size=chunk_size, device=self._execution_device)

    # ----------------------------------------------------------------------------------------------- checks
    def check_inputs(self, *, structure_level, guidance_scale, temporal_guidance_scale, num_inference_steps,
                     output_type, strength, decode_chunk_size, mask_feather=1.0,
                     callback_on_step_end_tensor_inputs=(), full_strength_start="noise"):
        """Validate the scalar call arguments (``ValueError`` naming the argument and its value); the declared
        settings by their declared ranges (:func:`gen1.settings.check_settings`)."""
        check_settings(dict(structure_level=structure_level, guidance_scale=guidance_scale,
                            temporal_guidance_scale=temporal_guidance_scale, num_inference_steps=num_inference_steps,
                            strength=strength, full_strength_start=full_strength_start))
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"output_type must be one of {OUTPUT_TYPES}, got {output_type!r}")
        if not (np.isfinite(float(mask_feather)) and float(mask_feather) >= 0):
            raise ValueError(f"mask_feather must be a finite number >= 0 (latent cells), got {mask_feather!r}")
        if int(decode_chunk_size) != decode_chunk_size or decode_chunk_size < 1:
            raise ValueError(f"decode_chunk_size must be an integer >= 1, got {decode_chunk_size!r}")
        for name in callback_on_step_end_tensor_inputs:
            if name not in self._callback_tensor_inputs:
                raise ValueError(f"callback_on_step_end_tensor_inputs: {name!r} not in {self._callback_tensor_inputs}")

    def check_edit_settings(self, route_settings: dict, *, direction: tuple, direction_scale: tuple, mask,
                            mask_frame, erase: bool, mask_structure, mask_structure_level, mask_clicks=(),
                            imagic_scale=None, erase_strength=None, strength: float = 1.0, drag=None,
                            drag_strength=None, erase_fill=None, content: Mapping[str, Any] | None = None,
                            mask_tracker="flow"):
        """Check the settings only some routes or modes take, before anything is read or run: the route's own
        (:meth:`gen1.routes.Route.check_settings`), then every declared range (:func:`gen1.settings.check_settings`),
        the directions, the sources of content (``content``: the prompt, reference_image and content_embeds given;
        :func:`gen1.settings.check_content_sources`), the masked edit's arguments
        (:func:`gen1.masked_edits.check_mask_arguments`) and the drag's (:func:`gen1.drag.check_drag_arguments`).
        Returns the parsed drag (None without one)."""
        self.route.check_settings(route_settings, model="this pipeline")
        check_settings(dict(direction=direction, direction_scale=direction_scale))
        check_content_sources(dict(content or {}, erase=erase, direction=direction, imagic_scale=imagic_scale))
        check_settings(route_settings)
        parsed_drag = check_drag_arguments(drag, mask=mask, erase=erase, mask_structure=mask_structure,
                                           drag_strength=drag_strength, strength=strength)
        check_mask_arguments(mask, mask_frame=mask_frame, erase=erase, mask_structure=mask_structure,
                             mask_structure_level=mask_structure_level, clicks=mask_clicks,
                             erase_strength=erase_strength, strength=strength, erase_fill=erase_fill,
                             drag=parsed_drag is not None, tracker=mask_tracker)
        check_settings(dict(mask_frame=mask_frame, mask_structure_level=mask_structure_level,
                            erase_strength=erase_strength, drag_strength=drag_strength, erase_fill=erase_fill))
        if imagic_scale is not None:  # an Imagic adapter's content (gen1.imagic): its range, and the adapter
            check_settings(dict(imagic_scale=imagic_scale))
            require_imagic(self)
        return parsed_drag

    @staticmethod
    def prepare_masked_edit(source: "SourceVideo", *, mask, mask_frame, erase: bool, mask_structure,
                            mask_structure_level, tracker, mask_clicks: tuple, drag,
                            structure_given: bool, erase_fill: str | None = None) -> "MaskedEdit | None":
        """How this call uses its mask (:class:`MaskedEdit`; None without a mask or clicks), read and checked against
        the ``source``: the mask (:func:`gen1.masked_edits.load_mask`), the clicks (on ``mask_frame``, the first frame
        unless told; :func:`gen1.tracking.check_clicks`) and the drag (:func:`gen1.drag.check_drag`)."""
        if mask is None and not mask_clicks:
            return None
        if mask_clicks and mask_frame is None:
            mask_frame = 0  # clicks are on one frame: the first unless told
        size = (source.num_frames, source.input_size)
        return MaskedEdit(
            None if mask is None else load_mask(mask, *size, mask_frame), mask_frame, bool(erase),
            mask_structure or ("fill" if erase else "keep"), mask_structure_level, tracker,
            structure_given=structure_given,
            clicks=tuple(check_clicks(mask_clicks, mask_frame, *size) if mask_clicks else ()),
            drag=check_drag(drag, *size, source.size), fill=erase_fill)

    def run_loop(self, blender: WindowBlender, latents: torch.Tensor, timesteps: torch.Tensor, scheduler, *,
                 generator, hooks, progress_callback=None) -> torch.Tensor:
        """:func:`gen1.denoise.denoise` over the blender's windows, with the pipeline's progress bar advanced once per
        window of each step (its length: :meth:`gen1.windows.WindowBlender.window_evaluations`) and
        ``progress_callback(done, total)`` told at the start and after each window."""
        total = blender.window_evaluations()
        done = 0
        with self.progress_bar(total=total) as progress:
            def on_window():
                nonlocal done
                done += 1
                progress.update()
                if progress_callback is not None:
                    progress_callback(done, total)

            blender.on_window = on_window
            if progress_callback is not None:
                progress_callback(0, total)
            return denoise(blender, latents, timesteps, scheduler, generator=generator, after_step=hooks)

    def prepare_source(self, video, *, height: int | None = None, width: int | None = None,
                       size: int | None = None) -> "SourceVideo":
        """The video at its output size: the given one, else the model's ``trained_size`` (short side), else the
        video's own short side up to :data:`gen1.model_defaults.FALLBACK_SIZE` (:func:`gen1.model_defaults.edit_size`,
        the rule ``gen1 edit`` and ``gen1 serve`` follow too); a short side far from ``trained_size`` warns
        (:func:`gen1.model_defaults.far_from_trained`)."""

        if size is None and height is None and width is None:
            size = self.config.trained_size  # None: edit_size of the video's own short side
        source = SourceVideo.prepare(video, height=height, width=width, size=size, multiple=self.size_multiple,
                                     vae_scale_factor=self.vae_scale_factor)
        message = far_from_trained(min(source.size), self.config.trained_size)
        if message is not None:  # stacklevel 4: the caller of __call__ (this, __call__, torch.no_grad's wrapper)
            warnings.warn(message, UserWarning, stacklevel=4)
        return source

    def source_as_read(self, frames) -> "SourceVideo":
        """``frames`` (uint8 ``(F, H, W, 3)``) already read at an edit's size (by ``gen1 edit`` or ``gen1 serve``) as
        this pipeline's source: their own size (above 512 px too), rounded as :meth:`prepare_source` rounds, with
        this VAE's latent grid."""
        height, width = np.asarray(frames).shape[1:3]
        return SourceVideo.prepare(frames, height=height, width=width, multiple=self.size_multiple,
                                   vae_scale_factor=self.vae_scale_factor)

    def prepare_windows(self, window_size: int | None, window_overlap: int | None) -> tuple[int, int]:
        """The temporal window and overlap: given, or the clip length the UNet was trained on and a quarter of it.

        Frame positions beyond the trained clip length never got a gradient, so a UNet that records
        ``clip_length`` (``gen1 train`` does) defaults to it; otherwise to its ``max_frames``.
        """
        max_frames = int(getattr(self.unet.config, "max_frames", 0) or 0) or 16
        clip_length = int(getattr(self.unet.config, "clip_length", 0) or 0)
        if window_size is None:
            window_size = min(clip_length, max_frames) if clip_length else max_frames
        window_overlap = (window_size // 4) if window_overlap is None else window_overlap
        check_window_arguments(window_size, window_overlap)
        if window_size > max_frames:
            raise ValueError(f"window_size must be <= the UNet's max_frames={max_frames}, got {window_size}")
        return window_size, window_overlap

    # ----------------------------------------------------------------------------------------------- schedule
    def prepare_scheduler(self, scheduler=None):
        """The scheduler of one call: the pipeline's own, or ``scheduler`` (an instance, or a name of
        :data:`gen1.settings.SCHEDULERS` made from the pipeline's scheduler config). A named one is a new object,
        so one call never changes the pipeline that another call uses."""
        if scheduler is None:
            return self.scheduler
        if isinstance(scheduler, str):
            check_setting("scheduler", scheduler)
            return make_scheduler(scheduler, self.scheduler.config)
        return scheduler

    def prepare_timesteps(self, num_inference_steps: int, strength: float, device, scheduler=None) -> torch.Tensor:
        """The scheduler's timesteps for ``num_inference_steps``; with ``strength < 1`` only the last ``strength``
        share of them (at least one), the scheduler told where it starts."""
        scheduler = scheduler or self.scheduler
        scheduler.set_timesteps(num_inference_steps, device=device)
        timesteps = scheduler.timesteps
        if strength >= 1.0:
            return timesteps
        order = getattr(scheduler, "order", 1)
        skip = max(num_inference_steps - max(int(num_inference_steps * strength), 1), 0)
        if hasattr(scheduler, "set_begin_index"):
            scheduler.set_begin_index(skip * order)
        return timesteps[skip * order :]

    def prepare_latents(self, source: "SourceVideo", timesteps: torch.Tensor, *, strength: float,
                        need_source: bool, generator, device, decode_chunk_size: int, scheduler=None,
                        full_strength_start: str = "noise"):
        """(initial latents, the noise they were drawn with, the source latents or None), all float32.

        Below ``strength`` 1 the edit starts from the source latents noised to the first timestep; at 1 from
        pure noise, unless ``full_strength_start`` is ``"noised-source"`` (diffusers' video-to-video convention,
        which noises the source to the first timestep at every strength). The source latents are encoded when
        ``need_source`` (a masked edit keeps them) or when the start is the noised source.
        How the source is encoded and the noise drawn is the route's convention
        (:meth:`gen1.routes.Route.encode_source`, :meth:`~gen1.routes.Route.draw_noise`): native models use the
        training convention, the public route diffusers' video-to-video convention, so that a seed gives what it
        gives in diffusers.
        """
        route, scheduler = self.route, scheduler or self.scheduler
        source_latents = None
        from_source = strength < 1.0 or full_strength_start == "noised-source"
        if need_source or from_source:
            source_latents = route.encode_source(source.frames, generator=generator, device=device,
                                                 chunk_size=decode_chunk_size)
        shape = (1, self.unet.latent_channels, source.num_frames, *source.latent_size)
        noise = route.draw_noise(shape, generator=generator, device=device)
        if from_source:
            latents = scheduler.add_noise(source_latents, noise, timesteps[:1])
        else:
            latents = noise * float(scheduler.init_noise_sigma)
        return latents, noise, source_latents

    @staticmethod
    def prepare_kept_region(user_mask, masked: "MaskedEdit | None", source: "SourceVideo", mask_feather: float, *,
                            source_latents, noise, scheduler, timesteps) -> KeptRegion | None:
        """What a masked edit keeps outside its region (``user_mask``, from :meth:`prepare_route`; None: no mask, so
        nothing is kept), reset after every step: the ``source_latents`` noised as the loop goes, composited
        seamlessly where the edit redraws background (an erase, a drag, a replace's given background)."""
        if user_mask is None:
            return None
        return KeptRegion.from_pixel_mask(
            user_mask, source.size, source.latent_size, mask_feather, source_latents=source_latents, noise=noise,
            scheduler=scheduler, timesteps=timesteps, cover=masked.replaces_subject,
            seamless=masked.redraws_background or masked.seam_anchor is not None, seam_anchor=masked.seam_anchor)

    def step_hooks(self, kept: KeptRegion | None, callback: Callable | None, tensor_names: Sequence[str]) -> list:
        """What runs after each scheduler step, in order: the masked edit's blend of the ``kept`` region, then the
        user's ``callback_on_step_end`` (which sees the blended latents)."""
        hooks = [kept] if kept is not None else []
        if callback is not None:
            hooks.append(self._callback_hook(callback, tensor_names))
        return hooks

    def _callback_hook(self, callback: Callable, tensor_names: Sequence[str]):
        """``callback_on_step_end`` as a :func:`gen1.denoise.denoise` hook (a returned ``"latents"`` replaces them)."""

        def hook(index, t, latents, prediction):
            tensors = {"latents": latents, "noise_pred": prediction}
            outputs = callback(self, index, t, {name: tensors[name] for name in tensor_names}) or {}
            return outputs.get("latents", latents)

        return hook

    # ----------------------------------------------------------------------------------------------- call
    # Long only by its signature and the docstring documenting each argument; the body is a sequence of checks and
    # prepare_* calls around the loop (run_loop), each step a method of its own.
    @torch.no_grad()
    def __call__(
        self,
        video,
        *,
        prompt: str | Sequence[str] | None = None,
        reference_image=None,
        content_weights: Sequence[float] | None = None,
        content_embeds: torch.Tensor | None = None,
        negative_prompt: str | None = None,
        structure_level: float = 0.0,
        guidance_scale: float | None = None,
        temporal_guidance_scale: float = 1.0,
        num_inference_steps: int | None = None,
        generator: torch.Generator | None = None,
        height: int | None = None,
        width: int | None = None,
        size: int | None = None,
        depth=None,
        depth_cache=True,
        mask=None,
        mask_feather: float = 1.0,
        mask_frame: int | None = None,
        erase: bool = False,
        erase_strength: float | None = None,
        drag_strength: float | None = None,
        erase_fill: str | None = None,
        mask_structure: str | None = None,
        mask_structure_level: float | None = None,
        mask_tracker="flow",
        mask_tracker_model: str | None = None,
        mask_clicks: Sequence[tuple[float, float, bool]] = (),
        window_size: int | None = None,
        window_overlap: int | None = None,
        window_shift: bool = True,
        decode_chunk_size: int = 8,
        strength: float = 1.0,
        full_strength_start: str = "noise",
        controlnet_conditioning_scale: float = 1.0,
        controlnet_guidance_start: float = 0.0,
        controlnet_guidance_end: float = 1.0,
        inpaint_controlnet_scale: float = 1.0,
        direction: Sequence[tuple[str, str]] = (),
        direction_scale: Sequence[float] = (),
        imagic_scale: float | None = None,
        drag=(),
        scheduler=None,
        output_type: str = "np",
        callback_on_step_end: Callable | None = None,
        callback_on_step_end_tensor_inputs: Sequence[str] = ("latents",),
        progress_callback: Callable[[int, int], None] | None = None,
    ) -> Gen1PipelineOutput:
        """Edit ``video``; see the module docstring for the data flow.

        Args:
            video: path, ``VideoClip``, uint8 array ``(F, H, W, 3)``, float tensor ``(F, 3, H, W)`` in [0, 1], or
                list of PIL images.
            prompt / reference_image / content_weights: content (see :meth:`encode_content`); or
            content_embeds: precomputed content: on native models CLIP-space embedding(s) ``(D,)`` / ``(N, D)``, on
                the public route text hidden states ``(L, D)`` / ``(N, L, D)`` (N > 1: convex mix with
                ``content_weights``, normalised to sum to 1).
            negative_prompt: the null content of the public route (default: the empty prompt).
            structure_level: t_s in [0, 7] (0 = depth as estimated, 7 = coarse layout only).
            guidance_scale: content guidance w >= 0 (default: the model's ``recommended_guidance_scale``, else 7.5).
            temporal_guidance_scale: w_t >= 0 (see :mod:`gen1.guidance`).
            num_inference_steps: denoising steps (default: the model's ``recommended_num_inference_steps``, the
                count its own scheduler was chosen for, else 30).
            height / width or size: output size (size = short side). Default: the size the model was trained at
                (``trained_size``: the short side becomes it, the aspect ratio is kept), or the video's own size
                up to 512 when the model records none; rounded down to a multiple of 8 (:attr:`size_multiple`, as
                ``gen1 edit`` reads a video). A short side more than 2x above or below ``trained_size`` warns
                (``UserWarning``).
            depth: the user's structure instead of the estimate: tensor ``(F|1, 1, H, W)`` in [0, 1] (1 = near),
                or a path / frames for :func:`gen1.depth.load_structure`.
            depth_cache: keep the estimated depth for the next edit of the same clip (:meth:`prepare_depth`).
            mask: region to edit (1) vs keep (0), the video's size, one mask or one per frame
                (:mod:`gen1.masking`); feathered with a Gaussian of ``mask_feather`` latent cells. Where the mask
                (at the output size) is 0 the output is the source frames exactly.
            mask_frame: ``mask`` is one image of this frame; it is tracked to every frame by ``mask_tracker`` (a
                name of :data:`gen1.tracking.TRACKERS` or a tracker; :mod:`gen1.tracking`).
            mask_tracker_model: the model of a tracker with weights (``"sam2"``: a folder or Hub id, default
                ``facebook/sam2.1-hiera-tiny``; :mod:`gen1.sam2_tracker`).
            mask_clicks: instead of ``mask``, clicks ``(x, y, positive)`` on the subject (positive) or off it, in
                pixels of ``video``, on frame ``mask_frame`` (default 0), for a tracker that takes clicks (sam2).
            erase: remove the masked subject: the mask (tracked, grown slightly) is edited fully, its structure
                filled (``erase_fill``) and its content the source's own (:meth:`gen1.routes.Route.source_content`;
                give no prompt or reference); :mod:`gen1.masked_edits`.
            erase_strength: an erase starts from the source with its region pre-filled (``erase_fill``)
                (:func:`gen1.masked_edits.prefilled`), noised to this share of the steps, in (0, 1] (default 0.4,
                :data:`gen1.masked_edits.ERASE_STRENGTH`; 1 = from pure noise). ``strength`` below 1 is refused with it.
            drag_strength: a drag starts from the source with the subject moved and its old place pre-filled
                (:func:`gen1.drag.moved_frames`), noised to this share of the steps, in (0, 1] (default 0.4,
                :data:`gen1.drag.DRAG_STRENGTH`; 1 = from pure noise). ``strength`` below 1 is refused with it.
            erase_fill: where an erase (and a drag's old place) takes the colours the subject hid before the model
                redraws them: ``"frames"`` (default, :data:`gen1.masked_edits.ERASE_FILL`): copied from the frames
                that see them along the background's motion (:mod:`gen1.propagation`), the rest from the
                surroundings; ``"boundary"``: all from the surroundings. The depth is filled from the surroundings.
            mask_structure: ``"keep"`` the depth inside the mask or ``"fill"`` it from the mask's boundary (default:
                fill on an erase, else keep). A replace guided by a ``depth`` you give (a mock-up of the new object)
                keeps it.
            mask_structure_level: t_s inside the mask (default: ``structure_level``).
            window_size / window_overlap: temporal windows (:meth:`prepare_windows`).
            window_shift: move the windows from step to step so that no frame is at a window edge at every step
                (seamless long videos, :mod:`gen1.windows`); False keeps the same windows at every step.
            decode_chunk_size: frames per VAE encode/decode call.
            strength: in (0, 1]; below 1 starts from the source latents noised to that fraction of the schedule.
            full_strength_start: where strength 1 starts: ``"noise"`` (pure noise, as Gen-1: the source's pixels play
                no part) or ``"noised-source"`` (the source noised to the first timestep, as diffusers'
                video-to-video pipelines do at strength 1; docs/models.md).
            controlnet_conditioning_scale: public route: multiplies the depth ControlNet's residuals (>= 0).
            controlnet_guidance_start / controlnet_guidance_end: public route: the share of the steps in which the
                ControlNet acts (diffusers' ``control_guidance_start`` / ``_end``); outside it, it is not evaluated.
            inpaint_controlnet_scale: public route with an inpainting ControlNet: multiplies its residuals in a masked
                edit (>= 0; default 1).
            direction / direction_scale: global directions, pairs (NEUTRAL, TARGET), and alpha (a finite number) for
                each (none: 1 each): the content becomes the source's own (or the given prompt's) plus alpha x
                (text(TARGET) - text(NEUTRAL)) in the route's content space (:meth:`gen1.routes.Route.edit_content`,
                docs/directions.md); alpha = 0 is the source-content edit, bit for bit.
            imagic_scale: eta in [0, 2] with an Imagic adapter loaded (:func:`gen1.imagic.load_imagic_adapter`):
                the content is eta x target + (1 - eta) x the optimised embedding (give no other content;
                :meth:`gen1.routes.Route.imagic_content`); None: the adapter's LoRA only, with the content given.
            drag: move the masked subject (:mod:`gen1.drag`, docs/drag.md): vectors ``"X0,Y0:X1,Y1"`` (or four
                numbers, :func:`gen1.drag.parse_drag`) in the pixels of ``video`` (given on ``mask_frame``, else the
                first frame; they apply to every frame), or a track file with vectors for every frame. The region
                is the subject's old and new place; the structure its depth moved over the filled background; the
                content the source's own unless a prompt, reference or direction is given.
            scheduler: the sampler of this call: a name (``"ddim"``, ``"dpm"``, ``"euler"``, ``"unipc"``, made from the pipeline's
                scheduler config) or a scheduler instance; default: the pipeline's own. The pipeline is not changed.
            output_type: ``"np"``, ``"pt"``, ``"pil"`` or ``"latent"``.
            callback_on_step_end: ``f(pipe, step, timestep, kwargs) -> dict`` with ``kwargs`` holding the tensors
                named in ``callback_on_step_end_tensor_inputs``; a returned ``"latents"`` replaces the latents.
            progress_callback: ``f(done, total)`` once with ``done = 0`` before the first step (so a bar shows its
                length at once), then after each temporal window of each step (``total`` = steps x windows, the
                length of the progress bar); an exception it raises stops the edit (a cancel button).
            Settings a route does not take (e.g. ``negative_prompt`` on a native model) are refused
            (:meth:`gen1.routes.Route.check_settings`).
        """
        if guidance_scale is None:
            guidance_scale = self.default_guidance_scale
        if num_inference_steps is None:
            num_inference_steps = self.recorded_defaults.steps_or()
        self.check_inputs(
            structure_level=structure_level, guidance_scale=guidance_scale,
            temporal_guidance_scale=temporal_guidance_scale, num_inference_steps=num_inference_steps,
            output_type=output_type, strength=strength, decode_chunk_size=decode_chunk_size,
            mask_feather=mask_feather, callback_on_step_end_tensor_inputs=callback_on_step_end_tensor_inputs,
            full_strength_start=full_strength_start,
        )
        route_settings = dict(negative_prompt=negative_prompt, inpaint_controlnet_scale=inpaint_controlnet_scale,
                              controlnet_conditioning_scale=controlnet_conditioning_scale,
                              controlnet_guidance_start=controlnet_guidance_start,
                              controlnet_guidance_end=controlnet_guidance_end)
        direction, direction_scale = tuple(direction or ()), tuple(direction_scale or ())
        mask_clicks = tuple(tuple(click) for click in mask_clicks or ())
        drag = self.check_edit_settings(
            route_settings, direction=direction, direction_scale=direction_scale, mask=mask, mask_frame=mask_frame,
            erase=erase, mask_structure=mask_structure, mask_structure_level=mask_structure_level,
            mask_clicks=mask_clicks, imagic_scale=imagic_scale, erase_strength=erase_strength, strength=strength,
            drag=drag, drag_strength=drag_strength, erase_fill=erase_fill,
            content=dict(prompt=prompt, reference_image=reference_image, content_embeds=content_embeds),
            mask_tracker=mask_tracker)
        strength = self.start_strength(strength, erase=erase, erase_strength=erase_strength, drag=drag,
                                       drag_strength=drag_strength)
        tracker = make_tracker(mask_tracker, mask_tracker_model)
        scheduler = self.prepare_scheduler(scheduler)
        plan = plan_guidance(guidance_scale, temporal_guidance_scale)
        window_size, window_overlap = self.prepare_windows(window_size, window_overlap)
        device = self._execution_device
        source = self.prepare_source(video, height=height, width=width, size=size)
        masked = self.prepare_masked_edit(
            source, mask=mask, mask_frame=mask_frame, erase=erase, mask_structure=mask_structure,
            mask_structure_level=mask_structure_level, tracker=tracker, mask_clicks=mask_clicks, drag=drag,
            structure_given=depth is not None, erase_fill=erase_fill)

        content = ContentRequest(prompt=prompt, negative_prompt=negative_prompt, reference_image=reference_image,
                                 content_weights=content_weights, content_embeds=content_embeds,
                                 direction=direction, direction_scale=direction_scale, imagic_scale=imagic_scale)
        timesteps = self.prepare_timesteps(num_inference_steps, strength, device, scheduler)  # draws nothing
        prediction, depth_shown, user_mask = self.prepare_route(
            source, content, depth=depth, structure_level=structure_level, plan=plan, generator=generator,
            device=device, settings={**route_settings, "timesteps": timesteps}, masked=masked,
            depth_cache=depth_cache)
        if masked is not None and masked.start_frames is not None:  # an erase's or a drag's own source (MaskedEdit)
            source = SourceVideo(masked.start_frames, source.fps, source.input_size, source.latent_size)
        latents, noise, source_latents = self.prepare_latents(
            source, timesteps, strength=strength, need_source=user_mask is not None, generator=generator,
            device=device, decode_chunk_size=decode_chunk_size, scheduler=scheduler,
            full_strength_start=full_strength_start,
        )
        kept = self.prepare_kept_region(user_mask, masked, source, mask_feather, source_latents=source_latents,
                                        noise=noise, scheduler=scheduler, timesteps=timesteps)
        hooks = self.step_hooks(kept, callback_on_step_end, callback_on_step_end_tensor_inputs)

        blender = WindowBlender(prediction.predict, source.num_frames, window_size, window_overlap,
                                num_steps=len(timesteps), shift=window_shift, device=device)
        latents = self.run_loop(blender, latents, timesteps, scheduler, generator=generator, hooks=hooks,
                                progress_callback=progress_callback)
        return self.finish(latents, kept, source, depth_shown, output_type, decode_chunk_size)

    @staticmethod
    def start_strength(strength: float, *, erase: bool, erase_strength, drag, drag_strength) -> float:
        """Where sampling starts: an erase from its pre-filled region at ``erase_strength``
        (:func:`gen1.masked_edits.erase_start`), a drag from the subject moved at ``drag_strength``
        (:func:`gen1.drag.drag_start`), any other edit at ``strength``."""
        if erase:
            return erase_start(erase_strength)
        if drag is not None:
            return drag_start(drag_strength)
        return strength

    def finish(self, latents: torch.Tensor, kept: KeptRegion | None, source: "SourceVideo", depth_shown,
               output_type: str, decode_chunk_size: int) -> Gen1PipelineOutput:
        """An edit's output from its final ``latents``: as they are (``"latent"``), or decoded with the ``kept``
        region put back (:meth:`gen1.masking.KeptRegion.composite`) and formatted; offloaded models' hooks freed."""
        if output_type == "latent":
            self.maybe_free_model_hooks()
            return Gen1PipelineOutput(frames=latents, depth=depth_shown, fps=source.fps)
        frames = self.decode_latents(latents, decode_chunk_size)
        if kept is not None:
            frames = kept.composite(frames, source.frames)
        self.maybe_free_model_hooks()
        return self._format(frames, depth_shown, output_type, source.fps)


    @staticmethod
    def _format(frames: torch.Tensor, depth: torch.Tensor, output_type: str, fps) -> Gen1PipelineOutput:
        if output_type == "pt":
            return Gen1PipelineOutput(frames=frames, depth=depth, fps=fps)
        array = rearrange(frames, "f c h w -> f h w c").numpy().astype(np.float32)
        depth_np = depth.numpy().astype(np.float32)
        if output_type == "np":
            return Gen1PipelineOutput(frames=array, depth=depth_np, fps=fps)
        from PIL import Image  # lazy: PIL is heavy and only this path needs it

        images = [Image.fromarray(frame) for frame in unit_to_uint8(array)]
        return Gen1PipelineOutput(frames=images, depth=depth_np, fps=fps)


@dataclass
class MaskedEdit:
    """How a call uses its mask (:mod:`gen1.masked_edits`): the mask as given, the frame it shows (None: every
    frame, as given), whether it erases, the structure inside it (``"keep"`` / ``"fill"``), its structure level
    (None: the edit's), the tracker, and whether the depth is the user's (a mock-up of what goes in its place)."""

    mask: Any
    mask_frame: int | None
    erase: bool
    structure: str
    structure_level: float | None
    tracker: Any = "flow"
    structure_given: bool = False
    clicks: tuple = ()  # (x, y, positive) on mask_frame in pixels of the video, instead of a mask
    drag: Any = None  # a gen1.drag.Drag: the subject moved (docs/drag.md)
    fill: str | None = None  # where an erase or a drag's old place takes the colours the subject hid (None: the default,
    # gen1.masked_edits.ERASE_FILL; gen1.settings.ERASE_FILLS)
    # The source of the rest of the edit when not the clip itself (set by prepare_route): what sampling starts from
    # below strength 1 and what is kept outside the region. An erase's: the region pre-filled (erase_fill)
    # (gen1.masked_edits.prefilled, equal to the clip outside it); a drag's: the subject moved (gen1.drag.moved_frames).
    start_frames: Any = None
    # Which kept pixels a redrawn background meets seamlessly when not all of them (gen1.seamless.SeamAnchor): a
    # drag's old place meets those outside the subject's old and new places, its new place's margin all (set by
    # prepare_route).
    seam_anchor: Any = None

    @property
    def redraws_background(self) -> bool:
        """Whether the model draws what lies behind the subject (an erase, a drag's old place): then its drawing is
        composited seamlessly into the kept pixels (:mod:`gen1.seamless`)."""
        return self.erase or self.drag is not None

    @property
    def replaces_subject(self) -> bool:
        """Whether the subject's shape is not the source's (an erase, its structure filled, or a depth the user gives
        for what goes there): then every masked pixel is edited fully, so that nothing of the subject blends back
        (:class:`gen1.masking.KeptRegion` ``cover``)."""
        return self.erase or self.structure != "keep" or self.structure_given or self.drag is not None


@dataclass
class SourceVideo:
    """The source of an edit at the output size: frames ``(F, 3, H, W)`` float in [0, 1] on the CPU, their frame
    rate (None unless read from a file), the input's size before resizing and the latent grid's size."""

    frames: torch.Tensor
    fps: Any
    input_size: tuple[int, int]
    latent_size: tuple[int, int]

    @property
    def num_frames(self) -> int:
        return self.frames.shape[0]

    @property
    def size(self) -> tuple[int, int]:
        return tuple(self.frames.shape[-2:])

    @classmethod
    def prepare(cls, video, *, height=None, width=None, size=None, multiple: int = 8,
                vae_scale_factor: int | None = None) -> "SourceVideo":
        """Read / convert ``video`` and resize it to the output size (:func:`gen1.conditioning.video_at_size`: 8-bit
        video as ``gen1 edit`` reads it) (none given: :func:`gen1.model_defaults.edit_size` of its own short side),
        its sides rounded down to a ``multiple``; the latent grid is that size over ``vae_scale_factor`` (default:
        ``multiple``)."""

        def output_size(input_size: tuple[int, int]) -> tuple[int, int]:
            short = size if size is not None or height is not None or width is not None else edit_size(
                None, min(input_size), multiple)
            return target_size(*input_size, height=height, width=width, size=short, multiple=multiple)

        frames, fps, input_size = video_at_size(video, output_size)
        factor = multiple if vae_scale_factor is None else vae_scale_factor
        latent_size = (frames.shape[-2] // factor, frames.shape[-1] // factor)
        return cls(frames, fps, input_size, latent_size)
