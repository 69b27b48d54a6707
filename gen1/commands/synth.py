"""``gen1 synth``: write procedural sample clips with exact depth and a ground-truth edit, to look at.

Per clip ``NAME`` (``synth_00000`` ...): ``NAME.mp4`` (RGB), ``NAME_depth.mp4`` (inverse depth ``1/z``
min-max normalised over the clip, white = near, grey-scale), ``NAME.txt`` (caption), ``NAME_edit.mp4`` and
``NAME_edit.txt`` (the same scene in another style: the ground-truth edit). See docs/synthetic.md.
"""

from __future__ import annotations

from pathlib import Path

from gen1.commands._common import DefaultsHelpFormatter


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "synth",
        help="write synthetic clips (video, depth video, caption, ground-truth edit)",
        description=(
            "Render procedural 3D scenes (deterministic by seed): RGB video, depth video, caption, and the "
            "ground-truth edit (same geometry and motion, other style) with its caption."
        ),
        formatter_class=DefaultsHelpFormatter,
    )
    parser.add_argument("--out", required=True, help="output directory (created if missing)")
    parser.add_argument("--num", type=int, default=4, help="number of clips")
    parser.add_argument("--frames", type=int, default=16, help="frames per clip")
    parser.add_argument("--size", type=int, default=128, help="frame height and width in pixels")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first clip (clip i uses seed + i)")
    parser.add_argument("--fps", type=float, default=8.0, help="frame rate of the written videos")
    parser.add_argument("--device", default="cpu", help="torch device to render on")
    parser.set_defaults(func=run)


def run(args) -> int:
    from tqdm import tqdm  # lazy: tqdm is heavy and only this path needs it

    from gen1.media import write_video  # lazy: keeps this module's import light (no torch when it loads)

    # lazy: keeps this module's import light (no torch when it loads)
    from gen1.synthetic import inverse_depth_for_viewing, sample_clip

    for name, low in (("num", 1), ("frames", 1), ("size", 8)):
        if getattr(args, name) < low:
            raise ValueError(f"--{name} must be >= {low}, got {getattr(args, name)}")
    if args.fps <= 0:
        raise ValueError(f"--fps must be > 0, got {args.fps}")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out exists and is not a directory: '{out}'")
    out.mkdir(parents=True, exist_ok=True)

    from gen1.atomic import atomic_path  # lazy: keeps this module's import light (no torch when it loads)

    def write_text(path: Path, text: str) -> None:
        with atomic_path(path) as tmp:
            tmp.write_text(text + "\n")

    for index in tqdm(range(args.num), desc="synth", unit="clip"):
        seed = args.seed + index
        clip = sample_clip(seed, args.frames, args.size, args.size, device=args.device)
        name = f"synth_{seed:05d}"
        write_video(out / f"{name}.mp4", clip.frames.cpu(), args.fps)
        depth_view = inverse_depth_for_viewing(clip.depth).expand(-1, 3, -1, -1).cpu()
        write_video(out / f"{name}_depth.mp4", depth_view, args.fps)
        write_text(out / f"{name}.txt", clip.caption)
        write_video(out / f"{name}_edit.mp4", clip.edit_frames.cpu(), args.fps)
        write_text(out / f"{name}_edit.txt", clip.edit_caption)
    print(f"wrote {args.num} clips to {out}")
    return 0
