"""Gen-1 guidance: which UNet terms a step needs, and how their predictions combine.

The paper (Esser et al. 2023, Sec. 3) combines three predictions of the same network,

    eps = mu_pi(z, null, s) + w_t * (mu(z, null, s) - mu_pi(z, null, s)) + w * (mu(z, c, s) - mu(z, null, s))

with ``mu`` the video model, ``mu_pi`` the image model (the same network with its temporal layers gated off),
``c`` the content embedding, ``null`` the null content, ``w`` the content guidance scale and ``w_t`` the
temporal guidance scale. Expanding it gives one coefficient per term,

    eps = (1 - w_t) * mu_pi(null) + (w_t - w) * mu(null) + w * mu(c)

and a term whose coefficient is exactly zero is not evaluated at all. The cases (evaluations per step):

==========================  ======================================  =============
scales                      terms evaluated                         evaluations
==========================  ======================================  =============
w_t = 1, w = 1              mu(c)                                   1
w_t = 1, w = 0              mu(null)                                1
w_t = 1, other w            mu(c), mu(null)      (plain CFG)        2
w_t = 0, w = 0              mu_pi(null)          (image model)      1
w_t = w != 1 (w_t != 0)     mu(c), mu_pi(null)                      2
w = 1, w_t != 1             mu(c), mu(null), mu_pi(null)            3
w = 0, w_t != 1             mu(null), mu_pi(null)                   2
w_t = 0, w != 0             mu(c), mu(null), mu_pi(null)            3
anything else               mu(c), mu(null), mu_pi(null)            3
==========================  ======================================  =============

(``w_t = 0`` is the image model guided on content: ``eps = mu_pi(null) + w * (mu(c) - mu(null))``; it still
needs the video model's ``mu(null)`` because that is what the formula says.) All planned terms go through the
UNet as ONE batch; :func:`plan_guidance` gives the batch layout and :meth:`GuidancePlan.combine` the result.
The combination is done in float32 whatever the UNet's dtype, so fp16 differences do not cancel badly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from gen1.settings import check_setting

#: Term names: (content is the real content c?, image mode?)
TERMS = {
    "video_cond": (True, False),  # mu(z, c, s)
    "video_null": (False, False),  # mu(z, null, s)
    "image_null": (False, True),  # mu_pi(z, null, s)
}


def check_scales(guidance_scale: float, temporal_guidance_scale: float) -> None:
    """Raise ``ValueError`` for a negative (or non-finite) content or temporal guidance scale (their declared
    ranges, :func:`gen1.settings.check_setting`)."""
    check_setting("guidance_scale", guidance_scale)
    check_setting("temporal_guidance_scale", temporal_guidance_scale)


@dataclass(frozen=True)
class GuidancePlan:
    """The UNet terms one denoising step needs and their coefficients in the combined prediction.

    ``terms[i]`` is a key of :data:`TERMS`; ``coefficients[i]`` multiplies its prediction. Batch entry ``i`` of
    the single UNet call evaluates ``terms[i]``.
    """

    terms: tuple[str, ...]
    coefficients: tuple[float, ...]

    @property
    def num_evaluations(self) -> int:
        """Batch entries per UNet call (per step and per temporal window)."""
        return len(self.terms)

    def uses_content(self) -> Sequence[bool]:
        """Per batch entry: True where the entry is conditioned on the real content (else null content)."""
        return [TERMS[name][0] for name in self.terms]

    def image_mode(self) -> Sequence[bool]:
        """Per batch entry: True where the temporal layers are gated off (the image model mu_pi)."""
        return [TERMS[name][1] for name in self.terms]

    def combine(self, predictions: torch.Tensor) -> torch.Tensor:
        """Combine the batched predictions ``(num_evaluations * B, ...)`` into ``(B, ...)`` float32.

        Predictions are laid out term-major, as built by the pipeline: the first ``B`` rows are ``terms[0]``.
        """
        chunks = predictions.float().chunk(self.num_evaluations, dim=0)
        result = chunks[0] * self.coefficients[0]
        for chunk, coefficient in zip(chunks[1:], self.coefficients[1:]):
            result = result + chunk * coefficient
        return result


def plan_guidance(guidance_scale: float, temporal_guidance_scale: float) -> GuidancePlan:
    """Plan the terms of a step for content scale ``w = guidance_scale`` and ``w_t = temporal_guidance_scale``.

    See the module docstring for the formula and the table of cases. Terms are ordered
    ``video_cond, video_null, image_null`` (those present).
    """
    check_scales(guidance_scale, temporal_guidance_scale)
    w, w_t = float(guidance_scale), float(temporal_guidance_scale)
    candidates = (("video_cond", w), ("video_null", w_t - w), ("image_null", 1.0 - w_t))
    kept = [(name, coefficient) for name, coefficient in candidates if coefficient != 0.0]
    if not kept:  # cannot happen: the coefficients sum to 1
        raise AssertionError("guidance coefficients vanished")
    return GuidancePlan(terms=tuple(n for n, _ in kept), coefficients=tuple(c for _, c in kept))


def guidance_formula(
    video_cond: torch.Tensor,
    video_null: torch.Tensor,
    image_null: torch.Tensor,
    guidance_scale: float,
    temporal_guidance_scale: float,
) -> torch.Tensor:
    """The paper's formula written literally (reference for tests; the pipeline uses :class:`GuidancePlan`)."""
    return image_null + temporal_guidance_scale * (video_null - image_null) + guidance_scale * (video_cond - video_null)
