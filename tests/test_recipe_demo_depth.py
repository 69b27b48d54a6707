"""Recipe tests: the demo depth estimator's training (demo_recipe.depth): sign-aware loss, fine-tuning from an
export, the bundled estimator's orientation on held-out frames."""

from __future__ import annotations

import pytest
import torch

from demo_recipe.depth import (build_depth_estimator, held_out_flipped_fraction, load_depth_weights, ssi_loss,
                               ssimae_loss, train_depth)
from gen1.demo import bundled_model_dir

pytestmark = pytest.mark.recipe


def _target(seed: int = 0) -> torch.Tensor:
    torch.manual_seed(seed)
    return torch.rand(3, 16, 16)


def test_ssimae_loss_ignores_positive_scale_and_shift_but_not_sign():
    target = _target()
    assert float(ssimae_loss(2.5 * target + 0.7, target)) < 1e-5
    flipped = float(ssimae_loss(-target, target))
    assert flipped > 1.0  # about twice the aligned values' mean |.|, which is 1
    assert flipped > float(ssimae_loss(torch.rand(3, 16, 16), target))  # worse than an unrelated map
    # the least-squares loss cannot tell a flipped map from the right one: why ssimae exists
    assert float(ssi_loss(-target, target)) < 1e-6


def test_ssimae_loss_gradient_turns_a_flipped_prediction_around():
    target = _target(1)
    prediction = (-target).clone().requires_grad_(True)
    ssimae_loss(prediction, target).backward()
    step = prediction.detach() - 0.5 * prediction.grad / prediction.grad.abs().mean()
    assert float(ssimae_loss(step, target)) < float(ssimae_loss(-target, target))
    # the least-squares loss has no gradient there at all
    prediction = (-target).clone().requires_grad_(True)
    ssi_loss(prediction, target).backward()
    assert float(prediction.grad.abs().max()) < 1e-6


def test_train_depth_fine_tunes_from_an_export_and_rejects_unknown_losses(tmp_path):
    bundled = bundled_model_dir() / "depth_estimator"
    with pytest.raises(ValueError, match="unknown depth loss 'l2'"):
        train_depth(tmp_path / "bad", max_steps=1, loss="l2", init=bundled)
    state = train_depth(tmp_path / "run", max_steps=2, clips=1, frames=2, lr=1e-4, loss="ssimae", init=bundled)
    assert state["done"] and state["step"] == 2
    assert state["metrics"]["held_out_correlation"] > 0.5  # kept what the bundled estimator knew (random: ~0)
    exported = build_depth_estimator()
    load_depth_weights(exported, tmp_path / "run" / "export")
    start = build_depth_estimator()
    load_depth_weights(start, bundled)
    changed = [k for k, v in exported.state_dict().items() if not torch.equal(v, start.state_dict()[k])]
    assert changed, "two steps of fine-tuning changed no weight"


def test_load_depth_weights_refuses_another_architecture(tmp_path):
    from gen1.depth import DepthEstimator
    from gen1.depth.midas import default_midas_config

    cfg = default_midas_config("midas_v21_small", channel_multiplier=0.5, depth_multiplier=0.5, features=16,
                               head_channels=16, non_negative=False)
    DepthEstimator(backend="midas", network_config=cfg.to_dict()).save_pretrained(str(tmp_path / "small"))
    with pytest.raises(ValueError, match="depth estimator"):
        load_depth_weights(build_depth_estimator(), tmp_path / "small")
    with pytest.raises(FileNotFoundError, match="no exported depth estimator"):
        load_depth_weights(build_depth_estimator(), tmp_path / "missing")


def test_bundled_depth_estimator_puts_no_held_out_frame_upside_down():
    """The bundled estimator was fine-tuned with the sign-aware loss: every held-out frame, rolled cameras
    included, correlates positively with the true inverse depth."""
    estimator = build_depth_estimator()
    load_depth_weights(estimator, bundled_model_dir() / "depth_estimator")
    assert held_out_flipped_fraction(estimator, clips=8, frames=4) == 0.0
