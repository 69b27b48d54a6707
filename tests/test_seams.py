"""The seam ratio on constructed videos, and the window schedule it is measured against."""

from __future__ import annotations

import json
import math

import pytest
import torch

from gen1.eval.evaluate import evaluate_videos
from gen1.eval.seams import layout_seam_ratio, mean_pair_errors, seam_pairs, seam_ratio
from gen1.eval.warp import pair_warp_errors
from gen1.windows import blend_schedule, temporal_windows
from test_metrics import _translating_video

FRAMES, WINDOW, OVERLAP = 20, 8, 2  # windows (0,8) (6,14) (12,20): overlaps at frames 6-7 and 12-13


def _with_jump(video: torch.Tensor, first_frame: int, amount: float = 0.15) -> torch.Tensor:
    """``video`` with every frame from ``first_frame`` on brightened: one jump, between frames first_frame-1 and
    first_frame."""
    jumped = video.clone()
    jumped[first_frame:] = (jumped[first_frame:] + amount).clamp(0, 1)
    return jumped


def test_pairs_in_or_next_to_an_overlap_are_at_a_seam():
    layout = temporal_windows(FRAMES, WINDOW, OVERLAP)
    assert layout == [(0, 8), (6, 14), (12, 20)]
    at_seam = seam_pairs(layout, FRAMES)
    assert [t for t, s in enumerate(at_seam) if s] == [5, 6, 7, 11, 12, 13]
    # windows that meet without overlapping: only the pair across the edge
    assert [t for t, s in enumerate(seam_pairs([(0, 4), (4, 8)], 8)) if s] == [3]
    with pytest.raises(ValueError, match="uncovered"):
        seam_pairs([(0, 4), (5, 8)], 8)
    with pytest.raises(ValueError, match="not inside"):
        seam_pairs([(0, 4), (4, 9)], 8)


def test_a_jump_at_a_window_edge_gives_a_ratio_well_above_one():
    source = _translating_video(FRAMES)
    layout = temporal_windows(FRAMES, WINDOW, OVERLAP)
    at_edge = pair_warp_errors(_with_jump(source, 8), source)  # between frames 7 and 8: window (0,8) ends
    in_middle = pair_warp_errors(_with_jump(source, 10), source)  # inside window (6,14)
    assert layout_seam_ratio(at_edge, layout) > 3
    assert layout_seam_ratio(in_middle, layout) < 0.5
    # through the evaluation report, with the source's own ratio as the reference
    report = evaluate_videos(source, _with_jump(source, 8), window_schedule=[layout])
    assert report.metrics["seam_ratio"] > 3 > report.metrics["seam_ratio_source"]
    assert "seam ratio" in report.table()


def test_a_constant_video_has_ratio_one():
    constant = torch.full((FRAMES, 3, 32, 32), 0.4)
    report = evaluate_videos(constant, constant, window_schedule=blend_schedule(FRAMES, WINDOW, OVERLAP, 10))
    assert report.metrics["warp_error"] == 0.0
    assert report.metrics["seam_ratio"] == 1.0 and report.metrics["seam_ratio_source"] == 1.0


def test_zero_inside_and_undefined_cases():
    layout = [(0, 8), (6, 14)]  # 14 frames: pairs 5, 6, 7 at the seam
    errors = [0.0] * 13
    errors[6] = 0.1
    assert layout_seam_ratio(errors, layout) == math.inf
    assert layout_seam_ratio([None] * 5 + [0.1] * 3 + [None] * 5, layout) is None  # no inside pair with pixels
    # a video that fits in one window has no seam: skipped, with a note
    short = _translating_video(num_frames=6)
    report = evaluate_videos(short, short, window_schedule=blend_schedule(6, WINDOW, OVERLAP, 3))
    assert report.metrics["seam_ratio"] is None and "no seams" in report.notes["seam_ratio"]
    with pytest.raises(ValueError, match="not inside"):  # a schedule for another frame count
        evaluate_videos(short, short, window_schedule=[[(0, 8), (6, 14)]])


def test_the_ratio_of_a_schedule_is_its_worst_layout():
    errors = [1.0] * (FRAMES - 1)
    shifted = temporal_windows(FRAMES, WINDOW, OVERLAP, offset=3)  # (0,8) (3,11) (9,17) (12,20)
    errors[9] = 5.0  # pair (9,10): inside (6,14) of the offset-0 tiling, in the overlap of the shifted one
    schedule = [temporal_windows(FRAMES, WINDOW, OVERLAP), shifted, temporal_windows(FRAMES, WINDOW, OVERLAP)]
    assert layout_seam_ratio(errors, schedule[0]) < 1
    worst = layout_seam_ratio(errors, shifted)
    assert worst > 1 and seam_ratio(errors, schedule) == worst


def test_the_mean_over_seeds_keeps_a_seam_and_averages_the_noise_away():
    layout = temporal_windows(FRAMES, WINDOW, OVERLAP)
    at_seam = seam_pairs(layout, FRAMES)
    generator = torch.Generator().manual_seed(0)
    seam_free = [(1 + 0.6 * torch.rand(FRAMES - 1, generator=generator)).tolist() for _ in range(64)]
    with_seam = [[e * (1.3 if s else 1.0) for e, s in zip(run, at_seam)] for run in seam_free]
    single = [layout_seam_ratio(run, layout) for run in seam_free]
    assert max(abs(r - 1) for r in single) > 0.05  # one run: noise of the order of the targets
    assert abs(layout_seam_ratio(mean_pair_errors(seam_free), layout) - 1) < 0.03
    assert layout_seam_ratio(mean_pair_errors(with_seam), layout) == pytest.approx(1.3, abs=0.04)
    # a pair without valid pixels in one run has none in the mean; runs must describe the same clip
    assert mean_pair_errors([[1.0, None, 3.0], [3.0, 2.0, 5.0]]) == [2.0, None, 4.0]
    with pytest.raises(ValueError, match="same number of frame pairs"):
        mean_pair_errors([[1.0, 2.0], [1.0]])
    with pytest.raises(ValueError, match="at least one run"):
        mean_pair_errors([])


def test_eval_command_reports_the_seam_ratio(tmp_path, capsys):
    from gen1.cli import main
    from gen1.media import write_video

    source = _translating_video(FRAMES)
    to_uint8 = lambda v: (v.permute(0, 2, 3, 1) * 255).round().to(torch.uint8).numpy()  # noqa: E731
    write_video(tmp_path / "src.mp4", to_uint8(source), 8)
    write_video(tmp_path / "out.mp4", to_uint8(_with_jump(source, 8)), 8)
    common = ["eval", "--source", str(tmp_path / "src.mp4"), "--output", str(tmp_path / "out.mp4")]
    fixed_windows = ["--window", "8", "--overlap", "2", "--fixed-windows"]
    assert main(common + fixed_windows + ["--json", str(tmp_path / "r.json")]) == 0
    metrics = json.loads((tmp_path / "r.json").read_text())["metrics"]
    assert metrics["seam_ratio"] > 3 and metrics["seam_ratio_source"] < 3
    assert "seam ratio" in capsys.readouterr().out
    assert main(common) == 0
    assert "no window schedule (--window)" in capsys.readouterr().out
    # shifted windows move every step: the tilings to score depend on the steps the edit ran (a default of 30
    # scored a 6-step edit of the bundled model on tilings it never used)
    assert main(common + ["--window", "8", "--overlap", "2"]) == 2
    assert "--window needs the edit's --steps" in capsys.readouterr().err
    assert main(common + ["--window", "8", "--overlap", "2", "--steps", "6"]) == 0


def test_eval_and_synth_help_shows_only_defaults_worth_telling():
    # argparse's ArgumentDefaultsHelpFormatter ended every option, required ones too, with "(default: None)"
    helps = {command: _help_of(command) for command in ("eval", "synth")}
    for text in helps.values():
        assert "(default: None)" not in text and "(default: False)" not in text
    assert "(default: dis)" in helps["eval"] and "(default: 16)" in helps["synth"]
    assert "(default: 0.0)" in helps["eval"]  # --start: a default of 0 is worth telling (0 == False in Python)


def _help_of(command: str) -> str:
    """What ``gen1 COMMAND --help`` prints."""
    import contextlib
    import io

    from gen1.cli import main

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer), contextlib.suppress(SystemExit):
        main([command, "--help"])
    return buffer.getvalue()
