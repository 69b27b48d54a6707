"""The CLIP text tower that matches an IP-Adapter's image encoder: global directions in the adapter's image space.

An IP-Adapter takes CLIP image embeddings (``image_embeds`` of its vision encoder; OpenCLIP ViT-H/14 for
``h94/IP-Adapter``'s SD-1.5 adapters). A StyleCLIP global direction text(TARGET) - text(NEUTRAL) lives in the same
joint space only when the texts go through the *same* CLIP model's text tower with its projection: for ViT-H/14 that
is ``laion/CLIP-ViT-H-14-laion2B-s32B-b79K`` (a whole ``CLIPModel``; transformers' ``CLIPTextModelWithProjection``
loads its text half). This module resolves and loads that tower (a folder with ``config.json``, weights and the
tokenizer files, or a Hub name through :mod:`gen1.hub`), checks that it projects to the image encoder's width, and
computes a direction the way StyleCLIP's global directions do (:func:`image_direction`).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F

from gen1.hub import IP_ADAPTER_TEXT_ENCODER, resolve

#: The text tower of OpenCLIP ViT-H/14, the image encoder of h94/IP-Adapter's SD-1.5 adapters.
VIT_H_TEXT_ENCODER = "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"


def config_projection_dim(folder) -> int:
    """The projection width of the text tower in ``folder`` from its ``config.json``: a whole ``CLIPModel``'s
    (``projection_dim`` at the top: its ``text_config`` may carry transformers' default 512 instead, which is not
    the width of the weights) or a ``CLIPTextModelWithProjection``'s own."""
    config = json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))
    if not isinstance(config, dict):
        raise ValueError(f"'{Path(folder) / 'config.json'}' is not a CLIP text model config")
    width = config.get("projection_dim")
    if width is None and isinstance(config.get("text_config"), dict):
        width = config["text_config"].get("projection_dim")
    return int(width if width is not None else 512)  # transformers' default for a config that names none


def check_widths(text_width: int, image_width: int) -> None:
    """The text tower must project to the width of the image encoder's embeddings (one CLIP model's two towers)."""
    if int(text_width) != int(image_width):
        raise ValueError(f"the IP-Adapter's text encoder projects to width {int(text_width)}, its image encoder to "
                         f"{int(image_width)}: they are not one CLIP model's towers (for h94/IP-Adapter's SD-1.5 "
                         f"adapters, ViT-H/14: {VIT_H_TEXT_ENCODER})")


def resolve_text_encoder(name, *, flag: str = "text_encoder", weights: bool = True) -> Path:
    """The local folder of the text tower ``name`` (a path, or a Hub name fetched through the cache)."""
    return resolve(name, IP_ADAPTER_TEXT_ENCODER, flag=flag, weights=weights)


def load_text_encoder(folder):
    """(``CLIPTextModelWithProjection``, ``CLIPTokenizer``) from ``folder``, in eval mode; the projection width
    taken from :func:`config_projection_dim` so that a whole ``CLIPModel`` folder loads its text half."""
    # lazy: transformers is heavy and only this path needs it
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection, CLIPTokenizer

    folder = Path(folder)
    config = CLIPTextConfig.from_pretrained(str(folder), projection_dim=config_projection_dim(folder))
    model = CLIPTextModelWithProjection.from_pretrained(str(folder), config=config)
    return model.eval(), CLIPTokenizer.from_pretrained(str(folder))


def attach_text_encoder(pipe, text_encoder, tokenizer=None) -> None:
    """Register the text tower (an instance or a folder / Hub name; ``tokenizer`` defaults to the folder's) as the
    pipeline's ``ip_adapter_text_encoder`` / ``ip_adapter_tokenizer``, after checking that an IP-Adapter taking
    image embeddings is loaded and that the widths match (:func:`check_widths`)."""
    from gen1.ip_adapter import uses_hidden_states  # lazy: diffusers is heavy and only this path needs it

    if getattr(pipe.unet.image_unet, "encoder_hid_proj", None) is None or pipe.image_encoder is None:
        raise ValueError("the IP-Adapter's text encoder needs an IP-Adapter: load one first (load_ip_adapter)")
    if uses_hidden_states(pipe.unet):
        raise ValueError("directions in the IP-Adapter's image space need an adapter that takes image embeddings "
                         "(ip-adapter_sd15), not a 'plus' adapter's encoder hidden states")
    if not isinstance(text_encoder, torch.nn.Module):
        folder = resolve_text_encoder(text_encoder, weights=False)
        check_widths(config_projection_dim(folder), pipe.image_encoder.config.projection_dim)
        text_encoder, loaded_tokenizer = load_text_encoder(resolve_text_encoder(text_encoder))
        tokenizer = tokenizer if tokenizer is not None else loaded_tokenizer
    if tokenizer is None:
        raise ValueError("give the IP-Adapter's text encoder with its tokenizer")
    check_widths(text_encoder.config.projection_dim, pipe.image_encoder.config.projection_dim)
    pipe.register_modules(ip_adapter_text_encoder=text_encoder.eval().to(pipe.image_encoder.device),
                          ip_adapter_tokenizer=tokenizer)


@torch.no_grad()
def unit_text_embeddings(tokenizer, text_encoder, texts, device=None) -> torch.Tensor:
    """The projected CLIP text embeddings ``(N, D)`` float32 of ``texts``, each scaled to unit length (CLIP's joint
    space compares by cosine)."""
    device = device if device is not None else text_encoder.device
    tokens = tokenizer(list(texts), padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                       return_tensors="pt")
    embeds = text_encoder(tokens.input_ids.to(text_encoder.device)).text_embeds.float().to(device)
    return F.normalize(embeds, dim=-1)


def image_direction(tokenizer, text_encoder, neutral: str, target: str, norm, device=None) -> torch.Tensor:
    """StyleCLIP's global direction in the image-embedding space, ``(D,)`` float32: the difference of the unit text
    embeddings, unit(text(TARGET)) - unit(text(NEUTRAL)), times ``norm`` (the length of the image embedding it
    moves). CLIP image and text embeddings have different lengths; measured this way, alpha = 1 turns the content
    by the angle between the two texts, whatever the length of the embedding it starts from."""
    units = unit_text_embeddings(tokenizer, text_encoder, [target, neutral], device)
    return (units[0] - units[1]) * norm
