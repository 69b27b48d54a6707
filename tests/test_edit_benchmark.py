"""gen1.eval.edit_benchmark: edit cases of synthetic scenes, the sweep of configurations, their scores, the
table and the pass/fail checks."""

from __future__ import annotations

import pytest
import torch

from gen1.eval.edit_benchmark import (GUIDANCE_SCALES, STRUCTURE_LEVELS, TEMPORAL_SCALES, configurations, format_table,
                                      run_benchmark, synthetic_edit_case, thresholds)

KNOBS = ("structure_level", "temporal_guidance_scale", "guidance_scale", "content")


def test_configurations_change_one_knob_of_the_baseline_each():
    runs = configurations(3.0)
    base = runs["base"]
    assert base == dict(structure_level=0.0, temporal_guidance_scale=1.0, guidance_scale=3.0, content="reference")
    changed = {name: [k for k in KNOBS if cfg[k] != base[k]] for name, cfg in runs.items() if name != "base"}
    assert all(len(knobs) == 1 for knobs in changed.values()), changed
    # every swept value appears once; the baseline's own value is not run twice
    assert {cfg["structure_level"] for cfg in runs.values()} == {float(t) for t in STRUCTURE_LEVELS}
    assert {cfg["guidance_scale"] for cfg in runs.values()} == set(GUIDANCE_SCALES)
    assert {cfg["temporal_guidance_scale"] for cfg in runs.values()} == set(TEMPORAL_SCALES)
    assert [name for name, cfg in runs.items() if cfg["content"] == "prompt"] == ["prompt"]
    assert len(configurations(2.0)) == len(runs) + 1  # a baseline w outside the sweep adds one run


def test_synthetic_edit_case_keeps_the_scene_and_takes_the_style_of_the_target():
    from gen1.synthetic import render, sample_edit_style, sample_scene, sample_style

    case = synthetic_edit_case(11, 12, frames=2, size=32)
    style = sample_edit_style(sample_style(11), 12)
    assert case.prompt == style.caption != sample_style(11).caption
    torch.testing.assert_close(case.ground_truth, render(sample_scene(11), style, 2, 32, 32)[0])
    torch.testing.assert_close(case.reference, render(sample_scene(12), style, 1, 32, 32)[0])
    assert not torch.allclose(case.source, case.ground_truth)
    rolled = synthetic_edit_case(11, 12, frames=2, size=32, scene_of=lambda seed: sample_scene(seed, max_roll=90))
    torch.testing.assert_close(rolled.depth, render(sample_scene(11, max_roll=90), style, 2, 32, 32)[1])
    with pytest.raises(ValueError, match="frames must be >= 1"):
        synthetic_edit_case(11, 12, frames=0)


def _result(psnr_by_level, *, style=0.95, warp=(0.1, 0.05), guidance=1.0) -> dict:
    """A benchmark result with chosen means: PSNR per structure level, style accuracy, warp error at w_t 0 / 1."""
    runs = configurations(guidance)
    means = {}
    for i, (name, cfg) in enumerate(runs.items()):
        means[name] = dict(psnr=20.0 + i / 100, ssim=0.5 + i / 100, style_accuracy=style, style_score=0.5 + i / 100,
                           warp_error=0.2 + i / 100)
    for level, value in zip(STRUCTURE_LEVELS, psnr_by_level):
        means["base" if level == 0 else f"ts={level}"]["psnr"] = value
    means["wt=0.0"]["warp_error"], means["base"]["warp_error"] = warp
    return dict(runs=runs, means=means, ground_truth_warp_error=0.01, num_edits=2, steps=3, guidance=guidance,
                first_edit=0)


def test_thresholds_judge_the_structure_gap_style_and_flicker():
    good = thresholds(_result((17.0, 16.0, 15.0, 13.5)))
    assert good["structure_gap_db"] == pytest.approx(3.5)
    assert good["structure_gap_ok"] and good["structure_monotonic"] and good["style_accuracy_ok"] and good["warp_ok"]
    assert good["warp_reduction"] == pytest.approx(0.5)
    small_gap = thresholds(_result((17.0, 16.0, 15.0, 14.5)))
    assert not small_gap["structure_gap_ok"] and small_gap["structure_monotonic"]
    assert not thresholds(_result((17.0, 17.5, 15.0, 13.0)))["structure_monotonic"]
    assert not thresholds(_result((17.0, 16.0, 15.0, 13.5), style=0.85))["style_accuracy_ok"]
    assert not thresholds(_result((17.0, 16.0, 15.0, 13.5), warp=(0.1, 0.08)))["warp_ok"]
    assert thresholds(_result((17.0, 16.0, 15.0, 14.5)), structure_gap_db=2.0)["structure_gap_ok"]


def test_format_table_puts_each_run_in_its_row():
    result = _result((17.0, 16.0, 15.0, 13.5), guidance=1.0)
    means = result["means"]
    lines = format_table(result).splitlines()

    def row(first_cell):
        (line,) = [line for line in lines if line.startswith(f"| {first_cell} |")]
        return [cell.strip() for cell in line.strip("|").split("|")][1:]

    assert row(7) == [f"{means['ts=7']['psnr']:.2f}", f"{means['ts=7']['ssim']:.3f}"]
    assert row("prompt (direct text, no prior)")[1] == f"{means['prompt']['style_score']:.3f}"
    assert row(0.5) == [f"{means['wt=0.5']['warp_error']:.5f}"]
    assert row("(ground-truth edit)") == ["0.01000"]
    assert row(7.5) == [f"{means['w=7.5']['psnr']:.2f}", f"{means['w=7.5']['style_accuracy']:.1%}"]
    assert lines[0].startswith("2 held-out edits, 3 DDIM steps")


def test_benchmark_scores_a_later_range_of_edits(bundled_pipe):
    """first_edit picks which cases are scored: edit 1 alone gives exactly score_case's numbers on case 1 (each
    configuration starts from the case's own noise), and the table names the range."""
    from functools import partial

    from gen1.demo.world import edit_case
    from gen1.eval.edit_benchmark import score_case

    case_at = partial(edit_case, frames=4)
    result = run_benchmark(bundled_pipe, case_at, num_edits=1, steps=1, guidance=1.0, progress=False, first_edit=1)
    alone = score_case(bundled_pipe, case_at(1), configurations(1.0), steps=1)
    for name, metrics in alone.items():
        assert result["means"][name] == pytest.approx(metrics)
    first = score_case(bundled_pipe, case_at(0), {"base": configurations(1.0)["base"]}, steps=1)
    assert first["base"]["psnr"] != pytest.approx(result["means"]["base"]["psnr"])
    assert format_table(result).startswith("1 held-out edits (cases 1-1),")
    with pytest.raises(ValueError, match="first_edit must be >= 0"):
        run_benchmark(bundled_pipe, case_at, num_edits=1, steps=1, guidance=1.0, first_edit=-1, progress=False)
    with pytest.raises(ValueError, match="num_edits and steps must be >= 1"):
        run_benchmark(bundled_pipe, case_at, num_edits=0, steps=1, guidance=1.0, progress=False)
