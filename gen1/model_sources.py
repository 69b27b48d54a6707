"""Which model an edit runs: a saved pipeline (``--model``) or the public checkpoints assembled on the spot.

The library layer under ``gen1 edit``, ``gen1 serve`` and ``gen1 customize`` (their flags are named in messages,
as a user of either front end gives them):

* ``--model DIR|ORG/NAME``: a pipeline folder (``Gen1Pipeline.save_pretrained``; default: the bundled demo model);
* ``--base --motion-adapter --controlnet [--depth-model]``: the public-checkpoint route
  (:meth:`gen1.pipeline.Gen1Pipeline.from_animatediff`), the three named separately;
* ``--ip-adapter [--image-encoder]`` (reference images on the public route) and ``--lora``.

Every name is a local path or a Hub repo id (``ORG/NAME``, or ``ORG/NAME/path/in/repo`` for one file or folder of
a repo), fetched through huggingface_hub's cache (:mod:`gen1.hub`). :func:`check_model_source` runs before any
heavy work (names resolved, files present, configs parsed and checked against each other, adapters' shapes checked
against the base); :func:`load_model` then loads. Nothing here prints: what a front end may want to tell its user
goes to the ``report`` callback.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from gen1.checks import check_model_files, load_failure

PUBLIC_FLAGS = ("--base", "--motion-adapter", "--controlnet")


@dataclass
class ModelSource:
    """A saved pipeline folder, or the parts of the public route (local paths, Hub names resolved), and what is
    applied after loading (an IP-Adapter, a LoRA)."""

    model_dir: Path | None = None
    base: Path | None = None
    motion_adapter: Path | None = None
    controlnet: Path | None = None
    depth_model: Path | None = None
    label: str | None = None  # the name the user gave (a Hub name rather than its cache path)
    ip_adapter: Path | None = None
    image_encoder: Path | None = None
    ip_adapter_scale: float | None = None  # None: 1 for a new IP-Adapter, the saved scale for a saved one
    lora: Path | None = None
    inpaint_controlnet: Path | None = None  # public route: the inpainting ControlNet of masked edits
    ip_adapter_text_encoder: Path | None = None  # the CLIP text tower of the IP-Adapter's image encoder

    @property
    def is_public(self) -> bool:
        """Whether the model is assembled from public parts (``--base`` ...) rather than a saved folder."""
        return self.base is not None

    @property
    def route(self):
        """The route class the model takes (:mod:`gen1.routes`), from its parts or its folder, without loading it."""
        from gen1.routes import route_class  # lazy: torch and diffusers; the commands import this module to parse

        if self.is_public:
            return route_class({"controlnet": self.controlnet})
        index = json.loads((self.model_dir / "model_index.json").read_text(encoding="utf-8"))
        return route_class(index)

    def describe(self) -> str:
        flag, path = ("--model", self.model_dir) if not self.is_public else ("--base", self.base)
        return f"{flag} '{self.label or path}'"

    def recorded_defaults(self):
        """The size and guidance the model records (:mod:`gen1.model_defaults`), read from its folder without
        loading it: a saved pipeline's ``model_index.json``, or the public base's image size."""
        # lazy: keeps this module's import light (no torch when it loads)
        from gen1.model_defaults import base_folder_defaults, read_model_defaults

        return base_folder_defaults(self.base) if self.is_public else read_model_defaults(self.model_dir)


def resolve_model_dir(model: str | None) -> Path:
    """The pipeline directory to load (a local folder or a Hub repo), with clear errors for missing / unknown ones."""
    if model is None:
        from gen1.demo import bundled_model_dir  # lazy: keeps this module's import light (no torch when it loads)

        return bundled_model_dir()  # FileNotFoundError naming the path if the package data is missing
    from gen1.hub import hub_name, resolve_pipeline  # lazy: keeps this module's import light (no torch when it loads)

    path = Path(model)
    if not path.exists() and hub_name(model) is not None:
        return resolve_pipeline(model, flag="--model")
    if not path.exists():
        raise FileNotFoundError(f"--model directory not found: '{path}'")
    if not (path / "model_index.json").is_file():
        # lazy: keeps this module's import light (no torch when it loads)
        from gen1.model_folders import not_a_pipeline_hint

        raise ValueError(f"--model '{path}' is not a gen1 pipeline directory (no model_index.json): "
                         f"{not_a_pipeline_hint(path)}")
    return path


def image_unet_config(source: ModelSource) -> dict | None:
    """The config of the image UNet inside the model (the base's; a saved model records it), or None if unknown."""
    path = (source.base if source.is_public else source.model_dir) / "unet" / "config.json"
    if not path.is_file():
        return None
    config = json.loads(path.read_text(encoding="utf-8"))
    return config if source.is_public else config.get("unet_config")


def check_model_source(args, *, user_depth: bool = False) -> ModelSource:
    """Check the model flags before anything heavy runs; returns what to load.

    ``args``: any object with the model flags as attributes (``model``, ``base``, ``motion_adapter``,
    ``controlnet``, ``depth_model`` and, where a front end offers them, ``ip_adapter``, ``image_encoder``,
    ``ip_adapter_scale``, ``lora``, ``reference_image``): a parsed command line or a ``SimpleNamespace``.
    ``user_depth``: the edit brings its own depth (no estimator needed).
    """
    public = {flag: getattr(args, flag[2:].replace("-", "_"), None) for flag in PUBLIC_FLAGS}
    depth_model = getattr(args, "depth_model", None)
    inpaint = getattr(args, "inpaint_controlnet", None)
    if not any(public.values()):
        if depth_model is not None:
            raise ValueError("--depth-model belongs to the public route (--base, --motion-adapter, --controlnet)")
        if inpaint is not None:
            raise ValueError("--inpaint-controlnet belongs to the public route (--base, --motion-adapter, "
                             "--controlnet)")
        model_dir = resolve_model_dir(args.model)
        check_model_files("--model", model_dir)
        # lazy: keeps this module's import light (no torch when it loads)
        from gen1.model_folders import check_edit_components

        check_edit_components("--model", model_dir, user_depth=user_depth)
        source = ModelSource(model_dir=model_dir, label=args.model)
    else:
        source = _public_source(args, public, depth_model, user_depth)  # configs only, so far
    _check_ip_adapter(args, source)
    _check_ip_adapter_text_encoder(args, source)
    _check_lora(args, source)
    if source.is_public:  # every check passed: now the weights of the parts named on the Hub
        _public_parts(public, depth_model, weights=True, inpaint=inpaint)
    return source


def _public_source(args, public: dict, depth_model, user_depth: bool) -> ModelSource:
    if args.model is not None:
        raise ValueError("give either --model or --base/--motion-adapter/--controlnet, not both")
    missing = [flag for flag, value in public.items() if value is None]
    if missing:
        raise ValueError(f"the public route needs --base, --motion-adapter and --controlnet: {', '.join(missing)} "
                         "missing")
    if depth_model is None and not user_depth:
        raise ValueError("the public route needs a depth estimator: give --depth-model (e.g. "
                         "dpt_hybrid-midas-501f0c75.pt) or your own --depth")
    parts = _public_parts(public, depth_model, weights=False, inpaint=getattr(args, "inpaint_controlnet", None))
    return ModelSource(base=parts["base"], motion_adapter=parts["motion_adapter"], controlnet=parts["controlnet"],
                       depth_model=parts["depth_estimator"], label=public["--base"],
                       inpaint_controlnet=parts["inpaint_controlnet"])


def _public_parts(public: dict, depth_model, *, weights: bool, inpaint=None) -> dict:
    """The public route's parts as local folders (Hub names through the cache), checked against each other;
    with ``weights=False`` only their configs are fetched (the folders are the same either way)."""
    from gen1.animatediff import resolve_parts  # lazy: keeps this module's import light (no torch when it loads)

    flags = {"base": "--base", "motion_adapter": "--motion-adapter", "controlnet": "--controlnet",
             "depth_estimator": "--depth-model", "inpaint_controlnet": "--inpaint-controlnet"}
    return resolve_parts({"base": public["--base"], "motion_adapter": public["--motion-adapter"],
                          "controlnet": public["--controlnet"], "depth_estimator": depth_model,
                          "inpaint_controlnet": inpaint}, flags=flags, weights=weights)


def _check_ip_adapter(args, source: ModelSource) -> None:
    """``--ip-adapter`` / ``--image-encoder``: resolved, and their shapes checked against the base, before loading."""
    name, encoder = getattr(args, "ip_adapter", None), getattr(args, "image_encoder", None)
    scale = getattr(args, "ip_adapter_scale", None)
    if name is None:
        if encoder is not None:
            raise ValueError("--image-encoder belongs to --ip-adapter (the IP-Adapter's CLIP image encoder)")
        if scale is not None:
            if not _has_ip_adapter(source):
                raise ValueError(f"--ip-adapter-scale needs an IP-Adapter: give --ip-adapter; {source.describe()} "
                                 "holds none")
            source.ip_adapter_scale = scale  # the saved pipeline's adapter, at the scale asked for
        if (getattr(args, "reference_image", None) and source.route.references_through_ip_adapter
                and not _has_ip_adapter(source)):
            raise ValueError("--reference on the public route needs an IP-Adapter: give --ip-adapter (e.g. "
                             "h94/IP-Adapter/models/ip-adapter_sd15.safetensors)")
        return
    if not source.route.references_through_ip_adapter:
        raise ValueError(f"--ip-adapter does not apply to {source.describe()}, {source.route.description}: its "
                         "own content encoder takes --reference")
    # lazy: keeps this module's import light (no torch when it loads)
    from gen1.ip_adapter import check_ip_adapter_files, resolve_ip_adapter

    path, image_encoder = resolve_ip_adapter(name, encoder, flag="--ip-adapter", encoder_flag="--image-encoder")
    try:
        check_ip_adapter_files(path, image_encoder, image_unet_config(source) or {})
    except ValueError as error:
        raise ValueError(f"--ip-adapter '{name}' does not fit {source.describe()}: {error}") from None
    source.ip_adapter, source.image_encoder = path, image_encoder
    source.ip_adapter_scale = scale


def _check_ip_adapter_text_encoder(args, source: ModelSource) -> None:
    """``--ip-adapter-text-encoder``: an IP-Adapter to go with (given, or the saved pipeline's), resolved (configs
    first), its projection width equal to the image encoder's, before anything loads."""
    name = getattr(args, "ip_adapter_text_encoder", None)
    if name is None:
        return
    flag = "--ip-adapter-text-encoder"
    if source.ip_adapter is None and not _has_ip_adapter(source):
        raise ValueError(f"{flag} belongs to an IP-Adapter: give --ip-adapter; {source.describe()} holds none")
    # lazy: keeps this module's import light (no torch when it loads)
    from gen1.ip_adapter_text import check_widths, config_projection_dim, resolve_text_encoder

    encoder = source.image_encoder if source.ip_adapter is not None else source.model_dir / "image_encoder"
    folder = resolve_text_encoder(name, flag=flag, weights=False)
    if not isinstance(encoder, (str, Path)) or not (Path(encoder) / "config.json").is_file():
        raise ValueError(f"{flag}: no image encoder config to check it against at '{encoder}'")
    image_width = json.loads((Path(encoder) / "config.json").read_text(encoding="utf-8")).get("projection_dim", 512)
    try:
        check_widths(config_projection_dim(folder), image_width)
    except ValueError as error:
        raise ValueError(f"{flag} '{name}': {error}") from None
    source.ip_adapter_text_encoder = resolve_text_encoder(name, flag=flag)


def _has_ip_adapter(source: ModelSource) -> bool:
    """A saved public pipeline that holds an IP-Adapter (its UNet config records the adapter's shapes)."""
    if source.is_public:
        return False
    config = json.loads((source.model_dir / "unet" / "config.json").read_text(encoding="utf-8"))
    return bool(config.get("ip_adapter_shapes"))


def _check_lora(args, source: ModelSource) -> None:
    """``--lora``: resolved, and made for the base's text width (an SDXL LoRA on SD-1.5 is refused), before loading."""
    name = getattr(args, "lora", None)
    if name is None:
        return
    from gen1.adapters import check_lora_fits  # lazy: keeps this module's import light (no torch when it loads)
    from gen1.hub import LORA, resolve  # lazy: keeps this module's import light (no torch when it loads)

    config = image_unet_config(source) or {}
    path = resolve(name, LORA, flag="--lora")
    if config.get("cross_attention_dim") is not None:
        try:
            path = check_lora_fits(path, config["cross_attention_dim"])
        except (ValueError, OSError) as error:
            raise ValueError(f"--lora: {error}") from None
    source.lora = path


def unet_config_of(source: ModelSource) -> dict | None:
    """The UNet's config as the pipeline will see it (frame limits for --window checks), or None if unknown."""
    if source.is_public:
        # lazy: keeps this module's import light (no torch when it loads)
        from gen1.animatediff import ANIMATEDIFF_CLIP_LENGTH

        # lazy: keeps this module's import light (no torch when it loads)
        from gen1.temporal_layers import read_motion_adapter_config

        longest = read_motion_adapter_config(source.motion_adapter)["motion_max_seq_length"]
        return {"max_frames": longest, "clip_length": min(ANIMATEDIFF_CLIP_LENGTH, longest)}
    path = source.model_dir / "unet" / "config.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def load_model(source: ModelSource, report: Callable[[str], None] | None = None):
    """Load the pipeline and apply the IP-Adapter; a failure is one line naming the flag and the path.
    ``report(line)`` is told what was applied (a command prints it)."""
    report = report or (lambda line: None)
    from gen1.pipeline import Gen1Pipeline  # lazy: keeps this module's import light (no torch when it loads)

    try:
        if not source.is_public:
            pipe = Gen1Pipeline.from_pretrained(source.model_dir)
        else:
            pipe = Gen1Pipeline.from_animatediff(source.base, motion_adapter=source.motion_adapter,
                                                 controlnet=source.controlnet, depth_estimator=source.depth_model,
                                                 inpaint_controlnet=source.inpaint_controlnet)
    except Exception as error:  # configs were parsed and checked: say in one line what else is wrong
        flag, path = ("--model", source.model_dir) if not source.is_public else ("--base", source.base)
        raise load_failure(flag, path, error) from error
    if source.ip_adapter is not None:
        scale = 1.0 if source.ip_adapter_scale is None else source.ip_adapter_scale
        try:
            pipe.load_ip_adapter(source.ip_adapter, image_encoder=source.image_encoder, scale=scale)
        except (ValueError, OSError) as error:
            raise ValueError(f"--ip-adapter: {error}") from None
        report(f"applied IP-Adapter {source.ip_adapter} (scale {scale:g})")
    elif source.ip_adapter_scale is not None:  # a saved pipeline's own IP-Adapter
        # lazy: keeps this module's import light (no torch when it loads)
        from gen1.ip_adapter import set_ip_adapter_scale

        set_ip_adapter_scale(pipe.unet, source.ip_adapter_scale)
        report(f"IP-Adapter scale {source.ip_adapter_scale:g}")
    if source.ip_adapter_text_encoder is not None:
        try:
            pipe.load_ip_adapter_text_encoder(source.ip_adapter_text_encoder)
        except (ValueError, OSError) as error:
            raise ValueError(f"--ip-adapter-text-encoder: {error}") from None
        report(f"applied the IP-Adapter's text encoder {source.ip_adapter_text_encoder} (directions act in its "
               "image space)")
    return pipe
