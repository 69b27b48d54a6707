"""Estimated depth kept between edits: one entry per clip content, estimator, size and frame range.

A user who tries five prompts on one shot should not wait five times for the same depth (about 29 % of an edit's
time on CPU at 128 px with a DPT-Hybrid-sized estimator). :class:`DepthCache` stores the estimator's output under a
key made from

* the frames' **content** (a hash of their pixels, shape and dtype: a renamed file hits, a re-encoded, resized or
  differently trimmed clip misses; the frame range and the size are part of the pixels hashed),
* the **estimator**: its class, its config (backend, preprocessing, normalisation) and a hash of its weights
  (the same checkpoint loaded from another path hits; a fine-tuned copy misses),
* a format version (:data:`FORMAT`), bumped whenever what an entry means changes.

Entries are safetensors files in the user's cache directory (:func:`default_cache_dir`: ``$GEN1_CACHE_DIR``, else
the platform's convention), written atomically (:mod:`gen1.atomic`), and the directory is bounded in bytes with
least-recently-used eviction (a hit refreshes the entry's time). An entry is never trusted: one that is truncated,
unreadable, of the wrong shape, not finite or not in [0, 1], or whose data does not match the checksum stored in it,
is deleted and the depth estimated again.

Depth is stored as float32, exactly what the estimator returned, so an edit from a cached entry equals the edit that
estimated it.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
import weakref
from pathlib import Path

import numpy as np
import torch

from gen1.atomic import atomic_path

FORMAT = "gen1-depth-cache-1"
ENV_DIR = "GEN1_CACHE_DIR"
DEFAULT_MAX_BYTES = 2 * 1024**3  # 2 GiB: about 180 clips of 16 frames at 512 x 512
SUFFIX = ".safetensors"


def default_cache_dir() -> Path:
    """gen1's cache directory: ``$GEN1_CACHE_DIR`` when set, else the platform's user cache directory.

    Linux and other Unix: ``$XDG_CACHE_HOME/gen1`` (``~/.cache/gen1``); macOS: ``~/Library/Caches/gen1``; Windows:
    ``%LOCALAPPDATA%\\gen1\\Cache``. Read at every call, so setting the variable takes effect at once.
    """
    override = os.environ.get(ENV_DIR)
    if override:
        return Path(override).expanduser()
    home = Path.home()
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or str(home / "AppData" / "Local")
        return Path(base) / "gen1" / "Cache"
    if sys.platform == "darwin":
        return home / "Library" / "Caches" / "gen1"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else home / ".cache"  # the XDG spec ignores relative paths
    return base / "gen1"


def _hash_tensor(digest, tensor: torch.Tensor) -> None:
    """Feed ``tensor``'s dtype, shape and raw bytes (any dtype, any device) into ``digest``."""
    tensor = tensor.detach().cpu().contiguous()
    digest.update(f"{tensor.dtype}{tuple(tensor.shape)}".encode())
    if tensor.numel():
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().data)


# estimator -> (signature of its parameters' identity and versions, fingerprint): hashing a DPT-Hybrid's weights
# (about 0.5 GB) at every edit would cost a good part of what the cache saves, so it is done again only when a
# parameter or buffer was replaced or changed in place (torch bumps a tensor's _version on every in-place write).
_fingerprints: weakref.WeakKeyDictionary[torch.nn.Module, tuple[tuple, str]] = weakref.WeakKeyDictionary()


def estimator_fingerprint(estimator) -> str | None:
    """A hex digest naming ``estimator`` by its class, config and weights; None when it cannot be identified (an
    object without a ``config`` and ``state_dict``), which leaves it out of the cache."""
    config = getattr(estimator, "config", None)
    if not isinstance(estimator, torch.nn.Module) or config is None:
        return None
    tensors = list(estimator.state_dict(keep_vars=True).items())
    signature = tuple((name, id(t), t.data_ptr(), t._version, t.dtype) for name, t in tensors)
    known = _fingerprints.get(estimator)
    if known is not None and known[0] == signature:
        return known[1]
    digest = hashlib.sha256()
    digest.update(f"{type(estimator).__module__}.{type(estimator).__qualname__}".encode())
    items = {k: v for k, v in dict(config).items() if not k.startswith("_")}  # _name_or_path etc: not the model
    digest.update(json.dumps(items, sort_keys=True, default=str).encode())
    for name, tensor in tensors:
        digest.update(name.encode())
        _hash_tensor(digest, tensor)
    fingerprint = digest.hexdigest()
    _fingerprints[estimator] = (signature, fingerprint)
    return fingerprint


def cache_key(frames: torch.Tensor, estimator_id: str) -> str:
    """The entry name for depth of ``frames`` (their content, shape and dtype) by the estimator ``estimator_id``."""
    digest = hashlib.sha256(FORMAT.encode())
    digest.update(estimator_id.encode())
    _hash_tensor(digest, torch.as_tensor(frames))
    return digest.hexdigest()


def _data_checksum(depth: torch.Tensor) -> str:
    digest = hashlib.sha256()
    _hash_tensor(digest, depth)
    return digest.hexdigest()


class DepthCache:
    """Depth of clips on disk, keyed by content and estimator, at most ``max_bytes`` in all (LRU eviction).

    ``directory``: where entries live (default :func:`default_cache_dir`, read when the cache is made; entries go
    in its ``depth/`` folder). ``hits`` / ``misses`` count this object's lookups, for reports and tests.
    """

    def __init__(self, directory: str | os.PathLike | None = None, *, max_bytes: int = DEFAULT_MAX_BYTES):
        if not isinstance(max_bytes, int) or isinstance(max_bytes, bool) or max_bytes < 0:
            raise ValueError(f"max_bytes must be a non-negative integer, got {max_bytes!r}")
        root = Path(directory).expanduser() if directory is not None else default_cache_dir()
        self.directory = root / "depth"
        self.max_bytes = max_bytes
        self.hits = 0
        self.misses = 0
        self._last_stamp = 0

    def __repr__(self) -> str:
        return f"DepthCache('{self.directory}', max_bytes={self.max_bytes})"

    # -- entries -----------------------------------------------------------------------------------------------
    def path_for(self, key: str) -> Path:
        return self.directory / f"{key}{SUFFIX}"

    def entries(self) -> list[Path]:
        """The entry files, least recently used first."""
        if not self.directory.is_dir():
            return []
        found = []
        for path in self.directory.glob(f"*{SUFFIX}"):
            if path.name.startswith("."):  # another writer's temporary file (gen1.atomic), not an entry yet
                continue
            try:
                found.append((path.stat().st_mtime_ns, path.name, path))
            except FileNotFoundError:  # evicted by another process meanwhile
                continue
        return [path for _, _, path in sorted(found)]

    def size_bytes(self) -> int:
        return sum(_size(path) for path in self.entries())

    def _touch(self, path: Path) -> None:
        """Mark ``path`` as just used (its mtime is the LRU clock; strictly increasing within this process)."""
        stamp = max(time.time_ns(), self._last_stamp + 1)
        self._last_stamp = stamp
        try:
            os.utime(path, ns=(stamp, stamp))
        except OSError:
            pass

    def load(self, key: str, shape: tuple[int, ...]) -> torch.Tensor | None:
        """The entry ``key`` if it is present and sound (depth of ``shape``); a damaged entry is deleted."""
        path = self.path_for(key)
        if not path.is_file():
            return None
        try:
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as handle:
                meta = handle.metadata() or {}
                depth = handle.get_tensor("depth")
            sound = (meta.get("format") == FORMAT and meta.get("key") == key and tuple(depth.shape) == tuple(shape)
                     and depth.dtype == torch.float32 and meta.get("checksum") == _data_checksum(depth)
                     and bool(torch.isfinite(depth).all()) and float(depth.min()) >= 0.0 and float(depth.max()) <= 1.0)
        except Exception:  # truncated, garbage, unreadable: never trusted  # noqa: BLE001
            sound = False
        if not sound:
            path.unlink(missing_ok=True)
            return None
        self._touch(path)
        return depth

    def store(self, key: str, depth: torch.Tensor) -> None:
        """Write ``depth`` as entry ``key`` (atomically), then evict least recently used entries over the bound.

        A depth larger than the whole bound is not stored. Failing to write (full disk, read-only directory) only
        loses the saving, never the edit.
        """
        from safetensors.torch import save_file  # lazy: safetensors is heavy and only this path needs it

        depth = depth.detach().float().cpu().contiguous()
        if depth.numel() * 4 > self.max_bytes:
            return
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            path = self.path_for(key)
            with atomic_path(path) as tmp:
                save_file({"depth": depth}, str(tmp),
                          metadata={"format": FORMAT, "key": key, "checksum": _data_checksum(depth)})
            self._touch(path)
        except OSError:
            return
        self.evict(keep=path)

    def evict(self, keep: Path | None = None) -> list[Path]:
        """Delete least recently used entries until the cache holds at most ``max_bytes``; return what went."""
        entries = self.entries()
        sizes = {path: _size(path) for path in entries}
        total = sum(sizes.values())
        removed = []
        for path in entries:
            if total <= self.max_bytes:
                break
            if path == keep:
                continue
            path.unlink(missing_ok=True)
            total -= sizes[path]
            removed.append(path)
        return removed

    def clear(self) -> None:
        for path in self.entries():
            path.unlink(missing_ok=True)

    # -- use -----------------------------------------------------------------------------------------------------
    def estimate(self, estimator, frames: torch.Tensor, *, batch_size: int = 8) -> torch.Tensor:
        """``estimator.estimate(frames, batch_size=...)``, read from the cache when this clip was estimated before.

        An estimator that cannot be identified by config and weights (:func:`estimator_fingerprint`) is always run.
        """
        fingerprint = estimator_fingerprint(estimator)
        if fingerprint is None:
            return estimator.estimate(frames, batch_size=batch_size)
        shape = _depth_shape(frames)
        if shape is None:  # not a clip this cache can name; the estimator says what is wrong with it
            return estimator.estimate(frames, batch_size=batch_size)
        key = cache_key(torch.as_tensor(frames), fingerprint)
        cached = self.load(key, shape)
        if cached is not None:
            self.hits += 1
            return cached
        self.misses += 1
        depth = estimator.estimate(frames, batch_size=batch_size)
        if tuple(depth.shape) == shape:
            self.store(key, depth)
        return depth


def _depth_shape(frames) -> tuple[int, int, int, int] | None:
    """(F, 1, H, W) of the depth of a clip given as a tensor (F, 3, H, W) or a numpy array (F, H, W, 3)."""
    if isinstance(frames, torch.Tensor) and frames.ndim == 4:
        return (frames.shape[0], 1, frames.shape[2], frames.shape[3])
    if isinstance(frames, np.ndarray) and frames.ndim == 4:
        return (frames.shape[0], 1, frames.shape[1], frames.shape[2])
    return None


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


_default_caches: dict[Path, DepthCache] = {}


def resolve_cache(cache) -> DepthCache | None:
    """What a pipeline's ``depth_cache`` setting means: True -> the cache in the user's cache directory (one object
    per directory, so its counters add up), False / None -> no cache, a :class:`DepthCache` -> itself."""
    if cache is None or cache is False:
        return None
    if cache is True:
        directory = default_cache_dir()
        if directory not in _default_caches:
            _default_caches[directory] = DepthCache(directory)
        return _default_caches[directory]
    if isinstance(cache, DepthCache):
        return cache
    raise ValueError(f"depth_cache must be True, False/None or a DepthCache, got {cache!r}")


def estimate_depth(estimator, frames, *, batch_size: int = 8, cache=True) -> torch.Tensor:
    """Depth of ``frames`` by ``estimator`` through ``cache`` (see :func:`resolve_cache`)."""
    resolved = resolve_cache(cache)
    if resolved is None:
        return estimator.estimate(frames, batch_size=batch_size)
    return resolved.estimate(estimator, frames, batch_size=batch_size)
