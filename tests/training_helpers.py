"""Helpers for the training tests: a tiny SD directory, tiny encoders, generated media and shards.

The depth estimator here is a stand-in with the ``DepthEstimator.estimate`` contract (per-clip
normalised "inverse depth" from luminance through ``gen1.depth.normalize_clip_depth``): building a
tiny MiDaS/DPT would only slow the tests; gen1.depth has its own tests. The content encoder is the
real :class:`gen1.content.ContentEncoder` with a tiny CLIP config.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from tiny_models import tiny_unet, tiny_vae  # noqa: E402

CONTENT_DIM = 16
TEMPORAL = {"temporal_attention_head_dim": 8}


class LumaDepth(torch.nn.Module):
    """Stand-in depth estimator: luminance as inverse depth, normalised per clip like the real ones."""

    @torch.no_grad()
    def estimate(self, frames, *, batch_size: int = 8) -> torch.Tensor:
        from gen1.depth import normalize_clip_depth

        x = torch.tensor(np.array(frames)).float().permute(0, 3, 1, 2) / 255.0
        luma = (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2])[:, None]
        return normalize_clip_depth(luma)


def tiny_content_encoder(seed: int = 0):
    from gen1.content import ContentEncoder

    vision = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=1, num_attention_heads=2,
                  patch_size=8, image_size=32)
    text = dict(hidden_size=32, intermediate_size=37, num_hidden_layers=1, num_attention_heads=2,
                vocab_size=99, max_position_embeddings=32)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        enc = ContentEncoder(vision_config=vision, text_config=text, projection_dim=CONTENT_DIM,
                             image_size=32, crop_size=32)
    return enc.eval()


def make_sd_dir(root: Path, prediction_type: str = "epsilon") -> Path:
    """A tiny Stable Diffusion directory (unet/ vae/ scheduler/) in diffusers layout."""
    from diffusers import DDPMScheduler

    root.mkdir(parents=True, exist_ok=True)
    tiny_unet("sd1").save_pretrained(root / "unet")
    tiny_vae().save_pretrained(root / "vae")
    DDPMScheduler(num_train_timesteps=1000, prediction_type=prediction_type).save_pretrained(root / "scheduler")
    return root


def moving_square(num_frames: int, size: int, seed: int) -> np.ndarray:
    """uint8 (F, size, size, 3): a coloured square moving over a coloured background."""
    rng = np.random.default_rng(seed)
    bg, fg = rng.integers(0, 255, 3), rng.integers(0, 255, 3)
    frames = np.empty((num_frames, size, size, 3), np.uint8)
    frames[:] = bg
    side = size // 3
    for f in range(num_frames):
        x = (f * 2 + seed * 5) % (size - side)
        frames[f, 4:4 + side, x:x + side] = fg
    return frames


def make_media(folder: Path, *, videos: int = 2, images: int = 2, frames: int = 8, size: int = 32,
               corrupt: bool = False) -> Path:
    """Write moving-square mp4s and PNG stills (and optionally a corrupt 'video') into ``folder``."""
    from PIL import Image

    from gen1.media import write_video

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(videos):
        write_video(folder / f"video{i}.mp4", moving_square(frames, size, seed=i), fps=10)
    for i in range(images):
        Image.fromarray(moving_square(1, size, seed=10 + i)[0]).save(folder / f"image{i}.png")
    if corrupt:
        (folder / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video" * 4)
    return folder


def make_encoder(sd_dir: Path):
    from diffusers import AutoencoderKL

    from gen1.training.preprocess import ClipEncoder

    vae = AutoencoderKL.from_pretrained(sd_dir / "vae").eval()
    return ClipEncoder(vae, LumaDepth(), tiny_content_encoder(), device="cpu", batch_size=8)


def base_overrides(sd_dir: Path, shards: Path, out: Path, extra: dict | None = None) -> list[str]:
    items = {
        "model.base": str(sd_dir), "data.shards": str(shards), "train.output_dir": str(out),
        "model.temporal": "{temporal_attention_head_dim: 8}", "train.tensorboard": "false",
    }
    items.update({k: str(v) for k, v in (extra or {}).items()})
    return [f"{k}={v}" for k, v in items.items()]


def signal_after_step(monkeypatch, step: int, signum, times: int = 1) -> None:
    """The trainer's process receives ``times`` real ``signum`` signals (SIGINT as Ctrl-C sends it, SIGTERM as a
    scheduler does) right after optimizer step ``step``. An unhandled SIGTERM would end pytest itself: the test
    fails instead."""
    import os
    import signal

    from gen1.training import trainer

    real = trainer.after_step

    def after_step(run, done, loss, **kwargs):
        real(run, done, loss, **kwargs)
        if done == step:
            for _ in range(times):
                if signum == signal.SIGTERM:
                    assert signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, None), "SIGTERM is not handled"
                os.kill(os.getpid(), signum)

    monkeypatch.setattr(trainer, "after_step", after_step)


def assert_same_shards(a: Path, b: Path) -> None:
    """Two shard folders hold the same shards (every tensor torch.equal, the same metadata) and the same index."""
    import json

    from safetensors.torch import load_file

    from gen1.training.shards import INDEX_NAME, read_shard_meta

    names = sorted(p.name for p in a.glob("shard-*.safetensors"))
    assert names == sorted(p.name for p in b.glob("shard-*.safetensors")) and names
    for name in names:
        left, right = load_file(str(a / name)), load_file(str(b / name))
        assert left.keys() == right.keys(), name
        for key in left:
            assert torch.equal(left[key], right[key]), f"{name} {key}"
        assert read_shard_meta(a / name) == read_shard_meta(b / name), name
    assert json.loads((a / INDEX_NAME).read_text()) == json.loads((b / INDEX_NAME).read_text())

