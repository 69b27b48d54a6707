"""Load the frozen encoders that preprocessing and customisation need, from model directories.

``--model`` is a Stable Diffusion directory or a gen1 pipeline directory. The VAE is ``MODEL/vae``; the
depth estimator and content encoder are ``MODEL/depth_estimator`` and ``MODEL/content_encoder`` (a gen1
pipeline has both) unless ``--depth-model`` / ``--content-model`` name them (a MiDaS ``.pt``, a DPT /
Depth Anything folder, a gen1 component folder; a ContentEncoder folder or a transformers CLIP folder).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional


def _require_dir(path: Path, what: str) -> Path:
    if not path.exists():
        raise FileNotFoundError(f"{what} not found: {str(path)!r}")
    return path


def vae_folder(model: str | Path) -> Optional[Path]:
    """The VAE folder of ``model`` (its ``vae/``, or ``model`` itself when it is a VAE folder), or None."""
    root = Path(model)
    if (root / "vae" / "config.json").is_file():
        return root / "vae"
    if (root / "config.json").is_file() and "AutoencoderKL" in (root / "config.json").read_text(encoding="utf-8"):
        return root  # a VAE folder itself
    return None


def load_vae(model: str, device, dtype, *, what: str = "--model"):
    from diffusers import AutoencoderKL  # lazy: diffusers is heavy and only this path needs it

    _require_dir(Path(model), what)
    folder = vae_folder(model)
    if folder is None:
        raise FileNotFoundError(f"{what} {model!r} has no vae/config.json (expected a Stable Diffusion or gen1 "
                                "pipeline directory, or a VAE folder)")
    return AutoencoderKL.from_pretrained(str(folder), torch_dtype=dtype).to(device).eval()


def load_depth(model: str, depth_model: Optional[str], device):
    from gen1.depth import load_depth_estimator  # lazy: keeps this module's import light (no torch when it loads)

    path = Path(depth_model) if depth_model else Path(model) / "depth_estimator"
    if not path.exists():
        raise FileNotFoundError(f"no depth estimator: {str(path)!r} does not exist (give --depth-model)")
    return load_depth_estimator(str(path), device=device).eval()


def load_content(model: str, content_model: Optional[str], device, *, what: str = "--content-model"):
    from gen1.content import ContentEncoder  # lazy: keeps this module's import light (no torch when it loads)

    path = Path(content_model) if content_model else Path(model) / "content_encoder"
    if not path.exists():
        raise FileNotFoundError(f"no content encoder: {str(path)!r} does not exist (give {what})")
    config = path / "config.json"
    is_gen1 = config.is_file() and json.loads(config.read_text()).get("_class_name") == "ContentEncoder"
    encoder = ContentEncoder.from_pretrained(str(path)) if is_gen1 else ContentEncoder.from_clip_pretrained(str(path))
    return encoder.to(device).eval()
