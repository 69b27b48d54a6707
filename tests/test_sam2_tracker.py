"""The SAM 2 tracker (``--mask-tracker sam2``): transformers' ``Sam2VideoModel`` loaded from a Hub id through gen1's
hub layer, prompted on one frame by a mask or by clicks, giving a mask on every frame.

The model is a tiny random one of the real class, saved in the layout of ``facebook/sam2.1-hiera-tiny`` (config.json,
model.safetensors, processor_config.json, preprocessor_config.json, video_preprocessor_config.json) into a laid-out
Hub cache read with ``HF_HUB_OFFLINE=1``: the path users take. A random model cannot track; these tests check what
the tracker does with the model (shapes, the prompt frame, every frame covered in order, forwards and backwards),
not how well it tracks.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image
import pytest
import torch
from tiny_hub import cache_repo, offline_cache

from gen1.tracking import Sam2Tracker, make_tracker, track_mask

REPO = "facebook/sam2.1-hiera-tiny"
FRAMES, HEIGHT, WIDTH = 6, 40, 48
INPUT = 64  # the tiny model's square input (the real one's is 1024)


def write_tiny_sam2(folder: Path, seed: int = 0) -> Path:
    """A random ``Sam2VideoModel`` at toy size with its processor, in the Hub repo's file layout."""
    from transformers import Sam2VideoConfig, Sam2VideoModel, Sam2VideoProcessor
    from transformers.models.sam2.image_processing_sam2 import Sam2ImageProcessor
    from transformers.models.sam2_video.video_processing_sam2_video import (
        Sam2VideoVideoProcessor,
    )

    cells = [[INPUT // 4] * 2, [INPUT // 8] * 2, [INPUT // 16] * 2]
    backbone = {"model_type": "sam2_hiera_det_model", "hidden_size": 8, "num_attention_heads": 1,
                "image_size": [INPUT] * 2, "blocks_per_stage": [1, 1, 2, 1], "embed_dim_per_stage": [8, 16, 32, 64],
                "num_attention_heads_per_stage": [1, 1, 1, 1], "window_size_per_stage": [4, 4, 2, 2],
                "global_attention_blocks": [3], "window_positional_embedding_background_size": [2, 2]}
    config = Sam2VideoConfig(
        vision_config={"model_type": "sam2_vision_model", "backbone_config": backbone,
                       "backbone_channel_list": [64, 32, 16, 8], "backbone_feature_sizes": cells,
                       "fpn_hidden_size": 128},
        prompt_encoder_config={"hidden_size": 128, "image_size": INPUT, "patch_size": 16, "mask_input_channels": 4},
        mask_decoder_config={"hidden_size": 128, "mlp_dim": 32, "num_attention_heads": 2, "iou_head_hidden_dim": 16},
        image_size=INPUT, num_maskmem=3, memory_attention_hidden_size=128, memory_attention_num_layers=1,
        memory_attention_feed_forward_hidden_size=32, memory_attention_rope_feat_sizes=cells[2],
        memory_encoder_hidden_size=128, memory_encoder_output_channels=64, mask_downsampler_embed_dim=128,
        memory_fuser_embed_dim=128, memory_fuser_intermediate_dim=32, max_object_pointers_in_encoder=4)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        Sam2VideoModel(config).save_pretrained(folder)
    size = {"height": INPUT, "width": INPUT}
    Sam2VideoProcessor(Sam2ImageProcessor(size=size, mask_size={"height": INPUT // 4, "width": INPUT // 4}),
                       Sam2VideoVideoProcessor(size=size), target_size=INPUT).save_pretrained(folder)
    # the Hub repo keeps the image and video processors' configs in files of their own
    processor = json.loads((folder / "processor_config.json").read_text())
    (folder / "preprocessor_config.json").write_text(json.dumps(processor.pop("image_processor")))
    (folder / "video_preprocessor_config.json").write_text(json.dumps(processor.pop("video_processor")))
    (folder / "processor_config.json").write_text(json.dumps(processor))
    return folder


@pytest.fixture(scope="module")
def sam2_folder(tmp_path_factory):
    return write_tiny_sam2(tmp_path_factory.mktemp("sam2") / "sam2.1-hiera-tiny")


@pytest.fixture
def hub(sam2_folder, tmp_path, monkeypatch):
    """An offline Hub cache holding the tiny model under the default repo id."""
    cache = offline_cache(monkeypatch, tmp_path)
    cache_repo(cache, REPO, {"": sam2_folder})
    return cache


def clip(seed=0):
    """A bright square moving right over a dark textured floor, (F, 3, H, W) in [0, 1], and its exact masks."""
    generator = torch.Generator().manual_seed(seed)
    frames = 0.3 * torch.rand(FRAMES, 3, HEIGHT, WIDTH, generator=generator)
    masks = torch.zeros(FRAMES, 1, HEIGHT, WIDTH)
    for index in range(FRAMES):
        x = 6 + 3 * index
        frames[index, :, 12:28, x:x + 14] = 0.9
        masks[index, :, 12:28, x:x + 14] = 1
    return frames, masks


def iou(a, b):
    a, b = a > 0.5, b > 0.5
    return float((a & b).sum() / max(float((a | b).sum()), 1.0))


def visits(monkeypatch):
    """The frames SAM 2 runs on, in order (every call of the model on a frame of the session)."""
    from transformers import Sam2VideoModel

    seen = []
    forward = Sam2VideoModel.forward

    def spy(self, inference_session, frame_idx=None, **kwargs):
        seen.append(frame_idx)
        return forward(self, inference_session, frame_idx=frame_idx, **kwargs)

    monkeypatch.setattr(Sam2VideoModel, "forward", spy)
    return seen


def test_sam2_loads_from_the_hub_cache_and_tracks_a_middle_frame_mask_both_ways(hub, monkeypatch):
    frames, masks = clip()
    seen = visits(monkeypatch)
    middle = 3
    tracked = track_mask(frames, masks[middle:middle + 1], middle, tracker="sam2")
    assert tracked.shape == (FRAMES, 1, HEIGHT, WIDTH) and tracked.dtype == torch.float32
    assert set(tracked.unique().tolist()) <= {0.0, 1.0}
    # the prompt frame's mask is the given one, through the model's 64 x 64 input and 16 x 16 output
    assert iou(tracked[middle], masks[middle]) >= 0.8
    # the prompted frame, then forwards to the last frame, then backwards to the first: every frame, in order
    assert seen == [middle, *range(middle, FRAMES), *range(middle, -1, -1)]


def test_each_frame_mask_comes_from_its_own_frame_and_the_ones_before_it_in_its_direction(hub):
    """Changing frame 5 (after the prompt at 2) leaves frames 0 to 4 as they were: SAM 2 reaches frame 5 last on
    its way forwards, and never on its way backwards."""
    frames, masks = clip()
    tracker = make_tracker("sam2")
    one = tracker.track(frames, masks[2:3], 2)
    changed = frames.clone()
    changed[5] = torch.rand(3, HEIGHT, WIDTH, generator=torch.Generator().manual_seed(9))
    other = tracker.track(changed, masks[2:3], 2)
    assert torch.equal(one[:5], other[:5])
    assert not torch.equal(one[5], other[5])  # the changed frame is seen


def test_clicks_prompt_sam2_on_one_frame(hub, monkeypatch):
    frames, _ = clip()
    seen = visits(monkeypatch)
    tracked = track_mask(frames, None, 0, tracker="sam2", clicks=[(12.0, 20.0, True), (40.0, 35.0, False)])
    assert tracked.shape == (FRAMES, 1, HEIGHT, WIDTH)
    assert set(tracked.unique().tolist()) <= {0.0, 1.0}
    assert seen == [0, *range(FRAMES)]  # from the first frame there is nothing to go back to


@pytest.mark.parametrize("clicks, message", [
    ([(48.0, 10.0, True)], r"^the click at x=48, y=10 is outside the frame \(x in \[0, 48\), y in \[0, 40\)\)$"),
    ([(5.0, -1.0, True)], "^the click at x=5, y=-1 is outside the frame"),
    ([(5.0, 5.0, False)], "^give at least one positive click on the subject"),
])
def test_bad_clicks_are_refused_in_one_line_before_the_model_loads(clicks, message, tmp_path, monkeypatch):
    offline_cache(monkeypatch, tmp_path)  # an empty cache: a click is refused before the model is looked for
    frames, _ = clip()
    with pytest.raises(ValueError, match=message) as error:
        track_mask(frames, None, 0, tracker="sam2", clicks=clicks)
    assert "\n" not in str(error.value)


def test_clicks_need_a_tracker_that_takes_them_and_not_a_mask_too(hub):
    frames, masks = clip()
    with pytest.raises(ValueError, match="^the flow tracker carries a painted mask: clicks need sam2"):
        track_mask(frames, None, 0, tracker="flow", clicks=[(10.0, 10.0, True)])
    with pytest.raises(ValueError, match="^give the subject on its frame as a mask or as clicks, not both"):
        track_mask(frames, masks[:1], 0, tracker="sam2", clicks=[(10.0, 10.0, True)])
    with pytest.raises(ValueError, match="^mask_tracker_model does not apply to the flow tracker"):
        make_tracker("flow", "facebook/sam2.1-hiera-tiny")


def test_a_missing_model_is_one_line_naming_the_flag_and_the_download(tmp_path, monkeypatch):
    offline_cache(monkeypatch, tmp_path)
    frames, masks = clip()
    with pytest.raises(ValueError) as error:
        Sam2Tracker().track(frames, masks[:1], 0)
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(f"--mask-tracker-model '{REPO}'")
    assert f"hf download {REPO} config.json model.safetensors processor_config.json" in message


def test_a_local_folder_loads_and_a_folder_of_another_model_is_refused(sam2_folder, tmp_path):
    frames, masks = clip()
    tracked = Sam2Tracker(model=str(sam2_folder)).track(frames, masks[:1], 0)
    assert tracked.shape == (FRAMES, 1, HEIGHT, WIDTH)
    other = tmp_path / "dpt"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"model_type": "dpt"}))
    (other / "model.safetensors").write_bytes(b"")
    (other / "processor_config.json").write_text("{}")
    with pytest.raises(ValueError, match=r"^--mask-tracker-model '.*dpt' is not a SAM 2 model: its config.json's "
                                         r"model_type is 'dpt'"):
        Sam2Tracker(model=str(other)).track(frames, masks[:1], 0)


def test_the_pipeline_edits_inside_the_region_sam2_tracks_from_clicks(hub):
    """``mask_clicks`` and ``mask_tracker="sam2"`` through ``Gen1Pipeline.__call__``: the clicks are in pixels of
    the video given (here 64 px, edited at 32 px), and every pixel outside the tracked region is the source's."""
    from tiny_pipeline import tiny_pipeline

    from gen1.masked_edits import edit_region

    pipe = tiny_pipeline()
    pipe.set_progress_bar_config(disable=True)
    frames = torch.nn.functional.interpolate(clip()[0][:4, :, :, :40], size=(64, 64), mode="nearest")
    clicks = [(30.0, 30.0, True), (60.0, 60.0, False)]
    depth = torch.rand(4, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    out = pipe(frames, prompt="a cat", num_inference_steps=2, generator=torch.Generator().manual_seed(0),
               output_type="pt", size=32, depth=depth, mask_clicks=clicks, mask_tracker="sam2")
    source = pipe.prepare_source(frames, size=32).frames  # the clip at the edit's size, as the edit reads it
    region = edit_region(None, source, (64, 64), mask_frame=0, tracker="sam2", clicks=clicks)
    outside = (region < 0.5).expand_as(source)
    assert outside.any() and not outside.all()
    assert torch.equal(out.frames[outside], source[outside])
    with pytest.raises(ValueError, match=r"^the click at x=64, y=3 is outside the frame"):
        pipe(frames, prompt="a cat", num_inference_steps=1, size=32, depth=depth, mask_clicks=[(64, 3, True)],
             mask_tracker="sam2")
    with pytest.raises(ValueError, match=r"^give the subject as mask or as clicks \(mask_clicks\), not both"):
        pipe(frames, prompt="a cat", num_inference_steps=1, size=32, depth=depth, mask=np.eye(64),
             mask_clicks=clicks, mask_tracker="sam2")


def test_api_clicks_land_where_the_frames_show_them_and_one_cropped_away_is_refused():
    # mask_clicks were scaled per axis (x by 56/60, y by 32/32), not by the cover-and-crop the frames take: a click
    # in the 2 columns cut off each side landed inside the frames, on another pixel than the one clicked
    from gen1.masked_edits import edit_region
    from gen1.media.resize import fit_points
    from gen1.tracking import MaskTracker

    class Recorder(MaskTracker):
        takes_clicks = True

        def track(self, frames, mask, mask_frame, depth=None, clicks=()):
            self.clicks = list(clicks)
            return torch.zeros(frames.shape[0], 1, *frames.shape[-2:])

    frames, recorder = torch.rand(2, 3, 32, 56), Recorder()
    edit_region(None, frames, (32, 60), mask_frame=0, tracker=recorder, clicks=[(40.0, 10.0, True)])
    assert recorder.clicks == [(38.0, 10.0, True)] == [(*fit_points((40, 10), (32, 60), (32, 56)), True)]
    for x in (1.0, 58.5):
        with pytest.raises(ValueError, match=rf"^mask_clicks: the click at x={x:g}, y=10 is in the part of the video "
                           r"cropped away \(the frames are cut to 56x32 about their centre\)"):
            edit_region(None, frames, (32, 60), mask_frame=0, tracker=recorder, clicks=[(x, 10.0, True)])


def test_gen1_edit_refuses_a_click_in_the_part_size_crops_away_up_front_in_the_users_pixels(tmp_path, capsys,
                                                                                           monkeypatch):
    # it was refused after the model loaded, in the clip's pixels ('the click at x=-1.03, y=31.6 is outside the
    # frame'), without naming --mask-click
    from gen1.cli import main
    from gen1.media import write_video

    source = tmp_path / "src.mp4"
    write_video(source, np.random.default_rng(0).integers(0, 255, (3, 32, 60, 3), dtype=np.uint8), 8)
    offline_cache(monkeypatch, tmp_path)  # no SAM 2 model: the click is checked first, before one is looked for
    assert main(["edit", str(source), "-o", str(tmp_path / "out.mp4"), "--erase", "--mask-tracker", "sam2",
                 "--size", "32", "--mask-click", "1,10"]) == 2
    assert capsys.readouterr().err.strip().endswith(
        "--mask-click: the click at x=1, y=10 is in the part of the video cropped away at --size 32 (the frames are "
        "cut to 56x32 about their centre): click within the part that is kept")


def test_gen1_edit_parses_clicks_and_the_tracker_flags():
    import argparse

    from gen1.cli import build_parser
    from gen1.settings import click_value

    args = build_parser().parse_args(["edit", "in.mp4", "-o", "out.mp4", "--erase", "--mask-tracker", "sam2",
                                      "--mask-click", "10,20", "--mask-click", "3.5,4,-", "--mask-frame", "2",
                                      "--mask-tracker-model", "facebook/sam2.1-hiera-small"])
    assert args.mask_clicks == [(10.0, 20.0, True), (3.5, 4.0, False)]
    assert (args.mask_tracker, args.mask_tracker_model, args.mask_frame) == ("sam2", "facebook/sam2.1-hiera-small", 2)
    for bad in ("10", "a,b", "1,2,x", "1,2,+,3", "nan,2"):
        with pytest.raises(argparse.ArgumentTypeError, match="a click is X,Y or X,Y,"):
            click_value(bad)


def test_gen1_edit_refuses_a_missing_sam2_model_and_clicks_outside_the_video_before_loading(tmp_path, monkeypatch,
                                                                                            sam2_folder, capsys):
    from gen1.cli import main
    from gen1.media import write_video

    source = tmp_path / "src.mp4"
    write_video(source, np.random.default_rng(0).integers(0, 255, (3, 32, 48, 3), dtype=np.uint8), 8)
    command = ["edit", str(source), "-o", str(tmp_path / "out.mp4"), "--erase", "--mask-tracker", "sam2"]
    cache = offline_cache(monkeypatch, tmp_path)
    assert main([*command, "--mask-click", "10,10"]) == 2
    error = capsys.readouterr().err.strip()
    assert f"--mask-tracker-model '{REPO}'" in error and f"hf download {REPO}" in error and "Traceback" not in error
    assert main([*command, "--mask-click", "60,10"]) == 2  # the click first: no model is fetched for a wrong click
    assert capsys.readouterr().err.strip().endswith(
        "--mask-click: the click at x=60, y=10 is outside the frame (x in [0, 48), y in [0, 32))")
    mask = tmp_path / "mask.png"
    Image.fromarray(np.eye(32, 48, dtype=np.uint8) * 255).save(mask)
    # with a mask for every frame and nothing to follow, --mask-tracker sam2 was ignored without a word
    assert main([*command, "--mask", str(mask)]) == 2
    assert capsys.readouterr().err.strip().endswith(
        "--mask-tracker sam2 follows the subject from one frame: give --mask-frame (the frame --mask shows) or "
        "--mask-click, or no --mask-tracker")
    cache_repo(cache, REPO, {"": sam2_folder})
    assert main([*command, "--mask-click", "10,10", "--mask-click", "48,3,-"]) == 2
    error = capsys.readouterr().err
    assert "--mask-click: the click at x=48, y=3 is outside the frame (x in [0, 48), y in [0, 32))" in error
    assert main([*command, "--mask-tracker", "flow", "--mask-click", "10,10"]) == 2
    assert "--mask-click needs --mask-tracker sam2" in capsys.readouterr().err
    assert not (tmp_path / "out.mp4").exists()
