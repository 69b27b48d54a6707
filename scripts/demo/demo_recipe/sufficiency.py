"""Is the content signal enough for structure to matter?  A direct-regression probe for the demo.

The benchmark's structure check compares an edit made with the layout (t_s = 0) with one made without it
(t_s = 7). Knowing the layout only helps as far as the model also knows what to paint there: which colour the
floor, the wall and the objects have, how they are textured and lit. This probe measures that without
training a diffusion model: a small network regresses a frame's VAE latents directly from its depth (on the
latent grid, as the UNet gets it) and one content signal, for a fixed budget, and reports the mean squared
error on held-out scenes. Content signals (:data:`CONTENT_KINDS`):

* ``style``: the style's attributes, one-hot -- everything a caption says, exactly (an ideal encoder);
* ``caption``: the content encoder's text embedding of the caption;
* ``own``: the content encoder's image embedding of the frame itself;
* ``reference``: its image embedding of *another* scene in the same style -- what the benchmark's edits use.

With ``use_depth=False`` the depth input is zero: the error a model makes without the layout. The ratio of
the two errors for one content signal is the most the layout can buy with it (in latent space; the sampled
benchmark adds the VAE and the sampler).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

CONTENT_KINDS = ("style", "caption", "own", "reference")
REGRESSION_TRAIN_SEED = 500_000  # training-range scenes (gen1.demo.world.TRAIN_SEEDS), away from the shards'
REGRESSION_HELD_OUT_OFFSET = 300_000  # held-out images: the depth-usage probe's (demo_recipe.diagnostics)
REFERENCE_OFFSET = 50_000  # scene seed + this = the scene that stands in for the reference


def style_vector(style) -> torch.Tensor:
    """One-hot encoding of every attribute a caption names (:data:`demo_recipe.content.ATTRIBUTES`)."""
    from demo_recipe.content import attribute_targets, attribute_values

    return torch.cat([F.one_hot(index[0], len(attribute_values(name))).float()
                      for name, index in attribute_targets([style]).items()])


@torch.no_grad()
def regression_data(vae, content_encoder, seeds, *, size: int = 64) -> dict[str, torch.Tensor]:
    """One frame per scene seed: ``latents (N,C,h,w)``, exact ``depth (N,1,h,w)`` on the latent grid and every
    content signal of :data:`CONTENT_KINDS` (``(N, D_kind)``)."""
    import warnings

    from demo_recipe.shards import encode_clip
    from gen1.demo.world import demo_scene
    from gen1.synthetic import render, sample_style

    rows: dict[str, list[torch.Tensor]] = {key: [] for key in ("latents", "depth") + CONTENT_KINDS}
    captions = []
    for seed in seeds:
        style = sample_style(seed)
        rgb, z = render(demo_scene(seed), style, 1, size, size)
        reference, _ = render(demo_scene(seed + REFERENCE_OFFSET), style, 1, size, size)
        latents, depth, own = encode_clip(rgb, z, vae, content_encoder)
        rows["latents"].append(latents[:, 0])
        rows["depth"].append(depth[:, 0])
        rows["style"].append(style_vector(style))
        rows["own"].append(own[0])
        rows["reference"].append(content_encoder.encode_image(reference)[0])
        captions.append(style.caption)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the direct-text fallback warns
        rows["caption"] = list(content_encoder.encode_text(captions))
    return {key: torch.stack([v.float() for v in values]) for key, values in rows.items()}


class DirectRegressor(nn.Module):
    """Depth map -> latents, modulated by a content vector (FiLM on every block): dilated residual
    convolutions at the latent resolution, a receptive field of the whole 16x16 grid."""

    def __init__(self, content_dim: int, latent_channels: int = 4, width: int = 96,
                 dilations: tuple[int, ...] = (1, 2, 4, 8, 2, 1)):
        super().__init__()
        self.film = nn.Sequential(nn.Linear(content_dim, 128), nn.SiLU(), nn.Linear(128, 2 * width * len(dilations)))
        self.stem = nn.Conv2d(1, width, 3, padding=1)
        self.blocks = nn.ModuleList(nn.Conv2d(width, width, 3, padding=d, dilation=d) for d in dilations)
        self.norms = nn.ModuleList(nn.GroupNorm(8, width) for _ in dilations)
        self.head = nn.Conv2d(width, latent_channels, 3, padding=1)

    def forward(self, depth: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
        scale_shift = self.film(content).view(content.shape[0], len(self.blocks), 2, -1, 1, 1)
        h = self.stem(depth * 2 - 1)
        for i, (block, norm) in enumerate(zip(self.blocks, self.norms)):
            h = h + block(F.silu(norm(h) * (1 + scale_shift[:, i, 0]) + scale_shift[:, i, 1]))
        return self.head(F.silu(h))


def fit_and_score(train: dict, held: dict, content: str, *, use_depth: bool = True, steps: int = 1500,
                  batch: int = 64, lr: float = 1e-3, width: int = 96, seed: int = 0) -> dict[str, float]:
    """Train a :class:`DirectRegressor` on ``train`` (from :func:`regression_data`) with content signal
    ``content`` (and the depth, or zeros), then its latent MSE on ``train``'s first 256 frames and on ``held``."""
    if content not in CONTENT_KINDS:
        raise ValueError(f"content must be one of {CONTENT_KINDS}, got {content!r}")
    if steps < 1 or batch < 1:
        raise ValueError(f"steps and batch must be >= 1, got {steps}, {batch}")

    def depth_of(data):
        return data["depth"] if use_depth else torch.zeros_like(data["depth"])

    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = DirectRegressor(train[content].shape[1], train["latents"].shape[1], width=width)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    depth, latents, signal = depth_of(train), train["latents"], train[content]
    for _ in range(steps):
        idx = torch.randint(0, latents.shape[0], (batch,), generator=generator)
        loss = F.mse_loss(model(depth[idx], signal[idx]), latents[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    with torch.no_grad():
        first = slice(0, 256)
        train_mse = F.mse_loss(model(depth[first], signal[first]), latents[first]).item()
        held_mse = F.mse_loss(model(depth_of(held), held[content]), held["latents"]).item()
    return dict(train_mse=train_mse, held_mse=held_mse)
