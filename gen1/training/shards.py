"""The cached-clip shard format: safetensors shard files plus a JSON index.

Layout of a shard directory (written by ``gen1 preprocess``, read by ``gen1 train``)::

    SHARD_DIR/
      index.json                  # format, version, shapes, the list of shards with their clip counts
      shard-00000.safetensors     # clips made from inputs [0, shard_size)
      shard-00001.safetensors     # clips made from inputs [shard_size, 2*shard_size) ...

Each shard holds, for clip ``i`` (zero-padded ``{i:05d}``):

* ``{i}.latents``  ``(C, F, h, w)`` VAE latents of the sampled frames, already multiplied by the VAE's
  ``scaling_factor`` (what the UNet sees as ``z_0``);
* ``{i}.depth``    ``(1, F, h, w)`` inverse depth normalised per clip to [0, 1], at latent resolution;
* ``{i}.content``  ``(F, D)`` CLIP image embeddings of the frames (the content encoder's output).

``F`` is the clip length for videos and 1 for images. Per-clip records (source file, first frame,
``is_image``, caption) and the inputs that failed are JSON in the safetensors metadata under ``"gen1"``.
A shard is written atomically and its name depends only on the input ordering, so a rerun skips
shards that exist. safetensors was chosen over tar: random access per clip without unpacking, safe
loading (no pickle) and shapes readable from the header without touching the data.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch

from gen1.atomic import atomic_path

FORMAT = "gen1-shards"
VERSION = 1
INDEX_NAME = "index.json"
FIELDS = ("latents", "depth", "content")


def shard_name(shard_id: int) -> str:
    """The deterministic file name of shard ``shard_id``."""
    return f"shard-{shard_id:05d}.safetensors"


@dataclass
class ClipRecord:
    """One cached clip: tensors plus where it came from."""

    latents: torch.Tensor  # (C, F, h, w)
    depth: torch.Tensor  # (1, F, h, w)
    content: torch.Tensor  # (F, D)
    source: str
    start: int = 0
    is_image: bool = False
    caption: Optional[str] = None


def write_shard(path: str | os.PathLike, clips: list[ClipRecord], *, inputs: list[str] = (),
                failed: list[str] = (), dtype: torch.dtype = torch.float16) -> None:
    """Write ``clips`` to one safetensors shard, atomically (temp file, then rename)."""
    from safetensors.torch import save_file  # lazy: safetensors is heavy and only this path needs it

    tensors: dict[str, torch.Tensor] = {}
    records = []
    for i, clip in enumerate(clips):
        _check_clip(clip, f"clip {i} from {clip.source!r}")
        for name in FIELDS:
            tensors[f"{i:05d}.{name}"] = getattr(clip, name).detach().to("cpu", dtype).contiguous()
        records.append(dict(source=clip.source, start=int(clip.start), is_image=bool(clip.is_image),
                            caption=clip.caption, num_frames=int(clip.latents.shape[1])))
    meta = dict(clips=records, inputs=list(inputs), failed=list(failed))
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"gen1": json.dumps(meta)})


def _check_clip(clip: ClipRecord, where: str) -> None:
    lat, dep, con = clip.latents, clip.depth, clip.content
    if lat.ndim != 4:
        raise ValueError(f"{where}: latents must be (C, F, h, w), got shape {tuple(lat.shape)}")
    c, f, h, w = lat.shape
    if tuple(dep.shape) != (1, f, h, w):
        raise ValueError(f"{where}: depth must have shape {(1, f, h, w)}, got {tuple(dep.shape)}")
    if con.ndim != 2 or con.shape[0] != f:
        raise ValueError(f"{where}: content must have shape ({f}, D), got {tuple(con.shape)}")


def read_shard_meta(path: str | os.PathLike) -> dict:
    """The JSON metadata of a shard (clip records, inputs, failures) without reading tensors."""
    from safetensors import safe_open  # lazy: safetensors is heavy and only this path needs it

    with safe_open(str(path), framework="pt") as handle:
        meta = handle.metadata() or {}
    if "gen1" not in meta:
        raise ValueError(f"shard {str(path)!r} is not a gen1 shard (no 'gen1' metadata)")
    return json.loads(meta["gen1"])


def write_index(shard_dir: str | os.PathLike, info: dict[str, Any]) -> dict:
    """Scan the shard files in ``shard_dir`` and write ``index.json`` (atomically); return the index.

    ``info`` carries the preprocessing settings (clip length, stride, size, latent channels, content dim,
    VAE scaling factor...), stored as they are.
    """
    shard_dir = Path(shard_dir)
    shards = []
    for path in sorted(shard_dir.glob("shard-*.safetensors")):
        meta = read_shard_meta(path)
        clips = meta["clips"]
        images = sum(1 for c in clips if c["is_image"])
        shards.append(dict(file=path.name, num_clips=len(clips), num_images=images,
                           num_videos=len(clips) - images, num_failed=len(meta["failed"])))
    index = dict(format=FORMAT, version=VERSION, **info, shards=shards,
                 num_clips=sum(s["num_clips"] for s in shards),
                 num_failed=sum(s["num_failed"] for s in shards))
    with atomic_path(shard_dir / INDEX_NAME) as tmp:
        tmp.write_text(json.dumps(index, indent=2), encoding="utf-8")
    return index


def read_index(shard_dir: str | os.PathLike) -> dict:
    """Load and check ``index.json`` of a shard directory."""
    shard_dir = Path(shard_dir)
    path = shard_dir / INDEX_NAME
    if not shard_dir.is_dir():
        raise FileNotFoundError(f"shard directory not found: {str(shard_dir)!r}")
    if not path.is_file():
        raise FileNotFoundError(f"no {INDEX_NAME} in shard directory {str(shard_dir)!r} (run gen1 preprocess)")
    index = json.loads(path.read_text(encoding="utf-8"))
    if index.get("format") != FORMAT or index.get("version") != VERSION:
        raise ValueError(f"{str(path)!r} is not a {FORMAT} v{VERSION} index")
    return index


def _damaged(path: Path, error: Exception) -> ValueError:
    return ValueError(f"shard {str(path)!r} is damaged ({' '.join(str(error).split())[:160]}): rerun gen1 preprocess "
                      "with the same settings into its folder, which rewrites it")


@contextlib.contextmanager
def _open_shard(path: Path):
    """``safe_open`` of a shard, a damaged (truncated, not safetensors) file as a ``ValueError`` naming it."""
    from safetensors import safe_open  # lazy: safetensors is heavy and only this path needs it

    try:
        handle = safe_open(str(path), framework="pt")
    except Exception as error:  # noqa: BLE001 -- SafetensorError and OSError alike: the file cannot be read
        raise _damaged(path, error) from None
    with handle:
        yield handle


class ShardDataset(torch.utils.data.Dataset):
    """Random access to the clips of a shard directory; every shape is checked when it is opened.

    Item ``i`` is a dict with ``latents (C,F,h,w)``, ``depth (1,F,h,w)``, ``content (F,D)`` as float32 and
    ``is_image`` (bool). :attr:`is_image` lists the kind of every clip so batch samplers can draw images
    and videos separately without reading data.
    """

    def __init__(self, shard_dir: str | os.PathLike):
        self.shard_dir = Path(shard_dir)
        self.index = read_index(self.shard_dir)
        self.latent_channels = int(self.index["latent_channels"])
        self.content_dim = int(self.index["content_dim"])
        self.clip_length = int(self.index["clip_length"])
        self.entries: list[tuple[str, str]] = []  # (shard file, clip key prefix)
        self.is_image: list[bool] = []
        for shard in self.index["shards"]:
            self._scan(shard["file"], shard["num_clips"])
        if not self.entries:
            raise ValueError(f"shard directory {str(self.shard_dir)!r} is empty: it holds no clips (every input of "
                             "gen1 preprocess failed); preprocess readable videos or images")

    def _scan(self, file: str, expected: int) -> None:
        path = self.shard_dir / file
        if not path.is_file():
            raise FileNotFoundError(f"shard listed in the index is missing: {str(path)!r}")
        with _open_shard(path) as handle:
            meta = json.loads((handle.metadata() or {}).get("gen1", "{}"))
            clips = meta.get("clips", [])
            if len(clips) != expected:
                raise ValueError(f"shard {str(path)!r} holds {len(clips)} clips, the index says {expected}")
            for i, record in enumerate(clips):
                prefix = f"{i:05d}"
                shapes = {}
                for name in FIELDS:
                    key = f"{prefix}.{name}"
                    if key not in handle.keys():
                        raise ValueError(f"shard {str(path)!r}: tensor '{key}' is missing")
                    shapes[name] = tuple(handle.get_slice(key).get_shape())
                self._check_shapes(path, prefix, shapes, record)
                self.entries.append((file, prefix))
                self.is_image.append(bool(record["is_image"]))

    def _check_shapes(self, path: Path, prefix: str, shapes: dict, record: dict) -> None:
        frames = 1 if record["is_image"] else self.clip_length
        lat = shapes["latents"]
        if len(lat) != 4 or lat[0] != self.latent_channels or lat[1] != frames:
            raise ValueError(f"shard {str(path)!r}: tensor '{prefix}.latents' has shape {lat}, expected "
                             f"({self.latent_channels}, {frames}, h, w)")
        expected = {"depth": (1, frames, lat[2], lat[3]), "content": (frames, self.content_dim)}
        for name, shape in expected.items():
            if shapes[name] != shape:
                raise ValueError(f"shard {str(path)!r}: tensor '{prefix}.{name}' has shape {shapes[name]}, "
                                 f"expected {shape}")

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, i: int) -> dict:
        file, prefix = self.entries[i]
        with _open_shard(self.shard_dir / file) as handle:
            try:
                item = {name: handle.get_tensor(f"{prefix}.{name}").float() for name in FIELDS}
            except Exception as error:  # noqa: BLE001 -- a damaged file, named with the way to repair it
                raise _damaged(self.shard_dir / file, error) from None
        item["is_image"] = self.is_image[i]
        return item
