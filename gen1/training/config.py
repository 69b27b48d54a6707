"""Typed training configuration: dataclasses, YAML loading and ``key=value`` command-line overrides.

One YAML file per training preset (``gen1/configs/*.yaml``); every field has a typed default here, so a
preset only lists what differs. Unknown keys -- in the YAML or in an override -- raise a ``ValueError``
naming the key and the valid ones: a misspelt option must never be silently ignored.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

STAGES = (1, 2, 3, 4)  # the paper's training stages (DESIGN.md, "Training recipe")
TRAINABLE_CHOICES = ("temporal", "all", "image")
LR_SCHEDULES = ("constant", "constant_with_warmup", "cosine", "linear")
MIXED_PRECISION = ("no", "fp16", "bf16")
DISTRIBUTED = ("ddp", "fsdp")
DATA_SOURCES = ("shards", "synthetic")
CONTENT_FRAMES = ("all", "one")


@dataclass
class ModelConfig:
    """Which network is trained and which of its parameters move."""

    base: str = ""  # SD directory (unet/ vae/ scheduler/), a gen1 pipeline directory, or a VideoUNet directory
    structure_channels: int = 1
    # true: the model takes inpainting input (gen1.unet.VideoUNet.inpainting_input); a base without it gets its
    # input channels added at zero (VideoUNet.with_inpainting_input), which is how a trained model learns masked edits
    inpainting_input: bool = False
    max_frames: int = 32
    content_dim: Optional[int] = None  # None: taken from the shards' index (CLIP embedding size)
    trainable: str = "temporal"  # temporal = VideoUNet.new_layers_parameters(); image = all but temporal layers; all
    gradient_checkpointing: bool = False
    temporal: dict = field(default_factory=dict)  # extra keyword arguments for the temporal layers
    # Frozen encoders, needed by data.source=synthetic and by validation samples: a directory holding vae/
    # (SD or gen1 pipeline) or a VAE folder itself; a gen1 ContentEncoder or transformers CLIP folder.
    vae: str = ""  # "" = model.base (its vae/)
    content_encoder: str = ""  # "" = MODEL.base/content_encoder
    # Only for the export (OUTPUT/export is an editing pipeline): a MiDaS .pt, a DPT / Depth Anything folder or a
    # gen1 DepthEstimator folder, e.g. the --depth-model of `gen1 preprocess`. "" = MODEL.base/depth_estimator if any.
    depth_estimator: str = ""


@dataclass
class SyntheticDataConfig:
    """``data.source: synthetic``: clips rendered on the fly by :mod:`gen1.synthetic`, encoded each step.

    Training uses the scene seeds ``seed_offset .. seed_offset + num_scenes - 1`` and nothing else, so any
    seed outside that range is guaranteed unseen (the default validation scene is ``seed_offset +
    num_scenes``). Item ``i < num_scenes`` is the video of seed ``seed_offset + i``; item
    ``num_scenes + i`` is the 1-frame image of the same scene (its first frame).
    """

    frames: int = 8  # frames per video clip (images are 1-frame renders)
    size: int = 64  # square render size in pixels (a multiple of the VAE factor, 8)
    seed_offset: int = 0  # first training scene seed
    num_scenes: int = 10_000  # number of distinct training scene seeds
    content_frames: str = "all"  # all: CLIP-embed every frame (as preprocess); one: one drawn frame per clip
    encode_batch: int = 16  # frames per VAE / content-encoder forward


@dataclass
class DataConfig:
    """Where training clips come from and how batches are put together."""

    source: str = "shards"
    shards: str = ""  # directory holding index.json and the shard files (gen1 preprocess)
    batch_size: int = 2  # clips per process per micro-step (images + videos together)
    image_ratio: float = 0.0  # fraction of each batch that is single images (1-frame clips, image mode); 0 suits
    # the default model.trainable (temporal), which images do not train
    num_workers: int = 0
    synthetic: SyntheticDataConfig = field(default_factory=SyntheticDataConfig)


@dataclass
class DiffusionConfig:
    """The training objective: targets, conditioning dropout and structure levels."""

    prediction_type: Optional[str] = None  # None: follow the base scheduler's config (epsilon / v_prediction)
    content_dropout: float = 0.1  # probability of replacing the content with gen1.content.null_content
    use_structure: bool = True  # False (stages 1-2): the structure channels are zeros
    structure_level_min: float = 0.0  # t_s is drawn uniformly from the integers min..max
    structure_level_max: float = 0.0
    # a model with inpainting input (model.inpainting_input): the share of samples given a region to draw and the
    # rest of the clip as known latents; the others are told nothing is known, as an edit without a mask tells it
    inpainting_mask_probability: float = 0.5


@dataclass
class OptimConfig:
    lr: float = 1e-4
    weight_decay: float = 0.0
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    max_grad_norm: float = 1.0
    lr_schedule: str = "constant_with_warmup"
    warmup_steps: int = 0


@dataclass
class EMAConfig:
    enabled: bool = True
    decay: float = 0.9999
    warmup: bool = False  # diffusers' EMA warm-up (decay grows with the step count)


@dataclass
class TrainConfig:
    """Loop settings: length, precision, accumulation, distribution, checkpoints and logging."""

    output_dir: str = "runs/gen1"
    max_steps: int = 1000  # optimizer steps
    grad_accum: int = 1
    mixed_precision: str = "no"
    seed: int = 0
    distributed: str = "ddp"
    # DDP's flag; None: decided from the run (gen1.training.trainer.find_unused_parameters): true only when the
    # temporal layers train and a process's micro-batch can hold images only (image mode gates them off)
    find_unused_parameters: Optional[bool] = None
    checkpoint_every: int = 500
    keep_checkpoints: int = 3
    resume: Optional[str] = None  # None, "latest", or a checkpoint directory
    log_every: int = 10
    tensorboard: bool = True
    export: bool = True  # save the final VideoUNet (save_pretrained + save_new_layers)


@dataclass
class ValidationConfig:
    """Every ``every`` steps (0 = off): a held-out loss with fixed noise, and (``samples``) a short
    ``Gen1Pipeline`` run on a held-out clip, written to ``OUTPUT/samples/`` and TensorBoard. EMA weights."""

    every: int = 0
    samples: bool = True
    num_inference_steps: int = 10
    guidance_scale: float = 3.0
    structure_level: float = 0.0
    seed: int = 0  # noise of the sample
    scene_seed: Optional[int] = None  # synthetic source: None = data.synthetic.seed_offset + num_scenes
    size: int = 0  # sample size in pixels (square); 0 = the data's size
    mp4: bool = True  # also write an mp4 of the sample beside the PNG strip


@dataclass
class Config:
    """A complete training run."""

    stage: int = 2
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    ema: EMAConfig = field(default_factory=EMAConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)

    def validate(self) -> "Config":
        """Check value ranges and choices; raise ``ValueError`` naming the field."""
        from gen1.settings import MAX_LEVEL  # lazy: keeps this module's import light (no torch when it loads)

        if self.stage not in STAGES:
            raise ValueError(f"stage must be one of {', '.join(map(str, STAGES))} (the paper's training stages), "
                             f"got {self.stage!r}")
        self._validate_temporal()
        self._validate_output_dir()
        workers, cores = self.data.num_workers, os.cpu_count() or 1
        if not isinstance(workers, int) or not 0 <= workers <= cores:
            raise ValueError(f"data.num_workers must be an integer from 0 to {cores} (this machine's CPU cores), "
                             f"got {workers!r}")
        _choice("model.trainable", self.model.trainable, TRAINABLE_CHOICES)
        _choice("optim.lr_schedule", self.optim.lr_schedule, LR_SCHEDULES)
        _choice("train.mixed_precision", self.train.mixed_precision, MIXED_PRECISION)
        _choice("train.distributed", self.train.distributed, DISTRIBUTED)
        _choice("data.source", self.data.source, DATA_SOURCES)
        if self.diffusion.prediction_type is not None:
            _choice("diffusion.prediction_type", self.diffusion.prediction_type, ("epsilon", "v_prediction"))
        if not 0.0 <= self.data.image_ratio <= 1.0:
            raise ValueError(f"data.image_ratio must be in [0, 1], got {self.data.image_ratio}")
        if self.model.trainable == "temporal" and self.data.image_ratio > 0:
            raise ValueError(f"data.image_ratio must be 0 when model.trainable is 'temporal', got "
                             f"{self.data.image_ratio}: image samples run in image mode, with the temporal layers "
                             "gated off, so they would train nothing")
        if not 0.0 <= self.ema.decay < 1.0:
            raise ValueError(f"ema.decay must be in [0, 1), got {self.ema.decay}")
        for name in ("content_dropout", "inpainting_mask_probability"):
            if not 0.0 <= getattr(self.diffusion, name) <= 1.0:
                raise ValueError(f"diffusion.{name} must be in [0, 1], got {getattr(self.diffusion, name)}")
        lo, hi = self.diffusion.structure_level_min, self.diffusion.structure_level_max
        for name, value in (("structure_level_min", lo), ("structure_level_max", hi)):
            if float(value) != int(value):  # levels are drawn from the integers min..max
                raise ValueError(f"diffusion.{name} must be a whole number (t_s is drawn from the integers "
                                 f"min..max), got {value}")
        if not 0 <= lo <= hi <= MAX_LEVEL:
            raise ValueError(f"diffusion.structure_level_min/max must satisfy 0 <= min <= max <= {MAX_LEVEL}, "
                             f"got {lo}, {hi}")
        for name in ("data.batch_size", "train.max_steps", "train.grad_accum", "train.checkpoint_every",
                     "train.log_every", "train.keep_checkpoints"):
            value = get_field(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.optim.lr <= 0:
            raise ValueError(f"optim.lr must be positive, got {self.optim.lr}")
        self._validate_optim()
        if not self.model.base:
            raise ValueError("model.base is required: a Stable Diffusion or gen1 model directory")
        if self.model.depth_estimator and not Path(self.model.depth_estimator).exists():
            raise ValueError(f"model.depth_estimator {self.model.depth_estimator!r} does not exist (a MiDaS .pt file, "
                             "or a DPT / Depth Anything / gen1 DepthEstimator folder)")
        self._validate_encoders()
        if self.data.source == "shards" and not self.data.shards:
            raise ValueError("data.shards is required when data.source is 'shards'")
        self._validate_synthetic()
        if self.validation.every < 0:
            raise ValueError(f"validation.every must be >= 0, got {self.validation.every}")
        if self.validation.num_inference_steps < 1:
            raise ValueError(f"validation.num_inference_steps must be >= 1, got {self.validation.num_inference_steps}")
        if not 0 <= self.validation.structure_level <= MAX_LEVEL:
            raise ValueError(f"validation.structure_level must be in [0, {MAX_LEVEL}], got "
                             f"{self.validation.structure_level}")
        if self.validation.size < 0 or self.validation.size % 8:
            raise ValueError(f"validation.size must be 0 or a positive multiple of 8, got {self.validation.size}")
        return self

    def _validate_optim(self) -> None:
        """AdamW's and the LR schedule's ranges, named by key before any data or model loads."""
        optim = self.optim
        for name in ("beta1", "beta2"):
            if not 0.0 <= getattr(optim, name) < 1.0:
                raise ValueError(f"optim.{name} must be in [0, 1), got {getattr(optim, name)}")
        for name in ("weight_decay", "max_grad_norm"):
            if getattr(optim, name) < 0:
                raise ValueError(f"optim.{name} must be >= 0, got {getattr(optim, name)}")
        if optim.eps <= 0:
            raise ValueError(f"optim.eps must be positive, got {optim.eps}")
        if optim.warmup_steps < 0:
            raise ValueError(f"optim.warmup_steps must be >= 0, got {optim.warmup_steps}")

    def _validate_encoders(self) -> None:
        """``model.vae`` and ``model.content_encoder``, when given, must exist (and the VAE be one): they are
        needed by synthetic data, validation samples and the export, which a run otherwise reaches only at its end."""
        from gen1.training.components import vae_folder  # lazy: keeps this module's import light

        vae, content = self.model.vae, self.model.content_encoder
        if vae and not Path(vae).exists():
            raise ValueError(f"model.vae {vae!r} does not exist (a Stable Diffusion or gen1 pipeline folder, or a VAE "
                             "folder)")
        if vae and vae_folder(vae) is None:
            raise ValueError(f"model.vae {vae!r} has no vae/config.json (expected a Stable Diffusion or gen1 pipeline "
                             "folder, or a VAE folder)")
        if content and not Path(content).exists():
            raise ValueError(f"model.content_encoder {content!r} does not exist (a gen1 ContentEncoder or transformers "
                             "CLIP folder)")

    def _validate_temporal(self) -> None:
        """``model.temporal`` holds only the temporal-layer arguments a VideoUNet takes (a typo would otherwise reach
        the model's constructor as a TypeError after the data was loaded)."""

        from gen1.unet import VideoUNet  # lazy: torch and diffusers, needed only to check this table

        known = sorted(name for name in inspect.signature(VideoUNet.__init__).parameters
                       if name.startswith("temporal_"))
        unknown = sorted(set(self.model.temporal or {}) - set(known))
        if unknown:
            raise ValueError(f"model.temporal: unknown key(s) {', '.join(unknown)}; the temporal layers take "
                             f"{', '.join(known)}")

    def _validate_output_dir(self) -> None:
        """``train.output_dir`` must not be, hold or lie inside an input: a run writes checkpoints, samples and an
        export there, and must never write into the data or a model it reads (the bundled one included)."""
        output = Path(self.train.output_dir).expanduser().resolve()
        inputs = {"data.shards": self.data.shards, "model.base": self.model.base,
                  "model.depth_estimator": self.model.depth_estimator, "model.content_encoder":
                  self.model.content_encoder}
        for name, value in inputs.items():
            if not value:
                continue
            path = Path(value).expanduser().resolve()
            if output == path or output.is_relative_to(path) or path.is_relative_to(output):
                relation = ("is" if output == path else "is inside" if output.is_relative_to(path) else "holds")
                raise ValueError(f"train.output_dir '{self.train.output_dir}' {relation} {name} '{value}': a run "
                                 "writes there; choose an output folder apart from every input")
        for folder, what in ((output, "train.output_dir"), (output / "checkpoints", "its checkpoints/")):
            if folder.exists() and not folder.is_dir():
                raise ValueError(f"{what} '{folder}' is a file, not a folder: a run keeps its checkpoints there; "
                                 "move the file or choose another output folder")

    def _validate_synthetic(self) -> None:
        syn = self.data.synthetic
        _choice("data.synthetic.content_frames", syn.content_frames, CONTENT_FRAMES)
        for name in ("frames", "size", "num_scenes", "encode_batch"):
            value = getattr(syn, name)
            if value < 1:
                raise ValueError(f"data.synthetic.{name} must be a positive integer, got {value!r}")
        if syn.size % 8:
            raise ValueError(f"data.synthetic.size must be a multiple of 8, got {syn.size}")
        if syn.seed_offset < 0:
            raise ValueError(f"data.synthetic.seed_offset must be >= 0, got {syn.seed_offset}")
        if self.data.source == "synthetic" and syn.frames > self.model.max_frames:
            raise ValueError(f"data.synthetic.frames ({syn.frames}) exceeds model.max_frames ({self.model.max_frames})")
        seed = self.validation.scene_seed
        if self.data.source == "synthetic" and seed is not None and 0 <= seed - syn.seed_offset < syn.num_scenes:
            raise ValueError(f"validation.scene_seed {seed} lies in the training seed range [{syn.seed_offset}, "
                             f"{syn.seed_offset + syn.num_scenes}): it would not be held out")

    @property
    def held_out_seed(self) -> int:
        """The synthetic validation scene: ``validation.scene_seed`` or the first seed after the training range."""
        seed = self.validation.scene_seed
        return self.data.synthetic.seed_offset + self.data.synthetic.num_scenes if seed is None else seed


def _choice(name: str, value: Any, choices: tuple) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")


def _field_types(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _coerce(name: str, value: Any, annotation: Any) -> Any:
    """Convert a YAML value to the declared field type, or raise ``ValueError`` naming the field."""
    origin = typing.get_origin(annotation)
    if origin is typing.Union:  # Optional[X]
        if value is None:
            return None
        (annotation,) = [a for a in typing.get_args(annotation) if a is not type(None)]
    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise ValueError(f"{name} must be true or false, got {value!r}")
    if annotation is int:
        if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, float) and value.is_integer())):
            raise ValueError(f"{name} must be an integer, got {value!r}")
        return int(value)
    if annotation is float:
        if isinstance(value, str):  # YAML 1.1 reads "1e-4" (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                raise ValueError(f"{name} must be a number, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{name} must be a number, got {value!r}")
        if not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number, got {value!r}")
        return float(value)
    if annotation is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ValueError(f"{name} must be a string, got {value!r}")
        return str(value)
    if annotation is dict:
        if not isinstance(value, dict):
            raise ValueError(f"{name} must be a mapping, got {value!r}")
        return dict(value)
    return value


#: YAML 1.1 reads a bare ``no`` as false: these string fields take false as the word the user wrote.
FALSE_AS_NO = ("train.mixed_precision",)


def _build(cls, data: dict, prefix: str):
    if not isinstance(data, dict):
        raise ValueError(f"config section '{prefix or 'root'}' must be a mapping, got {data!r}")
    types = _field_types(cls)
    kwargs = {}
    for key, value in data.items():
        full = f"{prefix}{key}"
        if key not in types:
            valid = ", ".join(f"{prefix}{k}" for k in types)
            raise ValueError(f"unknown config key '{full}' (valid keys: {valid})")
        annotation = types[key]
        if dataclasses.is_dataclass(annotation):
            kwargs[key] = _build(annotation, value or {}, f"{full}.")
        elif full in FALSE_AS_NO and value is False:
            kwargs[key] = "no"
        else:
            kwargs[key] = _coerce(full, value, annotation)
    return cls(**kwargs)


def config_from_dict(data: dict) -> Config:
    """Build a :class:`Config` from nested dicts (unknown keys raise ``ValueError``)."""
    return _build(Config, data or {}, "")


def get_field(config: Config, dotted: str) -> Any:
    obj: Any = config
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply ``section.key=value`` strings to a nested dict; values are parsed as YAML (``1e-4``, ``true``...)."""
    import yaml  # lazy: yaml is heavy and only this path needs it

    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override must look like key=value, got {item!r}")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        if not all(parts):
            raise ValueError(f"override key is malformed: {key!r}")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as error:
            raise ValueError(f"override {item!r}: the value is not valid YAML{_yaml_where(error)}") from None
        node = data
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ValueError(f"override {key!r}: '{part}' is not a config section")
            node = child
        node[parts[-1]] = value
    return data


def load_config(path: str | os.PathLike | None, overrides: list[str] | tuple = ()) -> Config:
    """Read a YAML preset (or start from defaults when ``path`` is None), apply overrides, validate.

    A bare preset name such as ``stage2_temporal`` resolves to the packaged ``gen1/configs/<name>.yaml``.
    """
    import yaml  # lazy: yaml is heavy and only this path needs it

    data: dict = {}
    if path is not None:
        resolved = resolve_preset(path)
        with open(resolved, encoding="utf-8") as handle:
            try:
                data = yaml.load(handle, Loader=_unique_keys_loader()) or {}
            except yaml.YAMLError as error:
                raise ValueError(f"config file {str(resolved)!r} is not valid YAML{_yaml_where(error)}") from None
        if not isinstance(data, dict):
            raise ValueError(f"config file {str(resolved)!r} must hold a YAML mapping")
    data = apply_overrides(data, list(overrides))
    return config_from_dict(data).validate()


def _unique_keys_loader():
    """PyYAML's safe loader, refusing a key given twice in one mapping (PyYAML keeps the last one silently: a
    config with two ``lr:`` lines trained with the second, whichever the user meant)."""
    import yaml  # lazy: yaml is heavy and only this path needs it

    class UniqueKeyLoader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            seen = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=deep)
                if key in seen:
                    raise yaml.constructor.ConstructorError(None, None, f"the key {key!r} is given twice",
                                                            key_node.start_mark)
                seen.add(key)
            return super().construct_mapping(node, deep=deep)

    return UniqueKeyLoader


def _yaml_where(error) -> str:
    """``" (line L, column C: problem)"`` for a PyYAML error that knows where it happened, else the message."""
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    if mark is None:
        return f" ({problem})"
    return f" (line {mark.line + 1}, column {mark.column + 1}: {problem})"


PRESET_DIR = Path(__file__).resolve().parents[1] / "configs"


def list_presets() -> list[str]:
    """Names of the packaged training presets: the ``gen1/configs/*.yaml`` files that hold a training config
    (``customize.yaml`` there holds the defaults of ``gen1 customize`` instead)."""
    import yaml  # lazy: yaml is heavy and only this path needs it

    sections = set(_field_types(Config))
    names = []
    for path in sorted(PRESET_DIR.glob("*.yaml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if isinstance(data, dict) and set(data) <= sections:
            names.append(path.stem)
    return names


def resolve_preset(path: str | os.PathLike) -> Path:
    """Return the YAML file for ``path``: an existing file, or the name of a packaged preset."""
    candidate = Path(path)
    if candidate.is_file():
        return candidate
    presets = list_presets()
    if candidate.suffix in ("", ".yaml") and candidate.parent == Path(".") and candidate.stem in presets:
        return PRESET_DIR / f"{candidate.stem}.yaml"
    if "=" in str(path) and not candidate.exists():  # `gen1 train model.base=...`: an override where CONFIG goes
        raise ValueError(f"{str(path)!r} is an override (KEY=VALUE); give a CONFIG first, a YAML file or one of the "
                         f"presets ({', '.join(presets)}), then the overrides")
    raise FileNotFoundError(f"config file not found: {str(path)!r}, nor a packaged preset of that name "
                            f"(presets: {', '.join(presets)})")


def config_to_dict(config: Config) -> dict:
    return dataclasses.asdict(config)
