"""The depth cache (gen1.depth.cache): keys, LRU bound, damaged entries, and its use by Gen1Pipeline (CPU, tiny)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from gen1.depth.cache import DepthCache, cache_key, default_cache_dir, estimator_fingerprint, resolve_cache
from tiny_pipeline import tiny_depth_estimator, tiny_pipeline
from tiny_structure_content import TINY_DIM


def _frames(frames=4, height=24, width=32, seed=0):
    return torch.rand(frames, 3, height, width, generator=torch.Generator().manual_seed(seed))


class _Counting:
    """Counts ``estimator.estimate`` calls on one instance (the fingerprint reads the estimator, not this)."""

    def __init__(self, monkeypatch, estimator):
        self.calls = 0
        real = estimator.estimate

        def estimate(frames, *, batch_size=8):
            self.calls += 1
            return real(frames, batch_size=batch_size)

        monkeypatch.setattr(estimator, "estimate", estimate)


@pytest.fixture(scope="module")
def estimator():
    return tiny_depth_estimator(seed=0)


# --------------------------------------------------------------------------------------------------- the key
def test_key_changes_with_every_input_that_matters_and_with_nothing_else(estimator, tmp_path):
    frames = _frames()
    fp = estimator_fingerprint(estimator)
    key = cache_key(frames, fp)
    # the same content in another tensor object, and the same weights loaded into another instance (another path)
    assert cache_key(frames.clone(), fp) == key
    again = tiny_depth_estimator(seed=0)
    assert estimator_fingerprint(again) == fp
    estimator.save_pretrained(tmp_path / "a")
    from gen1.depth import DepthEstimator

    assert estimator_fingerprint(DepthEstimator.from_pretrained(tmp_path / "a")) == fp

    changed_pixel = frames.clone()
    changed_pixel[2, 1, 5, 7] += 1 / 255
    other_keys = {
        "pixel": cache_key(changed_pixel, fp),
        "frame range": cache_key(frames[1:], fp),
        "frame order": cache_key(frames.flip(0), fp),
        "size": cache_key(torch.nn.functional.interpolate(frames, size=(16, 24)), fp),
        "dtype": cache_key(frames.double(), fp),
        "weights": cache_key(frames, estimator_fingerprint(tiny_depth_estimator(seed=1))),
        "config": cache_key(frames, estimator_fingerprint(_with_config(again, high_percentile=95.0))),
    }
    assert key not in other_keys.values()
    assert len(set(other_keys.values())) == len(other_keys)


def _with_config(estimator, **changes):
    from gen1.depth import DepthEstimator

    config = {k: v for k, v in dict(estimator.config).items() if not k.startswith("_")}
    config.update(changes)
    other = DepthEstimator(**config)
    other.load_state_dict(estimator.state_dict())
    return other


def test_fingerprint_follows_weights_changed_in_place():
    est = tiny_depth_estimator(seed=0)
    before = estimator_fingerprint(est)
    assert estimator_fingerprint(est) == before  # memoised, unchanged
    with torch.no_grad():
        next(est.parameters()).add_(0.01)
    assert estimator_fingerprint(est) != before


def test_an_object_without_config_and_weights_is_never_cached(tmp_path):
    calls = []

    class Plain:
        def estimate(self, frames, *, batch_size=8):
            calls.append(1)
            return frames.mean(1, keepdim=True)

    cache = DepthCache(tmp_path)
    frames = _frames()
    cache.estimate(Plain(), frames)
    cache.estimate(Plain(), frames)
    assert len(calls) == 2 and cache.entries() == []


# ------------------------------------------------------------------------------------------ store, hit, evict
def test_a_hit_returns_exactly_what_was_estimated(estimator, monkeypatch, tmp_path):
    counter = _Counting(monkeypatch, estimator)
    cache = DepthCache(tmp_path)
    frames = _frames()
    first = cache.estimate(estimator, frames)
    second = cache.estimate(estimator, frames.clone())
    assert counter.calls == 1 and (cache.hits, cache.misses) == (1, 1)
    assert torch.equal(first, second) and second.dtype == torch.float32
    # a uint8 numpy clip (F, H, W, 3) is its own entry with the right shape
    as_uint8 = (frames.permute(0, 2, 3, 1) * 255).round().to(torch.uint8).numpy()
    depth = cache.estimate(estimator, as_uint8)
    assert depth.shape == (4, 1, 24, 32) and torch.equal(cache.estimate(estimator, as_uint8), depth)
    assert counter.calls == 2


def test_eviction_keeps_the_bound_and_drops_the_least_recently_used(estimator, tmp_path):
    frames = [_frames(seed=s) for s in range(4)]
    entry_bytes = 4 * 24 * 32 * 4
    cache = DepthCache(tmp_path, max_bytes=int(2.5 * (entry_bytes + 1000)))  # room for two entries, not three
    fp = estimator_fingerprint(estimator)
    cache.estimate(estimator, frames[0])
    cache.estimate(estimator, frames[1])
    cache.estimate(estimator, frames[0])  # a hit: frames[1] is now the least recently used
    cache.estimate(estimator, frames[2])
    kept = {p.name for p in cache.entries()}
    assert kept == {cache.path_for(cache_key(frames[i], fp)).name for i in (0, 2)}
    assert cache.size_bytes() <= cache.max_bytes
    for f in frames:
        cache.estimate(estimator, f)
        assert cache.size_bytes() <= cache.max_bytes and len(cache.entries()) == 2
    # a depth larger than the whole bound is returned but not stored
    tiny = DepthCache(tmp_path / "tiny", max_bytes=entry_bytes - 1)
    assert tiny.estimate(estimator, frames[0]).shape == (4, 1, 24, 32) and tiny.entries() == []


@pytest.mark.parametrize("damage", ["truncate", "garbage", "flip_a_value", "empty"])
def test_a_damaged_entry_is_recomputed_never_trusted(estimator, monkeypatch, tmp_path, damage):
    counter = _Counting(monkeypatch, estimator)
    cache = DepthCache(tmp_path)
    frames = _frames()
    want = cache.estimate(estimator, frames)
    (path,) = cache.entries()
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        path.write_bytes(b"\x00" * len(data))
    elif damage == "empty":
        path.write_bytes(b"")
    else:  # the file still parses; the data no longer matches its checksum
        raw = bytearray(data)
        raw[-3] ^= 0x01
        path.write_bytes(bytes(raw))
    got = cache.estimate(estimator, frames)
    assert counter.calls == 2 and torch.equal(got, want)
    # the bad entry was replaced by a sound one
    assert torch.equal(cache.estimate(estimator, frames), want) and counter.calls == 2


def test_writes_are_atomic_and_leave_no_temporaries(estimator, tmp_path, monkeypatch):
    cache = DepthCache(tmp_path)
    import safetensors.torch

    def failing_save(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", failing_save)
    depth = cache.estimate(estimator, _frames())  # the edit still gets its depth
    assert depth.shape == (4, 1, 24, 32)
    assert list(cache.directory.iterdir()) == []


# ------------------------------------------------------------------------------------------ where it lives
def test_directory_follows_the_env_var_then_the_platform(monkeypatch, tmp_path):
    assert Path(os.environ["GEN1_CACHE_DIR"]).name.startswith("gen1-cache")  # conftest: tests never use the real one
    monkeypatch.setenv("GEN1_CACHE_DIR", str(tmp_path / "mine"))
    assert default_cache_dir() == tmp_path / "mine"
    assert resolve_cache(True).directory == tmp_path / "mine" / "depth"
    monkeypatch.delenv("GEN1_CACHE_DIR")
    monkeypatch.setattr("sys.platform", "linux")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "gen1"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/path")  # ignored, as the XDG spec says
    assert default_cache_dir() == Path.home() / ".cache" / "gen1"
    assert resolve_cache(False) is None and resolve_cache(None) is None
    with pytest.raises(ValueError, match="depth_cache"):
        resolve_cache("yes")
    with pytest.raises(ValueError, match="max_bytes"):
        DepthCache(tmp_path, max_bytes=-1)


# ------------------------------------------------------------------------------------------ in the pipeline
def test_a_second_edit_of_the_same_clip_runs_the_estimator_zero_times(monkeypatch):
    pipe = tiny_pipeline(max_frames=4)
    counter = _Counting(monkeypatch, pipe.depth_estimator)
    video = _frames(height=32, width=32)
    embeds = torch.randn(1, TINY_DIM, generator=torch.Generator().manual_seed(5))
    kwargs = dict(content_embeds=embeds, num_inference_steps=2, output_type="pt")

    first = pipe(video, generator=torch.Generator().manual_seed(0), **kwargs)
    assert counter.calls == 1
    second = pipe(video, generator=torch.Generator().manual_seed(0), **kwargs)
    assert counter.calls == 1  # zero calls in the second edit
    assert torch.equal(first.frames, second.frames) and torch.equal(first.depth, second.depth)
    other_prompt = pipe(video, generator=torch.Generator().manual_seed(0), structure_level=3, **kwargs)
    assert counter.calls == 1 and not torch.equal(other_prompt.depth, first.depth)  # t_s is applied after the cache

    bypassed = pipe(video, generator=torch.Generator().manual_seed(0), depth_cache=False, **kwargs)  # --no-cache
    assert counter.calls == 2 and torch.equal(bypassed.frames, first.frames)

    pipe(_frames(height=32, width=32, seed=9), generator=torch.Generator().manual_seed(0), **kwargs)
    assert counter.calls == 3  # another clip misses
    assert len(resolve_cache(True).entries()) == 2


def test_a_given_cache_object_is_used(monkeypatch, tmp_path):
    pipe = tiny_pipeline(max_frames=4)
    counter = _Counting(monkeypatch, pipe.depth_estimator)
    own = DepthCache(tmp_path / "own")
    frames = _frames(height=32, width=32)
    a = pipe.prepare_depth(frames, None, cache=own)
    b = pipe.prepare_depth(frames, None, cache=own)
    assert counter.calls == 1 and torch.equal(a, b)
    assert own.hits == 1 and len(own.entries()) == 1
    assert not (Path(os.environ["GEN1_CACHE_DIR"]) / "depth").exists()


def test_another_writers_temporary_file_is_neither_an_entry_nor_evicted(estimator, tmp_path):
    cache = DepthCache(tmp_path, max_bytes=2000)  # room for the entry, not for the temporary file
    cache.directory.mkdir(parents=True)
    in_flight = cache.directory / f".{'0' * 64}.safetensors.gen1-tmp-host-{os.getpid()}-0.tmp.safetensors"
    in_flight.write_bytes(b"x" * 100_000)
    cache.store("f" * 64, torch.zeros(1, 1, 2, 2))
    assert in_flight.exists() and cache.entries() == [cache.path_for("f" * 64)]
