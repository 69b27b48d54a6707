"""Synthetic scene generator: determinism, exact depth, style/geometry separation, captions, `gen1 synth`."""

from __future__ import annotations

import math

import pytest
import torch

from gen1.cli import main
from gen1.synthetic import (
    CAPTION_VOCABULARY,
    TEXTURE_WORDS,
    Camera,
    Primitive,
    Scene,
    Style,
    SyntheticVideoDataset,
    render,
    sample_edit_style,
    sample_scene,
    sample_style,
)


def _one_sphere_scene(distance: float = 5.0, radius: float = 1.0) -> Scene:
    """A sphere resting at the origin; the camera at the sphere's centre height, ``distance`` away on +z."""
    sphere = Primitive(shape="sphere", size=(radius, radius, radius), position=(0.0, 0.0))
    camera = Camera(target=(0.0, radius, 0.0), radius=distance, angle=0.0, height=radius, fov=50.0)
    return Scene(primitives=(sphere,), camera=camera)


def test_same_seed_gives_identical_frames_and_other_seeds_differ():
    a_rgb, a_depth = render(sample_scene(11), sample_style(11), num_frames=3, height=16, width=20)
    b_rgb, b_depth = render(sample_scene(11), sample_style(11), num_frames=3, height=16, width=20)
    assert a_rgb.shape == (3, 3, 16, 20) and a_depth.shape == (3, 1, 16, 20)
    assert torch.equal(a_rgb, b_rgb) and torch.equal(a_depth, b_depth)
    c_rgb, c_depth = render(sample_scene(12), sample_style(11), num_frames=3, height=16, width=20)
    assert not torch.equal(a_depth, c_depth)
    assert a_rgb.min() >= 0 and a_rgb.max() <= 1
    assert torch.isfinite(a_depth).all() and (a_depth > 0).all()


def test_scene_sampling_respects_ranges():
    for seed in range(20):
        scene = sample_scene(seed)
        assert 2 <= len(scene.primitives) <= 6
        assert {p.shape for p in scene.primitives} <= {"sphere", "box", "cylinder"}


def test_camera_roll_turns_the_picture_and_keeps_the_geometry():
    from dataclasses import replace

    scene, style = sample_scene(3), sample_style(3)
    _, level = render(scene, style, 1, 32, 32)
    _, rolled = render(replace(scene, camera=replace(scene.camera, roll=90.0)), style, 1, 32, 32)
    # a square frame rolled a quarter turn is the level frame turned clockwise (same rays, same depths)
    torch.testing.assert_close(rolled, torch.rot90(level, -1, dims=(-2, -1)), atol=1e-3, rtol=1e-4)
    assert sample_scene(3, max_roll=0.0) == scene
    rolls = [sample_scene(seed, max_roll=90.0).camera.roll for seed in range(40)]
    assert all(-90.0 <= r <= 90.0 for r in rolls) and max(rolls) > 45.0 and min(rolls) < -45.0
    assert sample_scene(5, max_roll=90.0).primitives == sample_scene(5).primitives  # roll is drawn last


def test_sphere_centre_depth_is_exact_and_floor_depth_matches_geometry():
    distance, radius, size = 5.0, 1.0, 33  # odd size: the centre pixel's ray goes through the sphere's centre
    scene = _one_sphere_scene(distance, radius)
    _, depth = render(scene, sample_style(0), num_frames=1, height=size, width=size)
    centre = depth[0, 0, size // 2, size // 2]
    assert centre.item() == pytest.approx(distance - radius, abs=1e-5)
    # bottom-centre pixel looks down at the floor: z-depth = camera height / tan(angle below the axis)
    v = (1 - (size - 1 + 0.5) * 2 / size) * math.tan(math.radians(50.0) / 2)
    assert depth[0, 0, size - 1, size // 2].item() == pytest.approx(radius / -v, rel=1e-5)


@pytest.mark.parametrize(
    "primitive, expected",
    [
        (Primitive(shape="box", size=(1.0, 1.0, 1.0), position=(0.0, 0.0)), 4.0),
        (Primitive(shape="box", size=(1.0, 1.0, 1.0), position=(0.0, 0.0), yaw=math.pi / 4), 5.0 - math.sqrt(2)),
        (Primitive(shape="cylinder", size=(0.5, 2.0, 0.5), position=(0.0, 0.0)), 4.5),
    ],
)
def test_box_and_cylinder_centre_depth_is_exact(primitive, expected):
    camera = Camera(target=(0.0, 1.0, 0.0), radius=5.0, height=1.0)
    _, depth = render(Scene(primitives=(primitive,), camera=camera), sample_style(1), 1, 21, 21)
    assert depth[0, 0, 10, 10].item() == pytest.approx(expected, abs=1e-5)


def test_moving_objects_move_and_depth_changes_over_time():
    sphere = Primitive(shape="sphere", size=(0.5, 0.5, 0.5), position=(0.0, 0.0), velocity=(0.0, 2.0))
    scene = Scene(primitives=(sphere,), camera=Camera(target=(0, 0.5, 0), radius=5.0, height=0.5))
    _, depth = render(scene, sample_style(0), num_frames=2, height=15, width=15)
    # the sphere moves 2 units towards the camera over the clip
    assert depth[0, 0, 7, 7].item() == pytest.approx(4.5, abs=1e-4)
    assert depth[1, 0, 7, 7].item() == pytest.approx(2.5, abs=1e-4)


def test_other_style_keeps_depth_and_changes_pixels():
    scene = sample_scene(3)
    style = sample_style(3)
    edit = sample_edit_style(style, 99)
    assert edit.object_color != style.object_color and edit.floor_color != style.floor_color
    rgb_a, depth_a = render(scene, style, num_frames=2, height=24, width=24)
    rgb_b, depth_b = render(scene, edit, num_frames=2, height=24, width=24)
    assert torch.equal(depth_a, depth_b)
    assert (rgb_a - rgb_b).abs().mean() > 0.05


def test_texture_detail_off_draws_each_pattern_at_its_mean():
    import dataclasses

    scene = sample_scene(3)
    striped = dataclasses.replace(sample_style(3), object_texture="stripes", floor_texture="stripes")
    checkered = dataclasses.replace(striped, object_texture="checker", floor_texture="checker")
    detailed, depth = render(scene, striped, num_frames=2, height=24, width=24)
    mean_striped, mean_depth = render(scene, striped, num_frames=2, height=24, width=24, texture_detail=False)
    mean_checkered, _ = render(scene, checkered, num_frames=2, height=24, width=24, texture_detail=False)
    assert torch.equal(depth, mean_depth)
    assert not torch.allclose(detailed, mean_striped)
    # stripes and checks both cover half the surface: averaged over where they fall, they look the same
    torch.testing.assert_close(mean_striped, mean_checkered)


def test_captions_name_the_style_and_use_the_fixed_vocabulary():
    style = Style("blue", "checker", "orange", "stripes", "gray", "left", "bright")
    assert style.caption == (
        "blue checkered objects on an orange striped floor in front of a gray wall, bright light from the left"
    )
    for seed in range(30):
        s = sample_style(seed)
        words = s.caption.replace(",", "").split()
        assert set(words) <= set(CAPTION_VOCABULARY)
        for word in (s.object_color, TEXTURE_WORDS[s.object_texture], s.floor_color, s.light_direction):
            assert word in words


def test_invalid_style_and_sizes_raise_value_errors():
    with pytest.raises(ValueError, match="object_color"):
        Style("mauve", "flat", "red", "flat", "gray", "left")
    with pytest.raises(ValueError, match="num_frames"):
        render(sample_scene(0), sample_style(0), num_frames=0)
    with pytest.raises(ValueError, match="shape"):
        Primitive(shape="torus", size=(1, 1, 1), position=(0, 0))


def test_dataset_items():
    item = SyntheticVideoDataset(2, num_frames=2, height=8, width=8)[1]
    assert item["frames"].shape == (2, 3, 8, 8) and item["edit_frames"].shape == (2, 3, 8, 8)
    assert item["depth"].shape == (2, 1, 8, 8)
    assert item["caption"] != item["edit_caption"]


def test_synth_command_writes_clip_depth_caption_and_edit(tmp_path):
    from gen1.media import read_video

    out = tmp_path / "clips"
    assert main(["synth", "--out", str(out), "--num", "1", "--frames", "3", "--size", "16", "--seed", "5"]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "synth_00005.mp4", "synth_00005.txt", "synth_00005_depth.mp4", "synth_00005_edit.mp4", "synth_00005_edit.txt",
    ]
    assert (out / "synth_00005.txt").read_text().strip() == sample_style(5).caption
    clip = read_video(out / "synth_00005_depth.mp4")
    assert clip.frames.shape == (3, 16, 16, 3)
    assert main(["synth", "--out", str(out), "--num", "0"]) == 2
