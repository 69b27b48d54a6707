"""The depth cache in the web app: a clip's depth is estimated once, for its preview, and every edit of it after
that (another prompt, another structure level) reads it from the cache (estimator calls counted)."""

from __future__ import annotations

import argparse

import pytest
import torch

from serve_helpers import clip_with_audio


@pytest.fixture(scope="module")
def ski(tmp_path_factory, clips_dir):
    return clip_with_audio(tmp_path_factory.mktemp("clip") / "ski.mp4", clips_dir, frames=4, size=64)


def test_the_web_apps_edits_of_one_clip_estimate_its_depth_once(ski, tmp_path, monkeypatch):
    from gen1.model_sources import check_model_source
    from gen1.depth.base import DepthEstimator
    from gen1.serve.models import ModelCatalog, ServedModel
    from gen1.serve.service import EditForm, EditService, ServeLimits

    calls = []
    real = DepthEstimator.estimate

    def counting(self, frames, *, batch_size=8):
        calls.append(tuple(frames.shape))
        return real(self, frames, batch_size=batch_size)

    monkeypatch.setattr(DepthEstimator, "estimate", counting)
    source = check_model_source(argparse.Namespace(model=None, base=None, motion_adapter=None, controlnet=None,
                                                   depth_model=None))
    catalog = ModelCatalog([ServedModel("demo", source)], device=torch.device("cpu"), dtype=torch.float32)
    service = EditService(catalog, ServeLimits(max_frames=12, max_seconds=5), workdir=tmp_path / "work")
    try:
        form = dict(video=str(ski), size=64, num_inference_steps=1, guidance_scale=1.0)
        service.preview_clip(EditForm(prompt="red stripes", **form))
        assert len(calls) == 1
        service.edit(EditForm(prompt="red stripes", **form))
        service.edit(EditForm(prompt="blue checkered", structure_level=3, **form))
        assert len(calls) == 1  # both edits read the preview's depth from the cache
    finally:
        service.close()
