"""``Gen1Pipeline``: structure- and content-guided video editing (a diffusers ``DiffusionPipeline``).

One call edits one video:

1. frames (path / array / tensor) -> resized to the output size -> source latents (VAE, in chunks of frames);
2. structure: depth from the depth estimator (or the user's depth) -> obscured at ``structure_level`` ->
   the UNet's structure channels (:func:`gen1.conditioning.structure_input`);
3. content: prompt (through the prior) and/or reference image(s), mixed with weights, or precomputed embeddings;
4. the scheduler loop; each step evaluates the guidance terms (:mod:`gen1.guidance`) in ONE batched UNet call per
   temporal window (:mod:`gen1.windows`) and blends the windows' predictions; with a mask, the kept region is
   reset to the source latents noised to the step's level (:mod:`gen1.masking`);
5. VAE decode in chunks -> frames.

Latents, noise and all scheduler arithmetic are float32 whatever the components' dtype; only UNet and VAE inputs
are cast to the models' dtype.
"""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch
from diffusers import AutoencoderKL, DDIMScheduler, DiffusionPipeline
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor
from einops import rearrange, repeat

from gen1.conditioning import (check_structure_level, decode_latents, encode_latents, resize, structure_input,
                               target_size, video_to_tensor)
from gen1.guidance import GuidancePlan, check_scales, plan_guidance
from gen1.masking import feather_mask, prepare_mask
from gen1.windows import check_window_arguments, temporal_windows, window_weights

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


def _accepts(function: Callable, name: str) -> bool:
    return name in inspect.signature(function).parameters


def trained_video_unet(unet):
    """``unet`` as a VideoUNet: an instance, a VideoUNet folder, or a training export holding ``unet/``."""
    from pathlib import Path

    from gen1.unet import VideoUNet

    if isinstance(unet, VideoUNet):
        return unet
    if not isinstance(unet, (str, os.PathLike)):
        raise ValueError(f"unet must be a VideoUNet or a folder, got {type(unet).__name__}")
    folder = Path(unet)
    if not (folder / "config.json").is_file() and (folder / "unet" / "config.json").is_file():
        folder = folder / "unet"
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"unet: no VideoUNet config.json in '{unet}' or '{Path(unet) / 'unet'}'")
    import json

    name = json.loads((folder / "config.json").read_text(encoding="utf-8")).get("_class_name")
    if name != "VideoUNet":
        raise ValueError(f"unet: '{folder}' holds a {name!r}, expected a trained VideoUNet (e.g. OUTPUT/export/unet)")
    return VideoUNet.from_pretrained(str(folder))


def _warn_if_more_than_temporal_trained(temporal_weights) -> None:
    """Warn when ``temporal_weights`` come from a training export that also trained non-temporal weights."""
    import json
    import warnings
    from pathlib import Path

    record = Path(temporal_weights).parent / "training.json"  # written by gen1.training.trainer.export_model
    if not record.is_file():
        return
    trainable = json.loads(record.read_text(encoding="utf-8")).get("trainable")
    if trainable not in (None, "temporal"):
        warnings.warn(
            f"temporal_weights '{temporal_weights}' come from a run that trained trainable={trainable!r}; "
            f"its other trained weights are only in '{Path(temporal_weights).parent / 'unet'}' and are dropped "
            "here -- pass unet= that folder to keep them",
            UserWarning,
            stacklevel=3,
        )


class Gen1Pipeline(DiffusionPipeline):
    """Edit a video by structure (depth, obscured to ``structure_level``) and content (prompt / reference image).

    Components: ``vae`` (``AutoencoderKL``), ``unet`` (:class:`gen1.unet.VideoUNet`), ``scheduler`` (any diffusers
    scheduler; DDIM by default, eps- or v-prediction per its config), ``depth_estimator``
    (:class:`gen1.depth.DepthEstimator`), ``content_encoder`` (:class:`gen1.content.ContentEncoder`), and the
    optional text-to-image-embedding ``prior`` (``PriorTransformer``) with its ``prior_scheduler``.
    """

    model_cpu_offload_seq = "content_encoder->prior->depth_estimator->unet->vae"
    _optional_components = ["prior", "prior_scheduler"]
    _callback_tensor_inputs = ["latents", "noise_pred"]

    def __init__(
        self,
        vae,
        unet,
        scheduler,
        depth_estimator,
        content_encoder,
        prior=None,
        prior_scheduler=None,
    ):
        super().__init__()
        self.register_modules(
            vae=vae,
            unet=unet,
            scheduler=scheduler,
            depth_estimator=depth_estimator,
            content_encoder=content_encoder,
            prior=prior,
            prior_scheduler=prior_scheduler,
        )

    # ----------------------------------------------------------------------------------------------- assembly
    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs) -> "Gen1Pipeline":
        """diffusers' ``from_pretrained``, after importing the gen1 modules that define the components.

        ``save_pretrained`` records a gen1 component in ``model_index.json`` under its defining module (e.g.
        ``["gen1.unet", "VideoUNet"]``, since ``gen1`` is not one of diffusers' libraries), and diffusers only
        resolves such a module if it is already imported (it never imports code a repository names). gen1's
        own component modules are trusted code, so they are imported here: those named ``gen1.*`` in a local
        ``model_index.json``, and the standard ones (unet, depth, content).
        """
        import importlib
        import json
        from pathlib import Path

        modules = {"gen1.unet", "gen1.depth", "gen1.content"}
        index = Path(pretrained_model_name_or_path) / "model_index.json"
        if index.is_file():
            for value in json.loads(index.read_text()).values():
                if isinstance(value, list) and value and isinstance(value[0], str):
                    if value[0] == "gen1" or value[0].startswith("gen1."):
                        modules.add(value[0])
        elif Path(pretrained_model_name_or_path).is_dir():
            raise ValueError(f"'{pretrained_model_name_or_path}' is not a pipeline directory (no model_index.json)")
        for module in sorted(modules):
            importlib.import_module(module)
        return super().from_pretrained(pretrained_model_name_or_path, **kwargs)

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

    @property
    def vae_scale_factor(self) -> int:
        """Pixels per latent cell (8 for Stable Diffusion's VAE)."""
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

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
        (from :meth:`VideoUNet.save_temporal`) if given.

        From a training run: pass ``unet=`` a trained :class:`~gen1.unet.VideoUNet` or its folder (a training
        ``OUTPUT/export/unet``, or the ``OUTPUT/export`` holding it). It is used as is, with all its trained
        weights, instead of inflating ``sd_dir/unet`` (``structure_channels``, ``max_frames``, ``clip_length``
        and ``temporal_kwargs`` then come from its config and must not be given). ``temporal_weights`` alone
        holds only the new layers: loading it from a run that trained more (``export/training.json`` records
        ``trainable``) onto the original SD UNet drops the trained image weights, and warns.

        ``depth_estimator`` / ``content_encoder`` are instances, or paths loaded with
        :func:`gen1.depth.load_depth_estimator` / ``ContentEncoder.from_pretrained``. ``scheduler`` defaults to a
        ``DDIMScheduler`` with the checkpoint's scheduler config (so its ``prediction_type`` is kept).
        ``clip_length`` is the clip length the temporal weights were trained on (the default temporal window).
        Weights load in float32 and every component is then cast to ``torch_dtype`` (:meth:`cast`).
        """
        from pathlib import Path

        from gen1.unet import VideoUNet

        sd_dir = Path(sd_dir)
        for sub in ("unet", "vae", "scheduler"):
            if not (sd_dir / sub).is_dir():
                raise FileNotFoundError(
                    f"not a Stable Diffusion directory in diffusers layout: '{sd_dir}' has no '{sub}/' folder"
                )
        if isinstance(depth_estimator, (str, os.PathLike)):
            from gen1.depth import load_depth_estimator

            depth_estimator = load_depth_estimator(depth_estimator)
        if isinstance(content_encoder, (str, os.PathLike)):
            from gen1.content import ContentEncoder

            content_encoder = ContentEncoder.from_pretrained(content_encoder)
        vae = AutoencoderKL.from_pretrained(sd_dir, subfolder="vae")
        if unet is None:
            unet = VideoUNet.from_image_unet(
                str(sd_dir),
                subfolder="unet",
                structure_channels=structure_channels,
                max_frames=max_frames,
                clip_length=clip_length,
                content_dim=content_encoder.embedding_dim,
                **temporal_kwargs,
            )
        else:
            if temporal_kwargs or clip_length is not None:
                given = sorted(temporal_kwargs) + (["clip_length"] if clip_length is not None else [])
                raise ValueError(f"unet= is a trained VideoUNet whose config is fixed; do not also pass {given}")
            unet = trained_video_unet(unet)
            if unet.content_dim != content_encoder.embedding_dim:
                raise ValueError(f"unet takes content of size {unet.content_dim}, the content_encoder gives "
                                 f"{content_encoder.embedding_dim}")
        if temporal_weights is not None:
            _warn_if_more_than_temporal_trained(temporal_weights)
            unet.load_temporal(temporal_weights)
        if scheduler is None:
            scheduler = DDIMScheduler.from_pretrained(sd_dir, subfolder="scheduler")
        pipe = cls(
            vae=vae,
            unet=unet,
            scheduler=scheduler,
            depth_estimator=depth_estimator,
            content_encoder=content_encoder,
            prior=prior,
            prior_scheduler=prior_scheduler,
        )
        return pipe if torch_dtype is None else pipe.cast(torch_dtype)

    # ----------------------------------------------------------------------------------------------- inputs
    def encode_content(
        self,
        prompt: str | Sequence[str] | None = None,
        reference_image=None,
        content_weights: Sequence[float] | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Content embedding ``(1, D)`` from prompt(s) (through the prior) and/or reference image(s), mixed with
        ``content_weights`` (one per prompt, then one per image, >= 0; normalised to sum to 1, so the result is a
        convex combination; default equal weights)."""
        from gen1.content import mix_content

        prompts = [prompt] if isinstance(prompt, str) else list(prompt or [])
        if reference_image is None:
            images = []
        elif isinstance(reference_image, (list, tuple)):
            images = list(reference_image)
        else:
            images = [reference_image]
        if not prompts and not images:
            raise ValueError("give a prompt, a reference_image or content_embeds")
        if self.content_encoder is None:
            raise ValueError("this pipeline has no content_encoder; pass content_embeds instead")
        images = [self._load_image(image) for image in images]
        embeddings = []
        if prompts:
            embeddings.append(
                self.content_encoder.encode_text(
                    prompts, prior=self.prior, prior_scheduler=self.prior_scheduler, generator=generator
                )
            )
        for image in images:
            embeddings.append(self.content_encoder.encode_image(image).reshape(1, -1))
        embeds = torch.cat([e.reshape(e.shape[0], -1).float() for e in embeddings])
        return self._mix(embeds, content_weights, mix_content)

    @staticmethod
    def _mix(embeds: torch.Tensor, weights, mix_content) -> torch.Tensor:
        """Convex mix of the ``(N, D)`` rows -> ``(1, D)``.

        The weights are normalised to sum to 1 (default: equal), so mixing N inputs keeps the magnitude of the
        single embeddings the model was trained on, and only the weights' ratios matter (with one input its
        weight therefore has no effect). Weights must be >= 0 and not all 0.
        """
        n = embeds.shape[0]
        if weights is not None and len(weights) != n:
            raise ValueError(f"content_weights must have one weight per prompt/image ({n}), got {len(weights)}")
        weights = [1.0] * n if weights is None else [float(w) for w in weights]
        if any(not np.isfinite(w) or w < 0 for w in weights):
            raise ValueError(f"content_weights must be finite and >= 0, got {weights}")
        total = sum(weights)
        if total <= 0:
            raise ValueError(f"content_weights must not all be 0, got {weights}")
        return mix_content(embeds, [w / total for w in weights]).reshape(1, -1)

    @staticmethod
    def _load_image(image):
        if isinstance(image, (str, os.PathLike)):
            from gen1.video import read_image

            return read_image(image)
        return image

    def _structure(self, frames: torch.Tensor, depth, size, batch_size: int = 8) -> torch.Tensor:
        """Unobscured depth ``(F, 1, H, W)`` in [0, 1] at output size ``size`` (estimated or from the user)."""
        num_frames = frames.shape[0]
        if depth is None:
            if self.depth_estimator is None:
                raise ValueError("this pipeline has no depth_estimator; pass depth")
            depth = self.depth_estimator.estimate(frames, batch_size=batch_size)
        elif isinstance(depth, torch.Tensor):
            if depth.ndim != 4 or depth.shape[1] != 1:
                raise ValueError(f"depth tensor must be (F, 1, H, W) in [0, 1], got shape {tuple(depth.shape)}")
            depth = depth.detach().float().cpu().clamp(0, 1)
        else:
            from gen1.depth import load_structure

            if isinstance(depth, (str, os.PathLike)) and not os.path.isfile(depth):
                raise FileNotFoundError(f"depth file not found: '{depth}'")
            depth = load_structure(depth)
        depth = depth.float().cpu()
        if depth.shape[0] == 1 and num_frames > 1:
            depth = depth.expand(num_frames, -1, -1, -1)
        if depth.shape[0] != num_frames:
            raise ValueError(f"depth has {depth.shape[0]} frames but the video has {num_frames} (give 1 or {num_frames})")
        return resize(depth, size)

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

    # ----------------------------------------------------------------------------------------------- UNet
    def predict_noise(
        self,
        latents: torch.Tensor,
        structure: torch.Tensor,
        timestep: torch.Tensor,
        plan: GuidancePlan,
        context: torch.Tensor,
        null_context: torch.Tensor,
    ) -> torch.Tensor:
        """Guided prediction ``(1, 4, Fw, h, w)`` float32 for one window: all of ``plan``'s terms in ONE UNet call.

        Batch entry ``i`` is term ``plan.terms[i]``: the same ``[z_t, s]`` sample, the real or null content, and
        the image-mode gate set for the image-model term.
        """
        n = plan.num_evaluations
        dtype = self.unet.dtype
        sample = torch.cat([latents, structure], dim=1).to(dtype)
        sample = repeat(sample, "b c f h w -> (n b) c f h w", n=n)
        hidden = torch.cat([context if cond else null_context for cond in plan.uses_content()]).to(dtype)
        gate = plan.image_mode()
        image_mode = list(gate) if any(gate) else None  # host-side gate: no device sync per step
        timesteps = timestep.reshape(1).expand(sample.shape[0]).to(sample.device)
        prediction = self.unet(sample, timesteps, encoder_hidden_states=hidden, image_mode=image_mode, return_dict=False)[0]
        return plan.combine(prediction)

    # ----------------------------------------------------------------------------------------------- call
    def check_inputs(self, *, structure_level, guidance_scale, temporal_guidance_scale, num_inference_steps,
                     output_type, strength, decode_chunk_size, mask_feather=1.0):
        """Validate the scalar call arguments (``ValueError`` naming the argument and its value)."""
        check_structure_level(structure_level)
        check_scales(guidance_scale, temporal_guidance_scale)
        if int(num_inference_steps) != num_inference_steps or num_inference_steps < 1:
            raise ValueError(f"num_inference_steps must be an integer >= 1, got {num_inference_steps!r}")
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"output_type must be one of {OUTPUT_TYPES}, got {output_type!r}")
        if not (0.0 < float(strength) <= 1.0):
            raise ValueError(f"strength must be in (0, 1], got {strength!r}")
        if not (np.isfinite(float(mask_feather)) and float(mask_feather) >= 0):
            raise ValueError(f"mask_feather must be a finite number >= 0 (latent cells), got {mask_feather!r}")
        if int(decode_chunk_size) != decode_chunk_size or decode_chunk_size < 1:
            raise ValueError(f"decode_chunk_size must be an integer >= 1, got {decode_chunk_size!r}")

    def _timesteps(self, num_inference_steps: int, strength: float, device) -> torch.Tensor:
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        timesteps = self.scheduler.timesteps
        if strength >= 1.0:
            return timesteps
        order = getattr(self.scheduler, "order", 1)
        skip = max(num_inference_steps - max(int(num_inference_steps * strength), 1), 0)
        if hasattr(self.scheduler, "set_begin_index"):
            self.scheduler.set_begin_index(skip * order)
        return timesteps[skip * order :]

    @torch.no_grad()
    def __call__(
        self,
        video,
        *,
        prompt: str | Sequence[str] | None = None,
        reference_image=None,
        content_weights: Sequence[float] | None = None,
        content_embeds: torch.Tensor | None = None,
        structure_level: float = 0.0,
        guidance_scale: float = 7.5,
        temporal_guidance_scale: float = 1.0,
        num_inference_steps: int = 30,
        generator: torch.Generator | None = None,
        height: int | None = None,
        width: int | None = None,
        size: int | None = None,
        depth=None,
        mask=None,
        mask_feather: float = 1.0,
        window_size: int | None = None,
        window_overlap: int | None = None,
        decode_chunk_size: int = 8,
        strength: float = 1.0,
        output_type: str = "np",
        callback_on_step_end: Callable | None = None,
        callback_on_step_end_tensor_inputs: Sequence[str] = ("latents",),
    ) -> Gen1PipelineOutput:
        """Edit ``video``; see the module docstring for the data flow.

        Args:
            video: path, ``VideoClip``, uint8 array ``(F, H, W, 3)``, float tensor ``(F, 3, H, W)`` in [0, 1], or
                list of PIL images.
            prompt / reference_image / content_weights: content (see :meth:`encode_content`); or
            content_embeds: precomputed CLIP-space embedding(s) ``(D,)`` / ``(N, D)`` (N > 1: convex mix with
                ``content_weights``, normalised to sum to 1).
            structure_level: t_s in [0, 7] (0 = depth as estimated, 7 = coarse layout only).
            guidance_scale: content guidance w >= 0. temporal_guidance_scale: w_t >= 0 (see :mod:`gen1.guidance`).
            height / width or size: output size (size = short side); default the video's size; rounded down to a
                multiple of the VAE factor.
            depth: the user's structure instead of the estimate: tensor ``(F|1, 1, H, W)`` in [0, 1] (1 = near),
                or a path / frames for :func:`gen1.depth.load_structure`.
            mask: region to edit (1) vs keep (0), the video's size, one mask or one per frame
                (:mod:`gen1.masking`); feathered with a Gaussian of ``mask_feather`` latent cells.
            window_size / window_overlap: temporal windows (default: the clip length the UNet was trained on,
                ``unet.config.clip_length``, recorded by ``gen1 train``; for a UNet without one, its
                ``max_frames``; and a quarter of the window).
            decode_chunk_size: frames per VAE encode/decode call.
            strength: in (0, 1]; below 1 starts from the source latents noised to that fraction of the schedule.
            output_type: ``"np"``, ``"pt"``, ``"pil"`` or ``"latent"``.
            callback_on_step_end: ``f(pipe, step, timestep, kwargs) -> dict`` with ``kwargs`` holding the tensors
                named in ``callback_on_step_end_tensor_inputs``; a returned ``"latents"`` replaces the latents.
        """
        self.check_inputs(
            structure_level=structure_level,
            guidance_scale=guidance_scale,
            temporal_guidance_scale=temporal_guidance_scale,
            num_inference_steps=num_inference_steps,
            output_type=output_type,
            strength=strength,
            decode_chunk_size=decode_chunk_size,
            mask_feather=mask_feather,
        )
        for name in callback_on_step_end_tensor_inputs:
            if name not in self._callback_tensor_inputs:
                raise ValueError(f"callback_on_step_end_tensor_inputs: {name!r} not in {self._callback_tensor_inputs}")
        plan = plan_guidance(guidance_scale, temporal_guidance_scale)
        max_frames = int(getattr(self.unet.config, "max_frames", 0) or 0) or 16
        clip_length = int(getattr(self.unet.config, "clip_length", 0) or 0)
        if window_size is None:  # the trained clip length: frame positions beyond it never got a gradient
            window_size = min(clip_length, max_frames) if clip_length else max_frames
        window_overlap = (window_size // 4) if window_overlap is None else window_overlap
        check_window_arguments(window_size, window_overlap)
        if window_size > max_frames:
            raise ValueError(f"window_size must be <= the UNet's max_frames={max_frames}, got {window_size}")

        device = self._execution_device
        source, fps = video_to_tensor(video)
        num_frames = source.shape[0]
        size_hw = target_size(
            source.shape[-2], source.shape[-1], height=height, width=width, size=size, multiple=self.vae_scale_factor
        )
        keep_mask = None if mask is None else prepare_mask(mask, num_frames, source.shape[-2], source.shape[-1])
        frames = resize(source, size_hw)
        latent_hw = (size_hw[0] // self.vae_scale_factor, size_hw[1] // self.vae_scale_factor)

        # content
        if content_embeds is not None:
            from gen1.content import mix_content

            embeds = torch.as_tensor(content_embeds).float()
            embeds = self._mix(embeds.reshape(-1, embeds.shape[-1]), content_weights, mix_content)
        else:
            embeds = self.encode_content(prompt, reference_image, content_weights, generator=generator)
        context, null_context = self._contexts(embeds, device)

        # structure
        depth_full = self._structure(frames, depth, size_hw)
        depth_obscured, structure = structure_input(depth_full, structure_level, latent_hw)
        structure = structure.to(device)

        # schedule and initial latents (float32)
        timesteps = self._timesteps(num_inference_steps, strength, device)
        shape = (1, self.unet.latent_channels, num_frames, *latent_hw)
        noise = randn_tensor(shape, generator=generator, device=device, dtype=torch.float32)
        source_latents = None
        if keep_mask is not None or strength < 1.0:
            source_latents = self.encode_video(frames, decode_chunk_size).to(device)
        if strength < 1.0:
            latents = self.scheduler.add_noise(source_latents, noise, timesteps[:1])
        else:
            latents = noise * float(self.scheduler.init_noise_sigma)
        latent_mask = None
        if keep_mask is not None:
            latent_mask = rearrange(feather_mask(resize(keep_mask, size_hw), latent_hw, mask_feather),
                                    "f 1 h w -> 1 1 f h w").to(device)

        windows = temporal_windows(num_frames, window_size, window_overlap)
        weights = [w.to(device) for w in window_weights(windows)]
        weight_sum = torch.zeros(num_frames, device=device)
        for (start, end), weight in zip(windows, weights):
            weight_sum[start:end] += weight
        step_kwargs = {"generator": generator} if _accepts(self.scheduler.step, "generator") else {}

        with self.progress_bar(total=len(timesteps) * len(windows)) as progress:
            for i, t in enumerate(timesteps):
                model_input = self.scheduler.scale_model_input(latents, t)
                noise_pred = torch.zeros_like(latents)
                for (start, end), weight in zip(windows, weights):
                    window_pred = self.predict_noise(
                        model_input[:, :, start:end], structure[:, :, start:end], t, plan, context, null_context
                    )
                    noise_pred[:, :, start:end] += window_pred * weight.view(1, 1, -1, 1, 1)
                    progress.update()
                noise_pred = noise_pred / weight_sum.view(1, 1, -1, 1, 1)
                latents = self.scheduler.step(noise_pred, t, latents, **step_kwargs, return_dict=False)[0].float()
                if latent_mask is not None:
                    if i + 1 < len(timesteps):
                        kept = self.scheduler.add_noise(source_latents, noise, timesteps[i + 1 : i + 2])
                    else:
                        kept = source_latents
                    latents = latent_mask * latents + (1.0 - latent_mask) * kept
                if callback_on_step_end is not None:
                    tensors = {"latents": latents, "noise_pred": noise_pred}
                    outputs = callback_on_step_end(
                        self, i, t, {name: tensors[name] for name in callback_on_step_end_tensor_inputs}
                    ) or {}
                    latents = outputs.get("latents", latents)

        if output_type == "latent":
            self.maybe_free_model_hooks()
            return Gen1PipelineOutput(frames=latents, depth=depth_obscured, fps=fps)
        frames = self.decode_latents(latents, decode_chunk_size)
        if latent_mask is not None:
            # The VAE decoder is not local (GroupNorm statistics, mid-block attention): decoding the blended
            # latents lets the edit leak into the kept region. Composite the decoded source latents there with
            # the same feathered mask (bilinear to pixels), so the kept region is the source's VAE reconstruction.
            kept = self.decode_latents(source_latents, decode_chunk_size)
            pixel_mask = resize(rearrange(latent_mask, "1 1 f h w -> f 1 h w").float().cpu(), size_hw).clamp(0, 1)
            frames = pixel_mask * frames + (1.0 - pixel_mask) * kept
        self.maybe_free_model_hooks()
        return self._format(frames, depth_obscured, output_type, fps)

    def _contexts(self, embeds: torch.Tensor, device) -> tuple[torch.Tensor, torch.Tensor]:
        """(content context, null context), each ``(1, L, D)`` float32 on ``device``."""
        from gen1.content import as_unet_context, null_content

        expected = getattr(self.unet, "content_dim", None)
        if expected is not None and embeds.shape[-1] != expected:
            raise ValueError(
                f"content embedding dimension {embeds.shape[-1]} does not match the UNet's content_dim {expected}"
            )
        context = as_unet_context(embeds.to(device=device, dtype=torch.float32))
        null = as_unet_context(null_content(1, embeds.shape[-1], device, torch.float32))
        return context, null

    @staticmethod
    def _format(frames: torch.Tensor, depth: torch.Tensor, output_type: str, fps) -> Gen1PipelineOutput:
        if output_type == "pt":
            return Gen1PipelineOutput(frames=frames, depth=depth, fps=fps)
        array = rearrange(frames, "f c h w -> f h w c").numpy().astype(np.float32)
        depth_np = depth.numpy().astype(np.float32)
        if output_type == "np":
            return Gen1PipelineOutput(frames=array, depth=depth_np, fps=fps)
        from PIL import Image

        images = [Image.fromarray((frame * 255).round().astype(np.uint8)) for frame in array]
        return Gen1PipelineOutput(frames=images, depth=depth_np, fps=fps)
