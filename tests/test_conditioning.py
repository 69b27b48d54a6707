"""Training and inference build the UNet's structure input identically (one mapping, one grid)."""

import torch
from einops import rearrange

from gen1.conditioning import depth_to_latent_grid, video_structure
from gen1.training.draws import structure_input as training_structure_input


def test_training_and_inference_structure_inputs_agree():
    depth = torch.rand(1, 6, 1, 32, 32, generator=torch.Generator().manual_seed(0)).squeeze(0)  # (F,1,H,W)
    for level in (0.0, 2.0, 3.5, 7.0):
        _, at_inference = video_structure(depth, level, (8, 8))
        cached = rearrange(depth_to_latent_grid(depth, (8, 8)), "f c h w -> 1 c f h w")  # what preprocess caches
        in_training = training_structure_input(cached, torch.tensor([level]), use_structure=True)
        torch.testing.assert_close(at_inference, in_training, rtol=0, atol=1e-6)
        assert at_inference.min() >= -1 and at_inference.max() <= 1


def test_structure_levels_act_per_sample_and_remove_detail():
    cached = torch.rand(2, 1, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    out = training_structure_input(cached, torch.tensor([0.0, 7.0]), use_structure=True)
    torch.testing.assert_close(out[0], cached[0] * 2 - 1)  # level 0 keeps the depth as estimated
    assert out[1].std() < 0.25 * out[0].std()  # level 7 keeps only the coarse layout
