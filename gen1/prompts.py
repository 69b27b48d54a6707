"""Text content for Stable-Diffusion-family UNets: the CLIP text encoder's hidden states of a prompt.

This is the content signal of the public-checkpoint route (SD-1.5 + AnimateDiff + depth ControlNet): the UNet's
cross-attention was trained on the last hidden states of the base's own ``CLIPTextModel``, for prompts padded
to the tokenizer's ``model_max_length`` (77). The null content is the empty prompt's hidden states, as the
original Stable Diffusion and AnimateDiff pipelines use for classifier-free guidance (or a negative prompt).
Several prompts mix as a convex combination of their hidden-state sequences (:func:`gen1.content.convex_mix`).
"""

from __future__ import annotations

from typing import Sequence

import torch

from gen1.content import convex_mix


@torch.no_grad()
def encode_prompts(tokenizer, text_encoder, prompts: Sequence[str], device=None) -> torch.Tensor:
    """Hidden states ``(N, L, D)`` float32 of ``prompts``, padded / truncated to the tokenizer's max length."""
    if isinstance(prompts, str):
        prompts = [prompts]
    if not prompts:
        raise ValueError("encode_prompts needs at least one prompt")
    if tokenizer is None or text_encoder is None:
        raise ValueError("this pipeline has no text encoder and tokenizer for prompts")
    device = device if device is not None else text_encoder.device
    tokens = tokenizer(list(prompts), padding="max_length", max_length=tokenizer.model_max_length,
                       truncation=True, return_tensors="pt")
    attention_mask = None
    if getattr(text_encoder.config, "use_attention_mask", False):
        attention_mask = tokens.attention_mask.to(device)
    hidden = text_encoder(tokens.input_ids.to(device), attention_mask=attention_mask)[0]
    return hidden.float()


def mixed_prompt_context(tokenizer, text_encoder, prompts: Sequence[str], weights=None,
                         negative_prompt: str | None = None, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(content, null content), each ``(1, L, D)`` float32: the prompts' convex mix, and the negative prompt
    (default: the empty prompt)."""

    hidden = encode_prompts(tokenizer, text_encoder, prompts, device)
    mixed = convex_mix(hidden.flatten(1), weights).reshape(1, *hidden.shape[1:])
    null = encode_prompts(tokenizer, text_encoder, [negative_prompt or ""], device)
    return mixed, null
