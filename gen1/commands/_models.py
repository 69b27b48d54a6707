"""The model flags of the commands that load a pipeline, so a flag means the same everywhere (what they choose is
checked and loaded by :mod:`gen1.model_sources`):

* ``--model DIR|ORG/NAME``: a pipeline folder (``Gen1Pipeline.save_pretrained``; default: the bundled demo model);
* ``--base --motion-adapter --controlnet [--depth-model]``: the public-checkpoint route
  (:meth:`gen1.pipeline.Gen1Pipeline.from_animatediff`), the three named separately;
* with ``gen1 edit``, ``--ip-adapter [--image-encoder]`` (reference images on the public route) and ``--lora``.

Every name is a local path or a Hub repo id (``ORG/NAME``, or ``ORG/NAME/path/in/repo`` for one file or folder of
a repo), fetched through huggingface_hub's cache (:mod:`gen1.hub`). :func:`check_model_source` runs before any
heavy work (names resolved, files present, configs parsed and checked against each other, adapters' shapes checked
against the base); :func:`load_model` then loads.
"""

from __future__ import annotations

import json
from pathlib import Path

NAME_HELP = "a local path or a Hub repo id"


def add_model_arguments(group) -> None:
    group.add_argument("--model", metavar="DIR|REPO",
                       help=f"pipeline folder (Gen1Pipeline.save_pretrained), {NAME_HELP}; default: the bundled model")
    group.add_argument("--base", metavar="DIR|REPO",
                       help="public route: a Stable Diffusion 1.x model in diffusers layout (unet, vae, text_encoder, "
                       "tokenizer, scheduler), e.g. stable-diffusion-v1-5/stable-diffusion-v1-5; with "
                       "--motion-adapter and --controlnet")
    group.add_argument("--motion-adapter", metavar="PATH|REPO",
                       help="public route: AnimateDiff motion modules: a MotionAdapter folder or repo "
                       "(guoyww/animatediff-motion-adapter-v1-5-2), or an original file (mm_sd_v15_v2.ckpt, or "
                       "REPO/path/to/file such as guoyww/animatediff/mm_sd_v15_v2.ckpt)")
    group.add_argument("--controlnet", metavar="DIR|REPO",
                       help="public route: a depth ControlNet in diffusers layout, e.g. "
                       "lllyasviel/control_v11f1p_sd15_depth")
    group.add_argument("--inpaint-controlnet", metavar="DIR|REPO",
                       help="public route: an SD-1.5 inpainting ControlNet, e.g. lllyasviel/control_v11p_sd15_inpaint, "
                       "that joins the depth ControlNet in masked edits (--inpaint-controlnet-scale)")
    group.add_argument("--depth-model", metavar="PATH|REPO",
                       help="public route: the depth estimator (a MiDaS .pt file, e.g. "
                       "lllyasviel/Annotators/dpt_hybrid-midas-501f0c75.pt, or a DPT / Depth Anything folder or repo "
                       "such as Intel/dpt-hybrid-midas); without it, give --depth")


def model_flags(args) -> list[str]:
    """The model flags of a parsed command as ``gen1 edit`` takes them (to print or pass on a command line that loads
    the same model): the public route's parts (``--base`` ... with ``--depth-model``), or ``--model``, or none (the
    bundled model). ``--depth-model`` goes with the public parts only: ``gen1 edit`` takes it for no other model."""
    public = [("--base", "base"), ("--motion-adapter", "motion_adapter"), ("--controlnet", "controlnet"),
              ("--depth-model", "depth_model")]
    if getattr(args, "base", None) is not None:
        return [word for flag, name in public if getattr(args, name, None) is not None
                for word in (flag, str(getattr(args, name)))]
    return ["--model", str(args.model)] if getattr(args, "model", None) is not None else []


def model_parts(source, args) -> str:
    """Every part of the model a customisation (images or Imagic) trains against, as resolved paths (the folder or
    the public parts, an IP-Adapter or LoRA applied, the depth and content encoders given): a checkpoint resumed
    with another encoder, ControlNet or motion adapter would go on from inputs drawn differently. A Hub id the
    command resolves later stays as given."""
    parts = {name: str(Path(value).resolve()) for name, value in vars(source).items() if isinstance(value, Path)}
    for flag in ("depth_model", "content_model"):
        value = getattr(args, flag, None)
        if value is not None:
            parts[f"--{flag.replace('_', '-')}"] = str(Path(value).resolve()) if Path(value).exists() else str(value)
    return json.dumps(parts, sort_keys=True)
