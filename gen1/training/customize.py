"""Customisation: fine-tune on a few images of a subject or style; save, load and remove adapters.

Gen-1 customises by teaching the model to reproduce the subject *given its own CLIP image embedding*:
each image trains as a 1-frame clip in image mode (temporal layers off) with its embedding as content
and its depth as structure (t_s drawn from 0..7). No captions are needed.

By default LoRA (peft) is injected into the spatial attention projections ``to_q/to_k/to_v/to_out.0`` of
``attn1`` and ``attn2`` (optionally also the temporal attention's ``to_qkv/to_out``); ``full=True``
fine-tunes every weight of the VideoUNet instead. The adapter file is a safetensors file whose
metadata (``"gen1_adapter"``) records its kind, rank, alpha and target modules:

* LoRA: the peft LoRA matrices only (small; a few KiB for the tiny test model);
* full: every weight of the VideoUNet by name (as large as the model; removal restores a backup).

:func:`load_adapter` / :func:`remove_adapter` take a VideoUNet or anything with a ``.unet`` (a
``Gen1Pipeline``). Removing restores the original module objects and weights exactly.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

import torch

from gen1.weights import check_state_dict

ADAPTER_NAME = "gen1_custom"
METADATA_KEY = "gen1_adapter"
SPATIAL_ATTENTION = r".*\.spatial\.transformer_blocks\.\d+\.attn[12]\.(to_q|to_k|to_v|to_out\.0)$"
TEMPORAL_ATTENTION = r".*\.temporal\.blocks\.\d+\.attn\.(to_qkv|to_out)$"


@dataclass
class CustomizeSettings:
    lora_rank: int = 4
    lora_alpha: Optional[float] = None  # None: equal to the rank (scale 1)
    full: bool = False
    include_temporal: bool = False
    steps: int = 200
    lr: float = 1e-4
    batch_size: int = 2
    content_dropout: float = 0.1
    structure_level_max: int = 7
    seed: int = 0

    def validate(self) -> "CustomizeSettings":
        for name in ("lora_rank", "steps", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if not 0 <= self.structure_level_max <= 7:
            raise ValueError(f"structure_level_max must be in 0..7, got {self.structure_level_max}")
        return self


def _unet_of(model):
    # a VideoUNet itself has a .unet (the wrapped image UNet), so test for the VideoUNet first
    unet = model if hasattr(model, "new_layers_parameters") else getattr(model, "unet", None)
    if not hasattr(unet, "new_layers_parameters"):
        raise ValueError(f"expected a VideoUNet or a pipeline with a .unet VideoUNet, got {type(model).__name__}")
    return unet


def target_modules(unet, include_temporal: bool = False) -> list[str]:
    """Full names of the Linear layers an adapter targets."""
    patterns = [SPATIAL_ATTENTION] + ([TEMPORAL_ATTENTION] if include_temporal else [])
    names = [name for name, module in unet.named_modules()
             if isinstance(module, torch.nn.Linear) and any(re.fullmatch(p, name) for p in patterns)]
    if not names:
        raise ValueError("the model has no attention projections to adapt (no to_q/to_k/to_v/to_out.0 layers)")
    return names


def _inject_lora(unet, targets: list[str], rank: int, alpha: float) -> None:
    from peft import LoraConfig, inject_adapter_in_model

    if has_adapter(unet):
        raise ValueError("the model already holds a gen1 adapter; call remove_adapter first")
    config = LoraConfig(r=rank, lora_alpha=alpha, target_modules=targets, init_lora_weights=True)
    inject_adapter_in_model(config, unet, adapter_name=ADAPTER_NAME)


def has_adapter(model) -> bool:
    unet = _unet_of(model)
    return getattr(unet, "_gen1_adapter", None) is not None


def prepare_adapter(model, settings: CustomizeSettings) -> list[torch.nn.Parameter]:
    """Freeze the model, add the adapter's trainable weights; return them (for the optimizer)."""
    unet = _unet_of(model)
    settings.validate()
    for p in unet.parameters():
        p.requires_grad_(False)
    if has_adapter(unet):
        raise ValueError("the model already holds a gen1 adapter; call remove_adapter first")
    if settings.full:
        backup = {n: p.detach().clone() for n, p in unet.named_parameters()}
        unet._gen1_adapter = dict(kind="full", backup=backup, targets=[])
        params = [p for n, p in unet.named_parameters() if n in backup]
    else:
        targets = target_modules(unet, settings.include_temporal)
        alpha = float(settings.lora_alpha if settings.lora_alpha is not None else settings.lora_rank)
        _inject_lora(unet, targets, settings.lora_rank, alpha)
        unet._gen1_adapter = dict(kind="lora", targets=targets, rank=settings.lora_rank, alpha=alpha)
        params = [p for n, p in unet.named_parameters() if "lora_" in n]
    for p in params:
        p.requires_grad_(True)
    return params


def adapter_state_dict(model) -> dict[str, torch.Tensor]:
    unet = _unet_of(model)
    info = getattr(unet, "_gen1_adapter", None)
    if info is None:
        raise ValueError("the model holds no gen1 adapter to save")
    if info["kind"] == "lora":
        from peft import get_peft_model_state_dict

        return get_peft_model_state_dict(unet, adapter_name=ADAPTER_NAME)
    return {n: p.detach() for n, p in unet.named_parameters() if n in info["backup"]}


def save_adapter(model, path: str | Path) -> Path:
    """Write the model's adapter to ``path`` (safetensors + metadata), atomically."""
    from safetensors.torch import save_file

    from gen1.atomic import atomic_path

    unet = _unet_of(model)
    info = unet._gen1_adapter if has_adapter(unet) else None
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in adapter_state_dict(unet).items()}
    meta = {k: v for k, v in info.items() if k != "backup"}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={METADATA_KEY: json.dumps(meta)})
    return Path(path)


def load_adapter(model, path: str | Path):
    """Load an adapter file into a VideoUNet or a pipeline's ``.unet``; returns ``model``.

    Keys and shapes are checked; a mismatch raises ``ValueError`` naming the key.
    """
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"adapter file not found: {str(path)!r}")
    unet = _unet_of(model)
    with safe_open(str(path), framework="pt") as handle:
        raw = (handle.metadata() or {}).get(METADATA_KEY)
    if raw is None:
        raise ValueError(f"{str(path)!r} is not a gen1 adapter (no '{METADATA_KEY}' metadata)")
    meta = json.loads(raw)
    tensors = load_file(str(path))
    modules = dict(unet.named_modules())
    missing = [t for t in meta["targets"] if t not in modules]
    if missing:
        raise ValueError(f"adapter {str(path)!r} targets module '{missing[0]}', which this model does not have")
    if meta["kind"] == "lora":
        _inject_lora(unet, meta["targets"], int(meta["rank"]), float(meta["alpha"]))
        unet._gen1_adapter = dict(meta)
        own = {n: p for n, p in unet.named_parameters() if "lora_" in n}
        expected = {_peft_key(n): p for n, p in own.items()}
    elif meta["kind"] == "full":
        params = dict(unet.named_parameters())
        expected = {}
        for key in tensors:
            if key not in params:
                raise ValueError(f"adapter {str(path)!r}: weight '{key}' does not exist in this model")
            expected[key] = params[key]
        unet._gen1_adapter = dict(meta, backup={k: p.detach().clone() for k, p in expected.items()})
    else:
        raise ValueError(f"adapter {str(path)!r} has unknown kind {meta['kind']!r}")
    try:
        check_state_dict(expected, tensors, f"adapter {str(path)!r}")
        with torch.no_grad():
            for key, param in expected.items():
                param.copy_(tensors[key].to(param.dtype))
    except ValueError:
        remove_adapter(unet)
        raise
    return model


def _peft_key(param_name: str) -> str:
    """peft's saved key for a live LoRA parameter name (adapter name dropped)."""
    return param_name.replace(f".{ADAPTER_NAME}", "")


def remove_adapter(model):
    """Undo :func:`load_adapter` / :func:`prepare_adapter`: original modules and weights, bit for bit."""
    unet = _unet_of(model)
    info = getattr(unet, "_gen1_adapter", None)
    if info is None:
        raise ValueError("the model holds no gen1 adapter to remove")
    if info["kind"] == "lora":
        from peft.tuners.tuners_utils import BaseTunerLayer

        for name, module in list(unet.named_modules()):
            if isinstance(module, BaseTunerLayer):
                parent_name, _, child = name.rpartition(".")
                parent = unet.get_submodule(parent_name) if parent_name else unet
                setattr(parent, child, module.get_base_layer())
        if hasattr(unet, "peft_config"):
            del unet.peft_config
    else:
        params = dict(unet.named_parameters())
        with torch.no_grad():
            for key, value in info["backup"].items():
                params[key].copy_(value)
    unet._gen1_adapter = None
    return model


def train_adapter(unet, data: dict, noise_scheduler, settings: CustomizeSettings, *, device="cpu",
                  prediction_type: Optional[str] = None, progress: bool = True) -> list[float]:
    """Fine-tune ``unet`` on encoded images; return the per-step losses.

    ``data`` holds ``latents (N,C,1,h,w)``, ``depth (N,1,1,h,w)``, ``content (N,1,D)`` (from
    :class:`gen1.training.preprocess.ClipEncoder`). Each step draws ``batch_size`` images.
    """
    from tqdm.auto import tqdm

    from gen1.training.config import DiffusionConfig
    from gen1.training.batch import Clips, JointBatch
    from gen1.training.draws import draw_inputs, micro_generator
    from gen1.training.losses import DiffusionObjective
    from gen1.training.model import with_prediction_type

    settings.validate()
    noise_scheduler = with_prediction_type(noise_scheduler, prediction_type)
    params = prepare_adapter(unet, settings)
    optimizer = torch.optim.AdamW(params, lr=settings.lr, weight_decay=0.0)
    objective = DiffusionObjective(unet).to(device).train()
    diffusion = DiffusionConfig(content_dropout=settings.content_dropout, use_structure=True,
                                structure_level_min=0, structure_level_max=settings.structure_level_max)
    n = data["latents"].shape[0]
    losses = []
    for step in tqdm(range(settings.steps), desc="customize", disable=not progress):
        gen = micro_generator(settings.seed, 0, step)
        pick = torch.randint(0, n, (settings.batch_size,), generator=gen)
        clips = Clips(*(data[k][pick].to(device) for k in ("latents", "depth", "content")))
        loss = objective(JointBatch(image=draw_inputs(clips, noise_scheduler, diffusion, gen, image_mode=True)))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
    unet.eval()
    for p in unet.parameters():
        p.requires_grad_(False)
    return losses


def encode_images(paths: list[Path], encoder, size: int) -> dict:
    """Images -> ``latents (N,C,1,h,w)``, ``depth (N,1,1,h,w)``, ``content (N,1,D)`` with a ClipEncoder."""
    from gen1.training.preprocess import InputItem, PreprocessSettings, load_clips

    settings = PreprocessSettings(clip_length=1, stride=1, size=size)
    out = {"latents": [], "depth": [], "content": []}
    for path in paths:
        ((_, frames),) = load_clips(InputItem(str(path)), settings)
        latents, depth, content = encoder(frames)
        out["latents"].append(latents)
        out["depth"].append(depth)
        out["content"].append(content)
    return {k: torch.stack(v) for k, v in out.items()}


def settings_dict(settings: CustomizeSettings) -> dict:
    return asdict(settings)
