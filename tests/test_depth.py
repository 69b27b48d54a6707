"""gen1.depth: checkpoint loading per backend, per-clip normalisation, batching, user structure, obscure(t_s)."""

from __future__ import annotations

import numpy as np
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

from gen1.depth import (
    DepthEstimator,
    load_depth_estimator,
    load_structure,
    network_input_size,
    normalize_clip_depth,
    obscure,
)
from gen1.depth.midas import build_midas, default_midas_config
from gen1.depth.obscure import halvings
from tiny_structure_content import TINY_MIDAS, tiny_depth_anything_config, tiny_dpt_config, tiny_midas


MIDAS_FILES = {
    "dpt_hybrid": "dpt_hybrid-midas-501f0c75.pt",
    "dpt_large": "dpt_large-midas-2f21e586.pt",
    "midas_v21_small": "midas_v21_small-70d6b9c9.pt",
}


def _frames(n=3, h=40, w=56, seed=0):
    g = np.random.default_rng(seed)
    return (g.random((n, h, w, 3)) * 255).astype(np.uint8)


# ---------------------------------------------------------------------------------------------
# MiDaS release checkpoints (tiny random networks in the original layout)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", list(MIDAS_FILES))
def test_midas_checkpoint_loads_with_identical_outputs(tmp_path, variant):
    net = tiny_midas(variant)
    path = tmp_path / MIDAS_FILES[variant]
    torch.save(net.state_dict(), path)

    est = load_depth_estimator(path, network_config=TINY_MIDAS[variant])
    assert isinstance(est, DepthEstimator) and est.config.backend == "midas"
    assert est.network.cfg.variant == variant  # inferred from the file name
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        assert torch.equal(est(x), net(x))

    depth = est.estimate(_frames(), batch_size=2)
    assert depth.shape == (3, 1, 40, 56) and depth.dtype == torch.float32
    assert depth.min() >= 0 and depth.max() <= 1 and depth.max() > depth.min()


def test_midas_module_tree_matches_release_key_names_and_shapes():
    """The full-size architectures (built on the meta device: no memory) carry the release's names and shapes."""
    expected = {
        "dpt_large": {
            "pretrained.model.pos_embed": (1, 577, 1024),
            "pretrained.model.head.weight": (1000, 1024),
            "pretrained.act_postprocess1.0.project.0.weight": (1024, 2048),
            "pretrained.act_postprocess1.3.weight": (256, 1024, 1, 1),
            "pretrained.act_postprocess1.4.weight": (256, 256, 4, 4),
            "pretrained.act_postprocess4.4.weight": (1024, 1024, 3, 3),
            "scratch.layer4_rn.weight": (256, 1024, 3, 3),
            "scratch.refinenet1.resConfUnit2.conv1.weight": (256, 256, 3, 3),
            "scratch.output_conv.4.weight": (1, 32, 1, 1),
        },
        "dpt_hybrid": {
            "pretrained.model.pos_embed": (1, 577, 768),
            "pretrained.model.patch_embed.backbone.stem.conv.weight": (64, 3, 7, 7),
            "pretrained.model.patch_embed.backbone.stages.1.blocks.0.downsample.conv.weight": (512, 256, 1, 1),
            "pretrained.model.patch_embed.proj.weight": (768, 1024, 1, 1),
            "scratch.layer1_rn.weight": (256, 256, 3, 3),
            "scratch.layer2_rn.weight": (256, 512, 3, 3),
            "scratch.layer3_rn.weight": (256, 768, 3, 3),
            "pretrained.act_postprocess3.3.weight": (768, 768, 1, 1),
        },
        "midas_v21_small": {
            "pretrained.layer1.0.weight": (32, 3, 3, 3),
            "pretrained.layer1.3.0.conv_dw.weight": (32, 1, 3, 3),
            "scratch.layer1_rn.weight": (64, 32, 3, 3),
            "scratch.layer2_rn.weight": (128, 48, 3, 3),
            "scratch.layer3_rn.weight": (256, 136, 3, 3),
            "scratch.layer4_rn.weight": (512, 384, 3, 3),
            "scratch.refinenet4.out_conv.weight": (256, 512, 1, 1),
            "scratch.output_conv.0.weight": (32, 64, 3, 3),
        },
    }
    for variant, shapes in expected.items():
        with torch.device("meta"):
            sd = build_midas(default_midas_config(variant)).state_dict()
        for key, shape in shapes.items():
            assert tuple(sd[key].shape) == shape, (variant, key)


def test_midas_wrong_shape_missing_key_and_wrappers(tmp_path):
    net = tiny_midas("dpt_large")
    sd = net.state_dict()

    bad = dict(sd)
    bad["scratch.layer2_rn.weight"] = torch.zeros(3, 3, 3, 3)
    torch.save(bad, tmp_path / "dpt_large-bad.pt")
    with pytest.raises(ValueError, match="scratch.layer2_rn.weight"):
        load_depth_estimator(tmp_path / "dpt_large-bad.pt", network_config=TINY_MIDAS["dpt_large"])

    missing = {k: v for k, v in sd.items() if k != "scratch.refinenet3.out_conv.bias"}
    torch.save(missing, tmp_path / "dpt_large-missing.pt")
    with pytest.raises(ValueError, match="scratch.refinenet3.out_conv.bias"):
        load_depth_estimator(tmp_path / "dpt_large-missing.pt", network_config=TINY_MIDAS["dpt_large"])

    # a {"state_dict": {"model.<key>": ...}} wrapper, and a file name that needs variant=
    torch.save({"state_dict": {f"model.{k}": v for k, v in sd.items()}}, tmp_path / "my_depth.pt")
    with pytest.raises(ValueError, match="variant"):
        load_depth_estimator(tmp_path / "my_depth.pt", network_config=TINY_MIDAS["dpt_large"])
    est = load_depth_estimator(tmp_path / "my_depth.pt", variant="dpt_large", network_config=TINY_MIDAS["dpt_large"])
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(est(x), net(x))


# ---------------------------------------------------------------------------------------------
# transformers backends
# ---------------------------------------------------------------------------------------------


def _corrupt_first_matrix(directory):
    from safetensors.torch import load_file, save_file

    sd = load_file(directory / "model.safetensors")
    key = next(k for k in sorted(sd) if "layer.0.attention" in k and sd[k].ndim == 2)
    sd[key] = torch.zeros(sd[key].shape[0], sd[key].shape[1] + 1)
    save_file(sd, directory / "model.safetensors", metadata={"format": "pt"})


@pytest.mark.parametrize("kind", ["dpt", "depth-anything"])
def test_transformers_checkpoint_loads_with_identical_outputs(tmp_path, kind):
    from transformers import DepthAnythingForDepthEstimation, DPTForDepthEstimation

    if kind == "dpt":
        model, size = DPTForDepthEstimation(tiny_dpt_config()).eval(), (32, 32)
    else:
        model, size = DepthAnythingForDepthEstimation(tiny_depth_anything_config()).eval(), (28, 42)
    model.save_pretrained(tmp_path / kind)

    est = load_depth_estimator(tmp_path / kind, backend=kind)
    assert est.config.backend == kind
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        assert torch.equal(est(x), model(pixel_values=x).predicted_depth)
    est.register_to_config(input_size=list(size))  # small network input keeps the test fast
    depth = est.estimate(torch.rand(3, 3, 30, 45), batch_size=2)
    assert depth.shape == (3, 1, 30, 45) and depth.dtype == torch.float32

    with pytest.raises(ValueError, match="holds a"):
        load_depth_estimator(tmp_path / kind, backend="dpt" if kind != "dpt" else "depth-anything")
    _corrupt_first_matrix(tmp_path / kind)
    with pytest.raises(ValueError, match=r"layer\.0\.attention"):
        load_depth_estimator(tmp_path / kind)


def test_save_pretrained_round_trip(tmp_path):
    path = tmp_path / "midas_v21_small-tiny.pt"
    torch.save(tiny_midas("midas_v21_small").state_dict(), path)
    est = load_depth_estimator(path, network_config=TINY_MIDAS["midas_v21_small"])
    est.register_to_config(input_size=[64, 64])
    est.save_pretrained(tmp_path / "saved")
    again = load_depth_estimator(tmp_path / "saved")
    frames = _frames()
    assert torch.equal(again.estimate(frames), est.estimate(frames))
    assert again.config.input_size == [64, 64] or tuple(again.config.input_size) == (64, 64)


# ---------------------------------------------------------------------------------------------
# estimate(): batching, input types, normalisation per clip
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_estimator(tmp_path_factory):
    path = tmp_path_factory.mktemp("midas") / "midas_v21_small-tiny.pt"
    torch.save(tiny_midas("midas_v21_small").state_dict(), path)
    est = load_depth_estimator(path, network_config=TINY_MIDAS["midas_v21_small"])
    est.register_to_config(input_size=[64, 64])
    return est


def test_batching_and_input_types_do_not_change_the_result(small_estimator):
    frames = _frames(n=5)
    ref = small_estimator.estimate(frames, batch_size=5)
    for bs in (1, 2, 8):
        torch.testing.assert_close(small_estimator.estimate(frames, batch_size=bs), ref, atol=1e-5, rtol=0)
    as_float = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255.0
    torch.testing.assert_close(small_estimator.estimate(as_float, batch_size=2), ref, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="batch_size"):
        small_estimator.estimate(frames, batch_size=0)
    with pytest.raises(ValueError, match="uint8"):
        small_estimator.estimate(frames.astype(np.float32))


class _BrightnessInvariantNet(nn.Module):
    """Stub network: standardises each input image (so brightness cancels) and smooths its luminance."""

    def __init__(self):
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(1))  # gives the estimator a device and dtype

    def forward(self, x):
        lum = x.mean(dim=1, keepdim=True)
        lum = (lum - lum.mean(dim=(2, 3), keepdim=True)) / lum.std(dim=(2, 3), keepdim=True)
        return nn.functional.avg_pool2d(lum, 3, stride=1, padding=1).squeeze(1)


class _LuminanceNet(nn.Module):
    """Stub network: inverse depth = luminance (brighter = nearer); not brightness invariant."""

    def __init__(self):
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return x.mean(dim=1)


def _stub_estimator(net):
    est = DepthEstimator(backend="midas", network_config=default_midas_config("midas_v21_small", **TINY_MIDAS[
        "midas_v21_small"]).to_dict(), input_size=(32, 32), image_mean=(0, 0, 0), image_std=(1, 1, 1))
    est.network = net
    return est


def test_frames_differing_only_in_brightness_get_the_same_depth_scale():
    """With a brightness-invariant network, every frame of a brightness ramp maps to the same normalised depth:
    the estimator's resizing/normalisation adds no per-frame rescaling (one affine map per clip)."""
    base = torch.rand(1, 3, 32, 32) * 0.5 + 0.1
    clip = torch.cat([base * s for s in (0.6, 0.8, 1.0, 1.5)]).clamp(0, 1)
    depth = _stub_estimator(_BrightnessInvariantNet()).estimate(clip, batch_size=3)
    for f in range(1, 4):
        torch.testing.assert_close(depth[f], depth[0], atol=1e-4, rtol=0)
    assert depth.max() == 1.0 and depth.min() == 0.0


def test_per_clip_normalisation_keeps_the_scale_where_per_frame_would_flicker():
    """Frame 1 loses the near object: per-clip normalisation keeps the background's value, per-frame would
    stretch the background to the full range (the flicker the per-clip rule avoids)."""
    frame0 = torch.full((1, 3, 32, 32), 0.2)
    frame0[..., 8:24, 8:24] = 0.9  # a near object
    frame1 = torch.full((1, 3, 32, 32), 0.2)
    frame1[..., :, 16:] = 0.3  # slightly nearer background on the right, no object
    clip = torch.cat([frame0, frame1])
    depth = _stub_estimator(_LuminanceNet()).estimate(clip)
    assert depth[0, 0, 16, 16] == pytest.approx(1.0)
    # background left half: identical in both frames under per-clip normalisation
    assert depth[0, 0, 2, 2] == pytest.approx(float(depth[1, 0, 2, 2]), abs=1e-5)
    assert float(depth[1].max()) < 0.3  # frame 1's background stays far
    per_frame = torch.cat([normalize_clip_depth(_LuminanceNet()(f[None])[None]) for f in clip])
    assert float(per_frame[1].max()) == pytest.approx(1.0)  # per-frame: the background would jump to "near"


def test_normalize_z_depth_is_clip_normalised_inverse_depth():
    from gen1.depth import normalize_z_depth

    z = torch.linspace(1.0, 9.0, 2 * 16).reshape(2, 1, 4, 4)
    out = normalize_z_depth(z)
    torch.testing.assert_close(out, normalize_clip_depth(1.0 / z))
    assert out[0, 0, 0, 0] == 1.0 and out[-1, 0, -1, -1] == 0.0  # near -> 1, far -> 0
    assert torch.isfinite(normalize_z_depth(torch.zeros(1, 1, 2, 2))).all()  # zero depth does not divide by 0


def test_normalize_clip_depth_uses_robust_percentiles():
    raw = torch.linspace(0, 1, 1000).reshape(10, 1, 10, 10)
    raw[0, 0, 0, 0] = 1e6  # one outlier does not squash the rest
    out = normalize_clip_depth(raw)
    assert out.dtype == torch.float32 and out.min() == 0 and out.max() == 1
    assert 0.4 < float(out.median()) < 0.6
    assert torch.equal(normalize_clip_depth(torch.ones(2, 1, 4, 4)), torch.zeros(2, 1, 4, 4))


def test_network_input_size_policies():
    assert network_input_size(480, 854, (384, 384), "minimal", 32) == (384, 672)
    assert network_input_size(480, 854, (256, 256), "upper_bound", 32) == (128, 256)
    assert network_input_size(480, 854, (256, 256), "lower_bound", 32) == (256, 480)
    assert network_input_size(480, 854, (384, 384), "exact", 32) == (384, 384)
    assert network_input_size(40, 60, (518, 518), "minimal", 14) == (350, 518)


# ---------------------------------------------------------------------------------------------
# user-supplied structure
# ---------------------------------------------------------------------------------------------


def test_load_structure_from_16bit_metric_pngs_with_invert(tmp_path):
    folder = tmp_path / "render"
    folder.mkdir()
    for i in range(3):
        z = np.full((24, 32), 20000, dtype=np.uint16)  # far wall
        z[8:16, 8 + i : 16 + i] = 2000  # a near box that moves
        Image.fromarray(z).save(folder / f"z_{i:04d}.png")
    depth = load_structure(folder, invert=True)
    assert depth.shape == (3, 1, 24, 32) and depth.dtype == torch.float32
    assert depth[0, 0, 10, 10] == 1.0 and depth[0, 0, 0, 0] == 0.0  # inverted: near box = 1
    not_inverted = load_structure(folder)
    assert not_inverted[0, 0, 10, 10] == 0.0  # read as disparity the box would be far
    resized = load_structure(folder, size=(12, 16), invert=True)
    assert resized.shape == (3, 1, 12, 16)
    assert load_structure(folder, size=12, invert=True).shape == (3, 1, 12, 16)


def test_load_structure_from_tensor_npy_and_video(tmp_path, clips_dir):
    t = torch.rand(4, 16, 16)
    out = load_structure(t)
    assert out.shape == (4, 1, 16, 16) and 0 <= out.min() and out.max() <= 1
    np.save(tmp_path / "d.npy", t.numpy())
    torch.testing.assert_close(load_structure(tmp_path / "d.npy"), out)
    video = load_structure(clips_dir / "wolf.mp4", size=32)
    assert video.shape == (40, 1, 32, 32) and video.max() == 1.0


# ---------------------------------------------------------------------------------------------
# obscure (structure levels t_s)
# ---------------------------------------------------------------------------------------------


def _high_frequency_energy(x):
    return float((x[..., 1:, :] - x[..., :-1, :]).pow(2).mean() + (x[..., :, 1:] - x[..., :, :-1]).pow(2).mean())


def test_obscure_level_zero_is_identity_and_shape_is_kept():
    d = torch.rand(2, 3, 1, 20, 28)
    assert torch.equal(obscure(d, 0), d)
    for level in (0.5, 1, 3.25, 7):
        out = obscure(d, level)
        assert out.shape == d.shape and out.dtype == d.dtype
    tiny = torch.rand(1, 1, 3, 5)  # halving stops at one pixel
    assert obscure(tiny, 7).shape == tiny.shape
    flat = torch.full((1, 1, 16, 16), 0.25)
    torch.testing.assert_close(obscure(flat, 4), flat)


def test_obscure_removes_detail_monotonically():
    d = torch.rand(1, 1, 256, 256)
    energies = [_high_frequency_energy(obscure(d, level)) for level in range(8)]
    assert all(a > b for a, b in zip(energies, energies[1:])), energies


@pytest.mark.parametrize("grid", [512, 64, 32, 16, 8, (12, 20)])
def test_obscure_levels_stay_distinct_and_level_7_keeps_a_coarse_layout(grid):
    """On the grids gen1 uses (512 px pixels for a ControlNet, the 64x64 latents of 512 px video, the demo's
    16x16) no two of the eight levels coincide, and level 7 keeps a layout of about 4 cells along the short side:
    never a constant."""
    h, w = (grid, grid) if isinstance(grid, int) else grid
    d = torch.rand(1, 1, h, w, generator=torch.Generator().manual_seed(0))
    levels = [obscure(d, level) for level in range(8)]
    spread = [float(x.std()) for x in levels]
    assert all(a > b + 1e-5 for a, b in zip(spread, spread[1:])), spread
    for a, b in zip(levels, levels[1:]):
        assert not torch.allclose(a, b, atol=1e-4)
    coarsest = levels[7]
    assert spread[7] > 1e-3  # not constant
    # about 4 cells: the layout of d pooled to 4 cells along the short side survives, finer detail does not
    short = min(h, w)
    cells = F.adaptive_avg_pool2d(d, (4 * h // short, 4 * w // short))
    back = F.interpolate(cells, size=(h, w), mode="bilinear", align_corners=False)
    assert float(torch.corrcoef(torch.stack([coarsest.flatten(), back.flatten()]))[0, 1]) > 0.7


def test_obscure_at_512_px_video_keeps_layout_at_level_7():
    """The issue's case: at 512x512 (a 64x64 latent grid) level 7 used to be one value (std 0)."""
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 64), torch.linspace(0, 1, 64), indexing="ij")
    scene = (0.3 + 0.5 * yy + 0.2 * ((xx - 0.3).abs() < 0.15).float())[None, None]  # floor gradient + a pillar
    top = obscure(scene, 7)
    assert float(top.std()) > 0.1
    assert float(top[..., :, 16:23].mean() - top[..., :, 40:47].mean()) > 0.02  # the pillar's side is brighter


def test_obscure_halvings_scale_with_the_grid():
    assert halvings(7, 64, 64) == 4 and halvings(7, 512, 512) == 7 and halvings(3, 512, 512) == 3
    assert halvings(7, 16, 16) == 2 and halvings(7, 56, 96) == pytest.approx(math.log2(56 / 4))
    assert halvings(5, 1, 9) == 0 and halvings(7, 4, 4) == 0


def test_obscure_fractional_levels_interpolate_linearly():
    d = torch.rand(2, 1, 512, 512)  # log2(512 / 4) = 7: exactly one halving per level
    torch.testing.assert_close(obscure(d, 2.25), 0.75 * obscure(d, 2) + 0.25 * obscure(d, 3))
    torch.testing.assert_close(obscure(d, 0.5), 0.5 * d + 0.5 * obscure(d, 1))
    per_sample = obscure(d, torch.tensor([0.0, 3.0]))
    assert torch.equal(per_sample[0], d[0])
    torch.testing.assert_close(per_sample[1], obscure(d[1:], 3)[0])


@pytest.mark.parametrize("level", [-0.1, 7.5, float("nan")])
def test_obscure_rejects_levels_outside_range(level):
    with pytest.raises(ValueError, match="level"):
        obscure(torch.rand(1, 1, 8, 8), level)


# ---------------------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------------------


def test_bad_inputs_give_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="known backends: midas, dpt, depth-anything"):
        load_depth_estimator(tmp_path, backend="zoedepth")
    with pytest.raises(FileNotFoundError, match="not found"):
        load_depth_estimator(tmp_path / "dpt_hybrid-midas-501f0c75.pt")
    with pytest.raises(ValueError, match="config.json"):
        load_depth_estimator(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_structure(tmp_path / "missing_depth.mp4")
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="broken.png"):
        load_structure(tmp_path / "broken.png")
    with pytest.raises(ValueError, match="shape"):
        obscure(torch.rand(2, 3, 8, 8), 1)


def test_load_structure_reads_an_image_sequence_in_natural_order(tmp_path):
    """frame2 comes before frame10, as gen1.media reads the matching RGB sequence."""
    from PIL import Image

    values = {1: 0, 2: 60, 10: 120, 11: 250}
    for index, value in values.items():
        Image.fromarray(np.full((8, 8), value, np.uint8)).save(tmp_path / f"frame{index}.png")
    depth = load_structure(tmp_path)
    means = depth.mean(dim=(1, 2, 3))
    assert torch.all(means[1:] > means[:-1]), means
