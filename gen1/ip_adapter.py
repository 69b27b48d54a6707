"""IP-Adapter: reference images as content on the public-checkpoint route (Gen-1's CLIP image content signal).

An IP-Adapter (Ye et al. 2023; e.g. ``h94/IP-Adapter`` ``models/ip-adapter_sd15.safetensors`` with its CLIP vision
encoder in ``models/image_encoder``) adds a second key/value projection to every cross-attention of an SD UNet,
fed with projected CLIP image embeddings of the reference. Loading is diffusers' own: its converters build the
``IPAdapterAttnProcessor`` of each cross-attention and the image projection, from the file's two parts
(``image_proj`` and ``ip_adapter``). gen1 only shows them the image UNet as diffusers would see it (the
temporal layers' attentions are not cross-attentions the adapter knows) and puts the processors where gen1's
wrappers keep those attentions.

Null content follows the original pipelines: zero image embeddings for the basic adapter (``ImageProjection``),
the encoder's hidden states of a black image for the "plus" adapters.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace

import torch

from gen1.hub import IMAGE_ENCODER, IP_ADAPTER, companion, resolve
from gen1.temporal_layers import base_key_to_wrapped_key
from gen1.weights import safetensors_shapes

WEIGHT_NAMES = ("ip-adapter_sd15.safetensors", "ip-adapter_sd15.bin")


def _weights_file(path: Path) -> Path:
    """The IP-Adapter file at ``path``: the file itself, or the usual SD-1.5 file name in a folder."""
    if path.is_dir():
        found = [path / name for name in WEIGHT_NAMES if (path / name).is_file()]
        if not found:
            raise FileNotFoundError(f"no IP-Adapter weights in '{path}' (looked for {', '.join(WEIGHT_NAMES)})")
        path = found[0]
    if not path.is_file():
        raise FileNotFoundError(f"IP-Adapter file not found: '{path}'")
    return path


def _split_parts(flat: dict, path: Path) -> dict[str, dict]:
    """``{"image_proj": ..., "ip_adapter": ...}`` from the flat keys of a safetensors IP-Adapter."""
    state = {"image_proj": {}, "ip_adapter": {}}
    for key, value in flat.items():
        part, _, rest = key.partition(".")
        if part not in state:
            raise ValueError(f"IP-Adapter '{path}' has unexpected key '{key}' (expected image_proj.* / ip_adapter.*)")
        state[part][rest] = value
    return state


def _check_parts(state, path: Path) -> None:
    if not isinstance(state, dict) or not {"image_proj", "ip_adapter"} <= set(state):
        raise ValueError(f"'{path}' is not an IP-Adapter checkpoint (no image_proj / ip_adapter parts)")


def read_ip_adapter(path: str | os.PathLike) -> dict[str, dict[str, torch.Tensor]]:
    """``{"image_proj": ..., "ip_adapter": ...}`` from an IP-Adapter file (safetensors, or a ``.bin`` read with
    ``weights_only=True``); a folder is searched for the usual SD-1.5 file names."""
    path = _weights_file(Path(path))
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file  # lazy: safetensors is heavy and only this path needs it

        try:
            flat = load_file(str(path))
        except Exception as error:  # safetensors' own error types for a corrupt file
            raise ValueError(f"IP-Adapter '{path}' is not a readable safetensors file: {error}") from None
        state = _split_parts(flat, path)
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    _check_parts(state, path)
    return state


def read_ip_adapter_shapes(path: str | os.PathLike) -> dict[str, dict[str, list[int]]]:
    """The shapes of an IP-Adapter's tensors by part, as :func:`read_ip_adapter` would return them; a safetensors
    file is read from its header only (cheap: checks run on it before anything is loaded)."""
    path = _weights_file(Path(path))
    if path.suffix != ".safetensors":
        return tensor_shapes(read_ip_adapter(path))

    state = _split_parts(safetensors_shapes(path, "IP-Adapter"), path)
    _check_parts(state, path)
    return state


def tensor_shapes(state: dict) -> dict[str, dict[str, list[int]]]:
    return {part: {key: list(value.shape) for key, value in tensors.items()} for part, tensors in state.items()}


def _image_unet_processors(image_unet) -> dict[str, object]:
    """The image UNet's attention processors under the names diffusers gives them in a plain UNet."""
    return {name.replace(".spatial.", "."): processor for name, processor in image_unet.attn_processors.items()
            if ".temporal." not in name}


def apply_ip_adapter(video_unet, state: dict, *, scale: float = 1.0) -> None:
    """Give a :class:`gen1.unet.VideoUNet`'s image UNet the IP-Adapter ``state`` (from :func:`read_ip_adapter`).

    ``ValueError`` when the adapter does not fit the UNet (another base's widths or cross-attention count).
    """
    # lazy: diffusers is heavy and only this path needs it
    from diffusers.loaders.unet import UNet2DConditionLoadersMixin

    # lazy: diffusers is heavy and only this path needs it
    from diffusers.models.embeddings import MultiIPAdapterImageProjection

    unet = video_unet.image_unet
    shapes = tensor_shapes(state)
    check_cross_attention_fits(shapes, unet.config.cross_attention_dim)
    view = SimpleNamespace(attn_processors=_image_unet_processors(unet), config=unet.config)
    try:
        processors = UNet2DConditionLoadersMixin._convert_ip_adapter_attn_to_diffusers(view, [state],
                                                                                       low_cpu_mem_usage=False)
        projection = UNet2DConditionLoadersMixin._convert_ip_adapter_image_proj_to_diffusers(
            view, state["image_proj"], low_cpu_mem_usage=False)
    except (KeyError, RuntimeError) as error:  # a missing ip_adapter.N key or a wrong shape
        raise ValueError(f"the IP-Adapter does not fit this UNet (an adapter for another base?): {error}") from None
    wrapped = set(video_unet._wrapped_paths)
    for name, processor in processors.items():
        module_path = base_key_to_wrapped_key(name, wrapped).rsplit(".", 1)[0]
        unet.get_submodule(module_path).set_processor(processor)
    unet.encoder_hid_proj = MultiIPAdapterImageProjection([projection])
    unet.register_to_config(encoder_hid_dim_type="ip_image_proj")
    unet.to(dtype=video_unet.dtype, device=video_unet.device)
    video_unet.register_to_config(ip_adapter_shapes=shapes)  # save_pretrained -> from_pretrained rebuilds them
    set_ip_adapter_scale(video_unet, scale)


def zero_state(shapes: dict) -> dict[str, dict[str, torch.Tensor]]:
    """An IP-Adapter state of zeros with the recorded ``shapes`` (its layers' structure; weights load after)."""
    return {part: {key: torch.zeros(shape) for key, shape in tensors.items()} for part, tensors in shapes.items()}


def check_cross_attention_fits(shapes: dict, width: int) -> None:
    """The adapter's image tokens enter cross-attention: their width must be the UNet's (768 for SD-1.5, 2048 SDXL).
    ``shapes``: :func:`read_ip_adapter_shapes`."""
    first = next((v for k, v in sorted(shapes["ip_adapter"].items()) if k.endswith("to_k_ip.weight")), None)
    if first is not None and first[1] != width:
        raise ValueError(f"the IP-Adapter was made for cross-attention width {first[1]}"
                         f"{' (SDXL)' if first[1] == 2048 else ''}, the base UNet has {width}")


def set_ip_adapter_scale(video_unet, scale: float) -> None:
    """How strongly the reference images act (the IP-Adapter's attention scale), on every adapted attention."""
    # lazy: diffusers is heavy and only this path needs it
    from diffusers.models.attention_processor import IPAdapterAttnProcessor, IPAdapterAttnProcessor2_0

    for processor in video_unet.image_unet.attn_processors.values():
        if isinstance(processor, (IPAdapterAttnProcessor, IPAdapterAttnProcessor2_0)):
            processor.scale = [float(scale)] * len(processor.scale)
    video_unet.register_to_config(ip_adapter_scale=float(scale))


def uses_hidden_states(video_unet) -> bool:
    """True for the "plus" adapters, which take the vision encoder's penultimate hidden states, not image_embeds."""
    from diffusers.models.embeddings import ImageProjection  # lazy: diffusers is heavy and only this path needs it

    layers = video_unet.image_unet.encoder_hid_proj.image_projection_layers
    return not isinstance(layers[0], ImageProjection)


@torch.no_grad()
def encode_reference_images(image_encoder, feature_extractor, images, *, hidden_states: bool, device=None):
    """(embeddings, null embeddings) of reference images, each ``(N, T, D)`` or ``(N, D)`` float32, as diffusers'
    IP-Adapter pipelines compute them (image embeds with zeros as null; or penultimate hidden states with those
    of a black image as null)."""
    device = device if device is not None else image_encoder.device
    pixels = feature_extractor(images, return_tensors="pt").pixel_values.to(device=device, dtype=image_encoder.dtype)
    if hidden_states:
        embeds = image_encoder(pixels, output_hidden_states=True).hidden_states[-2]
        null = image_encoder(torch.zeros_like(pixels), output_hidden_states=True).hidden_states[-2]
        return embeds.float(), null.float()
    embeds = image_encoder(pixels).image_embeds.float()
    return embeds, torch.zeros_like(embeds)


def resolve_ip_adapter(path, image_encoder=None, *, flag: str = "path", encoder_flag: str = "image_encoder="):
    """(local IP-Adapter path, image encoder) from paths or Hub names (:mod:`gen1.hub`). Without ``image_encoder``,
    the ``image_encoder/`` folder beside the file (the ``h94/IP-Adapter`` layout), fetched from the same repo for a
    Hub name; a missing encoder is a ``ValueError`` naming where it was looked for and ``encoder_flag``."""

    local = resolve(path, IP_ADAPTER, flag=flag)
    if image_encoder is not None:
        if isinstance(image_encoder, torch.nn.Module):
            return local, image_encoder
        return local, resolve(image_encoder, IMAGE_ENCODER, flag=encoder_flag)
    if not Path(path).exists():  # a Hub name: the encoder comes from the same repo
        name = companion(path, "image_encoder", of_file=local.is_file())
        try:
            return local, resolve(name, IMAGE_ENCODER, flag=f"the image encoder of {flag}")
        except (ValueError, OSError) as error:
            raise ValueError(f"{error} (or give {encoder_flag})") from None
    folder = (local if local.is_dir() else local.parent) / "image_encoder"
    if not (folder / "config.json").is_file():
        raise ValueError(f"the IP-Adapter '{path}' needs its CLIP image encoder: none at '{folder}', give "
                         f"{encoder_flag} (a CLIPVisionModelWithProjection folder)")
    return local, folder


def check_ip_adapter_files(path, image_encoder, unet_config: dict) -> None:
    """Before anything loads: the IP-Adapter ``path`` (tensor shapes from its header) fits the base UNet's
    cross-attention width and the ``image_encoder`` folder's projection width (its config)."""

    shapes = read_ip_adapter_shapes(path)
    if unet_config.get("cross_attention_dim") is not None:
        check_cross_attention_fits(shapes, unet_config["cross_attention_dim"])
    if not isinstance(image_encoder, torch.nn.Module):
        config = json.loads((Path(image_encoder) / "config.json").read_text(encoding="utf-8"))
        check_projection_fits(shapes, config.get("projection_dim"), path)


def load_ip_adapter_into(pipe, path, *, image_encoder=None, scale: float = 1.0) -> None:
    """:meth:`gen1.pipeline.Gen1Pipeline.load_ip_adapter`: check, read, apply, and register the vision encoder."""
    # lazy: transformers is heavy and only this path needs it
    from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

    route = pipe.route
    if not route.references_through_ip_adapter:
        raise ValueError(f"IP-Adapters do not fit this pipeline, {route.description}: it takes reference images "
                         "through its own content encoder")
    path, image_encoder = resolve_ip_adapter(path, image_encoder)
    state = read_ip_adapter(path)
    if not isinstance(image_encoder, torch.nn.Module):
        image_encoder = CLIPVisionModelWithProjection.from_pretrained(str(image_encoder))
    check_projection_fits(tensor_shapes(state), image_encoder.config.projection_dim, path)
    apply_ip_adapter(pipe.unet, state, scale=scale)
    size = image_encoder.config.image_size
    pipe.register_modules(image_encoder=image_encoder.eval().to(pipe.unet.device),
                          feature_extractor=CLIPImageProcessor(size=size, crop_size=size))


def check_projection_fits(shapes: dict, projection_dim: int, path) -> None:
    """The basic adapter projects the encoder's ``image_embeds``: its input width must be the encoder's."""
    weight = shapes["image_proj"].get("proj.weight")
    if weight is not None and weight[1] != projection_dim:
        raise ValueError(f"IP-Adapter '{path}' takes image embeddings of width {weight[1]}, the image encoder "
                         f"gives {projection_dim} (an encoder for another adapter?)")
