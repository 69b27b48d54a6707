"""gen1 train with data.source=synthetic: clips rendered and encoded per step, held-out seeds, exact resume,
and periodic validation samples from Gen1Pipeline (PNG strip, mp4, TensorBoard)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from training_helpers import make_sd_dir, tiny_content_encoder

from gen1.training import checkpoint as ckpt
from gen1.training.config import load_config
from gen1.training.trainer import train

FRAMES, SIZE = 4, 32


@pytest.fixture(scope="module")
def sd(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    sd = make_sd_dir(root / "sd")
    tiny_content_encoder().save_pretrained(sd / "content_encoder")
    return sd


def _config(sd: Path, out: Path, **extra):
    items = {
        "model.base": str(sd), "data.source": "synthetic", "train.output_dir": str(out), "model.max_frames": FRAMES,
        "model.temporal": "{temporal_attention_head_dim: 8}", "train.tensorboard": "false",
        "data.synthetic.frames": FRAMES, "data.synthetic.size": SIZE, "data.synthetic.num_scenes": 8,
        "data.synthetic.seed_offset": 100,
    }
    items.update({k: str(v) for k, v in extra.items()})
    return load_config(None, [f"{k}={v}" for k, v in items.items()])


def test_synthetic_training_learns_and_writes_validation_samples(sd, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from gen1.media import read_video

    out = tmp_path / "fit"
    cfg = _config(sd, out, **{
        "train.max_steps": 30, "optim.lr": 3e-3, "model.trainable": "all", "data.batch_size": 2,
        "data.image_ratio": 0.25, "train.checkpoint_every": 1000, "ema.decay": 0.9, "train.tensorboard": "true",
        "diffusion.structure_level_max": 7, "validation.every": 15, "validation.num_inference_steps": 2})
    result = train(cfg)
    first, last = sum(result.losses[:5]) / 5, sum(result.losses[-5:]) / 5
    print(f"synthetic loss first5={first:.4f} last5={last:.4f}")
    assert last < 0.7 * first, (first, last)
    assert result.seen == {"video": 45, "image": 15}  # both kinds, exactly image_ratio of 60 samples

    # validation: held-out loss and a pipeline sample at steps 15 and 30
    assert [s for s, _ in result.validation] == [15, 30]
    assert [Path(p).name for p in result.samples] == ["step-00000015.png", "step-00000030.png"]
    from PIL import Image

    strip = np.asarray(Image.open(result.samples[-1]))
    assert strip.shape == (3 * SIZE, FRAMES * SIZE, 3)  # rows source / structure / sample, one column per frame
    source_row = strip[:SIZE]
    assert source_row.std() > 10 and not np.array_equal(source_row, strip[2 * SIZE:])
    video = read_video(out / "samples" / "step-00000030.mp4")
    assert video.frames.shape == (FRAMES, SIZE, 2 * SIZE, 3)  # source | sample
    assert not list((out / "samples").glob(".*"))  # no temporary files left behind
    for path in out.rglob("events.out.tfevents*"):
        events = EventAccumulator(str(path), size_guidance={"images": 0})
        events.Reload()
        if "val/sample" in events.Tags()["images"]:
            break
    assert [e.step for e in events.Images("val/sample")] == [15, 30]
    assert [e.step for e in events.Scalars("val/loss")] == [15, 30]
    # the export carries the frozen encoders, so it can be model.base of a later synthetic stage
    export = Path(result.export_dir)
    assert {p.name for p in export.iterdir()} >= {"unet", "scheduler", "vae", "content_encoder", "training.json"}
    import json

    assert json.loads((export / "training.json").read_text()) == {"trainable": "all", "stage": 2,
                                                                   "clip_length": FRAMES}
    later = _config(export, tmp_path / "next", **{"train.max_steps": 1, "model.trainable": "all"})
    assert len(train(later).losses) == 1


def test_export_saves_float32_encoders_even_when_they_run_in_bf16(tmp_path):
    """On CUDA with the bf16 presets the frozen encoders run in bf16: the export must still hold float32 ones."""
    from diffusers import AutoencoderKL

    from gen1.content import ContentEncoder
    from gen1.training.export import save_float32
    from tiny_models import tiny_vae

    vae = torch.nn.Module.to(tiny_vae(), dtype=torch.bfloat16)
    content = torch.nn.Module.to(tiny_content_encoder(), dtype=torch.bfloat16)
    save_float32(vae, tmp_path / "vae")
    save_float32(content, tmp_path / "content_encoder")
    assert next(vae.parameters()).dtype == torch.bfloat16  # the modules in use are untouched
    for name, cls in (("vae", AutoencoderKL), ("content_encoder", ContentEncoder)):
        stored = [t for f in (tmp_path / name).glob("*.safetensors") for t in load_file(str(f)).values()]
        assert stored and {t.dtype for t in stored if t.is_floating_point()} == {torch.float32}, name
        cls.from_pretrained(str(tmp_path / name))  # and it loads


RESUME = {"train.max_steps": 4, "train.checkpoint_every": 2, "optim.lr": 1e-3, "model.trainable": "all",
          "data.image_ratio": 0.5, "ema.decay": 0.9, "data.synthetic.content_frames": "one",
          "diffusion.structure_level_max": 7}


def _state(path: Path) -> dict:
    out = load_file(str(path / "trainable.safetensors"))
    out.update({f"ema.{i}": t for i, t in enumerate(torch.load(path / "ema.pt", weights_only=True)["shadow_params"])})
    return out


def test_synthetic_resume_is_exact(sd, tmp_path):
    straight = train(_config(sd, tmp_path / "straight", **RESUME))
    train(_config(sd, tmp_path / "resumed", **RESUME), stop_at=2)
    resumed = train(_config(sd, tmp_path / "resumed", **RESUME, **{"train.resume": "latest"}))
    assert resumed.resumed_from.endswith("checkpoint-00000002")
    assert resumed.losses == straight.losses[2:]  # same clips, same encodings, same draws
    a = _state(ckpt.list_checkpoints(tmp_path / "straight")[-1])
    b = _state(ckpt.list_checkpoints(tmp_path / "resumed")[-1])
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_synthetic_encoding_follows_the_preprocess_conventions(sd):
    from diffusers import AutoencoderKL

    from gen1.depth import normalize_clip_depth
    from gen1.synthetic import render, sample_scene, sample_style
    from gen1.training.batch import RenderedClips, collate_joint
    from gen1.training.synthetic import SyntheticClips, SyntheticEncoder

    cfg = _config(sd, sd.parent / "unused")
    clips = SyntheticClips(cfg.data.synthetic)
    assert len(clips) == 16 and sum(clips.is_image) == 8
    assert {clips.seed_of(i) for i in range(len(clips))} == set(range(100, 108))  # the training seed range only
    video, image = clips[3], clips[8 + 3]
    assert video["frames"].shape == (FRAMES, 3, SIZE, SIZE) and image["frames"].shape == (1, 3, SIZE, SIZE)
    rgb, z = render(sample_scene(103), sample_style(103), FRAMES, SIZE, SIZE)
    assert torch.equal(video["frames"], rgb) and torch.equal(image["frames"], rgb[:1])  # image = first frame
    assert torch.equal(video["depth"], normalize_clip_depth(1.0 / z))  # exact depth -> inverse, per-clip [0, 1]

    vae = AutoencoderKL.from_pretrained(sd / "vae").eval()
    content = tiny_content_encoder()
    encoder = SyntheticEncoder(vae, content, batch=3)  # chunks across clip boundaries
    batch = collate_joint([video, clips[5], image], RenderedClips)
    out = encoder(batch.video)
    assert out.latents.shape == (2, 4, FRAMES, 16, 16) and out.depth.shape == (2, 1, FRAMES, 16, 16)
    with torch.no_grad():
        z0 = vae.encode(rgb * 2 - 1).latent_dist.mean * vae.config.scaling_factor
        emb = content.encode_image(rgb)
    torch.testing.assert_close(out.latents[0], z0.permute(1, 0, 2, 3), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out.content[0], emb, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out.depth[0, 0], torch.nn.functional.avg_pool2d(video["depth"], 2)[:, 0])
    one = SyntheticEncoder(vae, content, content_frames="one")(batch.video, torch.Generator().manual_seed(0))
    assert torch.equal(one.content[:, 0], one.content[:, -1])  # one drawn frame, repeated


def test_synthetic_config_errors_are_named(sd, tmp_path):
    with pytest.raises(ValueError, match=r"validation.scene_seed 103 lies in the training seed range \[100, 108\)"):
        _config(sd, tmp_path, **{"validation.scene_seed": 103})
    assert _config(sd, tmp_path).held_out_seed == 108  # default: first seed after the training range
    with pytest.raises(ValueError, match=r"data.synthetic.size must be a multiple of 8, got 30"):
        _config(sd, tmp_path, **{"data.synthetic.size": 30})
    with pytest.raises(ValueError, match=r"data.synthetic.content_frames must be one of"):
        _config(sd, tmp_path, **{"data.synthetic.content_frames": "some"})
    # checked when the config loads, not when the run first needs them
    with pytest.raises(ValueError, match=r"model.content_encoder '.*nowhere' does not exist"):
        _config(sd, tmp_path / "o", **{"model.content_encoder": str(tmp_path / "nowhere")})
    with pytest.raises(ValueError, match=r"model.vae '.*' has no vae/config.json"):
        _config(sd, tmp_path / "o", **{"model.vae": str(tmp_path)})
