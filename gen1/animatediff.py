"""Assembling the public-checkpoint route: an SD-1.5-family base + AnimateDiff motion modules + a depth ControlNet.

What people hold, in the layouts they download them in:

* the base: a Stable Diffusion 1.x folder in diffusers layout (``unet/``, ``vae/``, ``text_encoder/``,
  ``tokenizer/``, ``scheduler/``), e.g. ``stable-diffusion-v1-5/stable-diffusion-v1-5`` or a fine-tune of it;
* the motion modules: a diffusers ``MotionAdapter`` folder (``guoyww/animatediff-motion-adapter-v1-5-2``) or an
  original AnimateDiff file (``mm_sd_v15_v2.ckpt``), placed by :meth:`gen1.unet.VideoUNet.from_image_unet_and_motion_adapter`;
* the ControlNet: a diffusers ``ControlNetModel`` folder of the ``lllyasviel/control_v11f1p_sd15_depth`` layout;
* a depth estimator (MiDaS / DPT / Depth Anything, :func:`gen1.depth.load_depth_estimator`), whose normalised
  inverse depth is what the ControlNet sees (obscured to t_s).

Each part is a local path or a Hub name (:mod:`gen1.hub`). Every component's config is read and checked against the
base before any weights are loaded or downloaded (:func:`resolve_parts`, :func:`check_components`), so a ControlNet
of another base, an adapter of another width or a text encoder of the wrong width is refused at once, with a message
that names both sides.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

import torch

from gen1.depth import load_depth_estimator
from gen1.hub import BASE, CONTROLNET, DEPTH_MODEL, MOTION_ADAPTER, resolve_all
from gen1.temporal_layers import check_motion_adapter_fits, read_motion_adapter_config
from gen1.unet import VideoUNet
from gen1.weights import check_no_missing_weights, missing_weight_reports_held

BASE_SUBFOLDERS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
#: the UNet widths of SDXL (and of its AnimateDiff motion adapters); SD 1.x has (320, 640, 1280, 1280)
SDXL_BLOCK_OUT_CHANNELS = (320, 640, 1280)
#: the clip length AnimateDiff v1.5 / v2 motion modules were trained on: the default temporal window
ANIMATEDIFF_CLIP_LENGTH = 16
#: the scheduler AnimateDiff's authors and diffusers' AnimateDiff documentation use (DDIM, linear betas)
ANIMATEDIFF_SCHEDULER = dict(beta_schedule="linear", clip_sample=False, timestep_spacing="linspace", steps_offset=1)


def _read_config(path: Path, what: str) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"{what}: no config at '{path}'")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{what}: '{path}' is not valid JSON ({error})") from None


def check_base_folder(base: str | os.PathLike) -> Path:
    """``base`` as a Path after checking it has the diffusers Stable Diffusion layout."""
    folder = Path(base)
    if not folder.is_dir():
        raise FileNotFoundError(f"base model folder not found: '{folder}'")
    missing = [sub for sub in BASE_SUBFOLDERS if not (folder / sub).is_dir()]
    if missing:
        raise ValueError(f"base '{folder}' is not a Stable Diffusion folder in diffusers layout: it has no "
                         f"{', '.join(repr(m + '/') for m in missing)}")
    return folder


def check_controlnet_fits(unet_config: Mapping[str, Any], controlnet_config: Mapping[str, Any], *,
                          unet_name: str = "the base UNet", controlnet_name: str = "the ControlNet") -> None:
    """Refuse a ControlNet made for another base (its residuals would not fit the UNet's skip connections)."""
    for field in ("cross_attention_dim", "block_out_channels", "layers_per_block", "addition_embed_type"):
        ours, theirs = unet_config.get(field), controlnet_config.get(field)
        if isinstance(ours, (list, tuple)) or isinstance(theirs, (list, tuple)):
            ours, theirs = list(ours or []), list(theirs or [])
        if ours != theirs:
            raise ValueError(
                f"{controlnet_name} was made for another base: its {field} is {theirs!r}, {unet_name} has "
                f"{ours!r} (an SD-1.5 base needs an SD-1.5 ControlNet such as control_v11f1p_sd15_depth)"
            )
    latent = unet_config.get("out_channels", 4)
    if controlnet_config.get("in_channels", 4) != latent:
        raise ValueError(f"{controlnet_name} takes {controlnet_config.get('in_channels')} latent channels, "
                         f"{unet_name} predicts {latent}")


def check_text_encoder_fits(unet_config: Mapping[str, Any], text_config: Mapping[str, Any], *,
                            text_name: str = "the text encoder", unet_name: str = "the base UNet") -> None:
    """The UNet cross-attends to the text encoder's last hidden states: their widths must agree."""
    width = text_config.get("hidden_size", (text_config.get("text_config") or {}).get("hidden_size"))
    if width != unet_config.get("cross_attention_dim"):
        raise ValueError(f"{text_name} gives hidden states of width {width}, but {unet_name} cross-attends to "
                         f"width {unet_config.get('cross_attention_dim')}")


def check_components(base: Path, controlnet, motion_adapter=None, adapter_config=None,
                     inpaint_controlnet=None) -> None:
    """Read the configs of the base's UNet and text encoder, of ``controlnet`` and of ``motion_adapter``; refuse a
    mismatch, naming both sides. Reads no weights (an original AnimateDiff file: its tensor shapes)."""
    from diffusers import ControlNetModel  # lazy: diffusers is heavy and only this path needs it

    unet_config = _read_config(base / "unet" / "config.json", "base UNet")
    if motion_adapter is not None:

        adapter = read_motion_adapter_config(motion_adapter, config=adapter_config)
        try:
            check_motion_adapter_fits(unet_config, adapter)
        except ValueError as error:
            name = f"'{motion_adapter}'" if isinstance(motion_adapter, (str, os.PathLike)) else "given"
            sdxl = list(adapter.get("block_out_channels", [])) == list(SDXL_BLOCK_OUT_CHANNELS)
            hint = (" (an SDXL motion adapter; an SD-1.5 base takes SD-1.5 modules such as "
                    "guoyww/animatediff-motion-adapter-v1-5-2)") if sdxl else ""
            raise ValueError(f"the motion adapter {name} does not fit the base: {error}{hint}") from None
    text_config = _read_config(base / "text_encoder" / "config.json", "base text encoder")
    check_text_encoder_fits(unet_config, text_config, text_name=f"text encoder '{base / 'text_encoder'}'",
                            unet_name=f"UNet '{base / 'unet'}'")
    for what, model in (("ControlNet", controlnet), ("inpainting ControlNet", inpaint_controlnet)):
        if model is None:
            continue
        if isinstance(model, ControlNetModel):
            controlnet_config, name = dict(model.config), f"the {what} given"
        else:
            folder = Path(model)
            controlnet_config = _read_config(folder / "config.json", f"{what} '{folder}'")
            name = f"{what} '{folder}'"
            if controlnet_config.get("_class_name") not in (None, "ControlNetModel"):
                raise ValueError(f"{name} holds a {controlnet_config.get('_class_name')!r}, expected a "
                                 "ControlNetModel")
        check_controlnet_fits(unet_config, controlnet_config, unet_name=f"UNet '{base / 'unet'}'",
                              controlnet_name=name)


def resolve_parts(parts: Mapping[str, Any], *, flags: Mapping[str, str] | None = None, adapter_config=None,
                  weights: bool = True) -> dict:
    """Local paths for the parts named by path or Hub name (``base``, ``motion_adapter``, ``controlnet``,
    ``depth_estimator``; instances and ``None`` pass through). Configs come first and are checked against each
    other (:func:`check_components`); only then the weights, so a mismatch costs no download. ``flags`` names each
    part in messages (the CLI's options; default: the argument names). ``weights=False`` stops after the configs
    (the same folders, for more checks by the caller before anything large is fetched)."""

    layouts = {"base": BASE, "motion_adapter": MOTION_ADAPTER, "controlnet": CONTROLNET, "depth_estimator": DEPTH_MODEL,
               "inpaint_controlnet": CONTROLNET}
    flags = {**{key: key for key in layouts}, **(flags or {})}

    def local(weights: bool) -> dict:
        """Every named part resolved at once: all the missing ones in one message (gen1.hub.resolve_all)."""
        named = [key for key, value in parts.items() if isinstance(value, (str, os.PathLike))]
        paths = resolve_all([(flags[key], parts[key], layouts[key]) for key in named], weights=weights)
        return {**parts, **dict(zip(named, paths))}

    configs = local(weights=False)
    check_components(check_base_folder(configs["base"]), configs["controlnet"], configs["motion_adapter"],
                     adapter_config, configs.get("inpaint_controlnet"))
    return local(weights=True) if weights else configs


@missing_weight_reports_held()  # the check at the end names a missing key: diffusers' report dropped
def from_animatediff(pipeline_class, base, *, motion_adapter, controlnet, depth_estimator=None, scheduler=None,
                     max_frames: int | None = None, clip_length: int | None = None, adapter_config=None,
                     torch_dtype: torch.dtype | None = None, inpaint_controlnet=None):
    """See :meth:`gen1.pipeline.Gen1Pipeline.from_animatediff`."""
    # lazy: diffusers is heavy and only this path needs it
    from diffusers import AutoencoderKL, ControlNetModel, DDIMScheduler
    from transformers import CLIPTextModel, CLIPTokenizer  # lazy: transformers is heavy and only this path needs it

    parts = resolve_parts(dict(base=base, motion_adapter=motion_adapter, controlnet=controlnet,
                               depth_estimator=depth_estimator, inpaint_controlnet=inpaint_controlnet),
                          adapter_config=adapter_config)
    inpaint_controlnet = parts["inpaint_controlnet"]
    if isinstance(inpaint_controlnet, (str, os.PathLike)):
        inpaint_controlnet = ControlNetModel.from_pretrained(str(inpaint_controlnet))
    base, motion_adapter, controlnet, depth_estimator = (parts[key] for key in ("base", "motion_adapter", "controlnet",
                                                                               "depth_estimator"))
    if isinstance(depth_estimator, (str, os.PathLike)):

        depth_estimator = load_depth_estimator(depth_estimator)
    if clip_length is None:

        longest = max_frames or read_motion_adapter_config(motion_adapter, config=adapter_config)["motion_max_seq_length"]
        clip_length = min(ANIMATEDIFF_CLIP_LENGTH, longest)
    unet = VideoUNet.from_image_unet_and_motion_adapter(str(base), motion_adapter, subfolder="unet",
                                                       max_frames=max_frames, clip_length=clip_length,
                                                       adapter_config=adapter_config)
    if not isinstance(controlnet, ControlNetModel):
        controlnet = ControlNetModel.from_pretrained(str(controlnet))
    if scheduler is None:
        scheduler = DDIMScheduler.from_pretrained(str(base), subfolder="scheduler", **ANIMATEDIFF_SCHEDULER)
    pipe = pipeline_class(
        vae=AutoencoderKL.from_pretrained(str(base), subfolder="vae"),
        unet=unet,
        scheduler=scheduler,
        depth_estimator=depth_estimator,
        controlnet=controlnet.eval(),
        inpaint_controlnet=inpaint_controlnet,  # from_pretrained gives it in eval mode
        text_encoder=CLIPTextModel.from_pretrained(str(base), subfolder="text_encoder").eval(),
        tokenizer=CLIPTokenizer.from_pretrained(str(base), subfolder="tokenizer"),
    )
    check_no_missing_weights(pipe.components, f"'{base}' with its ControlNets", folder=base)  # vae/, text_encoder/
    return pipe if torch_dtype is None else pipe.cast(torch_dtype)
