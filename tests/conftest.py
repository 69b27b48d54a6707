"""Shared test set-up: CPU only, deterministic, paths to the real clips in ../shared/clips."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
import torch

# One intra-op thread for the whole suite: the models are tiny, so extra threads only add synchronisation
# (10-100x slower on a loaded 2-core machine), and the thread count no longer depends on test order.
torch.set_num_threads(1)

# Ctrl-C as a terminal sends it, whoever started the suite: a shell without job control starts a background command
# (`pytest &`, nohup, CI scripts) with SIGINT ignored, which Python and every child process it starts inherit, and
# then the tests of what Ctrl-C does (in this process and in gen1 commands started from it) see nothing arrive.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_CLIPS = REPO_ROOT.parent / "shared" / "clips"


@pytest.fixture(scope="session")
def clips_dir() -> Path:
    """The real H.264 clips from ../shared/clips (see ../shared/README.md)."""
    if not SHARED_CLIPS.is_dir():
        pytest.fail(f"the shared clips are missing: expected them at {SHARED_CLIPS}")
    return SHARED_CLIPS


@pytest.fixture(autouse=True)
def _private_cache_dir(tmp_path_factory, monkeypatch):
    """Every test gets its own empty gen1 cache directory (GEN1_CACHE_DIR, inherited by the CLI subprocesses it
    starts): tests never read or fill the user's real cache, and no test sees another's entries."""
    monkeypatch.setenv("GEN1_CACHE_DIR", str(tmp_path_factory.mktemp("gen1-cache")))
    yield


@pytest.fixture(autouse=True)
def _seed_everything():
    torch.manual_seed(0)
    yield


@pytest.fixture(autouse=True)
def _keep_thread_count():
    """Whatever a test runs in-process, the next test starts with the suite's thread count (a raised count left
    behind makes forked children of later tests hang in OpenMP)."""
    threads = torch.get_num_threads()
    yield
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def bundled_pipe():
    """The bundled demo pipeline in float32, progress bars off (loaded once per session; tests only read it)."""
    from gen1.demo import bundled_model_dir
    from gen1.pipeline import Gen1Pipeline

    pipe = Gen1Pipeline.from_pretrained(str(bundled_model_dir()))
    pipe.cast(torch.float32)
    pipe.set_progress_bar_config(disable=True)
    return pipe


# ----------------------------------------------------------------------------------------------- the web app
@pytest.fixture(scope="module")
def catalog():
    """The web app's model catalog with the bundled model only, as ``gen1 serve`` makes it with no model named."""
    import argparse

    from gen1.model_sources import check_model_source
    from gen1.serve.models import ModelCatalog, ServedModel

    source = check_model_source(argparse.Namespace(model=None, base=None, motion_adapter=None, controlnet=None,
                                                   depth_model=None))
    return ModelCatalog([ServedModel("demo", source)], device=torch.device("cpu"), dtype=torch.float32)


@pytest.fixture
def service(catalog, tmp_path):
    """The web app's edit service over :func:`catalog`, taking at most 12 frames or 5 s of a clip, writing under
    ``tmp_path / "work"``; closed after the test."""
    from gen1.serve.service import EditService, ServeLimits

    service = EditService(catalog, ServeLimits(max_frames=12, max_seconds=5), workdir=tmp_path / "work")
    yield service
    service.close()


@pytest.fixture(scope="module")
def native():
    """The tiny native pipeline (tests/tiny_pipeline.py), progress bars off; one per test module."""
    from tiny_pipeline import tiny_pipeline

    pipe = tiny_pipeline()
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def public_stack(tmp_path_factory):
    """The tiny public-route checkpoints (tests/tiny_public.py, :func:`write_public_stack`); one per test module."""
    from tiny_public import write_public_stack

    return write_public_stack(tmp_path_factory.mktemp("public"))


@pytest.fixture(scope="module")
def public(public_stack):
    """A public-route pipeline on :func:`public_stack`, progress bars off."""
    from tiny_public import public_pipeline

    return public_pipeline(public_stack)
