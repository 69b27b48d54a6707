"""``gen1 customize --imagic``: fine-tune on one clip for a target text (Imagic / Dreamix) and write an adapter folder.

Example::

    gen1 customize --imagic --video clip.mp4 --prompt "pink mottled objects on a blue floor" --out pink/
    gen1 edit clip.mp4 -o pink.mp4 --adapter pink/ --imagic-scale 0.8

It is a mode of ``gen1 customize`` rather than a command of its own: it takes the same model flags (``--model``,
or the public route's parts), the same LoRA knobs (``--lora-rank``, ``--lora-alpha``, ``--include-temporal``,
``--steps``, ``--lr``, ``--seed``, ``--size``) and writes what ``gen1 edit --adapter`` applies; only its input (one
clip and a text instead of a folder of images) and its output (a folder, with the embeddings) differ.

Checkpoints go to ``OUT.work/checkpoints`` while it runs (removed once the adapter is written). Ctrl-C saves one
after the current step and exits with 130; the same command with ``--resume`` continues from it.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from gen1.checks import check_integer, check_number
from gen1.commands._models import model_parts

#: The flags of the images mode that --imagic does not take (it fine-tunes a LoRA on one clip).
IMAGES_ONLY = (("--images", "images"), ("--full", "full"), ("--batch-size", "batch_size"),
               ("--content-model", "content_model"))
#: The flags of --imagic that the images mode does not take.
IMAGIC_ONLY = (("--video", "video"), ("--max-frames", "max_frames"), ("--embedding-steps", "embedding_steps"),
               ("--embedding-lr", "embedding_lr"), ("--image-ratio", "image_ratio"),
               ("--structure-level", "structure_level"), ("--patience", "patience"),
               ("--gradient-checkpointing", "gradient_checkpointing"))


def add_imagic_arguments(parser) -> None:
    """The ``--imagic`` mode's flags on ``gen1 customize``'s parser."""
    group = parser.add_argument_group("Imagic: edit one clip (--imagic; docs/directions.md)")
    group.add_argument("--imagic", action="store_true",
                       help="fine-tune on one --video for the target --prompt (Imagic / Dreamix): optimise a content "
                       "embedding that reconstructs the clip, then a LoRA with it; --out is a folder for gen1 edit "
                       "--adapter DIR --imagic-scale ETA. --steps / --lr / --lora-rank are the LoRA phase's "
                       "(defaults 40 / 5e-3 / 4)")
    group.add_argument("--video", metavar="CLIP", help="--imagic: the clip to edit (at least 2 frames)")
    group.add_argument("--max-frames", type=int, help="--imagic: at most this many frames of --video (default 16)")
    group.add_argument("--embedding-steps", type=int, help="--imagic: steps of the embedding optimisation "
                       "(default 40)")
    group.add_argument("--embedding-lr", type=float,
                       help="--imagic: the embedding's learning rate, relative to its RMS (default 0.1)")
    group.add_argument("--image-ratio", type=float,
                       help="--imagic: the share of LoRA steps on one frame in image mode (default 0.25)")
    group.add_argument("--structure-level", type=float,
                       help="--imagic: t_s of the structure the clip is reconstructed at (default 0)")
    group.add_argument("--patience", type=int, help="--imagic: stop a phase after this many loss measurements "
                       "(every 5 steps) without improvement (default 4)")
    group.add_argument("--resume", action="store_true",
                       help="continue an interrupted run (Ctrl-C saves a checkpoint) from OUT.work, the folder of "
                       "checkpoints beside --out; also in the images mode")
    group.add_argument("--gradient-checkpointing", action="store_true", default=None,
                       help="--imagic: recompute activations in the backward pass instead of keeping them: the same "
                       "result in about half the memory, each step 1.2-1.7x the time (docs/directions.md); a run "
                       "resumes with or without it")


def refuse_imagic_flags(args) -> None:
    """``ValueError`` (one line) for a flag of --imagic given without it (the images mode would ignore it)."""
    for flag, name in IMAGIC_ONLY:
        value = getattr(args, name, None)
        if value is not None and value is not False:  # 0 is given too (0 == False)
            raise ValueError(f"{flag} is a flag of --imagic (one clip and a target text); the images mode does not "
                             "take it")


def _check_flags(args) -> None:
    """The flags of --imagic, checked before any file is read."""
    for flag, name in IMAGES_ONLY:
        if getattr(args, name, None) not in (None, False):
            raise ValueError(f"{flag} does not apply to --imagic (it fine-tunes a LoRA on one --video)")
    if args.video is None:
        raise ValueError("--imagic needs --video CLIP, the clip to edit")
    if args.prompt is None or not args.prompt.strip():
        raise ValueError("--imagic needs --prompt TEXT, the edit you want (the target text); it must not be empty")
    for flag, value in (("--steps", args.steps), ("--embedding-steps", args.embedding_steps),
                        ("--lora-rank", args.lora_rank), ("--patience", args.patience),
                        ("--threads", args.threads)):
        if value is not None:
            check_integer(flag, value, low=1)
    if args.max_frames is not None:
        check_integer("--max-frames", args.max_frames, low=2)
    for flag, value in (("--lr", args.lr), ("--embedding-lr", args.embedding_lr), ("--lora-alpha", args.lora_alpha)):
        if value is not None:
            check_number(flag, value, low=0, low_open=True)
    if args.image_ratio is not None:
        check_number("--image-ratio", args.image_ratio, low=0, high=1)
    if args.structure_level is not None:
        from gen1.settings import MAX_LEVEL  # lazy: keeps this module's import light

        check_number("--structure-level", args.structure_level, low=0, high=MAX_LEVEL)


def imagic_settings(args):
    """:class:`gen1.training.imagic.ImagicSettings` with the flags given."""
    from gen1.training.imagic import ImagicSettings  # lazy: keeps this module's import light (no torch when it loads)

    flags = dict(steps=args.steps, lr=args.lr, lora_rank=args.lora_rank, lora_alpha=args.lora_alpha,
                 include_temporal=args.include_temporal, seed=args.seed, embedding_steps=args.embedding_steps,
                 embedding_lr=args.embedding_lr, image_ratio=args.image_ratio, structure_level=args.structure_level,
                 patience=args.patience, gradient_checkpointing=args.gradient_checkpointing)
    return ImagicSettings(**{k: v for k, v in flags.items() if v is not None}).validate()


def _read_clip(args):
    """The clip's frames ``(F, 3, H, W)`` in [0, 1] at --size (short side) and at most --max-frames."""
    from gen1.commands._common import check_input_file  # lazy: keeps this module's import light
    from gen1.conditioning import video_to_tensor  # lazy: keeps this module's import light (no torch when it loads)
    from gen1.media import is_image_path, read_video  # lazy: keeps this module's import light (no torch when it loads)

    check_input_file("--video", args.video)
    if is_image_path(args.video):
        raise ValueError(f"--video '{args.video}' is a still image: Imagic fine-tunes on a clip of at least 2 frames "
                         "(for stills use gen1 customize --images)")
    clip = read_video(args.video, max_frames=args.max_frames or 16, size=args.size)
    return video_to_tensor(clip)[0]


def report_interrupted(stop: BaseException, work: Path) -> int:
    """Tell how a customisation (images or Imagic) stopped on Ctrl-C or SIGTERM and how to go on; the exit status.
    ``stop``: :class:`gen1.training.interrupt.TrainingInterrupted` (stopped after a step, with a checkpoint) or a
    ``KeyboardInterrupt`` (a second Ctrl-C, or one before training began)."""
    from gen1.training.interrupt import TrainingInterrupted  # lazy: keeps this module's import light

    if isinstance(stop, TrainingInterrupted):
        print(f"gen1 customize: interrupted after step {stop.step}; checkpoint saved: {stop.checkpoint}\n"
              "resume with: the same command and --resume", file=sys.stderr)
    else:
        print(f"gen1 customize: stopped at once (a second Ctrl-C, or one before training began); the last "
              f"checkpoint, if any, is in '{work}': resume with the same command and --resume", file=sys.stderr)
    return 130


def work_dir(out: Path) -> Path:
    """The folder of a customisation's checkpoints beside its ``--out`` (``OUT.work``)."""
    return out.with_name(out.name + ".work")


def check_work_dir(work: Path, *, resume: bool) -> Path:
    """``work``, the folder of a run's checkpoints beside its ``--out`` (Imagic's or the images mode's), checked
    before the model loads (minutes on a public model): a folder (an interrupted run left it: ``--resume`` continues
    it) or a new one, in a folder that takes new files; checkpoints of an earlier run without ``--resume`` are
    refused, and ``--resume`` with nothing to resume says it starts afresh."""
    from gen1.commands._common import check_output_file  # lazy: keeps this module's import light
    from gen1.training.checkpoint import list_checkpoints, refuse_earlier_checkpoints  # lazy: as above

    if work.exists() and not work.is_dir():
        raise ValueError(f"--out: '{work}', where gen1 customize keeps its checkpoints, is a file: move it away")
    check_output_file("--out", work / "probe" if work.is_dir() else work)  # takes new files
    if not resume:
        refuse_earlier_checkpoints(work, "the same command and --resume")
    elif not list_checkpoints(work):
        print(f"gen1 customize: nothing to resume in '{work}' (no checkpoint): starting afresh", file=sys.stderr)
    return work


def edit_command_for(args, adapter: Path, num_frames: int) -> str:
    """The ``gen1 edit`` command that applies the adapter just written to the clip it was fitted on: the same model
    flags, the same size and the same first ``num_frames`` frames, at eta 0.8, quoted for a POSIX shell."""
    from gen1.commands._models import model_flags  # lazy: keeps this module's import light
    from gen1.editing import EditRequest, edit_command  # lazy: keeps this module's import light (no torch)

    request = EditRequest(input=args.video, output="OUT.mp4", imagic_scale=0.8, size=args.size, max_frames=num_frames)
    return edit_command(request, [*model_flags(args), "--adapter", str(adapter)])


def run_imagic(args, check_model, size_from_model) -> int:
    """``gen1 customize --imagic`` (``check_model`` / ``size_from_model``: the command's own model checks)."""
    _check_flags(args)
    settings = imagic_settings(args)
    from gen1.commands._common import apply_threads  # lazy: keeps this module's import light
    from gen1.imagic import ADAPTER_FILE, EMBEDDINGS_FILE  # lazy: keeps this module's import light

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out '{args.out}' is a file: --imagic writes an adapter folder")
    if out.is_dir() and {p.name for p in out.iterdir()} - {ADAPTER_FILE, EMBEDDINGS_FILE}:
        raise ValueError(f"--out '{args.out}' is a folder with other files than an Imagic adapter's: it would be "
                         "replaced as a whole; choose a new path")
    work = check_work_dir(work_dir(out), resume=args.resume)
    source = check_model(args)
    if args.content_model is not None:
        raise ValueError("--content-model does not apply to --imagic: it uses the model's own content encoder")
    size_from_model(args, source)
    frames = _read_clip(args)  # the user's clip before the model loads: a bad file costs seconds
    apply_threads(args.threads)
    pipe, device = _load(args, source)
    from gen1.imagic import save_imagic_adapter  # lazy: keeps this module's import light (no torch when it loads)
    from gen1.training.imagic import ImagicRun  # lazy: keeps this module's import light (no torch when it loads)
    from gen1.training.interrupt import TrainingInterrupted  # lazy: keeps this module's import light

    run = ImagicRun(pipe, frames, args.prompt, settings, work, device=device, model=model_parts(source, args))
    try:
        result = run.run(resume=args.resume)
    except (TrainingInterrupted, KeyboardInterrupt) as stop:
        return report_interrupted(stop, work)
    path = save_imagic_adapter(pipe.unet, out, optimised=result.optimised, target=result.target,
                               info=result.info(args.prompt, pipe.route.description, settings))
    shutil.rmtree(work, ignore_errors=True)
    before, after = result.embedding_loss
    lora_before, lora_after = result.lora_loss
    print(f"Imagic on {frames.shape[0]} frames for '{args.prompt}': embedding loss {before:.4f} -> {after:.4f} "
          f"({result.steps['embedding']} steps{', stopped early' if result.stopped_early['embedding'] else ''}), "
          f"LoRA loss {lora_before:.4f} -> {lora_after:.4f} ({result.steps['lora']} steps"
          f"{', stopped early' if result.stopped_early['lora'] else ''}), {result.seconds:.0f} s; adapter {path}\n"
          f"edit with: {edit_command_for(args, path, frames.shape[0])}")
    return 0


def _load(args, source):
    """The pipeline on the device (the depth estimator --depth-model names, when given)."""
    import torch  # lazy: torch is heavy and only this path needs it

    from gen1.model_sources import load_model  # lazy: keeps this module's import light (no torch when it loads)

    pipe = load_model(source, report=print)
    if args.depth_model is not None and not source.is_public:  # a saved pipeline, another estimator
        from gen1.depth import load_depth_estimator  # lazy: keeps this module's import light
        from gen1.hub import DEPTH_MODEL, resolve  # lazy: keeps this module's import light

        pipe.depth_estimator = load_depth_estimator(resolve(args.depth_model, DEPTH_MODEL, flag="--depth-model"))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device), device
