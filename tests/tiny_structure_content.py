"""Tiny random depth networks, CLIP towers, tokenizer and prior for the structure/content tests (CPU)."""

from __future__ import annotations

from pathlib import Path

import torch

TINY_VIT = dict(img_size=64, embed_dim=32, depth=4, num_heads=2, hooks=[0, 1, 2, 3], features=16,
                head_channels=8, num_classes=10, non_negative=False)
TINY_MIDAS = {
    "dpt_large": dict(TINY_VIT, reassemble_features=[16, 16, 32, 32]),
    "dpt_hybrid": dict(TINY_VIT, reassemble_features=[16, 16, 32, 32], resnet_layers=[1, 1, 1],
                       resnet_channels=[16, 32, 64], resnet_stem_channels=8, resnet_groups=4),
    "midas_v21_small": dict(channel_multiplier=0.25, depth_multiplier=0.3, features=8, head_channels=8,
                            non_negative=False),
}
TINY_TEXT_LEN = 16
TINY_DIM = 16


def tiny_midas(variant: str, seed: int = 0):
    """A random MiDaS network of ``variant`` at toy size (the same module tree as the release)."""
    from gen1.depth.midas import build_midas, default_midas_config

    torch.manual_seed(seed)
    net = build_midas(default_midas_config(variant, **TINY_MIDAS[variant])).eval()
    with torch.no_grad():  # random BatchNorm statistics so that eval-mode BN is not the identity
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return net


def tiny_dpt_config():
    from transformers import DPTConfig

    return DPTConfig(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=37,
                     image_size=32, patch_size=8, backbone_out_indices=[0, 1, 2, 3],
                     neck_hidden_sizes=[8, 8, 16, 16], fusion_hidden_size=16, is_hybrid=False,
                     reassemble_factors=[4, 2, 1, 0.5])


def tiny_depth_anything_config():
    from transformers import DepthAnythingConfig, Dinov2Config

    backbone = Dinov2Config(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=37,
                            image_size=28, patch_size=14, out_indices=[1, 2, 3, 4],
                            reshape_hidden_states=False, apply_layernorm=True)
    return DepthAnythingConfig(backbone_config=backbone, reassemble_hidden_size=32, patch_size=14,
                               neck_hidden_sizes=[8, 8, 16, 16], fusion_hidden_size=16, head_hidden_size=8)


def tiny_clip_tokenizer(model_max_length: int = TINY_TEXT_LEN):
    """A byte-level CLIP tokenizer with no merges: 256 bytes, 256 word-final bytes, start/end tokens."""
    from transformers import CLIPTokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    chars = list(bytes_to_unicode().values())
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": 256 + i for i, c in enumerate(chars)})
    vocab["<|startoftext|>"] = 512
    vocab["<|endoftext|>"] = 513
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=model_max_length)


def tiny_clip_config():
    from transformers import CLIPConfig

    text = dict(vocab_size=514, hidden_size=TINY_DIM, intermediate_size=32, num_hidden_layers=2,
                num_attention_heads=2, max_position_embeddings=TINY_TEXT_LEN, bos_token_id=512, eos_token_id=513,
                pad_token_id=513)
    vision = dict(hidden_size=24, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                  image_size=32, patch_size=8)
    return CLIPConfig(text_config=text, vision_config=vision, projection_dim=TINY_DIM)


def save_tiny_clip_checkpoint(directory: Path, seed: int = 0) -> Path:
    """A tiny random transformers CLIPModel + tokenizer + image processor in the hub layout."""
    from transformers import CLIPImageProcessor, CLIPModel

    torch.manual_seed(seed)
    CLIPModel(tiny_clip_config()).save_pretrained(directory)
    tiny_clip_tokenizer().save_pretrained(directory)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(directory)
    return Path(directory)


def tiny_prior(seed: int = 0):
    """A PriorTransformer mapping the tiny CLIP text space (D=16, 16 tokens) to image embeddings."""
    from diffusers import PriorTransformer

    torch.manual_seed(seed)
    prior = PriorTransformer(num_attention_heads=2, attention_head_dim=8, num_layers=2, embedding_dim=TINY_DIM,
                             num_embeddings=TINY_TEXT_LEN, additional_embeddings=4)
    with torch.no_grad():
        prior.clip_mean.normal_()
        prior.clip_std.uniform_(0.5, 2.0)
    return prior.eval()
