"""A Hugging Face Hub cache laid out by the tests themselves, and an offline session that reads only it.

:func:`cache_repo` writes files the way huggingface_hub caches a model repo: ``models--ORG--NAME/refs/main`` holding
a commit hash, ``snapshots/<hash>/<path in repo>`` as relative links to content-addressed ``blobs/``.
:func:`offline_cache` points huggingface_hub at such a cache under ``tmp`` with ``HF_HUB_OFFLINE=1`` (environment and
the module constants huggingface_hub read at import), so no test touches the network or the user's real cache.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def cache_repo(cache: Path, repo: str, files: dict[str, Path]) -> Path:
    """Cache ``files`` (path in the repo -> a local file, or a folder copied whole; ``""`` is the repo root) as
    the main revision of the model repo ``repo``; returns its snapshot folder."""
    storage = cache / ("models--" + repo.replace("/", "--"))
    commit = hashlib.sha1(repo.encode()).hexdigest()
    snapshot = storage / "snapshots" / commit
    for repo_path, source in files.items():
        sources = sorted(p for p in source.rglob("*") if p.is_file()) if source.is_dir() else [source]
        for item in sources:
            relative = item.relative_to(source) if source.is_dir() else Path()
            data = item.read_bytes()
            blob = storage / "blobs" / hashlib.sha256(data).hexdigest()
            blob.parent.mkdir(parents=True, exist_ok=True)
            blob.write_bytes(data)
            link = snapshot / repo_path / relative
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(os.path.relpath(blob, link.parent))
    (storage / "refs").mkdir(parents=True, exist_ok=True)
    (storage / "refs" / "main").write_text(commit)
    return snapshot


def offline_cache(monkeypatch, root: Path) -> Path:
    """Make ``root/hub`` the Hugging Face cache and the Hub unreachable (``HF_HUB_OFFLINE=1``) for one test."""
    from huggingface_hub import HfApi, constants

    cache = root / "hub"
    cache.mkdir(parents=True, exist_ok=True)
    for name, value in (("HF_HOME", str(root)), ("HF_HUB_CACHE", str(cache)), ("HF_HUB_OFFLINE", "1")):
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(constants, "HF_HOME", str(root))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)

    def no_network(*args, **kwargs):
        raise AssertionError("a test asked the Hub")

    monkeypatch.setattr(HfApi, "list_repo_files", no_network)
    monkeypatch.setattr(HfApi, "model_info", no_network)
    return cache


def repo_info(files):
    """What ``HfApi.model_info`` answers for a repo holding ``files`` (the part gen1 reads: ``siblings``)."""
    from types import SimpleNamespace

    return SimpleNamespace(siblings=[SimpleNamespace(rfilename=name) for name in files])
