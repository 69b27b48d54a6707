"""Does a trained UNet use its structure input?  The depth-usage probe for the demo recipe.

Sampled edits (:mod:`demo_recipe.benchmark`) are slow and mix many causes (content, sampler, VAE). This probe
measures the one thing the structure stage must teach, quickly and per checkpoint: the training loss
(image mode, the scheduler's prediction target) on held-out images at fixed noise levels, with the structure
input built four ways --

* ``true``: the image's own depth at t_s = 0;
* ``ts=4`` / ``ts=7``: the same depth obscured to t_s = 4 / 7 (the level the model is told);
* ``shuffled``: another image's depth at t_s = 0 (a confident, wrong layout).

A model that takes structure from depth has ``true`` < ``ts=4`` < ``ts=7`` at high noise, where the layout is
still undecided, and ``shuffled`` worst; one that ignores depth has all four equal. Held-out images use
seeds :data:`gen1.demo.world.HELD_OUT_START` + 300000 upward (the benchmark's edits use +100000 and +200000).
Images are encoded as the shards encode them (:mod:`demo_recipe.shards`), with the same two choices: exact or
estimated depth, and content from the image itself or from another held-out scene in its style (+ 350000).
"""

from __future__ import annotations

import torch

PROBE_SEED_OFFSET = 300_000
REFERENCE_SEED_OFFSET = 350_000  # the held-out scenes that stand in for references (reference_content=True)
# condition -> (structure level t_s, take the next image's depth instead of the image's own)
CONDITIONS = {"true": (0.0, False), "ts=4": (4.0, False), "ts=7": (7.0, False), "shuffled": (0.0, True)}


@torch.no_grad()
def probe_images(vae, content_encoder, *, num_images: int, size: int = 64, depth_estimator=None,
                 reference_content: bool = False) -> dict[str, torch.Tensor]:
    """Held-out single images, encoded as the shards encode them: ``latents (N,C,1,h,w)``, depth
    ``(N,1,1,h,w)`` on the latent grid (exact, or ``depth_estimator``'s), ``content (N,D)`` (the image's own
    embedding, or with ``reference_content`` another held-out scene's in the same style)."""
    from demo_recipe.data import render_clip
    from demo_recipe.shards import encode_clip
    from gen1.demo.world import HELD_OUT_START

    if not 2 <= num_images <= REFERENCE_SEED_OFFSET - PROBE_SEED_OFFSET:
        raise ValueError(f"the probe needs at least 2 images (one to shuffle against) and at most "
                         f"{REFERENCE_SEED_OFFSET - PROBE_SEED_OFFSET}, got {num_images}")
    latents, depth, content = [], [], []
    for i in range(num_images):
        seed = HELD_OUT_START + PROBE_SEED_OFFSET + i
        rgb, z, _ = render_clip(seed, seed, 1, size)
        reference = None  # content from the image itself
        if reference_content:
            reference = render_clip(HELD_OUT_START + REFERENCE_SEED_OFFSET + i, seed, 1, size)[0]
        lat, small, emb = encode_clip(rgb, z, vae, content_encoder, depth_estimator, reference)
        latents.append(lat)
        depth.append(small)
        content.append(emb[0])
    return dict(latents=torch.stack(latents).float(), depth=torch.stack(depth).float(),
                content=torch.stack(content).float())


@torch.no_grad()
def structure_usage(unet, scheduler, images: dict[str, torch.Tensor], *, timesteps=(999, 850, 600),
                    repeats: int = 2, seed: int = 0) -> dict[int, dict[str, float]]:
    """``{timestep: {condition: mean loss}}`` over ``images`` (from :func:`probe_images`); every condition of a
    timestep sees the same noise, so differences come from the structure input alone."""
    from gen1.conditioning import depth_to_structure, nothing_known
    from gen1.content import as_unet_context
    from gen1.training.draws import prediction_target

    num_train = scheduler.config.num_train_timesteps
    for t in timesteps:
        if not 0 <= int(t) < num_train:
            raise ValueError(f"timestep {t} is outside the scheduler's 0..{num_train - 1}")
    latents, depth = images["latents"], images["depth"]
    structures = {name: depth_to_structure(depth.roll(1, dims=0) if shuffled else depth, level)
                  for name, (level, shuffled) in CONDITIONS.items()}
    context = as_unet_context(images["content"])
    prediction_type = scheduler.config.prediction_type
    generator = torch.Generator().manual_seed(seed)
    n = latents.shape[0]
    result = {}
    for t in timesteps:
        steps = torch.full((n,), int(t), dtype=torch.long)
        totals = dict.fromkeys(CONDITIONS, 0.0)
        for _ in range(repeats):
            noise = torch.randn(latents.shape, generator=generator)
            noisy = scheduler.add_noise(latents, noise, steps)
            target = prediction_target(scheduler, latents, noise, steps, prediction_type)
            for condition, structure in structures.items():
                model_input = torch.cat([noisy, structure], dim=1)
                if getattr(unet, "inpainting_input", False):  # the probe is about structure: nothing known
                    model_input = torch.cat([model_input, nothing_known(noisy)], dim=1)
                pred = unet(model_input, steps, context, image_mode=True).sample
                totals[condition] += float(((pred.float() - target) ** 2).mean()) / repeats
        result[int(t)] = totals
    return result


def format_usage(result: dict[int, dict[str, float]]) -> str:
    """A plain-text table: one row per timestep, one column per condition, and ts=7 / true."""
    lines = ["| t | " + " | ".join(CONDITIONS) + " | ts=7 / true |", "|---" * (len(CONDITIONS) + 2) + "|"]
    for t, row in result.items():
        cells = " | ".join(f"{row[c]:.4f}" for c in CONDITIONS)
        lines.append(f"| {t} | {cells} | {row['ts=7'] / max(row['true'], 1e-12):.3f} |")
    return "\n".join(lines)


def _gaussian_blur(frames: torch.Tensor, sigma: float) -> torch.Tensor:
    import torch.nn.functional as F

    from gen1.masking import gaussian_kernel1d

    kernel = gaussian_kernel1d(sigma).to(frames)
    radius, channels = kernel.numel() // 2, frames.shape[1]
    x = F.pad(frames, (radius, radius, radius, radius), mode="reflect")
    x = F.conv2d(x, kernel.view(1, 1, 1, -1).repeat(channels, 1, 1, 1), groups=channels)
    return F.conv2d(x, kernel.view(1, 1, -1, 1).repeat(channels, 1, 1, 1), groups=channels)


@torch.no_grad()
def error_decomposition(output: torch.Tensor, truth: torch.Tensor, *, blur_sigma: float = 3.0) -> dict[str, float]:
    """Where an edit's error against its ground truth comes from; frames ``(F,3,H,W)`` in [0, 1].

    * ``psnr``: the benchmark's PSNR;
    * ``palette_mse``: mean squared error of the per-frame mean colours (per channel) -- the palette;
    * ``psnr_palette_corrected``: PSNR after replacing each output frame's mean colour by the truth's
      (layout and texture errors remain);
    * ``psnr_blurred``: PSNR with both blurred by a Gaussian of ``blur_sigma`` pixels (layout and palette,
      without the texture, which is drawn with a random phase and cannot be predicted).
    """
    from gen1.eval.image_metrics import psnr

    output, truth = output.float(), truth.float()
    if output.shape != truth.shape or output.ndim != 4 or output.shape[1] != 3:
        raise ValueError(f"output and truth must both be (F, 3, H, W), got {tuple(output.shape)} and "
                         f"{tuple(truth.shape)}")
    out_mean, truth_mean = output.mean((2, 3), keepdim=True), truth.mean((2, 3), keepdim=True)
    corrected = (output - out_mean + truth_mean).clamp(0, 1)
    return dict(psnr=psnr(output, truth), palette_mse=float((out_mean - truth_mean).square().mean()),
                psnr_palette_corrected=psnr(corrected, truth),
                psnr_blurred=psnr(_gaussian_blur(output, blur_sigma), _gaussian_blur(truth, blur_sigma)))


OTHER_LAYOUT_SEED_OFFSET = 400_000  # held-out scenes that stand in for "a layout the model was not told"


@torch.no_grad()
def ideal_scores(case, vae, *, other_layouts: int = 12) -> dict[str, float]:
    """PSNR against an edit's ground truth of predictions that an ideal model could make: what the benchmark's
    structure check can show at best. ``case`` is a :class:`gen1.eval.edit_benchmark.EditCase`, ``vae`` the
    pipeline's (images pass through it as the UNet's outputs do).

    With the layout (what t_s = 0 gives):

    * ``vae_round_trip``: the ground truth encoded and decoded -- no latent model can do better;
    * ``mean_textures``: the ground truth's scene and style with every texture at its mean colour, through the
      VAE -- the least-squares prediction of a model that knows layout and style but not where a texture's
      stripes or dots fall (their phase is set by world coordinates that depth does not tell).

    Without it (what t_s = 7 leaves: the coarse mean depth only):

    * ``other_layout``: the target style rendered on ``other_layouts`` other scenes, mean PSNR -- a perfect,
      sharp sample that had to guess the layout;
    * ``other_layout_mean``: the pixel mean of those renders -- the least-squares guess without a layout;
    * ``frame_mean_colour``: every ground-truth frame replaced by its own mean colour -- the palette alone.
    """
    from gen1.conditioning import decode_latents, encode_latents
    from gen1.demo.world import HELD_OUT_START, demo_scene
    from gen1.eval.image_metrics import psnr
    from gen1.synthetic import render

    if other_layouts < 1:
        raise ValueError(f"other_layouts must be >= 1, got {other_layouts}")
    truth = case.ground_truth.float()
    frames, _, height, width = truth.shape

    def through_vae(images: torch.Tensor) -> torch.Tensor:  # as the pipeline encodes and decodes
        return decode_latents(vae, encode_latents(vae, images))

    mean_textures, _ = render(case.scene, case.target_style, frames, height, width, texture_detail=False)
    # other scenes per case (the benchmark's case seeds differ in their last digits)
    first = HELD_OUT_START + OTHER_LAYOUT_SEED_OFFSET + (case.seed % 10_000) * other_layouts
    others = torch.stack([render(demo_scene(first + j), case.target_style, frames, height, width)[0]
                          for j in range(other_layouts)])
    return dict(
        vae_round_trip=psnr(through_vae(truth), truth),
        mean_textures=psnr(through_vae(mean_textures), truth),
        other_layout=sum(psnr(other, truth) for other in others) / other_layouts,
        other_layout_mean=psnr(others.mean(0), truth),
        frame_mean_colour=psnr(truth.mean((2, 3), keepdim=True).expand_as(truth), truth),
    )
