"""gen1.editing: the one edit that `gen1 edit` and `gen1 serve` run -- its command line, progress, cancel, limits."""

from __future__ import annotations

import shlex
from dataclasses import fields, replace

import numpy as np
import pytest
import torch

from gen1.cli import build_parser
from gen1.editing import (
    COMMAND_FLAGS,
    ClipLimits,
    ClipTooLong,
    EditCancelled,
    EditRequest,
    edit_command,
    read_inputs,
    request_from_args,
    run_edit,
)


def _parsed(command: str):
    words = shlex.split(command)
    assert words[:2] == ["gen1", "edit"]
    return build_parser().parse_args(words[1:])


FULL = EditRequest(
    input="my clip.mp4", output="out dir/edited.mp4", prompt=("a 'watercolour' painting", "-dark night"),
    reference_image=("style.png",), negative_prompt="--blurry", content_weights=(0.25, 1.5, 2.0),
    structure_level=3.3, guidance_scale=0.1, temporal_guidance_scale=1.25, controlnet_conditioning_scale=0.5,
    controlnet_guidance_start=0.1, controlnet_guidance_end=0.9, num_inference_steps=7, scheduler="dpm",
    strength=0.55, full_strength_start="noised-source", seed=2**64 - 1, mask="mask.png", mask_frame=2, erase=True, erase_strength=0.3, erase_fill="boundary", mask_structure="fill",
    mask_structure_level=5.5, depth="depth.npy", depth_invert=True, depth_cache=False, size=256, fps=12.5,
    start=1.5, duration=2.25, max_frames=9, window_size=8, window_overlap=3, window_shift=False,
    direction=(("a car", "a red car"), ("-red", "--teal")), direction_scale=(1.5, -0.5), compare="side by side.png",
    mask_tracker="sam2", mask_tracker_model="facebook/sam2.1-hiera-small",
    mask_clicks=((10.5, 20.0, True), (3.0, 4.0, False)), inpaint_controlnet_scale=0.7,
    imagic_scale=0.75,
    drag=("10,20:30,40.5", "-1,5:7,8"), drag_strength=0.45,
)


@pytest.mark.parametrize("request_", [
    EditRequest(input="in.mp4", output="out.mp4", prompt=("a cat",)),
    FULL,
    EditRequest(input="-starts-like-a-flag.mp4", output="out.mp4", reference_image=("r.png",), structure_level=7.0),
], ids=["defaults", "every-field", "input-like-a-flag"])
def test_the_command_line_parses_back_to_the_same_request(request_):
    command = edit_command(request_, model_args=["--model", "my model", "--device", "cpu"])
    args = _parsed(command)
    assert request_from_args(args) == request_
    assert (args.model, args.device) == ("my model", "cpu")


def test_every_request_field_has_its_flag_and_the_round_trip_sets_them_all():
    assert set(COMMAND_FLAGS) == {item.name for item in fields(EditRequest)} - {"input"}
    defaults = EditRequest(input="i", output="o")
    assert all(getattr(FULL, name) != getattr(defaults, name) for name in COMMAND_FLAGS)


def test_the_command_leaves_defaults_out_and_writes_a_size_and_guidance_that_were_chosen():
    assert edit_command(EditRequest(input="in.mp4", output="out.mp4", prompt=("a cat",))) \
        == "gen1 edit in.mp4 -o out.mp4 --prompt 'a cat'"  # size and guidance: the model's own
    assert edit_command(EditRequest(input="in.mp4", output="out.mp4", prompt=("a cat",), guidance_scale=7.5,
                                    size=512)) \
        == "gen1 edit in.mp4 -o out.mp4 --prompt 'a cat' --guidance 7.5 --size 512"


def test_gen1_edit_defaults_are_the_requests():
    args = _parsed("gen1 edit in.mp4 -o out.mp4 --prompt x")
    assert request_from_args(args) == EditRequest(input="in.mp4", output="out.mp4", prompt=("x",))


@pytest.fixture
def ski(clips_dir):
    return str(clips_dir / "man-skiing.mp4")


def test_run_edit_reports_steps_across_windows_and_leaves_the_pipeline_as_it_was(bundled_pipe, ski, tmp_path):
    scheduler = bundled_pipe.scheduler
    request = EditRequest(input=ski, output=str(tmp_path / "out.mp4"), prompt=("red stripes",), size=64,
                          num_inference_steps=3,
                          max_frames=6, window_size=4, window_overlap=2, scheduler="euler", guidance_scale=1.0)
    reports = []
    result = run_edit(bundled_pipe, request, progress=lambda done, total: reports.append((done, total)))
    totals = {total for _, total in reports}
    assert len(totals) == 1
    total = totals.pop()
    assert total % 3 == 0 and total // 3 >= 2  # steps x windows: 6 frames in windows of 4 overlapping by 2
    assert [done for done, _ in reports] == list(range(total + 1))
    assert result.output.is_file() and result.num_frames == 6 and result.has_audio
    assert bundled_pipe.scheduler is scheduler and "progress_bar" not in vars(bundled_pipe)


def test_a_cancelled_edit_stops_and_writes_nothing(bundled_pipe, ski, tmp_path):
    request = EditRequest(input=ski, output=str(tmp_path / "out.mp4"), compare=str(tmp_path / "c.mp4"),
                          prompt=("red stripes",), size=64, num_inference_steps=4, max_frames=4, guidance_scale=1.0)
    reports = []
    with pytest.raises(EditCancelled):
        run_edit(bundled_pipe, request, progress=lambda done, total: reports.append(done),
                 cancel=lambda: len(reports) >= 2)
    assert len(reports) == 2  # stopped at the step it was asked to
    assert list(tmp_path.iterdir()) == []
    assert "progress_bar" not in vars(bundled_pipe)
    assert run_edit(bundled_pipe, request).output.is_file()  # the pipeline still edits afterwards


def test_the_comparison_names_the_structure_level_inside_the_mask_too(bundled_pipe, ski, tmp_path, monkeypatch):
    # it read "structure (t_s = 0)" where --mask-structure-level 5 shaped the masked region
    from PIL import Image

    import gen1.comparison

    shown = []
    monkeypatch.setattr(gen1.comparison, "write_comparison", lambda path, *a, labels, **k: shown.append(labels) or
                        str(path))
    mask = np.zeros((718, 718), np.uint8)
    mask[200:500, 200:500] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    request = EditRequest(input=ski, output=str(tmp_path / "out.mp4"), compare=str(tmp_path / "c.mp4"),
                          prompt=("red stripes",), size=64, num_inference_steps=1, max_frames=2, guidance_scale=1.0,
                          mask=str(tmp_path / "mask.png"), structure_level=0.0, mask_structure_level=5.0)
    run_edit(bundled_pipe, request)
    assert shown == [("source", "structure (t_s = 0, 5 in the mask)", "output")]


def test_limits_bound_the_frames_and_seconds_read(clips_dir):
    wolf = str(clips_dir / "wolf.mp4")  # 40 frames at 20 fps
    request = EditRequest(input=wolf, output="unused.mp4", prompt=("x",), size=16)
    with pytest.raises(ClipTooLong, match="more than 8 frames"):
        read_inputs(request, limits=ClipLimits(max_frames=8))
    shorter = EditRequest(input=wolf, output="unused.mp4", prompt=("x",), size=16, start=1.0, max_frames=8)
    assert read_inputs(shorter, limits=ClipLimits(max_frames=8)).clip.num_frames == 8
    with pytest.raises(ClipTooLong, match=r"lasts 0\.4 s; this server edits at most 0\.25 s"):
        read_inputs(replace(shorter, duration=0.4), limits=ClipLimits(max_frames=100, max_seconds=0.25))


def test_fixed_windows_keep_one_tiling_and_the_default_shifts_it(bundled_pipe, ski, tmp_path):
    # 13 frames in windows of 4 sharing 1: fixed (0,4) (3,7) (6,10) (9,13) at each of 3 steps; shifted, steps 0
    # and 1 start from offsets 1 and 2 and add a window at frame 0, step 2 is unshifted (gen1.windows.step_offset)
    totals = {}
    for fixed in (True, False):
        request = EditRequest(input=ski, output=str(tmp_path / f"{fixed}.mp4"), prompt=("red stripes",), size=64,
                              num_inference_steps=3, max_frames=13, window_size=4, window_overlap=1,
                              window_shift=not fixed, scheduler="ddim")
        reports = []
        run_edit(bundled_pipe, request, progress=lambda done, total: reports.append(total))
        totals[fixed] = reports[-1]
    assert totals == {True: 3 * 4, False: 4 + 5 + 5}


def test_inputs_are_read_at_the_models_size_when_the_request_leaves_it_to_the_model(bundled_pipe, ski, tmp_path):
    from gen1.editing import with_pipeline_defaults

    request = EditRequest(input=ski, output=str(tmp_path / "out.mp4"), prompt=("red stripes",), num_inference_steps=1,
                          max_frames=2)
    with pytest.raises(ValueError, match="the request has no size: .*with_pipeline_defaults"):
        read_inputs(request)  # not silently at the video's own size
    resolved = with_pipeline_defaults(request, bundled_pipe)
    assert (resolved.size, resolved.guidance_scale) == (64, 1.0)  # what the bundled model records
    inputs = read_inputs(resolved)
    assert min(inputs.clip.height, inputs.clip.width) == 64
    assert run_edit(bundled_pipe, resolved, inputs).frames.shape[-2:] == (inputs.clip.height, inputs.clip.width)


def test_a_mask_is_read_at_the_videos_shape_and_refused_when_nothing_or_everything_is_white(clips_dir, tmp_path):
    # a mask of another size but the video's shape is scaled like the frames (painted on a preview); a region that
    # vanishes at the edit's size, and a mask white everywhere, are refused naming why
    from PIL import Image

    def request(mask):
        return EditRequest(input=str(clips_dir / "wolf.mp4"), output=str(tmp_path / "o.mp4"), prompt=("x",),
                           mask=str(mask), size=32, max_frames=2)

    half = np.zeros((256, 256), np.uint8)
    half[64:192, 64:192] = 255
    Image.fromarray(half).save(tmp_path / "half.png")
    mask = read_inputs(request(tmp_path / "half.png")).mask
    assert mask.shape[-2:] == (32, 32) and float((mask > 0.5).float().mean()) == pytest.approx(0.25, abs=0.02)
    speck = np.zeros((512, 512), np.uint8)
    speck[100:104, 100:104] = 255
    Image.fromarray(speck).save(tmp_path / "speck.png")
    with pytest.raises(ValueError, match=r"^--mask has no white pixel at the edit's size \(32x32, --size 32; "
                       r"white: above half grey\)"):
        read_inputs(request(tmp_path / "speck.png"))
    Image.fromarray(np.full((512, 512), 255, np.uint8)).save(tmp_path / "white.png")
    with pytest.raises(ValueError, match="^--mask is white everywhere"):
        read_inputs(request(tmp_path / "white.png"))


def test_pipeline_messages_name_flags_but_not_file_names_or_a_models_own_settings():
    from gen1.editing import _flags_named

    assert _flags_named("mask_frame 8 is outside the clip") == "--mask-frame 8 is outside the clip"
    assert _flags_named("drag 1,2:3,4: its start 1,2 is not on the subject") == ("--drag 1,2:3,4: its start 1,2 is "
                                                                                 "not on the subject")
    assert _flags_named("drag_strength must be in (0, 1]") == "--drag-strength must be in (0, 1]"
    for kept in ("window must be <= the UNet's max_frames=16", "drag track file '/data/max_frames.csv': no rows",
                 "depth_cache is off", "the mask is empty"):
        assert _flags_named(kept) == (f"--{kept}" if kept.startswith("drag ") else kept)


def test_a_drag_into_the_part_cropped_away_is_named_in_the_users_pixels(tmp_path):
    # 200x112 read at --size 32 is cut to 56x32 about its centre: source columns 0-1 and 198-199 are cropped away;
    # the pipeline said "its end 56.6,16 is outside the frame (columns 0 to 55 ...)" of a vector the user gave as 199,56
    from PIL import Image

    from gen1.media import write_video

    write_video(tmp_path / "wide.mp4", np.full((3, 112, 200, 3), 90, np.uint8), 8)
    mask = np.zeros((112, 200), np.uint8)
    mask[40:70, 80:120] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")

    def request(drag):
        return EditRequest(input=str(tmp_path / "wide.mp4"), output=str(tmp_path / "o.mp4"),
                           mask=str(tmp_path / "mask.png"),
                           mask_frame=0, drag=(drag,), size=32)

    assert read_inputs(request("100,56:150,56")).drag is not None
    with pytest.raises(ValueError, match=r"^--drag 100,56:199,56: its end 199,56 is in the part of the video cropped "
                       r"away at --size 32 \(the frames are cut to 56x32 about their centre\)"):
        read_inputs(request("100,56:199,56"))


@pytest.mark.parametrize("flag", ["mask", "depth"])
def test_a_mask_or_depth_video_at_another_frame_rate_is_read_at_the_edited_frames_times(tmp_path, flag):
    # a 10 fps mask of a 20 fps source was read on its own timeline: edited frame i got the mask's frame i (twice the
    # time), and with --start the mask's frame at or after the start, not the one shown then
    from gen1.media import write_video

    def bars(count, step):  # frame j: a white bar at column 4 * j * step
        frames = np.zeros((count, 32, 64, 3), np.uint8)
        for j in range(count):
            frames[j, :, 4 * j * step:4 * j * step + 4] = 255
        return frames

    write_video(tmp_path / "src.mp4", bars(12, 1) // 2 + 40, 20)
    write_video(tmp_path / "slow.mp4", bars(6, 2), 10)  # the same motion at 10 fps
    write_video(tmp_path / "short.mp4", bars(4, 2), 10)  # 0.4 s of the 0.6 s
    write_video(tmp_path / "still.mp4", bars(1, 2), 10)  # one frame: one mask for every frame, as an image is

    def read(path, **selection):
        request = EditRequest(input=str(tmp_path / "src.mp4"), output=str(tmp_path / "o.mp4"), prompt=("x",),
                              size=32, **{flag: str(tmp_path / path)}, **selection)
        inputs = read_inputs(request)
        frames = inputs.mask if flag == "mask" else inputs.depth
        return [int(np.nonzero(frame[0].numpy().mean(0) > 0.5)[0].min()) for frame in frames]

    # source frames at 0.25, 0.30, 0.35, 0.40 s show the 10 fps frames of 0.2, 0.3, 0.3 and 0.4 s
    assert read("slow.mp4", start=0.25, max_frames=4) == [16, 24, 24, 32]
    assert read("slow.mp4", fps=10, max_frames=3) == [0, 8, 16]
    assert read("still.mp4", start=0.25, max_frames=3) == [0]  # one for all, as an image (the pipeline repeats it)
    with pytest.raises(ValueError, match=rf"^--{flag} has 8 frames but the video has 12 \(--{flag} is 10 fps and "
                       r"the edited frames 20 fps: it is read at their times, and ends after 8 of them\)"):
        read("short.mp4")
    # as many frames as the source at another rate (a depth tool's fixed-rate output): frame for frame, as before
    write_video(tmp_path / "same_count.mp4", bars(12, 1), 25)
    assert read("same_count.mp4", start=0.25, max_frames=3) == [20, 24, 28]
    assert read("same_count.mp4") == [4 * j for j in range(12)]
    if flag == "mask":  # frames held unevenly (80 and 20 ms by turns, 20 fps on average): frame k for frame k
        from PIL import Image

        still = [Image.fromarray(frame) for frame in bars(12, 1)]
        still[0].save(tmp_path / "uneven.gif", save_all=True, append_images=still[1:], duration=[80, 20] * 6)
        assert read("uneven.gif") == [4 * j for j in range(12)]


def test_a_mask_with_transparency_is_read_as_its_alpha(clips_dir, tmp_path):
    # composited over white, white paint on a transparent layer was refused as 'white everywhere' and a cut-out
    # (the subject opaque, the rest transparent) was inverted; an opaque mask keeps its grey values
    from PIL import Image

    from gen1.masking import mask_to_tensor

    subject = np.zeros((64, 64), bool)
    subject[16:48, 8:40] = True
    strokes = np.zeros((64, 64, 4), np.uint8)
    strokes[subject] = 255
    cutout = np.full((64, 64, 4), 60, np.uint8)
    cutout[..., 3] = np.where(subject, 255, 0)
    opaque = np.dstack([np.where(subject, 255, 0).astype(np.uint8)] * 3 + [np.full((64, 64), 255, np.uint8)])
    for name, pixels in (("strokes", strokes), ("cutout", cutout), ("opaque", opaque)):
        Image.fromarray(pixels, "RGBA").save(tmp_path / f"{name}.png")
        request = EditRequest(input=str(clips_dir / "wolf.mp4"), output=str(tmp_path / "o.mp4"), prompt=("x",),
                              mask=str(tmp_path / f"{name}.png"), size=64, max_frames=2)
        for mask in (read_inputs(request).mask, mask_to_tensor(tmp_path / f"{name}.png"),
                     mask_to_tensor(Image.fromarray(pixels, "RGBA"))):
            assert np.array_equal(mask[0, 0].numpy() > 0.5, subject), name
    faint = strokes.copy()
    faint[subject, 3] = 100  # painted at alpha 100, as a soft brush leaves it: the web app's drawing takes it all
    stray = opaque.copy()
    stray[0, 0, 3] = 254  # one pixel not quite opaque does not turn a black-and-white mask into an alpha mask
    Image.fromarray(faint, "RGBA").save(tmp_path / "faint.png")
    Image.fromarray(stray, "RGBA").save(tmp_path / "stray.png")
    for name in ("faint", "stray"):
        assert np.array_equal(mask_to_tensor(tmp_path / f"{name}.png")[0, 0].numpy() > 0.5, subject), name
    frames = [Image.fromarray(pixels, "RGBA") for pixels in (strokes, strokes)]  # a GIF mask with transparency
    frames[0].save(tmp_path / "strokes.gif", save_all=True, append_images=frames[1:], duration=[100, 100],
                   disposal=2, transparency=0)
    request = EditRequest(input=str(clips_dir / "wolf.mp4"), output=str(tmp_path / "o.mp4"), prompt=("x",),
                          mask=str(tmp_path / "strokes.gif"), size=64, max_frames=2)
    assert np.array_equal(read_inputs(request).mask[0, 0].numpy() > 0.5, subject)
    painted = np.zeros((64, 64, 4), np.uint8)  # black paint, the second frame painted whole (the subject fills it)
    painted[subject, 3] = 255
    whole = np.zeros((64, 64, 4), np.uint8)
    whole[..., 3] = 255
    frames = [Image.fromarray(pixels, "RGBA") for pixels in (painted, whole, painted)]
    frames[0].save(tmp_path / "moving.gif", save_all=True, append_images=frames[1:], duration=[100] * 3, disposal=2)
    for mask in (mask_to_tensor(tmp_path / "moving.gif"),  # the Python API's path too
                 read_inputs(EditRequest(input=str(clips_dir / "wolf.mp4"), output=str(tmp_path / "o.mp4"),
                                         prompt=("x",), mask=str(tmp_path / "moving.gif"), size=64, fps=10,
                                         max_frames=3)).mask):
        assert np.array_equal(mask[0, 0].numpy() > 0.5, subject)
        assert bool((mask[1] > 0.5).all())  # by its alpha, decided for the video, not frame by frame


def test_a_video_with_frames_held_unevenly_is_read_at_what_it_shows(tmp_path):
    # read_video_at took every frame as lasting 1/fps: a GIF that holds a frame (0.5 s, then 0.1 s each) gave a
    # later frame at 0.45 s and refused times its first frame still covered
    from PIL import Image

    from gen1.media import read_video_at

    frames = []
    for index in range(6):
        pixels = np.zeros((16, 48, 3), np.uint8)
        pixels[:, 8 * index:8 * index + 8] = 255  # frame k lights columns 8k..8k+7
        frames.append(Image.fromarray(pixels))
    frames[0].save(tmp_path / "held.gif", save_all=True, append_images=frames[1:], duration=[500, 100, 100, 100, 100,
                                                                                               100])
    times = np.array([0.0, 0.3, 0.45, 0.55, 0.65, 0.95, 1.05])
    shown, _ = read_video_at(tmp_path / "held.gif", times)
    lit = [int(np.argmax(frame[8].mean(axis=-1) > 127)) // 8 for frame in shown]
    assert lit == [0, 0, 0, 1, 2, 5]  # 1.05 s: after the last frame's 0.1 s, not covered
    late, _ = read_video_at(tmp_path / "held.gif", np.array([0.45, 0.55]))  # starting inside the held frame
    assert [int(np.argmax(frame[8].mean(axis=-1) > 127)) // 8 for frame in late] == [0, 1]


def test_a_direction_text_starting_with_a_dash_is_written_as_a_value_the_encoder_reads_alike(bundled_pipe):
    # edit_command wrote '--direction -red teal', which gen1 edit cannot parse ('expected 2 arguments'); it now
    # writes ' -red' (the round trip: FULL above), and a request drops the texts' surrounding spaces, which the
    # content encoder's tokenizer drops too: the same direction, bit for bit
    command = edit_command(EditRequest(input="in.mp4", output="out.mp4", direction=(("-red", "teal"),)))
    assert "--direction ' -red' teal" in command
    assert request_from_args(_parsed(command)).direction == (("-red", "teal"),)
    route = bundled_pipe.route
    assert torch.equal(route.text_direction(" -red ", "teal ", device="cpu"),
                       route.text_direction("-red", "teal", device="cpu"))
