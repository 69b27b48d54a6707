"""Adapters: small weight changes learned by ``gen1 customize``, saved on their own and applied to a VideoUNet.

Inference needs only this module (loading, applying, removing); training adds the trainable weights with
:func:`prepare_adapter` and saves them with :func:`save_adapter`.

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
import warnings
from pathlib import Path

import torch

from gen1.atomic import atomic_path
from gen1.hub import LORA, hub_name, resolve
from gen1.temporal_layers import base_key_to_wrapped_key
from gen1.unet import VideoUNet
from gen1.weights import check_state_dict, safetensors_shapes

ADAPTER_NAME = "gen1_custom"
METADATA_KEY = "gen1_adapter"
SPATIAL_ATTENTION = r".*\.spatial\.transformer_blocks\.\d+\.attn[12]\.(to_q|to_k|to_v|to_out\.0)$"
TEMPORAL_ATTENTION = r".*\.temporal\.blocks\.\d+\.attn\.(to_qkv|to_out)$"


def _unet_of(model):
    """The VideoUNet of ``model`` (a VideoUNet, or a pipeline holding one as ``.unet``)."""

    # a VideoUNet itself has a .unet (the wrapped image UNet), so test for the VideoUNet first
    unet = model if isinstance(model, VideoUNet) else getattr(model, "unet", None)
    if not isinstance(unet, VideoUNet):
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
    from peft import LoraConfig, inject_adapter_in_model  # lazy: peft is heavy and only this path needs it

    if has_adapter(unet):
        raise ValueError("the model already holds a gen1 adapter; call remove_adapter first")
    config = LoraConfig(r=rank, lora_alpha=alpha, target_modules=targets, init_lora_weights=True)
    inject_adapter_in_model(config, unet, adapter_name=ADAPTER_NAME)


def has_adapter(model) -> bool:
    unet = _unet_of(model)
    return getattr(unet, "_gen1_adapter", None) is not None


def _check_rank(unet, targets: list[str], rank: int) -> None:
    """A LoRA's rank is at most the narrowest adapted layer's width (a wider one only costs memory: its update
    cannot have a higher rank than the layer), so a mistyped rank is refused before any memory is taken."""
    modules = dict(unet.named_modules())
    widths = [min(modules[name].weight.shape[:2]) for name in targets if hasattr(modules.get(name), "weight")]
    narrowest = min(widths, default=None)
    if narrowest is not None and rank > narrowest:
        raise ValueError(f"lora_rank {rank} is larger than the narrowest adapted layer ({narrowest} channels): use "
                         f"at most {narrowest}")


def prepare_adapter(model, *, rank: int = 4, alpha: float | None = None, full: bool = False,
                    include_temporal: bool = False) -> list[torch.nn.Parameter]:
    """Freeze the model, add the adapter's trainable weights; return them (for the optimizer).

    LoRA of ``rank`` with scale ``alpha / rank`` (``alpha`` None: equal to the rank) on the attention projections
    (:func:`target_modules`), or ``full`` fine-tuning of every weight.
    """
    unet = _unet_of(model)
    for p in unet.parameters():
        p.requires_grad_(False)
    if has_adapter(unet):
        raise ValueError("the model already holds a gen1 adapter; call remove_adapter first")
    if full:
        backup = {n: p.detach().clone() for n, p in unet.named_parameters()}
        unet._gen1_adapter = dict(kind="full", backup=backup, targets=[])
        params = [p for n, p in unet.named_parameters() if n in backup]
    else:
        targets = target_modules(unet, include_temporal)
        _check_rank(unet, targets, rank)
        alpha = float(alpha if alpha is not None else rank)
        _inject_lora(unet, targets, rank, alpha)
        unet._gen1_adapter = dict(kind="lora", targets=targets, rank=rank, alpha=alpha)
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
        from peft import get_peft_model_state_dict  # lazy: peft is heavy and only this path needs it

        return get_peft_model_state_dict(unet, adapter_name=ADAPTER_NAME)
    return {n: p.detach() for n, p in unet.named_parameters() if n in info["backup"]}


def save_adapter(model, path: str | Path) -> Path:
    """Write the model's adapter to ``path`` (safetensors + metadata), atomically."""
    from safetensors.torch import save_file  # lazy: safetensors is heavy and only this path needs it

    unet = _unet_of(model)
    info = unet._gen1_adapter if has_adapter(unet) else None
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in adapter_state_dict(unet).items()}
    broken = next((k for k, v in tensors.items() if v.is_floating_point() and not torch.isfinite(v).all()), None)
    if broken is not None:  # an adapter that would make every edit NaN is never written
        raise ValueError(f"the adapter holds non-finite weights ('{broken}'); nothing written to '{path}'")
    meta = {k: v for k, v in info.items() if k not in ("backup", "imagic")}  # imagic: gen1.imagic writes it
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={METADATA_KEY: json.dumps(meta)})
    return Path(path)


def load_adapter(model, path: str | Path):
    """Load an adapter file into a VideoUNet or a pipeline's ``.unet``; returns ``model``.

    Keys and shapes are checked; a mismatch raises ``ValueError`` naming the key.
    """
    from safetensors import safe_open  # lazy: safetensors is heavy and only this path needs it
    from safetensors.torch import load_file  # lazy: safetensors is heavy and only this path needs it

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
        from peft.tuners.tuners_utils import BaseTunerLayer  # lazy: peft is heavy and only this path needs it

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


# ------------------------------------------------------------------------------------------------
# Stable Diffusion LoRAs trained elsewhere (diffusers / kohya formats)
# ------------------------------------------------------------------------------------------------

LORA_FILE = "pytorch_lora_weights.safetensors"


def _local_lora(path) -> Path:
    """``path`` itself when it exists or is no Hub name; else the Hub file or repo it names, through huggingface_hub's
    cache (:mod:`gen1.hub`), e.g. ``wangfuyun/AnimateLCM/AnimateLCM_sd15_t2v_lora.safetensors``."""

    if Path(path).exists() or hub_name(path) is None:
        return Path(path)
    return resolve(path, LORA, flag="LoRA")


def _lora_file(path: Path) -> Path:
    if path.is_dir():
        path = path / LORA_FILE
    if not path.is_file():
        raise FileNotFoundError(f"LoRA file not found: '{path}'")
    if path.suffix != ".safetensors":
        raise ValueError(f"LoRA '{path}': only .safetensors LoRA files are loaded (no pickles)")
    return path


#: a LoRA's down-projection of a cross-attention key (diffusers, peft and kohya key styles): its input width is
#: the text width the LoRA was trained for
_CROSS_ATTENTION_KEY_LORA = re.compile(r"attn2[._]to_k\.(lora\.down|lora_down|lora_A)\.weight$")


def check_lora_fits(path: str | Path, cross_attention_dim: int) -> Path:
    """Before anything loads: the LoRA file at ``path`` (a file or a folder holding ``pytorch_lora_weights.safetensors``)
    was made for a UNet that cross-attends to ``cross_attention_dim`` wide text (768 for SD-1.5, 2048 for SDXL);
    read from the file's header. Returns the file; ``ValueError`` naming both widths otherwise."""

    file = _lora_file(Path(path))
    for key, shape in sorted(safetensors_shapes(file, "LoRA").items()):
        if _CROSS_ATTENTION_KEY_LORA.search(key) and shape[-1] != cross_attention_dim:
            raise ValueError(f"LoRA '{file}' was made for cross-attention width {shape[-1]}"
                             f"{' (SDXL)' if shape[-1] == 2048 else ''}, the base UNet has {cross_attention_dim}")
    return file


def load_lora_weights(model, path: str | Path, *, scale: float = 1.0, adapter_name: str = "lora") -> list[str]:
    """Apply a Stable Diffusion LoRA (a ``pytorch_lora_weights.safetensors`` from diffusers' trainers, or a
    kohya / A1111-style ``.safetensors``) to the image UNet inside a VideoUNet; returns the adapted module names.
    ``path``: a file, a folder holding ``pytorch_lora_weights.safetensors``, or a Hub name of either (``ORG/NAME`` or
    ``ORG/NAME/FILE``; :mod:`gen1.hub`). Every layer the file adapts is applied, convolutions included (LCM-LoRA and
    AnimateLCM's LoRA also adapt the ResNet blocks' ``conv1/conv2/time_emb_proj`` and the resamplers).

    diffusers converts the file to its own key layout (``StableDiffusionLoraLoaderMixin.lora_state_dict``); the
    keys are then moved to where gen1's wrappers keep the image UNet's modules (``<path>.spatial.<rest>``) and
    loaded with diffusers' own ``load_lora_adapter`` (peft). Text-encoder LoRA weights are not applied (the
    public route's text encoder is used as is) and are reported in a ``UserWarning``. Every targeted module must
    exist (``ValueError`` naming it). ``scale`` multiplies the LoRA's effect.
    """

    from diffusers.loaders import StableDiffusionLoraLoaderMixin  # lazy: diffusers is heavy and only this path needs it
    from safetensors.torch import load_file  # lazy: safetensors is heavy and only this path needs it

    unet = _unet_of(model)
    file = _lora_file(_local_lora(path))
    try:
        raw = load_file(str(file))
    except Exception as error:  # safetensors raises its own types for a corrupt file
        raise ValueError(f"LoRA '{file}' is not a readable safetensors file: {error}") from None
    state, alphas = StableDiffusionLoraLoaderMixin.lora_state_dict(raw)
    unet_state = {k[len("unet."):]: v for k, v in state.items() if k.startswith("unet.")}
    skipped = len(state) - len(unet_state)
    if not unet_state:
        raise ValueError(f"LoRA '{file}' holds no UNet weights")
    if skipped:
        warnings.warn(f"LoRA '{file}': {skipped} text-encoder tensors are not applied", UserWarning, stacklevel=2)
    wrapped = set(unet._wrapped_paths)
    mapped = {base_key_to_wrapped_key(key, wrapped): value for key, value in unet_state.items()}
    modules = dict(unet.image_unet.named_modules())
    # module names as peft will see them (older diffusers and kohya files name attention LoRAs
    # ``attn1.processor.to_k_lora.down``; diffusers' own converter says which module that is)
    from diffusers.utils import convert_unet_state_dict_to_peft

    peft_keys = convert_unet_state_dict_to_peft(dict(mapped))
    targets = sorted({key.split(".lora")[0] for key in peft_keys if ".lora" in key})
    missing = [name for name in targets if name not in modules]
    if missing:
        raise ValueError(f"LoRA '{file}' adapts '{missing[0]}', which this model's UNet does not have "
                         "(a LoRA for another base?)")
    network_alphas = None
    if alphas:  # kohya files scale each layer by alpha / rank; diffusers takes them only with a key prefix
        network_alphas = {"unet." + base_key_to_wrapped_key(k.removeprefix("unet."), wrapped): v
                          for k, v in alphas.items() if not k.startswith(("text_encoder", "lora_te"))}
    try:
        unet.image_unet.load_lora_adapter({f"unet.{k}": v for k, v in mapped.items()}, prefix="unet",
                                    network_alphas=network_alphas, adapter_name=adapter_name)
    except (RuntimeError, ValueError) as error:  # wrong shapes: peft / torch say which tensor
        raise ValueError(f"LoRA '{file}' does not fit this model's UNet: {error}") from None
    if scale != 1.0:
        unet.image_unet.set_adapters([adapter_name], weights=[float(scale)])
    return targets


def fuse_lora_weights(model) -> list[str]:
    """Merge the Stable Diffusion LoRAs applied by :func:`load_lora_weights` into the image UNet's weights, at the
    scales they were loaded with, and remove their LoRA layers; returns the merged module names.

    A pipeline holding unmerged LoRA layers saves keys that a plain UNet does not have, so its ``save_pretrained``
    folder would not load; merged, it saves and loads as an ordinary model (an AnimateLCM set assembled once and
    then used with ``gen1 edit --model``), and each step skips the LoRA's extra products. Not reversible; a
    ``gen1 customize`` adapter must be removed first (``ValueError``), so that it is never merged by accident.
    """
    from peft.tuners.tuners_utils import BaseTunerLayer  # lazy: peft is heavy and only this path needs it

    unet = _unet_of(model)
    if has_adapter(unet):
        raise ValueError("the model holds a gen1 customisation adapter; remove_adapter() it before fusing LoRAs")
    inner = unet.image_unet
    merged = [name for name, module in inner.named_modules() if isinstance(module, BaseTunerLayer)]
    if not merged:
        raise ValueError("no LoRA is loaded to fuse (load_lora_weights first)")
    inner.fuse_lora()
    inner.unload_lora()
    return merged
