"""``gen1 eval``: score an edited video against its source (and a ground-truth edit, for synthetic clips).

Prints a table and optionally writes the report as JSON (atomically). Metrics that need a model that was
not given (CLIP, depth) or a ground truth are skipped with a note. See docs/synthetic.md for definitions.
"""

from __future__ import annotations

import json
from pathlib import Path

from gen1.checks import check_integer, check_model_files, errors_naming, load_failure
from gen1.commands._common import (
    DefaultsHelpFormatter,
    add_threads_argument,
    apply_threads,
    check_input_file,
    check_output_file,
    refuse_overwriting_inputs,
)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="score an edited video: warp error, CLIP consistency, depth fidelity, PSNR/SSIM vs ground truth",
        description=(
            "Evaluate OUTPUT as an edit of SOURCE. Warp error (flow of the source, Lai et al. 2018) always; "
            "CLIP frame/prompt consistency with --clip-model; depth fidelity with --depth-model; PSNR, SSIM and "
            "style accuracy with --gt. Output and ground truth must have the source's frame count; other frame "
            "sizes are resized to the source's."
        ),
        formatter_class=DefaultsHelpFormatter,
    )
    parser.add_argument("--source", required=True, help="source video")
    parser.add_argument("--output", required=True, help="edited video to score")
    parser.add_argument("--prompt", default=None, help="text prompt of the edit (for CLIP prompt consistency)")
    parser.add_argument("--gt", default=None, help="ground-truth edit video (synthetic clips, see `gen1 synth`)")
    parser.add_argument("--clip-model", default=None, help="directory of a transformers CLIPModel + tokenizer")
    parser.add_argument("--depth-model", default=None, help="depth estimator name or path (gen1.depth)")
    parser.add_argument("--flow", default="dis", choices=("dis", "farneback"), help="OpenCV optical flow method")
    parser.add_argument("--max-frames", type=int, default=None, help="use only the first N frames of each video")
    selection = parser.add_argument_group(
        "the frames the edit read: an edit of part of the source (gen1 edit --start/--duration/--fps) is scored "
        "against that part; give the edit's values and the source (and --gt) are read as the edit read them")
    selection.add_argument("--start", type=float, default=0.0, help="the edit's --start, in seconds")
    selection.add_argument("--duration", type=float, default=None, help="the edit's --duration, in seconds")
    selection.add_argument("--fps", type=float, default=None, help="the edit's --fps")
    windows = parser.add_argument_group("seam ratio (long edits): the temporal windows the edit used")
    windows.add_argument("--window", type=int, default=None,
                         help="frames per window the edit used (its --window; when it gave none, its model's clip "
                              "length); without it no seam ratio is reported")
    windows.add_argument("--overlap", type=int, default=None, help="the edit's --overlap (default: window // 4)")
    windows.add_argument("--steps", type=int, default=None,
                         help="denoising steps the edit ran (its --steps, or its model's default: 6 for the bundled "
                              "model; with --strength below 1, the steps that ran); needed with --window unless "
                              "--fixed-windows, since shifted windows move every step")
    windows.add_argument("--fixed-windows", action="store_true", help="the edit kept its windows fixed (no shift)")
    parser.add_argument("--device", default="cpu", help="torch device for the CLIP and depth models")
    parser.add_argument("--json", default=None, help="write the report to this JSON file")
    add_threads_argument(parser)
    parser.set_defaults(func=run)


def _check_clip_model(path: str) -> None:
    """A transformers CLIPModel directory with readable files (a gen1 content encoder is not one)."""
    check_input_file("--clip-model", path, directory_ok=True)
    config_path = Path(path) / "config.json"
    if not Path(path).is_dir() or not config_path.is_file():
        raise ValueError(f"--clip-model '{path}' is not a transformers CLIPModel directory (no config.json)")
    check_model_files("--clip-model", path)
    if json.loads(config_path.read_text(encoding="utf-8")).get("_class_name") == "ContentEncoder":
        raise ValueError(f"--clip-model '{path}' is a gen1 content encoder (a pipeline component), not a "
                         "transformers CLIPModel directory; give a CLIP checkpoint saved with save_pretrained")


def _check_arguments(args) -> None:
    for flag, value in (("--source", args.source), ("--output", args.output), ("--gt", args.gt)):
        check_input_file(flag, value)
    if args.max_frames is not None:
        check_integer("--max-frames", args.max_frames, low=1)
    if args.threads is not None:
        check_integer("--threads", args.threads, low=1)
    if args.clip_model:
        _check_clip_model(args.clip_model)
    if args.json is not None:
        refuse_overwriting_inputs({"--json": args.json},
                                  {"--source": args.source, "--output": args.output, "--gt": args.gt})
        check_output_file("--json", args.json)


def run(args) -> int:
    from gen1.eval.evaluate import evaluate_videos  # lazy: keeps this module's import light (no torch when it loads)
    from gen1.media import read_video  # lazy: keeps this module's import light (no torch when it loads)

    _check_arguments(args)
    apply_threads(args.threads)
    videos = {}
    as_the_edit_read = dict(start=args.start, duration=args.duration, target_fps=args.fps)
    for flag, path in (("--source", args.source), ("--output", args.output), ("--gt", args.gt)):
        if path is not None:
            with errors_naming(flag):  # the output is the edit's frames as written; the others as the edit read
                videos[flag] = read_video(path, max_frames=args.max_frames,
                                          **({} if flag == "--output" else as_the_edit_read))
    source, output, gt = videos["--source"], videos["--output"], videos.get("--gt")
    _check_frame_counts(videos)

    clip_scorer = None
    if args.clip_model:
        from gen1.eval.clip_metrics import ClipScorer  # lazy: keeps this module's import light (no torch when it loads)

        try:
            clip_scorer = ClipScorer.from_pretrained(args.clip_model, device=args.device)
        except Exception as error:  # its files parsed (_check_clip_model): say in one line what else is wrong
            raise load_failure("--clip-model", args.clip_model, error) from error
    depth_estimator = None
    if args.depth_model:
        from gen1.depth import load_depth_estimator  # lazy: keeps this module's import light (no torch when it loads)

        try:
            depth_estimator = load_depth_estimator(args.depth_model, device=args.device)
        except Exception as error:
            raise load_failure("--depth-model", args.depth_model, error) from error

    report = evaluate_videos(
        source.frames,
        output.frames,
        prompt=args.prompt,
        ground_truth=None if gt is None else gt.frames,
        clip_scorer=clip_scorer,
        depth_estimator=depth_estimator,
        flow_method=args.flow,
        window_schedule=_window_schedule(args, output.frames.shape[0]),
    )
    report.info.update(source=str(args.source), output=str(args.output), gt=args.gt,
                       clip_model=args.clip_model, depth_model=args.depth_model)
    print(report.table())
    if args.json:
        report.save_json(args.json)
        print(f"wrote {args.json}")
    return 0


def _check_frame_counts(videos: dict) -> None:
    """Output and ground truth must have the source's frame count; a mismatch says how to compare the part they
    share (``--max-frames``)."""
    counts = {flag: video.num_frames for flag, video in videos.items()}
    if len(set(counts.values())) > 1:
        shared = min(counts.values())
        listed = ", ".join(f"{flag} {count}" for flag, count in counts.items())
        raise ValueError(f"the videos have different frame counts ({listed}); they must match: for an edit of "
                         "part of the source give its --start/--duration/--fps, so the source is read as the edit "
                         f"read it; or give --max-frames {shared} to compare the first {shared} frames of each")


def _window_schedule(args, num_frames: int):
    """Where the edit's windows met at every step (:func:`gen1.windows.blend_schedule`), or None without
    ``--window``."""
    if args.window is None:
        return None
    from gen1.windows import blend_schedule  # lazy: keeps this module's import light (no torch when it loads)

    steps = args.steps
    if steps is None and not args.fixed_windows:
        raise ValueError("--window needs the edit's --steps as well (the steps it ran: 6 by default for the bundled "
                         "model, 30 for a model that records none): its windows shift every step, so the tilings "
                         "to score depend on it")
    if steps is None:
        steps = 1  # fixed windows: one tiling, whatever the step count
    if steps < 1:
        raise ValueError(f"--steps must be >= 1, got {steps}")
    overlap = args.window // 4 if args.overlap is None else args.overlap
    return blend_schedule(num_frames, args.window, overlap, steps, shift=not args.fixed_windows)
