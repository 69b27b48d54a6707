"""Train the demo's content encoder: a small CLIP (transformers towers inside gen1's ``ContentEncoder``)
trained contrastively on rendered frames and their style captions.

Objective: symmetric InfoNCE over the batch (learned temperature, as CLIP) on L2-normalised projections,
plus ``align_weight`` * MSE pulling the *raw* text embedding onto the (detached) raw image embedding.
Why the second term: gen1 conditions the UNet on raw image embeddings; a prompt without a prior uses the
raw text embedding directly (the documented fallback), which is only useful if it lands where the image
embeddings of that style lie -- cosine alignment alone leaves norms and offsets free.
Held-out metric: top-1 retrieval (image -> caption and caption -> image) among ``N`` held-out clips.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

EMBED_DIM = 64
MAX_TEXT_LEN = 32


def build_content_encoder(seed: int = 0):
    """A random small ``ContentEncoder`` (ViT 64px / patch 8, 3 layers; text 2 layers) with the caption tokenizer."""
    from gen1.content import ContentEncoder
    from gen1.demo.tokenizer import build_caption_tokenizer
    from gen1.eval.synthetic import CAPTION_VOCABULARY

    tokenizer = build_caption_tokenizer(CAPTION_VOCABULARY, MAX_TEXT_LEN)
    torch.manual_seed(seed)
    text = dict(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                num_attention_heads=4, max_position_embeddings=MAX_TEXT_LEN, bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    vision = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4,
                  image_size=64, patch_size=8)
    encoder = ContentEncoder(vision_config=vision, text_config=text, projection_dim=EMBED_DIM, image_size=64,
                             crop_size=64)
    encoder.set_tokenizer(tokenizer)
    return encoder


class ContrastiveCLIP(nn.Module):
    """The encoder plus CLIP's learned temperature (``logit_scale``, not shipped)."""

    def __init__(self, encoder):
        super().__init__()
        self.encoder = encoder
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def embed(self, images: torch.Tensor, captions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        enc = self.encoder
        image = enc.vision(pixel_values=enc.preprocess(images)).image_embeds
        tokens = enc.tokenizer(captions, padding="max_length", max_length=MAX_TEXT_LEN, truncation=True,
                               return_tensors="pt")
        text = enc.text(input_ids=tokens.input_ids.to(image.device)).text_embeds
        return image, text

    def loss(self, images, captions, align_weight: float) -> tuple[torch.Tensor, dict]:
        image, text = self.embed(images, captions)
        logits = self.logit_scale.clamp(max=math.log(100)).exp() * F.normalize(image, dim=-1) @ F.normalize(text, dim=-1).T
        labels = torch.arange(len(captions), device=logits.device)
        nce = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
        align = F.mse_loss(text, image.detach())
        acc = (logits.argmax(1) == labels).float().mean()
        return nce + align_weight * align, dict(nce=nce.detach(), align=align.detach(), acc=acc)


@torch.no_grad()
def retrieval_accuracy(encoder, count: int = 128, start: int | None = None) -> dict:
    """Top-1 retrieval among ``count`` held-out clips (first frame; scene and style from the same seed)."""
    from gen1.demo.data import HELD_OUT_START, render_clip

    start = HELD_OUT_START + 50_000 if start is None else start
    images, captions = [], []
    for i in range(count):
        rgb, _, caption = render_clip(start + i, start + i, 1)
        images.append(rgb)
        captions.append(caption)
    images = torch.cat(images)
    image = F.normalize(encoder.encode_image(images), dim=-1)
    text_raw = encoder.encode_clip_text(captions)[0]
    text = F.normalize(text_raw, dim=-1)
    sims = image @ text.T
    labels = torch.arange(count)
    raw_image = encoder.encode_image(images)
    return dict(image_to_text=float((sims.argmax(1) == labels).float().mean()),
                text_to_image=float((sims.argmax(0) == labels).float().mean()),
                raw_text_image_cosine=float(F.cosine_similarity(text_raw, raw_image).mean()),
                raw_text_image_rel_error=float((text_raw - raw_image).norm(dim=-1).mean() / raw_image.norm(dim=-1).mean()),
                count=count)


def train_content(out: str | Path, *, max_steps: int = 600, batch: int = 32, lr: float = 1e-3,
                  align_weight: float = 1.0, seed: int = 0, max_minutes: float | None = None) -> dict:
    """Train (or resume) into ``OUT``; when done export ``OUT/export`` (``ContentEncoder.save_pretrained``
    with the tokenizer) and return the state with held-out retrieval ``metrics``."""
    from gen1.atomic import atomic_directory
    from gen1.demo.data import frame_batch
    from gen1.demo.loop import cosine_lr, run_loop

    out = Path(out)
    encoder = build_content_encoder(seed)
    model = ContrastiveCLIP(encoder)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)

    def loss_fn(step: int):
        rgb, _, captions = frame_batch(seed + 1, step, batch, 2)
        images = rgb[torch.arange(batch) * 2 + (step % 2)]  # one frame per clip
        return model.loss(images, captions, align_weight)

    state = run_loop(out, model, optimizer, loss_fn, max_steps=max_steps, max_minutes=max_minutes,
                     lr_at=cosine_lr(lr, max_steps))
    if state["done"]:
        metrics = retrieval_accuracy(encoder)
        with atomic_directory(out / "export") as tmp:
            encoder.save_pretrained(str(tmp))
        state["metrics"] = metrics
        print(f"content encoder held-out retrieval: {metrics}", flush=True)
    return state
