"""Evaluation: video-editing metrics, scored on real clips or on the ground-truth edits of :mod:`gen1.synthetic`.

Metric modules: :mod:`gen1.eval.clip_metrics` (CLIP frame / prompt consistency), :mod:`gen1.eval.warp`
(warp error, Lai et al. 2018), :mod:`gen1.eval.seams` (seam ratio of windowed edits),
:mod:`gen1.eval.depth_fidelity` (scale-and-shift-invariant depth error),
:mod:`gen1.eval.image_metrics` (PSNR, SSIM, style accuracy) and :mod:`gen1.eval.report` (table / JSON).
Submodules are imported on use, so ``import gen1.eval`` stays light.
"""
