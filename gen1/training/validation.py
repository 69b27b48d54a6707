"""Periodic validation: a held-out loss with fixed noise, and real samples from :class:`gen1.pipeline.Gen1Pipeline`.

Every ``validation.every`` optimizer steps (EMA weights swapped in):

* **loss** -- the training objective on a fixed held-out batch (one video and one image) with fixed noise,
  timesteps and dropout (``micro_generator(seed, 0, -1)``): a cheap, comparable progress signal;
* **samples** (``validation.samples``) -- ``Gen1Pipeline`` assembled in memory from the training components
  (the VAE, the VideoUNet being trained, a DDIM scheduler from the training scheduler's config, no depth
  estimator: the held-out clip's own structure goes in through ``depth=``, its first frame's CLIP embedding
  through ``content_embeds=``), a few steps with a fixed generator. The result is written as a PNG strip
  (rows: source, structure as seen, sample; one column per frame) and an mp4 of source | sample under
  ``OUTPUT/samples/step-XXXXXXXX.*`` (atomically), and logged to TensorBoard as ``val/sample``.

The held-out clip: for ``data.source: synthetic`` the scene ``Config.held_out_seed`` (outside the training
seed range, so never trained on); for shards the first video and first image clip of the data (the shards
have no held-out split; the sample's source frames are the VAE decode of the cached latents).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from einops import rearrange

from gen1.atomic import atomic_path
from gen1.conditioning import decode_latents, resize
from gen1.media import unit_to_uint8, write_video
from gen1.pipeline import Gen1Pipeline
from gen1.training.batch import Clips, JointBatch, RenderedClips, collate_joint
from gen1.training.config import Config
from gen1.training.draws import draw_joint, micro_generator
from gen1.training.synthetic import render_seed


@dataclass
class HeldOut:
    """The fixed validation inputs: an encoded batch for the loss, pixel-space inputs for samples."""

    batch: JointBatch[Clips]  # one video and (where the data has images) one image
    frames: Optional[torch.Tensor] = None  # (F, 3, H, W) in [0, 1]: the sample's source video
    depth: Optional[torch.Tensor] = None  # (F, 1, H', W') in [0, 1]: its structure (any resolution)
    content: Optional[torch.Tensor] = None  # (D,): its content embedding


def held_out_from_shards(dataset, vae=None) -> HeldOut:
    """First video and first image clip of a :class:`~gen1.training.shards.ShardDataset`."""
    picks = [dataset[dataset.is_image.index(flag)] for flag in (False, True) if flag in dataset.is_image]
    held = HeldOut(batch=collate_joint(picks, Clips))
    if vae is not None:
        clip = picks[0]

        held.frames = decode_latents(vae, rearrange(clip["latents"], "c f h w -> f c h w"))
        held.depth = rearrange(clip["depth"], "c f h w -> f c h w").float()
        held.content = clip["content"][0].float()
    return held


def held_out_synthetic(config: Config, encoder) -> HeldOut:
    """The held-out scene ``config.held_out_seed`` as a video and a 1-frame image, encoded like training data."""

    syn = config.data.synthetic
    seed = config.held_out_seed
    video = dict(render_seed(seed, syn.frames, syn.size), is_image=False)
    image = dict(render_seed(seed, 1, syn.size), is_image=True)
    gen = torch.Generator().manual_seed(seed)
    batch = collate_joint([video, image], RenderedClips).map(
        lambda clips, _: encoder(clips, gen, device=torch.device("cpu")))
    size = config.validation.size or syn.size
    sample = video if size == syn.size else render_seed(seed, syn.frames, size)
    return HeldOut(batch=batch, frames=sample["frames"], depth=sample["depth"], content=batch.video.content[0, 0])


@torch.no_grad()
def validation_loss(objective, held: HeldOut, noise_scheduler, config: Config, device, *,
                    inpainting: bool = False) -> float:
    """The objective on the held-out batch with fixed draws (``micro_generator(seed, 0, -1)``); ``inpainting``: the
    model takes inpainting input, and the held-out samples draw their regions as training's do."""

    gen = micro_generator(config.train.seed, 0, -1)
    batch = draw_joint(held.batch.map(lambda clips, _: clips.to(device)), noise_scheduler, config.diffusion, gen,
                       inpainting=inpainting)
    was_training = objective.training
    objective.eval()
    try:
        loss = objective(batch)
    finally:
        objective.train(was_training)
    return float(loss)


def make_pipeline(vae, unet, noise_scheduler, content_encoder=None):
    """A ``Gen1Pipeline`` from in-memory components (DDIM with the training schedule, no depth estimator)."""
    from diffusers import DDIMScheduler  # lazy: diffusers is heavy and only this path needs it

    scheduler = DDIMScheduler.from_config(noise_scheduler.config)
    pipe = Gen1Pipeline(vae=vae, unet=unet, scheduler=scheduler, depth_estimator=None,
                        content_encoder=content_encoder)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@torch.no_grad()
def sample(pipe, held: HeldOut, config: Config):
    """Run the pipeline on the held-out clip; returns its output (``frames`` (F,H,W,3) and ``depth`` numpy)."""
    v = config.validation
    was_training = pipe.unet.training
    pipe.unet.eval()
    try:
        return pipe(video=held.frames, content_embeds=held.content, depth=held.depth,
                    structure_level=v.structure_level, guidance_scale=v.guidance_scale,
                    num_inference_steps=v.num_inference_steps, generator=torch.Generator().manual_seed(v.seed),
                    size=v.size or None, output_type="np")
    finally:
        pipe.unet.train(was_training)


def sample_strip(source: np.ndarray, depth: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """uint8 ``(3H, F*W, 3)``: rows source, structure (grey), sample; one column per frame.

    ``source`` / ``frames``: ``(F, H, W, 3)`` in [0, 1]; ``depth``: ``(F, 1, H, W)`` in [0, 1].
    """
    grey = np.repeat(rearrange(depth, "f 1 h w -> f h w 1"), 3, axis=-1)
    rows = [rearrange(x, "f h w c -> h (f w) c") for x in (source, grey, frames)]
    return unit_to_uint8(np.concatenate(rows, axis=0))


def write_sample(out_dir: str | Path, step: int, source: torch.Tensor, output, *, mp4: bool = True,
                 fps: float = 8.0) -> dict:
    """Write ``step-XXXXXXXX.png`` (strip) and optionally ``.mp4`` (source | sample) atomically; return paths
    and the strip array."""
    from PIL import Image  # lazy: PIL is heavy and only this path needs it

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    frames = np.asarray(output.frames)
    src = rearrange(resize(source.float(), frames.shape[1:3]).clamp(0, 1), "f c h w -> f h w c").numpy()
    strip = sample_strip(src, np.asarray(output.depth), frames)
    png = out_dir / f"step-{step:08d}.png"
    with atomic_path(png) as tmp:
        Image.fromarray(strip).save(tmp, format="PNG")
    paths = {"png": str(png), "strip": strip}
    if mp4:

        side = unit_to_uint8(np.concatenate([src, frames], axis=2))  # (F, H, 2W, 3)
        paths["mp4"] = str(write_video(out_dir / f"step-{step:08d}.mp4", side, fps))
    return paths
