"""CLIP frame consistency and CLIP prompt consistency, with any transformers CLIP checkpoint.

- **frame consistency**: mean cosine similarity of the CLIP image embeddings of consecutive frames
  ``(1 / (F-1)) sum_t cos(e_t, e_{t+1})`` (Esser et al. 2023 and earlier editing papers);
- **prompt consistency**: mean cosine similarity of every frame's image embedding with the prompt's
  text embedding ``(1 / F) sum_t cos(e_t, e_text)``.

Embeddings are the projected CLIP features (``get_image_features`` / ``get_text_features``). Papers report
ViT-L/14; any directory holding a ``CLIPModel`` and its tokenizer works (``--clip-model DIR``). Images are
preprocessed in torch the way ``CLIPImageProcessor`` does: bicubic resize of the short side to the model's
``image_size``, centre crop, normalisation with ``image_mean`` / ``image_std`` from the directory's
``preprocessor_config.json`` (OpenAI's constants if the file is absent).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F

from gen1.eval.image_metrics import as_float_video

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def _features(output) -> torch.Tensor:
    """transformers 4 returns a tensor, 5 a model output whose ``pooler_output`` is the projected feature."""
    return output if torch.is_tensor(output) else output.pooler_output


class ClipScorer:
    """A CLIP model + tokenizer + preprocessing, computing normalised embeddings and the two consistency scores."""

    def __init__(self, model, tokenizer, *, image_mean=OPENAI_CLIP_MEAN, image_std=OPENAI_CLIP_STD, device="cpu",
                 batch_size: int = 16):
        self.model = model.eval().to(device)
        self.tokenizer = tokenizer
        self.image_size = int(model.config.vision_config.image_size)
        self.mean = torch.tensor(image_mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(image_std, dtype=torch.float32).view(1, 3, 1, 1)
        self.device = torch.device(device)
        self.batch_size = batch_size

    @classmethod
    def from_pretrained(cls, path: str | Path, *, device="cpu", batch_size: int = 16) -> "ClipScorer":
        """Load ``CLIPModel`` and its tokenizer from a local directory (never downloads)."""
        from transformers import AutoTokenizer, CLIPModel  # lazy: transformers is heavy and only this path needs it

        path = Path(path)
        if not path.is_dir():
            raise FileNotFoundError(f"--clip-model: not a directory: '{path}'")
        if not (path / "config.json").is_file():
            raise ValueError(f"--clip-model: '{path}' has no config.json (expected a transformers CLIPModel directory)")
        model = CLIPModel.from_pretrained(path, local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        mean, std = OPENAI_CLIP_MEAN, OPENAI_CLIP_STD
        preprocessor = path / "preprocessor_config.json"
        if preprocessor.is_file():
            config = json.loads(preprocessor.read_text())
            mean, std = config.get("image_mean", mean), config.get("image_std", std)
        return cls(model, tokenizer, image_mean=mean, image_std=std, device=device, batch_size=batch_size)

    def preprocess(self, frames: torch.Tensor) -> torch.Tensor:
        """(N,3,H,W) in [0,1] -> normalised (N,3,S,S) at the model's input size."""
        n, _, h, w = frames.shape
        scale = self.image_size / min(h, w)
        new_h, new_w = max(self.image_size, round(h * scale)), max(self.image_size, round(w * scale))
        x = F.interpolate(frames, size=(new_h, new_w), mode="bicubic", align_corners=False, antialias=True)
        top, left = (new_h - self.image_size) // 2, (new_w - self.image_size) // 2
        x = x[:, :, top : top + self.image_size, left : left + self.image_size].clamp(0, 1)
        return (x - self.mean) / self.std

    @torch.no_grad()
    def image_embeddings(self, frames) -> torch.Tensor:
        """Unit-norm image embeddings (N, D) of frames (uint8 (N,H,W,3) or float (N,3,H,W) in [0,1])."""
        video = as_float_video(frames)
        chunks = []
        for start in range(0, len(video), self.batch_size):
            pixels = self.preprocess(video[start : start + self.batch_size]).to(self.device)
            chunks.append(_features(self.model.get_image_features(pixel_values=pixels)).float().cpu())
        return F.normalize(torch.cat(chunks), dim=-1)

    @torch.no_grad()
    def text_embeddings(self, prompts: list[str]) -> torch.Tensor:
        """Unit-norm text embeddings (N, D)."""
        max_length = int(self.model.config.text_config.max_position_embeddings)
        tokens = self.tokenizer(prompts, padding="max_length", max_length=max_length, truncation=True,
                                return_tensors="pt").to(self.device)
        feats = self.model.get_text_features(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"])
        return F.normalize(_features(feats).float().cpu(), dim=-1)

    def frame_consistency(self, frames) -> float:
        return frame_consistency(self.image_embeddings(frames))

    def prompt_consistency(self, frames, prompt: str) -> float:
        return prompt_consistency(self.image_embeddings(frames), self.text_embeddings([prompt])[0])


def frame_consistency(embeddings: torch.Tensor) -> float:
    """Mean cosine similarity of consecutive rows of ``embeddings`` (F, D)."""
    if embeddings.shape[0] < 2:
        raise ValueError(f"frame consistency needs at least 2 frames, got {embeddings.shape[0]}")
    e = F.normalize(embeddings.float(), dim=-1)
    return float((e[:-1] * e[1:]).sum(-1).mean())


def prompt_consistency(embeddings: torch.Tensor, text_embedding: torch.Tensor) -> float:
    """Mean cosine similarity of each row of ``embeddings`` (F, D) with ``text_embedding`` (D,)."""
    e = F.normalize(embeddings.float(), dim=-1)
    t = F.normalize(text_embedding.float().flatten(), dim=0)
    return float((e @ t).mean())
