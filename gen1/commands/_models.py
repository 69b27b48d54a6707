"""Which model a command runs: a saved pipeline (``--model``) or the public checkpoints assembled on the spot.

Shared by the commands that load a pipeline, so a flag means the same everywhere:

* ``--model DIR``: a pipeline folder (``Gen1Pipeline.save_pretrained``; default: the bundled demo model);
* ``--base DIR --motion-adapter PATH --controlnet DIR [--depth-model PATH]``: the public-checkpoint route
  (:meth:`gen1.pipeline.Gen1Pipeline.from_animatediff`), the three named separately.

:func:`check_model_source` runs before any heavy work (files present, configs parsed and checked against each
other); :func:`load_model` then loads.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from gen1.commands._common import check_input_file, check_model_files, load_failure

PUBLIC_FLAGS = ("--base", "--motion-adapter", "--controlnet")


def add_model_arguments(group) -> None:
    group.add_argument("--model", help="pipeline directory (Gen1Pipeline.save_pretrained); default: the bundled model")
    group.add_argument("--base", metavar="DIR",
                       help="public route: a Stable Diffusion 1.x folder in diffusers layout (unet, vae, text_encoder, "
                       "tokenizer, scheduler), with --motion-adapter and --controlnet")
    group.add_argument("--motion-adapter", metavar="PATH",
                       help="public route: AnimateDiff motion modules (a MotionAdapter folder or mm_sd_v15_v2.ckpt)")
    group.add_argument("--controlnet", metavar="DIR", help="public route: a depth ControlNet folder (diffusers layout)")
    group.add_argument("--depth-model", metavar="PATH",
                       help="public route: the depth estimator (MiDaS .pt, or a DPT / Depth Anything folder); "
                       "without it, give --depth")


@dataclass
class ModelSource:
    """A saved pipeline folder, or the parts of the public route."""

    model_dir: Path | None = None
    base: Path | None = None
    motion_adapter: Path | None = None
    controlnet: Path | None = None
    depth_model: Path | None = None

    @property
    def is_public(self) -> bool:
        return self.base is not None

    def describe(self) -> str:
        return f"--model '{self.model_dir}'" if not self.is_public else f"--base '{self.base}'"


def resolve_model_dir(model: str | None) -> Path:
    """The pipeline directory to load, with clear errors for missing / unknown directories."""
    if model is None:
        from gen1.demo import bundled_model_dir

        return bundled_model_dir()  # FileNotFoundError naming the path if the package data is missing
    path = Path(model)
    if not path.exists():
        raise FileNotFoundError(f"--model directory not found: '{path}'")
    if not (path / "model_index.json").is_file():
        from gen1.model_folders import not_a_pipeline_hint

        raise ValueError(f"--model '{path}' is not a gen1 pipeline directory (no model_index.json): "
                         f"{not_a_pipeline_hint(path)}")
    return path


def check_model_source(args, *, user_depth: bool = False) -> ModelSource:
    """Check the model flags before anything heavy runs; returns what to load."""
    public = {flag: getattr(args, flag[2:].replace("-", "_"), None) for flag in PUBLIC_FLAGS}
    depth_model = getattr(args, "depth_model", None)
    if not any(public.values()):
        if depth_model is not None:
            raise ValueError("--depth-model belongs to the public route (--base, --motion-adapter, --controlnet)")
        model_dir = resolve_model_dir(args.model)
        check_model_files("--model", model_dir)
        from gen1.model_folders import check_edit_components

        check_edit_components("--model", model_dir, user_depth=user_depth)
        return ModelSource(model_dir=model_dir)
    if args.model is not None:
        raise ValueError("give either --model or --base/--motion-adapter/--controlnet, not both")
    missing = [flag for flag, value in public.items() if value is None]
    if missing:
        raise ValueError(f"the public route needs --base, --motion-adapter and --controlnet: {', '.join(missing)} "
                         "missing")
    check_input_file("--base", public["--base"], directory_ok=True)
    check_input_file("--motion-adapter", public["--motion-adapter"], directory_ok=True)
    check_input_file("--controlnet", public["--controlnet"], directory_ok=True)
    if depth_model is None and not user_depth:
        raise ValueError("the public route needs a depth estimator: give --depth-model (e.g. "
                         "dpt_hybrid-midas-501f0c75.pt) or your own --depth")
    if depth_model is not None:
        check_input_file("--depth-model", depth_model, directory_ok=True)
    from gen1.animatediff import check_base_folder, check_components

    base = check_base_folder(public["--base"])
    check_components(base, Path(public["--controlnet"]), Path(public["--motion-adapter"]))
    return ModelSource(base=base, motion_adapter=Path(public["--motion-adapter"]),
                       controlnet=Path(public["--controlnet"]),
                       depth_model=None if depth_model is None else Path(depth_model))


def unet_config_of(source: ModelSource) -> dict | None:
    """The UNet's config as the pipeline will see it (frame limits for --window checks), or None if unknown."""
    import json

    if source.is_public:
        from gen1.animatediff import ANIMATEDIFF_CLIP_LENGTH
        from gen1.temporal_layers import read_motion_adapter_config

        longest = read_motion_adapter_config(source.motion_adapter)["motion_max_seq_length"]
        return {"max_frames": longest, "clip_length": min(ANIMATEDIFF_CLIP_LENGTH, longest)}
    path = source.model_dir / "unet" / "config.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def load_model(source: ModelSource):
    """Load the pipeline; a failure is one line naming the flag and the path."""
    from gen1.pipeline import Gen1Pipeline

    try:
        if not source.is_public:
            return Gen1Pipeline.from_pretrained(source.model_dir)
        return Gen1Pipeline.from_animatediff(source.base, motion_adapter=source.motion_adapter,
                                             controlnet=source.controlnet, depth_estimator=source.depth_model)
    except Exception as error:  # configs were parsed and checked: say in one line what else is wrong
        flag, path = ("--model", source.model_dir) if not source.is_public else ("--base", source.base)
        raise load_failure(flag, path, error) from error
