"""Guidance planning and combination: the paper's formula, term skipping, one batched UNet call per step."""

from __future__ import annotations

import pytest
import torch

from gen1.guidance import guidance_formula, plan_guidance

# distinct constants per (content, mode) a stub UNet returns
VIDEO_COND, VIDEO_NULL, IMAGE_NULL = 3.0, -1.25, 0.5

CASES = [
    # (w, w_t, expected terms)
    (1.0, 1.0, {"video_cond"}),
    (0.0, 1.0, {"video_null"}),
    (7.5, 1.0, {"video_cond", "video_null"}),
    (0.0, 0.0, {"image_null"}),
    (2.0, 2.0, {"video_cond", "image_null"}),
    (1.0, 1.5, {"video_cond", "video_null", "image_null"}),
    (0.0, 1.5, {"video_null", "image_null"}),
    (7.5, 0.0, {"video_cond", "video_null", "image_null"}),
    (7.5, 1.2, {"video_cond", "video_null", "image_null"}),
]


@pytest.mark.parametrize("w, w_t, expected", CASES)
def test_plan_skips_vanishing_terms_and_combines_to_the_formula(w, w_t, expected):
    plan = plan_guidance(w, w_t)
    assert set(plan.terms) == expected
    assert plan.num_evaluations == len(expected)
    value = {"video_cond": VIDEO_COND, "video_null": VIDEO_NULL, "image_null": IMAGE_NULL}
    batch = 2
    predictions = torch.cat([torch.full((batch, 4, 3, 2, 2), value[name]) for name in plan.terms])
    combined = plan.combine(predictions)
    reference = guidance_formula(
        torch.tensor(VIDEO_COND), torch.tensor(VIDEO_NULL), torch.tensor(IMAGE_NULL), w, w_t
    )
    assert combined.shape == (batch, 4, 3, 2, 2)
    torch.testing.assert_close(combined, reference.expand_as(combined), rtol=0, atol=1e-5)


def test_plan_flags_follow_terms():
    plan = plan_guidance(7.5, 1.2)
    assert list(plan.uses_content()) == [name == "video_cond" for name in plan.terms]
    assert list(plan.image_mode()) == [name == "image_null" for name in plan.terms]


@pytest.mark.parametrize("w, w_t", [(-0.1, 1.0), (1.0, -2.0), (float("nan"), 1.0), (1.0, float("inf"))])
def test_negative_or_invalid_scales_raise(w, w_t):
    with pytest.raises(ValueError, match="guidance_scale"):
        plan_guidance(w, w_t)
