"""Assemble the trained demo components into a :class:`~gen1.pipeline.Gen1Pipeline` and save it in fp16.

Inputs are the exports of the component trainers and of ``gen1 train`` (EMA weights); the sampler is a
``DDIMScheduler`` with the training schedule (cosine, v-prediction). No prior is shipped: prompts use the
content encoder's direct text embedding (trained to land on the image embeddings, see
:mod:`demo_recipe.content`). The pipeline records its defaults: 64 px, the frames it was trained on, and
guidance ``gen1.demo.DEMO_GUIDANCE``. Weights are cast to float16 and saved as safetensors; ``gen1 edit`` loads them
in float32 on the CPU and casts as asked.
"""

from __future__ import annotations

from pathlib import Path

import torch


def assemble(*, vae: str | Path, unet: str | Path, depth: str | Path, content: str | Path):
    """A float32 ``Gen1Pipeline`` from the component folders."""
    from diffusers import AutoencoderKL, DDIMScheduler

    from demo_recipe.unet import SCHEDULER_CONFIG
    from gen1.content import ContentEncoder
    from gen1.demo import DEMO_GUIDANCE
    from gen1.demo.world import FRAME_SIZE
    from gen1.depth import DepthEstimator
    from gen1.pipeline import Gen1Pipeline
    from gen1.unet import VideoUNet

    scheduler = DDIMScheduler(**SCHEDULER_CONFIG, set_alpha_to_one=False, timestep_spacing="trailing")
    return Gen1Pipeline(
        vae=AutoencoderKL.from_pretrained(str(vae)),
        unet=VideoUNet.from_pretrained(str(unet)),
        scheduler=scheduler,
        depth_estimator=DepthEstimator.from_pretrained(str(depth)),
        content_encoder=ContentEncoder.from_pretrained(str(content)),
        trained_size=FRAME_SIZE,  # its defaults (gen1.model_defaults): the frames it was trained on, its best w
        recommended_guidance_scale=DEMO_GUIDANCE,
    )


def save_fp16(pipe, out: str | Path) -> dict[str, int]:
    """Save ``pipe`` cast to float16 (safetensors) atomically to ``OUT``; return file sizes in bytes."""
    from gen1.atomic import atomic_directory

    pipe.cast(torch.float16)
    with atomic_directory(out) as tmp:
        pipe.save_pretrained(str(tmp), safe_serialization=True)
    pipe.cast(torch.float32)
    return {str(p.relative_to(out)): p.stat().st_size for p in sorted(Path(out).rglob("*")) if p.is_file()}
