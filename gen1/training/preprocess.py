"""Turn videos and images into cached training shards (VAE latents, depth, CLIP embeddings).

Training reads these shards instead of decoding video and running the VAE, the depth network and CLIP
every step. Policies (documented in docs/training.md):

* **Inputs** -- a folder (searched recursively, sorted), or a CSV (column ``path``, optional ``caption``)
  or JSONL (``{"path": ..., "caption": ...}``) list; relative paths are relative to the list file.
  In a folder, the depth videos and ground-truth edits ``gen1 synth`` writes beside each clip are skipped.
  Video and image files are told apart by extension.
* **Clips** -- a video is read keeping every ``stride``-th frame, resized to short side ``size`` and
  centre-cropped to ``size x size``, then cut into back-to-back clips of ``clip_length`` frames (a clip
  spans ``clip_length * stride`` source frames; a shorter tail is dropped). An image is a 1-frame clip.
* **Encoding** -- the depth estimator's per-clip normalised inverse depth, then
  :func:`gen1.training.encoding.encode_clips` (shared with synthetic training): VAE latents exactly ``z_0``,
  the depth area-resized to the latent grid, the content encoder's CLIP image embedding of every frame.
* **Engines** -- :func:`preprocess` here runs in each process of a launcher; the Ray Data engine
  (:mod:`gen1.training.ray_preprocess`) writes the same shards from the same helpers.
* **Shards** -- inputs ``[k*shard_size, (k+1)*shard_size)`` go to shard ``k``; process ``r`` of ``W``
  handles shards ``k % W == r``; finished shards (present on disk, written atomically) are skipped, so a
  rerun resumes. An input that cannot be read or encoded is logged and recorded as failed in its shard;
  the job carries on and reports the count.
"""

from __future__ import annotations

import csv
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from gen1.conditioning import vae_latent_scale
from gen1.media import (  # one definition, shared with gen1 edit
    IMAGE_SUFFIXES,
    MAX_SIZE,
    VIDEO_SUFFIXES,
    fit_frames,
    is_image_path,
    read_frames_or_images,
)
from gen1.training.components import load_content, load_depth, load_vae
from gen1.training.encoding import encode_clips
from gen1.atomic import atomic_path
from gen1.training.shards import INDEX_NAME, ClipRecord, read_shard_meta, shard_name, write_index, write_shard

logger = logging.getLogger(__name__)

SETTINGS_NAME = "preprocess.json"


@dataclass
class PreprocessSettings:
    clip_length: int = 8
    stride: int = 4
    size: int = 256
    shard_size: int = 16  # input files per shard
    max_clips_per_video: Optional[int] = None
    dtype: str = "float16"  # storage dtype of the tensors in the shards
    batch_size: int = 8  # frames per VAE / depth / CLIP forward

    def validate(self) -> "PreprocessSettings":
        for name in ("clip_length", "stride", "size", "shard_size", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.size % 8 or self.size > MAX_SIZE:
            raise ValueError(f"size must be a multiple of 8 up to {MAX_SIZE}, got {self.size}")
        if self.dtype not in ("float16", "bfloat16", "float32"):
            raise ValueError(f"dtype must be float16, bfloat16 or float32, got {self.dtype!r}")
        return self


@dataclass
class InputItem:
    path: str
    caption: Optional[str] = None

    @property
    def is_image(self) -> bool:
        return is_image_path(self.path)


def list_inputs(source: str | Path) -> list[InputItem]:
    """The inputs of a folder / CSV / JSONL list, in a fixed order (shard names depend on it)."""
    source = Path(source)
    if not source.exists():
        raise FileNotFoundError(f"--input not found: {str(source)!r}")
    if source.is_dir():
        files = sorted(p for p in source.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES + IMAGE_SUFFIXES)
        companions = [p for p in files if is_synth_companion(p)]
        if companions:
            logger.warning("skipping %d depth/edit videos of `gen1 synth` (%s ...: NAME_depth / NAME_edit beside "
                           "NAME), which are not RGB training clips; list them in a CSV to train on them anyway",
                           len(companions), companions[0].name)
        items = [InputItem(str(p)) for p in files if p not in companions]
    elif source.suffix.lower() == ".csv":
        with open(source, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            if not reader.fieldnames or "path" not in reader.fieldnames:
                raise ValueError(f"--input {str(source)!r}: a CSV list needs a 'path' column")
            items = [InputItem(_relative(source, row["path"]), row.get("caption") or None) for row in reader]
    elif source.suffix.lower() in (".jsonl", ".json"):
        items = []
        for number, line in enumerate(source.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                items.append(InputItem(_relative(source, row["path"]), row.get("caption")))
            except (json.JSONDecodeError, KeyError, TypeError) as err:
                raise ValueError(f"--input {str(source)!r} line {number}: expected {{\"path\": ...}} ({err})") from None
    else:
        raise ValueError(f"--input must be a folder, a .csv or a .jsonl list, got {str(source)!r}")
    if not items:
        raise ValueError(f"--input {str(source)!r} lists no video or image files")
    return items


COMPANION_SUFFIXES = ("_depth", "_edit")  # what `gen1 synth` writes beside each clip NAME.mp4 (gen1.commands.synth)


def is_synth_companion(path: Path) -> bool:
    """Whether ``path`` is the depth video or ground-truth edit `gen1 synth` wrote beside a clip: ``NAME_depth.EXT``
    or ``NAME_edit.EXT`` where the folder holds all that `gen1 synth` writes for ``NAME`` (``NAME.EXT``, both
    companions, ``NAME.txt`` and ``NAME_edit.txt``), so a user's own ``interview_edit.mp4`` beside ``interview.mp4``
    stays a training clip (the depth is grey-scale inverse depth, the edit the answer an evaluation compares
    against: neither is one)."""
    for suffix in COMPANION_SUFFIXES:
        if not path.stem.endswith(suffix):
            continue
        name = path.stem[:-len(suffix)]
        written = [f"{name}{path.suffix}", *(f"{name}{other}{path.suffix}" for other in COMPANION_SUFFIXES),
                   f"{name}.txt", f"{name}_edit.txt"]
        if all(path.with_name(file).is_file() for file in written):
            return True
    return False


def _relative(list_file: Path, path: str) -> str:
    p = Path(path)
    return str(p if p.is_absolute() else list_file.parent / p)


def load_clips(item: InputItem, settings: PreprocessSettings) -> list[tuple[int, np.ndarray]]:
    """``(first source frame, uint8 (F,size,size,3))`` clips of one input (see module docstring)."""

    size = settings.size
    # decode only what the kept clips need: with a cap on clips, reading stops after their last frame
    needed = None if item.is_image or settings.max_clips_per_video is None else \
        settings.max_clips_per_video * settings.clip_length
    frames = read_frames_or_images(item.path, stride=settings.stride, size=size, max_frames=needed)
    frames = fit_frames(frames, (size, size))  # the centre square (gen1's resize policy at a square shape)
    if item.is_image:
        return [(0, frames)]
    n = len(frames) // settings.clip_length
    if settings.max_clips_per_video is not None:
        n = min(n, settings.max_clips_per_video)
    if n == 0:
        raise ValueError(f"video has {len(frames)} frames at stride {settings.stride}, fewer than clip_length "
                         f"{settings.clip_length}")
    L = settings.clip_length
    return [(i * L * settings.stride, frames[i * L:(i + 1) * L]) for i in range(n)]


class ClipEncoder:
    """VAE + depth estimator + content encoder applied to one clip of uint8 frames."""

    def __init__(self, vae, depth_estimator, content_encoder, *, device, batch_size: int = 8):
        self.vae, self.depth, self.content = vae, depth_estimator, content_encoder
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.scaling_factor, self.shift_factor = vae_latent_scale(vae)
        self.latent_channels = int(vae.config.latent_channels)

    @torch.no_grad()
    def __call__(self, frames: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """uint8 ``(F,H,W,3)`` -> latents ``(C,F,h,w)``, depth ``(1,F,h,w)``, content ``(F,D)`` (float32, CPU)."""
        frames = np.array(frames)  # a writable copy: decoders may hand out read-only arrays
        x = torch.tensor(frames).permute(0, 3, 1, 2).float() / 255.0  # (F,3,H,W) [0,1]
        depth = self.depth.estimate(frames, batch_size=self.batch_size).float().cpu()  # (F,1,H,W)
        clips = encode_clips(self.vae, self.content, x[None], depth[None], chunk_size=self.batch_size).to("cpu")
        return clips.latents[0], clips.depth[0], clips.content[0]


def load_clip_encoder(model: str, depth_model: Optional[str], content_model: Optional[str], device, *,
                      batch_size: int = 8) -> ClipEncoder:
    """The :class:`ClipEncoder` of ``gen1 preprocess`` on ``device``: MODEL's VAE (float16 on CUDA), the depth
    estimator and the content encoder, each a path or a Hub repo id (:func:`gen1.hub.resolve_preprocess_models`:
    resolved where this runs, so a Ray encoder actor on another node finds them in its own cache).
    Module-level, so Ray can ship it to encoder actors by reference."""
    from gen1.hub import resolve_preprocess_models  # lazy: keeps this module's import light

    model, depth_model, content_model = resolve_preprocess_models(model, depth_model, content_model)
    device = torch.device(device)
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    return ClipEncoder(load_vae(model, device, dtype), load_depth(model, depth_model, device),
                       load_content(model, content_model, device), device=device, batch_size=batch_size)


def _read_json(path: Path, what: str):
    """A JSON file of a shard folder, or a ``ValueError`` naming it (one line)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise ValueError(f"{what} '{path}' is not readable JSON ({error}): it is not preprocess's; use a new --out"
                         ) from None


def model_paths(model: str, depth_model: Optional[str], content_model: Optional[str]) -> dict:
    """The encoders a run uses, as resolved paths (what :func:`check_rerun` records and compares)."""
    return dict(model=str(Path(model).resolve()),
                depth_model=str(Path(depth_model or Path(model) / "depth_estimator").resolve()),
                content_model=str(Path(content_model or Path(model) / "content_encoder").resolve()))


def check_out(out: Path, input_source: str | Path | None = None, model: Optional[str] = None) -> None:
    """Refuse an ``--out`` that is the input folder, is (or lies in) the model folder, or holds an ``index.json``
    that is not a gen1 shard index: preprocessing writes shards and an index there. A folder inside the input
    folder is fine (``--input data --out data/shards``): its shards and index are no inputs."""
    from gen1.training.shards import FORMAT  # lazy: its own package, loaded by the time this runs

    target = out.expanduser().resolve()
    for flag, value in (("--input", input_source), ("--model", model)):
        if value is None or not Path(value).is_dir():
            continue
        folder = Path(value).expanduser().resolve()
        if target == folder or (flag == "--model" and target.is_relative_to(folder)):
            relation = "is" if target == folder else "lies inside"
            raise ValueError(f"--out '{out}' {relation} the {flag} folder '{value}': preprocessing writes shards "
                             "there; choose a new output folder")
    index = out / INDEX_NAME
    if index.exists():
        data = _read_json(index, "--out holds") if index.is_file() else None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"--out '{out}' holds an {INDEX_NAME} that is not a gen1 shard index: preprocessing "
                             "would overwrite it; choose a new output folder")


def check_rerun(out: Path, settings: PreprocessSettings, groups: list[list["InputItem"]], *, record: bool,
                models: Optional[dict] = None) -> None:
    """Refuse ``out`` unless a run with these settings, encoders (``models``, from :func:`model_paths`) and input
    groups may continue there (both engines): the settings are compared first, since other settings regroup the
    inputs too (and would otherwise read as other inputs), then each shard's inputs; ``record`` (the main process)
    then writes the settings of a new folder, so a refused folder gets no settings file."""
    path = out / SETTINGS_NAME
    current = dict(asdict(settings), **(models or {}))
    if path.is_file():
        _check_settings(out, path, current)
    check_existing_shards(out, groups)
    if record and not path.is_file():
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(current, indent=2), encoding="utf-8")


def _check_settings(out: Path, path: Path, current: dict) -> None:
    """Refuse ``out`` if its settings file ``path`` records other clip settings or other encoders than ``current``."""
    previous = _read_json(path, "--out's settings file")
    if not isinstance(previous, dict):
        raise ValueError(f"--out's settings file '{path}' holds no settings: use a new --out")
    for key, value in current.items():
        if key in ("model", "depth_model", "content_model") and key not in previous:
            continue  # written before gen1 recorded the encoders
        if key != "batch_size" and previous.get(key) != value:
            raise ValueError(f"--out {str(out)!r} was preprocessed with {key}={previous.get(key)!r}, now "
                             f"{key}={value!r}: use a new output folder or the same settings")


def check_existing_shards(out: Path, groups: list[list["InputItem"]]) -> None:
    """Refuse ``out`` if a shard there was made from other inputs than this run puts in it (another input folder or
    list, or files added or removed, which shifts every later shard), or lies past this run's last shard: the
    index would list them as this run's. Unreadable shards are left to be rewritten."""
    for path in sorted(out.glob("shard-*.safetensors")):
        try:
            recorded = read_shard_meta(path).get("inputs")
            k = int(path.name[len("shard-"):-len(".safetensors")])
        except Exception:  # noqa: BLE001 -- unreadable or oddly named: rewritten or ignored as before
            continue
        expected = [item.path for item in groups[k]] if k < len(groups) else []
        if recorded is not None and not _same_paths(recorded, expected):
            raise ValueError(f"--out '{out}' holds {path.name}, made from other inputs ({_first(recorded)}) than "
                             f"this run puts in it ({_first(expected)}): use a new --out for other inputs")


def _same_paths(recorded: list, expected: list) -> bool:
    if list(recorded) == expected:
        return True
    return len(recorded) == len(expected) and all(
        Path(a).resolve() == Path(b).resolve() for a, b in zip(recorded, expected))


def _first(paths: list) -> str:
    if not paths:
        return "none"
    return f"'{paths[0]}'" + (f" and {len(paths) - 1} more" if len(paths) > 1 else "")


def shard_inputs(inputs: list[InputItem], settings: PreprocessSettings) -> list[list[InputItem]]:
    """The inputs of every shard: shard ``k`` holds inputs ``[k*shard_size, (k+1)*shard_size)``."""
    n = settings.shard_size
    return [inputs[k:k + n] for k in range(0, len(inputs), n)]


def shard_finished(path: Path) -> bool:
    """Whether shard ``path`` is on disk and readable (an unreadable leftover is logged and redone)."""
    if not path.is_file():
        return False
    try:
        read_shard_meta(path)
        return True
    except Exception as err:  # noqa: BLE001 -- an unreadable leftover is redone, not trusted
        logger.warning("shard %s is unreadable (%s); rewriting it", path, err)
        return False


def encode_input(encoder, item: InputItem, clips: list[tuple[int, np.ndarray]]) -> list[ClipRecord]:
    """The records of one input's clips ``(first frame, uint8 frames)``: all of them, or an exception."""
    records = []
    for start, frames in clips:
        latents, depth, content = encoder(frames)
        records.append(ClipRecord(latents, depth, content, source=item.path, start=start, is_image=item.is_image,
                                  caption=item.caption))
    return records


def index_info(settings: PreprocessSettings, num_inputs: int, *, latent_channels: int, content_dim: int,
               scaling_factor: float, shift_factor) -> dict:
    """What ``index.json`` records besides the shard list (see :func:`gen1.training.shards.write_index`)."""
    return dict(clip_length=settings.clip_length, stride=settings.stride, size=settings.size,
                latent_channels=latent_channels, content_dim=content_dim, scaling_factor=scaling_factor,
                shift_factor=shift_factor, num_inputs=num_inputs, dtype=settings.dtype)


def encoder_info(encoder: ClipEncoder, content_dim: Optional[int] = None) -> dict:
    """The encoder's part of :func:`index_info` (``content_dim``: given, or the content encoder's)."""
    content_dim = content_dim if content_dim is not None else int(encoder.content.embedding_dim)
    return dict(latent_channels=encoder.latent_channels, content_dim=content_dim,
                scaling_factor=encoder.scaling_factor, shift_factor=encoder.shift_factor)


def preprocess(inputs: list[InputItem], out: str | Path, encoder: ClipEncoder, settings: PreprocessSettings, *,
               rank: int = 0, world_size: int = 1, barrier=None, content_dim: Optional[int] = None,
               load=load_clips, models: Optional[dict] = None) -> dict:
    """Write this process's shards, then (rank 0, after ``barrier()``) the index; return a summary.

    ``load(item, settings)`` reads an input's clips (default :func:`load_clips`; a benchmark swaps in a stand-in).
    ``models`` (:func:`model_paths`): the encoders, recorded in ``preprocess.json`` and compared on a rerun.

    The summary holds ``written`` / ``skipped`` shard counts of this process, ``failed`` inputs of this
    process (path and reason) and, on rank 0, ``index`` (which sums failures over all shards).
    """
    from tqdm.auto import tqdm  # lazy: tqdm is heavy and only this path needs it

    settings.validate()
    out = Path(out)
    check_out(out)
    out.mkdir(parents=True, exist_ok=True)
    groups = shard_inputs(inputs, settings)
    check_rerun(out, settings, groups, record=rank == 0, models=models)
    dtype = getattr(torch, settings.dtype)
    mine = [k for k in range(len(groups)) if k % world_size == rank]
    summary = dict(written=0, skipped=0, failed=[], clips=0)
    for k in tqdm(mine, desc=f"preprocess (rank {rank})", disable=rank != 0):
        path = out / shard_name(k)
        group = groups[k]
        if shard_finished(path):
            summary["skipped"] += 1
            continue
        clips, failed = [], []
        for item in group:
            try:  # all of an input's clips, or none of them if any fails
                clips.extend(encode_input(encoder, item, load(item, settings)))
            except Exception as err:  # noqa: BLE001 -- one bad file must not end the job
                logger.warning("skipping input %s: %s", item.path, err)
                failed.append(item.path)
                summary["failed"].append((item.path, str(err)))
        write_shard(path, clips, inputs=[i.path for i in group], failed=failed, dtype=dtype)
        summary["written"] += 1
        summary["clips"] += len(clips)
    if barrier is not None:
        barrier()
    if rank == 0:
        summary["index"] = write_index(out, index_info(settings, len(inputs), **encoder_info(encoder, content_dim)))
    return summary
