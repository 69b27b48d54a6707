"""Train the demo's depth estimator: MiDaS v2.1 small architecture (EfficientNet-Lite3 encoder at reduced
width/depth multipliers) as a gen1 ``DepthEstimator``, supervised by the scenes' exact depth.

Loss (MiDaS, Ranftl et al. 2020): per image, solve the least-squares scale and shift that align the
prediction to the target inverse depth, then take the mean squared residual -- the network only has to get
relative inverse depth right, which is what ``DepthEstimator.estimate`` normalises per clip anyway.
Held-out metric: :func:`gen1.eval.depth_fidelity.depth_error` (scale-and-shift-invariant RMSE of inverse
depth normalised to [0, 1]) on clips never used in training; a constant prediction scores about 0.2-0.3.

Orientation: the least-squares scale may be negative, so that loss (``ssimse``, and ``depth_error``) cannot
tell inverse depth from its negation, and a trained network may well predict ``-1/z`` (near and far swapped
after ``estimate``'s per-clip normalisation). :func:`orient` therefore checks the sign of the correlation with
the true inverse depth on held-out frames and, if negative, negates the last 1x1 convolution of the head -- an
exact flip of the output. The held-out ``correlation`` is reported.

Orienting the whole network does not help when it is sign-blind *per image*: trained with ``ssimse`` alone, an
estimator can predict some frames upside down and the rest the right way up. The ``ssimae`` loss (MiDaS's
other one) aligns prediction and target each by its own median and mean absolute deviation -- a positive
scale -- so a flipped frame costs the most instead of nothing; fine-tuning with it (``init``) fixes the flipped
frames. :func:`held_out_flipped_fraction` counts them.
"""

from __future__ import annotations

from pathlib import Path

import torch


def build_depth_estimator(seed: int = 0):
    """A random small MiDaS-v2.1-small ``DepthEstimator`` running at 64x64."""
    from gen1.depth import DepthEstimator
    from gen1.depth.midas import MIDAS_PREPROCESSING, default_midas_config

    torch.manual_seed(seed)
    cfg = default_midas_config("midas_v21_small", channel_multiplier=0.5, depth_multiplier=0.5, features=32,
                               head_channels=16, non_negative=False)
    pre = dict(MIDAS_PREPROCESSING["midas_v21_small"], input_size=(64, 64))
    return DepthEstimator(backend="midas", network_config=cfg.to_dict(), **pre)


def ssi_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Scale-and-shift-invariant MSE, per image: prediction/target (B,H,W)."""
    p = prediction.flatten(1)
    t = target.flatten(1)
    p_mean, t_mean = p.mean(1, keepdim=True), t.mean(1, keepdim=True)
    pc, tc = p - p_mean, t - t_mean
    scale = (pc * tc).sum(1, keepdim=True) / pc.square().sum(1, keepdim=True).clamp_min(1e-8)
    aligned = scale * pc + t_mean
    return (aligned - t).square().mean()


def ssimae_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """MiDaS's scale-and-shift-invariant mean absolute error, per image: each of prediction and target
    (B,H,W) is shifted by its median and divided by its mean absolute deviation (a positive scale, so unlike
    :func:`ssi_loss` a prediction of the negated depth is penalised), then the L1 distance is averaged."""

    def align(x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        centred = x - x.median(dim=1, keepdim=True).values
        return centred / centred.abs().mean(1, keepdim=True).clamp_min(1e-6)

    return (align(prediction) - align(target)).abs().mean()


DEPTH_LOSSES = {"ssimse": ssi_loss, "ssimae": ssimae_loss}


def normalized_inverse_depth(depth: torch.Tensor) -> torch.Tensor:
    """z-depth (B,1,H,W) -> inverse depth min-max normalised per image (B,H,W)."""
    inv = 1.0 / depth[:, 0].clamp_min(1e-6)
    lo = inv.flatten(1).amin(1)[:, None, None]
    hi = inv.flatten(1).amax(1)[:, None, None]
    return (inv - lo) / (hi - lo).clamp_min(1e-8)


@torch.no_grad()
def held_out_depth_error(estimator, clips: int = 16, frames: int = 4) -> float:
    from demo_recipe.data import render_clip
    from gen1.demo.world import HELD_OUT_START
    from gen1.eval.depth_fidelity import depth_error, inverse_depth

    errors = []
    for i in range(clips):
        rgb, depth, _ = render_clip(HELD_OUT_START + 20_000 + i, HELD_OUT_START + 20_000 + i, frames)
        errors.append(depth_error(estimator.estimate(rgb), inverse_depth(depth)))
    return sum(errors) / len(errors)


@torch.no_grad()
def held_out_correlations(estimator, clips: int = 8, frames: int = 2) -> torch.Tensor:
    """Per-image Pearson correlation of the raw output with the true inverse depth on held-out frames,
    ``(clips * frames,)``."""
    from demo_recipe.data import render_clip
    from gen1.demo.world import HELD_OUT_START

    values = []
    for i in range(clips):
        rgb, depth, _ = render_clip(HELD_OUT_START + 30_000 + i, HELD_OUT_START + 30_000 + i, frames)
        pred = estimator.estimate_raw(rgb)[:, 0].flatten(1)
        target = normalized_inverse_depth(depth).flatten(1)
        pc, tc = pred - pred.mean(1, keepdim=True), target - target.mean(1, keepdim=True)
        values.append((pc * tc).sum(1) / (pc.norm(dim=1) * tc.norm(dim=1)).clamp_min(1e-8))
    return torch.cat(values)


def held_out_correlation(estimator, clips: int = 8, frames: int = 2) -> float:
    """Mean per-image correlation of the raw output with the true inverse depth (held-out)."""
    return float(held_out_correlations(estimator, clips, frames).mean())


def held_out_flipped_fraction(estimator, clips: int = 32, frames: int = 4) -> float:
    """Fraction of held-out frames whose output anti-correlates with the true inverse depth (upside down)."""
    return float((held_out_correlations(estimator, clips, frames) < 0).float().mean())


def load_depth_weights(estimator, path: str | Path) -> None:
    """Load an exported ``DepthEstimator`` (``save_pretrained`` folder) into ``estimator`` as float32; weights
    that do not match ``estimator``'s keys and shapes raise ``ValueError`` naming the first mismatch."""
    from gen1.depth import DepthEstimator
    from gen1.weights import check_state_dict

    if not (Path(path) / "config.json").is_file():
        raise FileNotFoundError(f"no exported depth estimator (config.json) in {str(path)!r}")
    source = DepthEstimator.from_pretrained(str(path)).state_dict()
    check_state_dict(estimator.state_dict(), source, f"depth estimator {str(path)!r}")
    estimator.load_state_dict({key: value.float() for key, value in source.items()}, strict=True)


@torch.no_grad()
def orient(estimator) -> bool:
    """Make the output increase with inverse depth (see the module docstring); return True if flipped."""
    if held_out_correlation(estimator) >= 0:
        return False
    last = estimator.network.scratch.output_conv[4]
    if not isinstance(last, torch.nn.Conv2d) or last.out_channels != 1:
        raise ValueError(f"cannot orient this depth head: expected a 1-channel Conv2d, got {last!r}")
    last.weight.neg_()
    last.bias.neg_()
    return True


def train_depth(out: str | Path, *, max_steps: int = 500, clips: int = 8, frames: int = 2, lr: float = 2e-3,
                loss: str = "ssimse", init: str | Path | None = None, seed: int = 0,
                max_minutes: float | None = None) -> dict:
    """Train (or resume) into ``OUT``; when done export ``OUT/export`` (``DepthEstimator.save_pretrained``)
    and return the state with the held-out ``metrics``. ``loss``: a key of :data:`DEPTH_LOSSES`; ``init``: an
    exported estimator to fine-tune instead of random weights (the architecture must match)."""
    from demo_recipe.data import frame_batch
    from demo_recipe.loop import cosine_lr, run_loop
    from gen1.atomic import atomic_directory

    if loss not in DEPTH_LOSSES:
        raise ValueError(f"unknown depth loss {loss!r}; choose one of {sorted(DEPTH_LOSSES)}")
    loss_of = DEPTH_LOSSES[loss]
    out = Path(out)
    estimator = build_depth_estimator(seed)
    if init is not None:
        load_depth_weights(estimator, init)
    optimizer = torch.optim.AdamW(estimator.parameters(), lr=lr, weight_decay=1e-4)

    def loss_fn(step: int):
        rgb, depth, _ = frame_batch(seed + 2, step, clips, frames)
        prediction = estimator(estimator.preprocess(rgb))
        return loss_of(prediction, normalized_inverse_depth(depth)), {}

    state = run_loop(out, estimator, optimizer, loss_fn, max_steps=max_steps, max_minutes=max_minutes,
                     lr_at=cosine_lr(lr, max_steps))
    if state["done"]:
        flipped = orient(estimator)
        metrics = dict(held_out_depth_error=held_out_depth_error(estimator),
                       held_out_correlation=held_out_correlation(estimator),
                       held_out_flipped_fraction=held_out_flipped_fraction(estimator), flipped=flipped)
        with atomic_directory(out / "export") as tmp:
            estimator.save_pretrained(str(tmp))
        state["metrics"] = metrics
        print(f"depth estimator: {metrics}", flush=True)
    return state
