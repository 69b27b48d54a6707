"""Strict loading of AnimateDiff motion modules into a diffusers ``MotionAdapter``.

Accepted sources (see :func:`load_motion_adapter`):

* a ``MotionAdapter`` instance;
* a diffusers MotionAdapter folder (``config.json`` + ``diffusion_pytorch_model[.<variant>].safetensors`` or
  ``.bin``), e.g. ``guoyww/animatediff-motion-adapter-v1-5-2``;
* an original AnimateDiff motion-module file (``mm_sd_v15_v2.ckpt``, or a ``.safetensors`` of it). Its keys
  are converted with diffusers' own ``convert_animatediff_checkpoint_to_diffusers`` (the converter
  ``MotionAdapter.from_single_file`` uses). Such files carry no config: it comes from ``config=`` or is
  inferred from the tensor names and shapes (:func:`infer_motion_adapter_config`).

``MotionAdapter.from_single_file`` itself is not used: without a config it fetches one from the Hub, and it
drops keys it does not know with a warning. Here every load is strict: a missing, unexpected or wrongly shaped
key is a ``ValueError`` naming it, before any weight is copied. Files are read safely (safetensors, or
``torch.load(weights_only=True)``).

Position encodings: an original file stores every temporal attention's fixed sinusoidal table
(``...attention_blocks.{0,1}.pos_encoder.pe``); diffusers computes the same table itself (``...pos_embed.pe``)
and its converter drops them. Each one in the file must belong to a motion module and equal the table
diffusers computes, which also checks ``motion_max_seq_length``.
"""

from __future__ import annotations

import json
import os
import re
from collections import defaultdict
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import torch

from gen1.temporal_layers.motion import full_motion_adapter_config
from gen1.weights import check_state_dict

_POSITION_TABLE = "pos_embed.pe"  # diffusers' buffer name, per transformer block
_ORIGINAL_MARKER = ".temporal_transformer."
_WEIGHT_NAMES = ("diffusion_pytorch_model{}.safetensors", "diffusion_pytorch_model{}.bin")
# bookkeeping entries some original checkpoints carry next to their tensors
_ORIGINAL_EXTRAS = ("global_step",)

PathLike = str | os.PathLike


def _convert_names(checkpoint: Mapping[str, Any]) -> dict[str, Any]:
    """diffusers' own conversion of original AnimateDiff names (values pass through untouched)."""
    # lazy: diffusers is heavy and only this path needs it
    from diffusers.loaders.single_file_utils import convert_animatediff_checkpoint_to_diffusers

    return convert_animatediff_checkpoint_to_diffusers(dict(checkpoint))


# ---------------------------------------------------------------------------------------------- reading files
def _read_config_file(path: Path) -> dict:
    with open(path, encoding="utf-8") as f:
        config = json.load(f)
    class_name = config.get("_class_name", "MotionAdapter")
    if class_name != "MotionAdapter":
        raise ValueError(f"'{path}' is the config of a {class_name}, not of a MotionAdapter")
    return config


def _resolve_config(config: Mapping[str, Any] | PathLike) -> dict:
    """A config given as a dict, a ``config.json`` file or a MotionAdapter folder, normalised."""
    if isinstance(config, Mapping):
        return full_motion_adapter_config(config)
    path = Path(config)
    path = path / "config.json" if path.is_dir() else path
    if not path.is_file():
        raise FileNotFoundError(f"no MotionAdapter config at '{path}' (config={config!s})")
    return full_motion_adapter_config(_read_config_file(path))


def _load_torch_file(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError as error:
        if "mmap" not in str(error):  # legacy (non-zip) torch files cannot be memory-mapped
            raise
    return torch.load(path, map_location="cpu", weights_only=True)


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors or torch file (``weights_only=True``); a ``state_dict`` wrapper is opened."""
    from safetensors.torch import load_file  # lazy: safetensors is heavy and only this path needs it

    try:
        if path.suffix == ".safetensors":
            return load_file(str(path))
        loaded = _load_torch_file(path)
    except Exception as error:  # safetensors / pickle raise their own types for corrupt or unsafe files
        raise ValueError(
            f"'{path}' is not a readable weights file (safetensors or a weights-only torch file): {error}"
        ) from None
    if isinstance(loaded, Mapping) and isinstance(loaded.get("state_dict"), Mapping):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, Mapping):
        raise ValueError(f"'{path}' holds a {type(loaded).__name__}, not a dict of tensors")
    tensors = {}
    for key, value in loaded.items():
        if torch.is_tensor(value):
            tensors[key] = value
        elif key not in _ORIGINAL_EXTRAS:
            raise ValueError(f"'{path}': entry {key!r} is a {type(value).__name__}, not a tensor")
    return tensors


def _read_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Tensor shapes of a weights file; for safetensors from the header alone."""
    if path.suffix != ".safetensors":
        return {k: tuple(v.shape) for k, v in _read_tensors(path).items()}
    from safetensors import safe_open  # lazy: safetensors is heavy and only this path needs it

    try:
        with safe_open(str(path), framework="pt") as f:
            return {key: tuple(f.get_slice(key).get_shape()) for key in f.keys()}
    except Exception as error:
        raise ValueError(f"'{path}' is not a readable safetensors file: {error}") from None


def _folder_weights(folder: Path, variant: Optional[str]) -> Path:
    suffix = f".{variant}" if variant else ""
    for name in _WEIGHT_NAMES:
        if (folder / name.format(suffix)).is_file():
            return folder / name.format(suffix)
    names = [name.format(suffix) for name in _WEIGHT_NAMES]
    raise FileNotFoundError(f"no MotionAdapter weights in '{folder}' (expected one of {names})")


def _require_original_layout(keys: Sequence[str], path: Path) -> None:
    if not any(_ORIGINAL_MARKER in key for key in keys):
        raise ValueError(
            f"'{path}' is not an original AnimateDiff motion-module file (no '{_ORIGINAL_MARKER.strip('.')}' keys); "
            "pass a diffusers MotionAdapter as its folder"
        )


# ---------------------------------------------------------------------------------------------- configs
def _uniform(values: list[int]) -> int | list[int]:
    return values[0] if len(set(values)) == 1 else values


def infer_motion_adapter_config(shapes: Mapping[str, Sequence[int]]) -> dict:
    """A ``MotionAdapter`` config from the tensor names and shapes of an original AnimateDiff file.

    Read from the file: block widths, motion layers per block, transformer layers per motion layer, whether
    there is a mid-block motion module, and ``motion_max_seq_length`` (from the position tables). Not recorded
    in the file, so left at ``MotionAdapter``'s defaults, which are AnimateDiff's: 8 attention heads and 32
    GroupNorm groups. Pass ``config=`` to :func:`load_motion_adapter` for anything else.
    """
    converted = _convert_names({k: v for k, v in shapes.items() if "pos_encoder" not in k})
    pattern = re.compile(r"^(down_blocks\.\d+|mid_block|up_blocks\.\d+)\.motion_modules\.(\d+)\.(.*)$")
    widths: dict[str, int] = {}
    modules: dict[str, set[int]] = defaultdict(set)
    transformer_blocks: dict[tuple[str, int], set[int]] = defaultdict(set)
    for key, shape in converted.items():
        match = pattern.match(key)
        if match is None:
            raise ValueError(f"unexpected key {key!r}: not a motion-module tensor")
        block, index, rest = match.group(1), int(match.group(2)), match.group(3)
        modules[block].add(index)
        if index == 0 and rest == "norm.weight":
            widths[block] = int(shape[0])
        if rest.startswith("transformer_blocks."):
            transformer_blocks[(block, index)].add(int(rest.split(".")[1]))
    down = sorted((b for b in modules if b.startswith("down_blocks.")), key=lambda b: int(b.split(".")[1]))
    if not down or any(b not in widths for b in down):
        raise ValueError(
            "the file has no complete down-block motion modules (no 'down_blocks.I.motion_modules.0' norm)"
        )

    def layers(block: str) -> int:
        return len(transformer_blocks[(block, 0)])

    config: dict[str, Any] = {
        "block_out_channels": [widths[b] for b in down],
        "motion_layers_per_block": _uniform([len(modules[b]) for b in down]),
        "motion_transformer_layers_per_block": _uniform([layers(b) for b in down]),
        "use_motion_mid_block": "mid_block" in modules,
    }
    if "mid_block" in modules:
        config["motion_mid_block_layers_per_block"] = len(modules["mid_block"])
        config["motion_transformer_layers_per_mid_block"] = layers("mid_block")
    tables = [shape for key, shape in shapes.items() if key.endswith("pos_encoder.pe")]
    if tables:
        config["motion_max_seq_length"] = int(tables[0][-2])
    return full_motion_adapter_config(config)


def read_motion_adapter_config(source: Any, *, config: Mapping[str, Any] | PathLike | None = None) -> dict:
    """The config of the motion adapter :func:`load_motion_adapter` would load from ``source``, cheaply.

    Reads no weights, except for an original torch file without ``config`` (memory-mapped, to infer it).
    """
    from diffusers import MotionAdapter  # lazy: diffusers is heavy and only this path needs it

    if not isinstance(source, (MotionAdapter, str, os.PathLike)):
        raise ValueError(f"motion_adapter must be a MotionAdapter, a folder or a file, got {type(source).__name__}")
    is_file = not isinstance(source, MotionAdapter) and Path(source).is_file()
    if config is not None and not is_file:
        what = "a MotionAdapter instance" if isinstance(source, MotionAdapter) else f"'{source}'"
        raise ValueError(f"a motion adapter config applies to original AnimateDiff files only, not to {what}")
    if isinstance(source, MotionAdapter):
        return full_motion_adapter_config(source.config)
    path = Path(source)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"no MotionAdapter config at '{path / 'config.json'}'")
        return full_motion_adapter_config(_read_config_file(path / "config.json"))
    if not path.is_file():
        raise FileNotFoundError(f"motion adapter not found: '{path}'")
    if config is not None:
        return _resolve_config(config)
    shapes = _read_shapes(path)
    _require_original_layout(list(shapes), path)
    try:
        return infer_motion_adapter_config(shapes)
    except ValueError as error:
        raise ValueError(f"'{path}': {error}; pass config= to describe it") from None


# ---------------------------------------------------------------------------------------------- loading
def _check_position_tables(
    checkpoint: Mapping[str, torch.Tensor], tables: Mapping[str, torch.Tensor], source: str
) -> None:
    """Every original position table must sit in a motion module and equal diffusers' table there."""
    for key, value in checkpoint.items():
        if "pos_encoder" not in key:
            continue
        block, _, tail = key.rpartition(".attention_blocks.")
        target = next(iter(_convert_names({f"{block}.{_POSITION_TABLE}": None})))
        if tail not in ("0.pos_encoder.pe", "1.pos_encoder.pe") or target not in tables:
            raise ValueError(f"{source}: unexpected key '{key}'")
        table = tables[target]
        if tuple(value.shape) != tuple(table.shape):
            raise ValueError(
                f"{source}: '{key}' has shape {tuple(value.shape)}, the model expects {tuple(table.shape)} "
                f"(check motion_max_seq_length)"
            )
        if not torch.allclose(value.float(), table.float(), atol=1e-3):
            raise ValueError(f"{source}: '{key}' is not the sinusoidal position table diffusers computes")


def _adapter_from_tensors(config: dict, tensors: dict[str, torch.Tensor], source: str, *, original: bool):
    """Build a ``MotionAdapter`` from ``config`` and fill it from ``tensors`` (diffusers or original layout)."""
    from accelerate import init_empty_weights  # lazy: accelerate is heavy and only this path needs it
    from diffusers import MotionAdapter  # lazy: diffusers is heavy and only this path needs it

    with init_empty_weights():  # parameters on the meta device (all come from the file); buffers real
        adapter = MotionAdapter(**config)
    expected = adapter.state_dict()
    if original:
        tables = {k: v for k, v in expected.items() if k.endswith(_POSITION_TABLE)}
        _check_position_tables(tensors, tables, source)
        weights = {k: v for k, v in tensors.items() if "pos_encoder" not in k}
        converted = _convert_names(weights)
        if len(converted) != len(weights):
            raise ValueError(f"{source}: some keys convert to the same diffusers name (mixed layouts?)")
        check_state_dict({k: v for k, v in expected.items() if k not in tables}, converted, source)
        tensors = {**converted, **tables}
    else:
        check_state_dict(expected, tensors, source)
    adapter.load_state_dict(tensors, strict=True, assign=True)
    return adapter


def load_motion_adapter(
    source: Any,
    *,
    config: Mapping[str, Any] | PathLike | None = None,
    variant: Optional[str] = None,
    torch_dtype: Optional[torch.dtype] = None,
):
    """A diffusers ``MotionAdapter`` from an instance, a MotionAdapter folder or an original AnimateDiff file.

    ``config``: for an original file, its ``MotionAdapter`` config (a dict, a ``config.json`` or a
    MotionAdapter folder); default: inferred (:func:`infer_motion_adapter_config`). ``variant``: a folder's
    weights variant (``"fp16"`` reads ``diffusion_pytorch_model.fp16.safetensors``). ``torch_dtype``: the
    dtype of the result (default float32). An instance is returned as it is.
    """
    from diffusers import MotionAdapter  # lazy: diffusers is heavy and only this path needs it

    if isinstance(source, MotionAdapter):
        return source
    resolved = read_motion_adapter_config(source, config=config)
    path = Path(source)
    if variant is not None and not path.is_dir():
        raise ValueError(f"variant={variant!r} applies to MotionAdapter folders only, not to '{path}'")
    if path.is_dir():
        weights = _folder_weights(path, variant)
        adapter = _adapter_from_tensors(resolved, _read_tensors(weights), f"'{weights}'", original=False)
    else:
        tensors = _read_tensors(path)
        _require_original_layout(list(tensors), path)
        adapter = _adapter_from_tensors(resolved, tensors, f"'{path}'", original=True)
    return adapter.to(torch_dtype or torch.float32).eval()
