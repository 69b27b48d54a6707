"""Content for gen1: CLIP image embeddings, text mapped into image-embedding space, mixing, null content.

Conventions (one place, used everywhere):

* **Embedding space.** Content is the *raw* CLIP ``image_embeds`` of ``CLIPVisionModelWithProjection``
  (projection space, dimension ``D = projection_dim``, **not** L2-normalised). That is what
  sd-image-variations and unCLIP-style UNets consume and what unCLIP/Karlo priors are trained to produce
  (``PriorTransformer.post_process_latents`` un-standardises to raw image embeddings).
* **Text.** ``encode_text`` samples the prior (diffusers ``PriorTransformer`` + ``UnCLIPScheduler`` loop,
  classifier-free guided against the empty prompt, as in unCLIP/Karlo). Without a prior the raw CLIP
  ``text_embeds`` are returned with a warning: same dimension, but a different distribution (norm and
  direction statistics) than image embeddings, so results are weaker -- unless the encoder says its text
  tower was trained to embed into image space (``text_in_image_space``, see :class:`ContentEncoder`).
* **Null content** (classifier-free guidance): :func:`null_content` = zeros. Zero is independent of any
  CLIP checkpoint, of prompts and of dtype, it is what diffusers' image-variation / unCLIP pipelines use
  as the negative image embedding, and training replaces dropped content by exactly this tensor.
* **Mixing** (:func:`mix_content`) is linear: ``sum_i w_i * e_i`` with the weights as given (no
  renormalisation); pass weights summing to 1 for a convex blend of the embeddings' scale.
* **UNet context**: :func:`as_unet_context` turns ``(N, D)`` into the ``(N, 1, D)`` sequence that
  ``VideoUNet`` cross-attends to (``content_dim = D``).

Tokenizer: the component keeps a ``CLIPTokenizer`` (``self.tokenizer``); ``save_pretrained`` writes it to
``<dir>/tokenizer`` and ``from_pretrained`` reads it back. Image preprocessing follows
``CLIPImageProcessor`` (shortest side to ``image_size`` with bicubic resampling, centre crop to
``crop_size``, CLIP mean/std) but runs batched on tensors with torch's antialiased bicubic, so values
differ from the PIL-based processor by resampling noise only.
"""

from __future__ import annotations

import inspect
import json
import os
import re
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers import ConfigMixin, ModelMixin, UnCLIPScheduler
from diffusers.configuration_utils import register_to_config
from diffusers.utils.torch_utils import randn_tensor

from gen1.media import read_image, to_uint8_frames
from gen1.model_folders import read_json_object
from gen1.weights import StrictLoadingMixin, check_state_dict

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
TOKENIZER_SUBFOLDER = "tokenizer"


# ------------------------------------------------------------------------------------------------
# embedding algebra (free functions: the pipeline and the trainer use them without an encoder)
# ------------------------------------------------------------------------------------------------


def null_content(batch: int, dim: int, device: str | torch.device | None = None,
                 dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """THE null (unconditional) content embedding for classifier-free guidance: zeros ``(batch, dim)``."""
    if int(batch) < 1 or int(dim) < 1:
        raise ValueError(f"batch and dim must be positive, got batch={batch}, dim={dim}")
    return torch.zeros(int(batch), int(dim), device=device, dtype=dtype)


def mix_content(embeddings: Sequence[torch.Tensor] | torch.Tensor, weights: Sequence[float]) -> torch.Tensor:
    """Linear mix ``sum_i weights[i] * embeddings[i]`` -> ``(N, D)``.

    ``embeddings``: a list of ``(D,)`` or ``(N, D)`` tensors (``(1, D)`` broadcasts against ``(N, D)``),
    or one tensor whose first dimension indexes the embeddings to mix. Weights are used as given.
    """
    items = list(embeddings)
    weights = [float(w) for w in weights]
    if not items:
        raise ValueError("embeddings is empty")
    if len(items) != len(weights):
        raise ValueError(f"weights must have one entry per embedding ({len(items)}), got {len(weights)}")
    if not all(np.isfinite(weights)):
        raise ValueError(f"weights must be finite, got {weights}")
    rows = []
    for i, e in enumerate(items):
        e = torch.as_tensor(e)
        if e.ndim == 1:
            e = e[None]
        if e.ndim != 2:
            raise ValueError(f"embeddings[{i}] must be (D,) or (N, D), got shape {tuple(e.shape)}")
        rows.append(e)
    dims = {e.shape[-1] for e in rows}
    if len(dims) != 1:
        raise ValueError(f"embeddings differ in dimension: {sorted(dims)}")
    out = sum(w * e.float() for w, e in zip(weights, rows))
    return out.to(rows[0].dtype)


def convex_mix(embeddings: torch.Tensor, weights: Sequence[float] | None = None) -> torch.Tensor:
    """Convex mix of the ``(N, D)`` rows of ``embeddings`` -> ``(1, D)``: how prompts and references combine.

    The weights (one per row, default equal) are normalised to sum to 1, so mixing N inputs keeps the magnitude
    of the single embeddings the model was trained on and only the weights' ratios matter (with one input its
    weight has no effect). Weights must be finite, >= 0 and not all 0 (``ValueError`` naming
    ``content_weights`` otherwise).
    """
    n = embeddings.shape[0]
    if weights is not None and len(weights) != n:
        raise ValueError(f"content_weights must have one weight per prompt/image ({n}), got {len(weights)}")
    weights = [1.0] * n if weights is None else [float(w) for w in weights]
    if any(not np.isfinite(w) or w < 0 for w in weights):
        raise ValueError(f"content_weights must be finite and >= 0, got {weights}")
    total = sum(weights)
    if total <= 0:
        raise ValueError(f"content_weights must not all be 0, got {weights}")
    return mix_content(embeddings, [w / total for w in weights]).reshape(1, -1)


def as_unet_context(emb: torch.Tensor) -> torch.Tensor:
    """Content ``(N, D)`` (or ``(D,)``) -> ``(N, 1, D)``, the sequence VideoUNet cross-attends to."""
    if emb.ndim == 1:
        emb = emb[None]
    if emb.ndim != 2:
        raise ValueError(f"content embedding must be (N, D) or (D,), got shape {tuple(emb.shape)}")
    return emb[:, None, :]


# ------------------------------------------------------------------------------------------------
# input conversion
# ------------------------------------------------------------------------------------------------


def _read_image(path) -> np.ndarray:
    return read_image(path, what="reference image")


def images_to_tensor(images) -> torch.Tensor:
    """PIL image(s), path(s), uint8 numpy (N, H, W, 3)/(H, W, 3) or float tensor (N, 3, H, W)/(3, H, W)
    in [0, 1] -> float32 (N, 3, H, W) in [0, 1]."""
    from PIL import Image  # lazy: PIL is heavy and only this path needs it

    if isinstance(images, (str, os.PathLike, Image.Image)):
        images = [images]
    if isinstance(images, (list, tuple)):
        if not images:
            raise ValueError("images is empty")
        return torch.cat([images_to_tensor(_single(im)) for im in images])
    if isinstance(images, np.ndarray):
        if images.ndim == 3:
            images = images[None]
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
            raise ValueError(f"images as numpy must be uint8 (N, H, W, 3), got {images.dtype} {images.shape}")
        images = np.ascontiguousarray(images) if images.flags.writeable else np.array(images)
        return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
    if isinstance(images, torch.Tensor):
        if images.ndim == 3:
            images = images[None]
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images as a tensor must be (N, 3, H, W), got shape {tuple(images.shape)}")
        if images.dtype == torch.uint8:
            return images.float() / 255.0
        if not images.is_floating_point():
            raise ValueError(f"images as a tensor must be float in [0, 1] or uint8, got {images.dtype}")
        return images.float()
    raise ValueError(f"unsupported image input of type {type(images).__name__}")


def _single(image):
    from PIL import Image  # lazy: PIL is heavy and only this path needs it

    if isinstance(image, (str, os.PathLike)):
        return _read_image(image)
    if isinstance(image, Image.Image):
        return to_uint8_frames([image])[0]
    return image


# ------------------------------------------------------------------------------------------------
# the encoder
# ------------------------------------------------------------------------------------------------


class ContentEncoder(StrictLoadingMixin, ModelMixin, ConfigMixin):
    """CLIP image + text towers with projections (transformers), with their own preprocessing.

    Defaults describe OpenAI CLIP ViT-L/14 (``D = 768``). Build from a transformers CLIP checkpoint
    directory with :meth:`from_clip_pretrained`; round-trip with ``save_pretrained``/``from_pretrained``.

    Two settings describe what the text tower was trained on, for encoders trained by their makers rather than
    OpenAI's (the bundled demo model's is one):

    * ``text_vocabulary``: the closed list of words its tokenizer and text tower were trained on (None: open,
      as CLIP's BPE). A prompt word outside it is split into letters the model never learnt to read, so
      :meth:`encode_clip_text` warns and names the words it knows.
    * ``text_in_image_space``: its raw text embedding was trained to land on the image embeddings of what the
      text describes (e.g. contrastively, plus a regression onto the image embedding), so a prompt needs no
      prior and :meth:`encode_text` does not warn without one.
    """

    config_name = "config.json"

    @register_to_config
    def __init__(
        self,
        vision_config: dict[str, Any] | None = None,
        text_config: dict[str, Any] | None = None,
        projection_dim: int = 768,
        image_size: int = 224,
        crop_size: int = 224,
        image_mean: Sequence[float] = CLIP_MEAN,
        image_std: Sequence[float] = CLIP_STD,
        text_vocabulary: Sequence[str] | None = None,
        text_in_image_space: bool = False,
    ):
        super().__init__()
        if text_vocabulary is not None and (isinstance(text_vocabulary, str)
                                            or not all(isinstance(w, str) and w for w in text_vocabulary)):
            raise ValueError(f"text_vocabulary must be a list of words or None, got {text_vocabulary!r}")
        # lazy: transformers is heavy and only this path needs it
        from transformers import (
            CLIPTextConfig,
            CLIPTextModelWithProjection,
            CLIPVisionConfig,
            CLIPVisionModelWithProjection,
        )

        vision = dict(vision_config) if vision_config is not None else dict(
            hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
            patch_size=14, image_size=224)
        text = dict(text_config) if text_config is not None else dict(
            hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12)
        vision["projection_dim"] = projection_dim
        text["projection_dim"] = projection_dim
        self.vision = CLIPVisionModelWithProjection(CLIPVisionConfig.from_dict(vision))
        self.text = CLIPTextModelWithProjection(CLIPTextConfig.from_dict(text))
        self.vision.eval()
        self.text.eval()
        self.tokenizer = None  # a transformers CLIPTokenizer; see set_tokenizer

    # -- properties ------------------------------------------------------------------------------

    @property
    def embedding_dim(self) -> int:
        """D: the dimension of every content embedding this encoder makes."""
        return int(self.config.projection_dim)

    def set_tokenizer(self, tokenizer) -> None:
        """Attach the ``CLIPTokenizer`` used by :meth:`encode_text` (saved with ``save_pretrained``)."""
        self.tokenizer = tokenizer

    # -- images ----------------------------------------------------------------------------------

    def preprocess(self, images) -> torch.Tensor:
        """Images -> CLIP pixel values (N, 3, crop, crop) on this module's device and dtype."""
        x = images_to_tensor(images).to(self.device)
        h, w = x.shape[-2:]
        size, crop = int(self.config.image_size), int(self.config.crop_size)
        scale = size / min(h, w)
        new_h, new_w = (size, max(1, int(size * w / h))) if h <= w else (max(1, int(size * h / w)), size)
        if (new_h, new_w) != (h, w):
            x = F.interpolate(x, size=(new_h, new_w), mode="bicubic", align_corners=False,
                              antialias=scale < 1).clamp_(0, 1)
        if new_h < crop or new_w < crop:  # as CLIPImageProcessor: pad with zeros to the crop size
            ph, pw = max(0, crop - new_h), max(0, crop - new_w)
            x = F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))
            new_h, new_w = x.shape[-2:]
        top, left = (new_h - crop) // 2, (new_w - crop) // 2
        x = x[:, :, top : top + crop, left : left + crop]
        mean = torch.tensor(self.config.image_mean, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.config.image_std, device=x.device).view(1, 3, 1, 1)
        return ((x - mean) / std).to(self.dtype)

    @torch.no_grad()
    def encode_image(self, images) -> torch.Tensor:
        """CLIP image embeddings (N, D) float32 (raw projection space; see the module docstring).

        ``images``: a PIL image, a path, a list of those, uint8 numpy (N, H, W, 3)/(H, W, 3), or a float
        tensor (N, 3, H, W)/(3, H, W) in [0, 1].
        """
        pixels = self.preprocess(images)
        return self.vision(pixel_values=pixels).image_embeds.float()

    # -- text ------------------------------------------------------------------------------------

    @torch.no_grad()
    def encode_clip_text(self, prompts: str | Sequence[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(text_embeds (N, D), last_hidden_state (N, L, C), attention_mask bool (N, L)) of the prompts."""
        if self.tokenizer is None:
            raise ValueError("this ContentEncoder has no tokenizer: build it with from_clip_pretrained, load a "
                             "directory saved with save_pretrained, or call set_tokenizer(CLIPTokenizer)")
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        if not prompts or not all(isinstance(p, str) for p in prompts):
            raise ValueError(f"prompts must be a string or a non-empty list of strings, got {prompts!r}")
        self._warn_about_unknown_words(prompts)
        max_length = min(int(self.tokenizer.model_max_length), int(self.text.config.max_position_embeddings))
        tokens = self.tokenizer(prompts, padding="max_length", max_length=max_length, truncation=True,
                                return_tensors="pt")
        ids = tokens.input_ids.to(self.device)
        mask = tokens.attention_mask.to(self.device).bool()
        out = self.text(input_ids=ids)
        return out.text_embeds.float(), out.last_hidden_state, mask

    def unknown_words(self, prompts: str | Sequence[str]) -> list[str]:
        """The words of ``prompts`` outside ``text_vocabulary``, in order of appearance, each once (always empty
        for an open vocabulary). Words are runs of letters, lower case, as CLIP's tokenizer splits them;
        punctuation and digits are not checked (byte-level tokens every CLIP tokenizer has)."""
        vocabulary = self.config.text_vocabulary
        if vocabulary is None:
            return []
        known = {word.lower() for word in vocabulary}
        prompts = [prompts] if isinstance(prompts, str) else prompts
        words = [w for p in prompts for w in re.findall(r"[^\W\d_]+", p.lower())]
        return list(dict.fromkeys(w for w in words if w not in known))

    def _warn_about_unknown_words(self, prompts: Sequence[str]) -> None:
        unknown = self.unknown_words(prompts)
        if unknown:
            vocabulary = self.config.text_vocabulary
            warnings.warn(
                f"prompt words this content encoder was not trained on are read letter by letter and carry little "
                f"meaning: {', '.join(repr(w) for w in unknown)}. Its {len(vocabulary)} words: "
                f"{', '.join(sorted(vocabulary))}",
                UserWarning,
                stacklevel=4,
            )

    @torch.no_grad()
    def encode_text(
        self,
        prompts: str | Sequence[str],
        *,
        prior=None,
        prior_scheduler=None,
        num_inference_steps: int = 25,
        guidance_scale: float = 4.0,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Content embeddings (N, D) float32 for text prompts.

        With ``prior`` (a diffusers ``PriorTransformer`` whose ``embedding_dim == D``): the unCLIP prior
        sampling loop — CLIP ``text_embeds`` as ``proj_embedding``, the last hidden states and the
        attention mask as ``encoder_hidden_states`` / ``attention_mask``, classifier-free guidance
        ``guidance_scale`` against the empty prompt (off when <= 1), ``num_inference_steps`` steps of
        ``prior_scheduler`` (default ``UnCLIPScheduler`` as in Karlo), then ``post_process_latents``.
        Without a prior: raw CLIP text embeddings, with a ``UserWarning`` unless the encoder was trained for that
        (``text_in_image_space``).
        """
        text_embeds, hidden, mask = self.encode_clip_text(prompts)
        if prior is None:
            if not self.config.text_in_image_space:
                warnings.warn(
                    "encode_text without a prior: using the CLIP text embedding directly as content; it lives in "
                    "the same space as image embeddings but with different statistics, so results are weaker. "
                    "Pass prior= (a PriorTransformer) for unCLIP-style text->image-embedding mapping.",
                    UserWarning,
                    stacklevel=2,
                )
            return text_embeds
        return _sample_prior(self, prior, prior_scheduler, text_embeds, hidden, mask,
                             num_inference_steps, guidance_scale, generator)

    # -- loading / saving ------------------------------------------------------------------------

    def save_pretrained(self, save_directory, *args, **kwargs):
        """diffusers ``save_pretrained`` plus the tokenizer in ``<save_directory>/tokenizer``."""
        super().save_pretrained(save_directory, *args, **kwargs)
        if self.tokenizer is not None and kwargs.get("is_main_process", True):
            self.tokenizer.save_pretrained(str(Path(save_directory) / TOKENIZER_SUBFOLDER))

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        """Strict ``from_pretrained`` (:class:`gen1.weights.StrictLoadingMixin`) plus the tokenizer from
        ``<dir>[/subfolder]/tokenizer`` if present."""
        model = super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        tok_dir = Path(pretrained_model_name_or_path) / (kwargs.get("subfolder") or "") / TOKENIZER_SUBFOLDER
        if tok_dir.is_dir():
            from transformers import CLIPTokenizer  # lazy: transformers is heavy and only this path needs it

            model.tokenizer = CLIPTokenizer.from_pretrained(str(tok_dir))
        return model

    @classmethod
    def from_clip_pretrained(cls, path: str | os.PathLike, *, device: str | torch.device = "cpu",
                             dtype: torch.dtype = torch.float32) -> "ContentEncoder":
        """Build from a local transformers CLIP checkpoint directory (e.g. the openai/clip-vit-large-patch14
        layout: config.json, model.safetensors or pytorch_model.bin, tokenizer files,
        preprocessor_config.json). Weights are checked strictly: a missing, unexpected or wrongly shaped
        tensor raises ``ValueError`` naming the key."""
        from transformers import CLIPConfig, CLIPTokenizer  # lazy: transformers is heavy and only this path needs it

        path = Path(path)
        if not path.is_dir():
            raise FileNotFoundError(f"CLIP checkpoint directory not found: '{path}' (gen1 never downloads weights)")
        if not (path / "config.json").is_file():
            raise ValueError(f"CLIP checkpoint directory '{path}' has no config.json")

        model_type = read_json_object(path / "config.json", "a model config").get("model_type")
        if model_type != "clip":
            raise ValueError(f"'{path}' holds a {model_type!r} model, expected a transformers CLIPModel ('clip')")
        clip = CLIPConfig.from_pretrained(str(path))
        encoder = cls(vision_config=clip.vision_config.to_dict(), text_config=clip.text_config.to_dict(),
                      projection_dim=clip.projection_dim, **_preprocessing_from_directory(path))
        state = _read_clip_weights(path)
        own = encoder.state_dict()
        mapped = {}
        for key, value in state.items():
            if key.startswith(("vision_model.", "visual_projection.")):
                mapped[f"vision.{key}"] = value
            elif key.startswith(("text_model.", "text_projection.")):
                mapped[f"text.{key}"] = value
            elif key == "logit_scale" or key.endswith("position_ids"):
                continue  # contrastive temperature / legacy buffers: not used for embeddings
            else:
                raise ValueError(f"CLIP checkpoint '{path}' has unexpected key '{key}'")
        check_state_dict(own, mapped, f"CLIP checkpoint '{path}'")
        encoder.load_state_dict(mapped, strict=True)
        if (path / "tokenizer.json").is_file() or (path / "vocab.json").is_file():
            encoder.tokenizer = CLIPTokenizer.from_pretrained(str(path))
        encoder = encoder.to(device=device)
        if encoder.dtype != dtype:
            encoder = nn.Module.to(encoder, dtype=dtype)  # ModelMixin.to would warn needlessly
        return encoder.eval()


def _preprocessing_from_directory(path: Path) -> dict[str, Any]:
    pp_path = path / "preprocessor_config.json"
    if not pp_path.is_file():
        return {}

    pp = read_json_object(pp_path, "a preprocessor config")
    out: dict[str, Any] = {}
    size = pp.get("size")
    if isinstance(size, dict):
        size = size.get("shortest_edge", size.get("height"))
    if size:
        out["image_size"] = int(size)
    crop = pp.get("crop_size")
    if isinstance(crop, dict):
        crop = crop.get("height")
    if crop:
        out["crop_size"] = int(crop)
    if pp.get("image_mean"):
        out["image_mean"] = tuple(pp["image_mean"])
    if pp.get("image_std"):
        out["image_std"] = tuple(pp["image_std"])
    return out


def _read_clip_weights(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file  # lazy: safetensors is heavy and only this path needs it

    if (path / "model.safetensors").is_file():
        return load_file(str(path / "model.safetensors"))
    index = path / "model.safetensors.index.json"
    if index.is_file():
        with open(index, encoding="utf-8") as f:
            shards = sorted(set(json.load(f)["weight_map"].values()))
        state: dict[str, torch.Tensor] = {}
        for shard in shards:
            state.update(load_file(str(path / shard)))
        return state
    if (path / "pytorch_model.bin").is_file():
        return torch.load(path / "pytorch_model.bin", map_location="cpu", weights_only=True)
    raise ValueError(f"no CLIP weights in '{path}' (expected model.safetensors, its index, or pytorch_model.bin)")


def _default_prior_scheduler():
    # Karlo-style prior schedule: the prior predicts the clean (standardised) embedding, x0 clipped to +-5
    return UnCLIPScheduler(variance_type="fixed_small_log", prediction_type="sample", num_train_timesteps=1000,
                           clip_sample=True, clip_sample_range=5.0)


def _sample_prior(encoder: ContentEncoder, prior, scheduler, text_embeds, hidden, mask,
                  num_inference_steps: int, guidance_scale: float, generator) -> torch.Tensor:
    """unCLIP prior sampling: text -> raw CLIP image embeddings (N, D)."""

    dim = int(prior.config.embedding_dim)
    if dim != encoder.embedding_dim:
        raise ValueError(f"prior.embedding_dim ({dim}) must equal the content encoder's embedding_dim "
                         f"({encoder.embedding_dim})")
    if not isinstance(num_inference_steps, int) or num_inference_steps < 1:
        raise ValueError(f"num_inference_steps must be a positive integer, got {num_inference_steps!r}")
    scheduler = scheduler if scheduler is not None else _default_prior_scheduler()
    device, dtype = prior.device, prior.dtype
    n = text_embeds.shape[0]
    do_cfg = guidance_scale > 1.0
    if do_cfg:
        u_embeds, u_hidden, u_mask = encoder.encode_clip_text([""] * n)
        text_embeds = torch.cat([u_embeds, text_embeds])
        hidden = torch.cat([u_hidden, hidden])
        mask = torch.cat([u_mask, mask])
    text_embeds, hidden, mask = text_embeds.to(device, dtype), hidden.to(device, dtype), mask.to(device)

    scheduler.set_timesteps(num_inference_steps, device=device)
    timesteps = scheduler.timesteps
    latents = randn_tensor((n, dim), generator=generator, device=device, dtype=dtype)
    latents = latents * scheduler.init_noise_sigma
    takes_prev = "prev_timestep" in inspect.signature(scheduler.step).parameters
    for i, t in enumerate(timesteps):
        model_in = torch.cat([latents] * 2) if do_cfg else latents
        pred = prior(model_in, timestep=t, proj_embedding=text_embeds, encoder_hidden_states=hidden,
                     attention_mask=mask).predicted_image_embedding
        if do_cfg:
            uncond, cond = pred.chunk(2)
            pred = uncond + guidance_scale * (cond - uncond)
        kwargs: dict[str, Any] = {"generator": generator}
        if takes_prev:
            kwargs["prev_timestep"] = None if i + 1 == len(timesteps) else timesteps[i + 1]
        latents = scheduler.step(pred, timestep=t, sample=latents, **kwargs).prev_sample
    return prior.post_process_latents(latents).float()


def load_content_encoder(path: str | os.PathLike) -> ContentEncoder:
    """A :class:`ContentEncoder` from a folder in either layout: gen1's own (``save_pretrained``: a config naming
    ``ContentEncoder``) or a transformers CLIP checkpoint (``model_type: clip``, e.g. openai/clip-vit-large-patch14).
    """
    folder = Path(path)
    config_path = folder / "config.json"
    if not folder.is_dir():
        raise FileNotFoundError(f"content encoder folder not found: '{folder}' (gen1 never downloads weights)")
    if not config_path.is_file():
        raise ValueError(f"content encoder folder '{folder}' has no config.json")

    config = read_json_object(config_path, "a model config")
    if config.get("_class_name") == ContentEncoder.__name__:
        return ContentEncoder.from_pretrained(str(folder))
    if config.get("model_type") == "clip":
        return ContentEncoder.from_clip_pretrained(folder)
    raise ValueError(
        f"'{folder}' is neither a gen1 ContentEncoder (save_pretrained) nor a transformers CLIP checkpoint "
        f"(config.json has _class_name={config.get('_class_name')!r}, model_type={config.get('model_type')!r})"
    )
