"""The public-checkpoint stack at toy size, written in the layouts people download (CPU tests, random weights).

* ``base/``: a Stable Diffusion 1.x folder in diffusers layout (unet, vae, text_encoder, tokenizer, scheduler,
  model_index.json) with an SD-1.5-layout UNet that AnimateDiff motion modules fit;
* ``motion_adapter/``: a diffusers ``MotionAdapter`` folder (config.json + diffusion_pytorch_model.safetensors);
* ``controlnet/``: a diffusers ``ControlNetModel`` folder made from the base UNet (the control_v11f1p_sd15_depth
  layout; its conditioning embedding downsamples 2x like the tiny VAE).
"""

from __future__ import annotations

from pathlib import Path

import torch

from tiny_models import tiny_motion_adapter, tiny_motion_unet, tiny_vae
from tiny_structure_content import tiny_clip_tokenizer

TEXT_WIDTH = 32  # the tiny motion UNet's cross_attention_dim


def tiny_text_encoder(seed: int = 0):
    from transformers import CLIPTextConfig, CLIPTextModel

    config = CLIPTextConfig(vocab_size=514, hidden_size=TEXT_WIDTH, intermediate_size=37, num_hidden_layers=2,
                            num_attention_heads=2, max_position_embeddings=16, bos_token_id=512, eos_token_id=513,
                            pad_token_id=513)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return CLIPTextModel(config).eval()


def tiny_controlnet(unet, seed: int = 0):
    from diffusers import ControlNetModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(16, 32))
        with torch.no_grad():  # from_unet zero-initialises the zero convolutions: give them weight
            for name, param in controlnet.named_parameters():
                if "controlnet_down_blocks" in name or "controlnet_mid_block" in name or "conv_out" in name:
                    param.normal_(0.0, 0.5)
    return controlnet.eval()


def write_foreign_controlnet(folder: Path) -> Path:
    """A ControlNet made for another base: cross-attention width 48 where the tiny base has 32."""
    from diffusers import UNet2DConditionModel

    other = UNet2DConditionModel(block_out_channels=(32, 64), layers_per_block=1, norm_num_groups=32,
                                 cross_attention_dim=48, attention_head_dim=4,
                                 down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                 up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"))
    tiny_controlnet(other).save_pretrained(folder)
    return folder


def write_public_stack(root: Path, *, dpt: bool = False) -> dict[str, Path]:
    """Write base / motion_adapter / controlnet folders under ``root`` (and with ``dpt`` a tiny transformers DPT
    depth estimator, ``dpt``); returns their paths."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    unet = tiny_motion_unet(seed=0)
    base = root / "base"
    StableDiffusionPipeline(
        vae=tiny_vae(seed=1), text_encoder=tiny_text_encoder(seed=2), tokenizer=tiny_clip_tokenizer(), unet=unet,
        scheduler=DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                                set_alpha_to_one=False, steps_offset=1),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    ).save_pretrained(base)
    adapter = root / "motion_adapter"
    tiny_motion_adapter(seed=3).save_pretrained(adapter)
    controlnet = root / "controlnet"
    tiny_controlnet(unet, seed=4).save_pretrained(controlnet)
    parts = {"base": base, "motion_adapter": adapter, "controlnet": controlnet}
    if dpt:
        from transformers import DPTForDepthEstimation

        from tiny_structure_content import tiny_dpt_config

        DPTForDepthEstimation(tiny_dpt_config()).save_pretrained(root / "dpt")
        parts["dpt"] = root / "dpt"
    return parts


def write_ip_adapter(root: Path, unet, seed: int = 5) -> Path:
    """An IP-Adapter for ``unet`` in the ``h94/IP-Adapter`` layout: ``ip-adapter_sd15.safetensors`` (image_proj.* and
    ip_adapter.<n>.to_k_ip / to_v_ip, numbered over the UNet's attentions as the original is) and ``image_encoder/``."""
    from safetensors.torch import save_file
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    root.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(hidden_size=32, intermediate_size=37,
                                                                 num_hidden_layers=2, num_attention_heads=2,
                                                                 image_size=32, patch_size=8, projection_dim=24))
        encoder.save_pretrained(root / "image_encoder")
        width = unet.config.cross_attention_dim
        tensors = {"image_proj.proj.weight": torch.randn(4 * width, 24) * 0.2,
                   "image_proj.proj.bias": torch.randn(4 * width) * 0.1,
                   "image_proj.norm.weight": 1 + 0.1 * torch.randn(width), "image_proj.norm.bias": 0.1 * torch.randn(width)}
        key_id = 1
        for name in unet.attn_processors:
            if name.endswith("attn1.processor"):
                continue
            hidden = unet.get_submodule(name[: -len(".processor")]).to_q.out_features
            tensors[f"ip_adapter.{key_id}.to_k_ip.weight"] = torch.randn(hidden, width) * 0.2
            tensors[f"ip_adapter.{key_id}.to_v_ip.weight"] = torch.randn(hidden, width) * 0.2
            key_id += 2
    save_file(tensors, str(root / "ip-adapter_sd15.safetensors"))
    return root / "ip-adapter_sd15.safetensors"


def public_pipeline(stack: dict[str, Path], **parts):
    """A gen1 pipeline of the public route from a :func:`write_public_stack` folder, its progress bar off; ``parts``:
    more of :meth:`Gen1Pipeline.from_animatediff`'s arguments (an inpainting ControlNet, a depth estimator)."""
    from gen1.pipeline import Gen1Pipeline

    pipe = Gen1Pipeline.from_animatediff(stack["base"], motion_adapter=stack["motion_adapter"],
                                         controlnet=stack["controlnet"], **parts)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def animatediff_scheduler(stack: dict[str, Path]):
    """The DDIM scheduler of :func:`write_public_stack`'s base in AnimateDiff's settings (what diffusers' pipeline and
    gen1's are compared under)."""
    from diffusers import DDIMScheduler

    from gen1.animatediff import ANIMATEDIFF_SCHEDULER

    return DDIMScheduler.from_pretrained(stack["base"], subfolder="scheduler", **ANIMATEDIFF_SCHEDULER)


def diffusers_video_pipeline(pipe, *, base: Path, motion_adapter: Path, controlnet: Path, scheduler):
    """diffusers' AnimateDiff ControlNet video-to-video pipeline on the checkpoints ``pipe`` was assembled from
    (and ``pipe``'s VAE and text encoder): the anchor the public route is compared with."""
    from diffusers import (AnimateDiffVideoToVideoControlNetPipeline, ControlNetModel, MotionAdapter,
                           UNet2DConditionModel, UNetMotionModel)

    adapter = MotionAdapter.from_pretrained(motion_adapter)
    reference = AnimateDiffVideoToVideoControlNetPipeline(
        vae=pipe.vae, text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer,
        unet=UNetMotionModel.from_unet2d(UNet2DConditionModel.from_pretrained(base, subfolder="unet"), adapter),
        motion_adapter=adapter, controlnet=ControlNetModel.from_pretrained(controlnet), scheduler=scheduler,
        feature_extractor=None, image_encoder=None,
    )
    reference.set_progress_bar_config(disable=True)
    return reference

