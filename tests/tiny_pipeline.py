"""A tiny random Gen1Pipeline (and its parts) built from configs, for the pipeline and `gen1 edit` tests (CPU).

Latents are 4 x (H/2) x (W/2) (tiny VAE factor 2), content dimension D = 16, clip length ``max_frames``.
Temporal layers get small random output weights (they start at zero) so that video mode and image mode differ.
"""

from __future__ import annotations

import torch

from tiny_models import tiny_unet, tiny_vae
from tiny_structure_content import TINY_DIM, tiny_clip_config, tiny_clip_tokenizer, tiny_dpt_config


def tiny_video_unet(max_frames: int = 4, seed: int = 0):
    from gen1.unet import VideoUNet

    unet = VideoUNet.from_image_unet(
        tiny_unet("sd1", seed=seed), max_frames=max_frames, content_dim=TINY_DIM, temporal_attention_head_dim=8
    )
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(seed + 1)
        for name, param in unet.named_parameters():
            if unet._is_new_key(name) and not name.startswith("unet.conv_in"):
                param.normal_(0.0, 0.05)
    return unet.eval()


def tiny_depth_estimator(seed: int = 0):
    from gen1.depth import DepthEstimator

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return DepthEstimator(
            backend="dpt", network_config=tiny_dpt_config().to_dict(), input_size=(32, 32), resize_mode="exact", multiple_of=8
        ).eval()


def tiny_content_encoder(seed: int = 0):
    from gen1.content import ContentEncoder

    config = tiny_clip_config()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        encoder = ContentEncoder(
            vision_config=config.vision_config.to_dict(),
            text_config=config.text_config.to_dict(),
            projection_dim=TINY_DIM,
            image_size=32,
            crop_size=32,
        ).eval()
    encoder.set_tokenizer(tiny_clip_tokenizer())
    return encoder


def tiny_pipeline(max_frames: int = 4, scheduler=None, seed: int = 0):
    """A complete tiny Gen1Pipeline (no prior: prompts use the CLIP text embedding, with a warning)."""
    from diffusers import DDIMScheduler

    from gen1.pipeline import Gen1Pipeline

    pipe = Gen1Pipeline(
        vae=tiny_vae(seed),
        unet=tiny_video_unet(max_frames, seed),
        scheduler=scheduler or DDIMScheduler(),
        depth_estimator=tiny_depth_estimator(seed),
        content_encoder=tiny_content_encoder(seed),
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe
