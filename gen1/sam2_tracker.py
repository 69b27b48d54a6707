"""SAM 2 video segmentation (transformers' ``Sam2VideoModel``): a subject given on one frame, segmented on every frame.

The second tracker of :mod:`gen1.tracking` (``--mask-tracker sam2``). SAM 2 keeps a memory of the subject's
appearance from frame to frame, so it follows a subject through motion, pose changes and short occlusions where the
optical flow drifts. It is prompted on one frame, by the mask of the subject there or by clicks on it (positive on
the subject, negative on what is not), and the prompt is carried forwards to the last frame and backwards to the
first (:func:`segment_video`).

The model is a Hub id (default :data:`DEFAULT_SAM2_MODEL`, the smallest SAM 2.1) or a local folder in transformers'
layout (``config.json``, ``model.safetensors`` and the processor's configs, :data:`SAM2_VIDEO`), fetched through
gen1's hub layer (:mod:`gen1.hub`: the cache when offline, one line naming what is missing). It is loaded once per
process and device (:func:`load_sam2`).

Memory: the clip is resized to the model's 1024 x 1024 input and kept on the CPU (about 12 MB per frame in
float32); the tiny model's weights take about 160 MB, and it runs one frame at a time on the chosen device.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import torch

from gen1.hub import TRANSFORMERS_WEIGHTS, Layout, resolve

#: The SAM 2 model used when none is named: SAM 2.1 with the tiny Hiera backbone (39 M parameters).
DEFAULT_SAM2_MODEL = "facebook/sam2.1-hiera-tiny"
#: What a SAM 2 video model holds on the Hub (transformers' layout of ``facebook/sam2.1-hiera-*``).
SAM2_VIDEO = Layout(
    "a SAM 2 video model in transformers layout (config.json, model.safetensors, processor_config.json)",
    # the processor's own config, or (a repo saved before transformers kept one) the image processor's naming it
    files=(("config.json",), TRANSFORMERS_WEIGHTS, ("processor_config.json", "preprocessor_config.json")),
    optional=("preprocessor_config.json", "video_preprocessor_config.json"),
)
#: ``model_type`` values of a config that ``Sam2VideoModel`` loads.
SAM2_MODEL_TYPES = ("sam2_video", "sam2")


def resolve_sam2(name=None, *, flag: str = "--mask-tracker-model", weights: bool = True) -> Path:
    """The local folder of the SAM 2 model ``name`` (a folder or a Hub id; None: :data:`DEFAULT_SAM2_MODEL`),
    its config checked to be a SAM 2 model; ``ValueError`` / ``FileNotFoundError`` in one line naming ``flag``."""
    name = DEFAULT_SAM2_MODEL if name is None else name
    folder = resolve(name, SAM2_VIDEO, flag=flag, weights=weights)
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise ValueError(f"{flag} '{name}' is not {SAM2_VIDEO.what}: it has no config.json")
    try:
        model_type = json.loads(config_path.read_text(encoding="utf-8")).get("model_type")
    except (ValueError, AttributeError):
        raise ValueError(f"{flag} '{name}': its config.json is not a JSON object") from None
    if model_type not in SAM2_MODEL_TYPES:
        raise ValueError(f"{flag} '{name}' is not a SAM 2 model: its config.json's model_type is {model_type!r} "
                         f"(expected {' or '.join(SAM2_MODEL_TYPES)})")
    return folder


@functools.lru_cache(maxsize=2)
def load_sam2(folder: str, device: str = "cpu"):
    """(``Sam2VideoModel`` in eval mode on ``device``, ``Sam2VideoProcessor``) from a resolved ``folder``, loaded
    once per process (a web app tracks many clips with one model)."""
    # lazy: heavy, and only this tracker needs it
    from transformers import Sam2VideoModel, Sam2VideoProcessor

    try:
        model = Sam2VideoModel.from_pretrained(folder).to(device).eval()
        processor = Sam2VideoProcessor.from_pretrained(folder)
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as error:
        raise ValueError(f"the SAM 2 model '{folder}' could not be loaded ({type(error).__name__}: "
                         f"{' '.join(str(error).split())})") from None
    return model, processor


def default_device() -> str:
    """Where SAM 2 runs when no device is given: the first GPU when there is one, else the CPU."""
    return "cuda" if torch.cuda.is_available() else "cpu"


@torch.no_grad()
def segment_video(frames: torch.Tensor, frame_index: int, *, mask: torch.Tensor | None = None,
                  points: list[tuple[float, float, bool]] | None = None, model=None, device: str | None = None,
                  flag: str = "--mask-tracker-model") -> torch.Tensor:
    """The subject on every frame, ``(F, 1, H, W)`` float in {0, 1}, for ``frames`` ``(F, 3, H, W)`` in [0, 1].

    The prompt is on frame ``frame_index``: ``mask`` ``(H, W)`` (> 0.5 = subject), or ``points`` ``(x, y,
    positive)`` in pixels of the frames (already checked to lie inside them). SAM 2 takes one or the other on a
    frame, not both. It runs on that frame, then forwards to the last frame and backwards to the first, each frame
    conditioned on its memory of the frames before it in that direction. ``model``: a folder or Hub id (None:
    :data:`DEFAULT_SAM2_MODEL`); ``device``: where it runs (None: :func:`default_device`)."""
    if (mask is None) == (points is None):
        raise ValueError("SAM 2 is prompted by a mask or by clicks on one frame: give exactly one of them")
    device = device or default_device()
    sam, processor = load_sam2(str(resolve_sam2(model, flag=flag)), device)
    num_frames, _, height, width = frames.shape
    video = [np.ascontiguousarray(frame) for frame in
             (frames.clamp(0, 1) * 255.0 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()]
    session = processor.init_video_session(video=video, inference_device=device, video_storage_device="cpu",
                                           dtype=torch.float32)
    if mask is not None:
        processor.add_inputs_to_inference_session(session, frame_idx=frame_index, obj_ids=1,
                                                  input_masks=(mask > 0.5).cpu())
    else:
        processor.add_inputs_to_inference_session(
            session, frame_idx=frame_index, obj_ids=1,
            input_points=[[[[float(x), float(y)] for x, y, _ in points]]],
            input_labels=[[[1 if positive else 0 for _, _, positive in points]]])
    masks: list[torch.Tensor | None] = [None] * num_frames

    def keep(output) -> None:
        resized = processor.post_process_masks([output.pred_masks.float().cpu()], original_sizes=[[height, width]],
                                               binarize=True)[0]
        masks[output.frame_idx] = resized.reshape(height, width).float()

    keep(sam(inference_session=session, frame_idx=frame_index))
    for reverse in (False, True):  # from the prompted frame to the last, then back to the first
        for output in sam.propagate_in_video_iterator(session, start_frame_idx=frame_index, reverse=reverse):
            keep(output)
    missing = [index for index, item in enumerate(masks) if item is None]
    if missing:  # the propagation covers every frame; anything else is a change in transformers
        raise RuntimeError(f"SAM 2 gave no mask for frames {missing}")
    return torch.stack(masks)[:, None]


__all__ = ["DEFAULT_SAM2_MODEL", "SAM2_VIDEO", "load_sam2", "resolve_sam2", "segment_video"]
