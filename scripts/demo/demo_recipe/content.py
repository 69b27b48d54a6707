"""Train the demo's content encoder: a small CLIP (transformers towers inside gen1's ``ContentEncoder``)
trained contrastively on rendered frames and their style captions.

Objective: symmetric InfoNCE over the batch (learned temperature, as CLIP) on L2-normalised projections,
plus ``align_weight`` * MSE pulling the *raw* text embedding onto the (detached) raw image embedding.
Why the second term: gen1 conditions the UNet on raw image embeddings; a prompt without a prior uses the
raw text embedding directly (the documented fallback), which is only useful if it lands where the image
embeddings of that style lie -- cosine alignment alone leaves norms and offsets free.
With ``hard_negatives`` = K, every image is also scored against K captions that differ from its own in
exactly one attribute (:func:`hard_negative_captions`, as NegCLIP does for word order). Why: a batch of
random styles can be told apart by one or two attributes (colours), so plain InfoNCE leaves the rest --
textures, light -- out of the embedding, and the UNet cannot render what its content input does not carry.
With ``attribute_weight`` = a > 0, a linear head per style attribute reads the raw image embedding and a
times the mean cross-entropy against the frame's true attributes (which the renderer gives for free) joins
the loss. Why: the UNet is conditioned on a *reference* of another scene, and contrastive training alone,
even with hard negatives, leaves the attributes that colours already separate (light direction, textures)
weakly encoded there (docs/demo.md has the per-attribute figures); the heads make every attribute linearly
readable from the very vector the UNet sees. The heads are not exported.
Held-out metrics: top-1 retrieval (image -> caption and caption -> image) among ``N`` held-out clips, and
per-attribute accuracy (:func:`attribute_accuracy`).
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
    from demo_recipe.tokenizer import build_caption_tokenizer
    from gen1.content import ContentEncoder
    from gen1.synthetic import CAPTION_VOCABULARY

    tokenizer = build_caption_tokenizer(CAPTION_VOCABULARY, MAX_TEXT_LEN)
    torch.manual_seed(seed)
    text = dict(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                num_attention_heads=4, max_position_embeddings=MAX_TEXT_LEN, bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    vision = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4,
                  image_size=64, patch_size=8)
    # the text tower reads only the caption words, and the alignment term of its loss puts its raw embedding on
    # the image embeddings (see the module docstring): both recorded, so prompts warn only where they should
    encoder = ContentEncoder(vision_config=vision, text_config=text, projection_dim=EMBED_DIM, image_size=64,
                             crop_size=64, text_vocabulary=list(CAPTION_VOCABULARY), text_in_image_space=True)
    encoder.set_tokenizer(tokenizer)
    return encoder


ATTRIBUTES = ("object_color", "object_texture", "floor_color", "floor_texture", "wall_color", "light_direction",
              "light_level")
"""The fields of :class:`gen1.synthetic.Style` a caption names."""


def attribute_values(name: str) -> tuple[str, ...]:
    """Every value attribute ``name`` (one of :data:`ATTRIBUTES`) can take."""
    from gen1.synthetic.style import COLOR_NAMES, LIGHT_DIRECTIONS, LIGHT_LEVELS, TEXTURES

    if name.endswith("_color"):
        return COLOR_NAMES
    if name.endswith("_texture"):
        return TEXTURES
    return {"light_direction": LIGHT_DIRECTIONS, "light_level": tuple(LIGHT_LEVELS)}[name]


def attribute_targets(styles) -> dict[str, torch.Tensor]:
    """Per attribute of :data:`ATTRIBUTES`, the index of each style's value in :func:`attribute_values`."""
    return {name: torch.tensor([attribute_values(name).index(getattr(style, name)) for style in styles])
            for name in ATTRIBUTES}


class ContrastiveCLIP(nn.Module):
    """The encoder plus CLIP's learned temperature (``logit_scale``) and, with ``attribute_heads``, one linear
    classifier per style attribute on the raw image embedding (neither is exported)."""

    def __init__(self, encoder, attribute_heads: bool = False):
        super().__init__()
        self.encoder = encoder
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        self.attribute_heads = nn.ModuleDict(
            {name: nn.Linear(encoder.embedding_dim, len(attribute_values(name))) for name in ATTRIBUTES}
        ) if attribute_heads else None

    def embed(self, images: torch.Tensor, captions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        enc = self.encoder
        image = enc.vision(pixel_values=enc.preprocess(images)).image_embeds
        tokens = enc.tokenizer(captions, padding="max_length", max_length=MAX_TEXT_LEN, truncation=True,
                               return_tensors="pt")
        text = enc.text(input_ids=tokens.input_ids.to(image.device)).text_embeds
        return image, text

    def loss(self, images, captions, align_weight: float, negatives: list[str] | None = None,
             styles=None, attribute_weight: float = 0.0) -> tuple[torch.Tensor, dict]:
        """InfoNCE both ways + ``align_weight`` * MSE(raw text, raw image) [+ ``attribute_weight`` * the
        attribute heads' mean cross-entropy against ``styles``, the images' true styles]. ``negatives``: extra
        captions that only the image -> text direction scores against (hard negatives; text has no image)."""
        batch = len(captions)
        image, text = self.embed(images, list(captions) + list(negatives or []))
        logits = self.logit_scale.clamp(max=math.log(100)).exp() * F.normalize(image, dim=-1) @ F.normalize(text, dim=-1).T
        labels = torch.arange(batch, device=logits.device)
        own = logits[:, :batch]  # image x its batch's own captions
        nce = (F.cross_entropy(logits, labels) + F.cross_entropy(own.T, labels)) / 2
        align = F.mse_loss(text[:batch], image.detach())
        acc = (own.argmax(1) == labels).float().mean()
        total = nce + align_weight * align
        logs = dict(nce=nce.detach(), align=align.detach(), acc=acc)
        if attribute_weight:
            if self.attribute_heads is None or styles is None or len(styles) != batch:
                raise ValueError("attribute_weight needs a model built with attribute_heads and one style per image")
            attribute_ce, attribute_acc = self.attribute_loss(image, styles)
            total = total + attribute_weight * attribute_ce
            logs.update(attr_ce=attribute_ce.detach(), attr_acc=attribute_acc)
        return total, logs

    def attribute_loss(self, image_embeds: torch.Tensor, styles) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean cross-entropy of the attribute heads over :data:`ATTRIBUTES`, and their mean accuracy."""
        losses, hits = [], []
        for name, truth in attribute_targets(styles).items():
            logits = self.attribute_heads[name](image_embeds)
            truth = truth.to(logits.device)
            losses.append(F.cross_entropy(logits, truth))
            hits.append((logits.argmax(1) == truth).float().mean())
        return torch.stack(losses).mean(), torch.stack(hits).mean().detach()

    @torch.no_grad()
    def attribute_head_accuracy(self, images: torch.Tensor, styles) -> dict[str, float]:
        """Per attribute, the fraction of ``images`` whose head picks the true value (see ``attribute_loss``)."""
        image = self.encoder.encode_image(images)
        return {name: float((self.attribute_heads[name](image).argmax(1) == truth.to(image.device)).float().mean())
                for name, truth in attribute_targets(styles).items()}


def hard_negative_captions(style, count: int, generator: torch.Generator) -> list[str]:
    """``count`` captions of styles that differ from ``style`` in exactly one attribute (random attribute,
    random other value)."""
    import dataclasses

    captions = []
    for _ in range(count):
        name = ATTRIBUTES[int(torch.randint(len(ATTRIBUTES), (), generator=generator))]
        others = [v for v in attribute_values(name) if v != getattr(style, name)]
        value = others[int(torch.randint(len(others), (), generator=generator))]
        captions.append(dataclasses.replace(style, **{name: value}).caption)
    return captions


@torch.no_grad()
def attribute_accuracy(encoder, images: torch.Tensor, styles) -> dict[str, float]:
    """Per attribute, the fraction of ``images`` whose embedding is closest to the caption with the right
    value among the captions that vary only that attribute over all its values (the rest as in the image's
    own style). Chance: 1/12 for colours, 1/5 textures, 1/4 light direction, 1/2 light level."""
    import dataclasses

    image = F.normalize(encoder.encode_image(images), dim=-1)
    result = {}
    for name, truth in attribute_targets(styles).items():
        values = attribute_values(name)
        captions = [dataclasses.replace(style, **{name: v}).caption for style in styles for v in values]
        text = F.normalize(encoder.encode_clip_text(captions)[0], dim=-1).reshape(len(styles), len(values), -1)
        chosen = torch.einsum("nd,nvd->nv", image, text).argmax(1)
        result[name] = float((chosen == truth).float().mean())
    return result


@torch.no_grad()
def retrieval_accuracy(encoder, count: int = 128, start: int | None = None) -> dict:
    """Top-1 retrieval among ``count`` held-out clips (first frame; scene and style from the same seed)."""
    from demo_recipe.data import render_clip
    from gen1.demo.world import HELD_OUT_START
    from gen1.synthetic import sample_style

    start = HELD_OUT_START + 50_000 if start is None else start
    images, captions = [], []
    for i in range(count):
        rgb, _, caption = render_clip(start + i, start + i, 1)
        images.append(rgb)
        captions.append(caption)
    styles = [sample_style(start + i) for i in range(count)]
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
                attribute_accuracy=attribute_accuracy(encoder, images, styles), count=count)


def load_encoder_weights(encoder, path: str | Path) -> None:
    """Load an exported ``ContentEncoder`` (``save_pretrained`` folder) into ``encoder`` as float32; a folder
    whose weights do not match ``encoder``'s keys and shapes raises ``ValueError`` naming the first mismatch."""
    from gen1.content import ContentEncoder
    from gen1.weights import check_state_dict

    if not (Path(path) / "config.json").is_file():
        raise FileNotFoundError(f"no exported content encoder (config.json) in {str(path)!r}")
    source = ContentEncoder.from_pretrained(str(path)).state_dict()
    check_state_dict(encoder.state_dict(), source, f"content encoder {str(path)!r}")
    encoder.load_state_dict({key: value.float() for key, value in source.items()}, strict=True)


@torch.no_grad()
def held_out_head_accuracy(model: ContrastiveCLIP, count: int = 256) -> dict[str, float]:
    """The attribute heads' per-attribute accuracy on ``count`` held-out references: frames of one held-out
    scene rendered in another held-out scene's style, as a reference is at inference."""
    from demo_recipe.data import render_clip
    from gen1.demo.world import HELD_OUT_START
    from gen1.synthetic import sample_style

    start = HELD_OUT_START + 60_000
    images = torch.cat([render_clip(start + i, start + count + i, 1)[0] for i in range(count)])
    styles = [sample_style(start + count + i) for i in range(count)]
    return model.attribute_head_accuracy(images, styles)


def train_content(out: str | Path, *, max_steps: int = 600, batch: int = 32, lr: float = 1e-3,
                  align_weight: float = 1.0, hard_negatives: int = 0, clip_frames: int = 2,
                  attribute_weight: float = 0.0, init: str | Path | None = None, seed: int = 0,
                  max_minutes: float | None = None) -> dict:
    """Train (or resume) into ``OUT``; when done export ``OUT/export`` (``ContentEncoder.save_pretrained``
    with the tokenizer) and return the state with held-out retrieval ``metrics``.

    Each step renders ``batch`` training clips of ``clip_frames`` frames and uses one frame of each (frame
    ``step % clip_frames``; 1 renders half as much as 2);
    ``hard_negatives`` one-attribute-off captions per image and ``attribute_weight`` the attribute heads' share
    (see the module docstring). ``init``: an exported encoder to start from (fine-tuning; the architecture
    must be :func:`build_content_encoder`'s) instead of random weights."""
    from demo_recipe.data import batch_seeds, frame_batch
    from demo_recipe.loop import cosine_lr, run_loop
    from gen1.atomic import atomic_directory
    from gen1.synthetic import sample_style

    if batch < 2 or hard_negatives < 0 or clip_frames < 1 or attribute_weight < 0:
        raise ValueError(f"need batch >= 2, hard_negatives >= 0, clip_frames >= 1, attribute_weight >= 0; got "
                         f"{batch}, {hard_negatives}, {clip_frames}, {attribute_weight}")
    out = Path(out)
    encoder = build_content_encoder(seed)
    if init is not None:
        load_encoder_weights(encoder, init)
    model = ContrastiveCLIP(encoder, attribute_heads=attribute_weight > 0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)

    def loss_fn(step: int):
        rgb, _, captions = frame_batch(seed + 1, step, batch, clip_frames)
        images = rgb[torch.arange(batch) * clip_frames + (step % clip_frames)]  # one frame per clip
        styles = [sample_style(clip_seed) for clip_seed in batch_seeds(seed + 1, step, batch)]  # as rendered
        negatives = []
        if hard_negatives:
            gen = torch.Generator().manual_seed(seed * 1_000_003 + step)
            for style in styles:
                negatives += hard_negative_captions(style, hard_negatives, gen)
        return model.loss(images, captions, align_weight, negatives, styles, attribute_weight)

    state = run_loop(out, model, optimizer, loss_fn, max_steps=max_steps, max_minutes=max_minutes,
                     lr_at=cosine_lr(lr, max_steps))
    if state["done"]:
        metrics = retrieval_accuracy(encoder)
        if model.attribute_heads is not None:
            metrics["attribute_head_accuracy"] = held_out_head_accuracy(model)
        with atomic_directory(out / "export") as tmp:
            encoder.save_pretrained(str(tmp))
        state["metrics"] = metrics
        print(f"content encoder held-out retrieval: {metrics}", flush=True)
    return state
