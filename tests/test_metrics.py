"""Metrics on constructed cases: warp error, CLIP consistency (tiny random CLIP), depth fidelity, PSNR/SSIM,
style accuracy, the evaluation report and `gen1 eval`."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from gen1.cli import main
from gen1.eval.clip_metrics import ClipScorer, frame_consistency
from gen1.eval.depth_fidelity import depth_error, depth_fidelity, inverse_depth
from gen1.eval.evaluate import evaluate_videos
from gen1.eval.image_metrics import PSNR_CAP, psnr, ssim, style_accuracy, style_score
from gen1.synthetic import CAPTION_VOCABULARY, sample_clip
from gen1.eval.warp import occlusion_mask, warp_error


def _texture(height: int, width: int, seed: int = 0) -> torch.Tensor:
    """Smooth random RGB texture (3,H,W) in [0,1] with enough structure for optical flow."""
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, height // 6, width // 6, generator=gen)
    return F.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=False)[0].clamp(0, 1)


def _translating_video(num_frames=5, size=64, step=2) -> torch.Tensor:
    """Crops of a larger texture moving ``step`` pixels right per frame (a known, uniform flow)."""
    big = _texture(size + 16, size + step * num_frames + 16)
    return torch.stack([big[:, 8 : 8 + size, 8 + step * t : 8 + step * t + size] for t in range(num_frames)])


@pytest.fixture(scope="module")
def tiny_clip_dir(tmp_path_factory):
    """A tiny random CLIPModel + a character-level CLIPTokenizer built from a handmade vocabulary."""
    from transformers import CLIPConfig, CLIPModel, CLIPTokenizer

    path = tmp_path_factory.mktemp("tiny_clip")
    chars = sorted(set("".join(CAPTION_VOCABULARY)) | set("abcdefghijklmnopqrstuvwxyz"))
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in chars:
        vocab[c] = len(vocab)
        vocab[c + "</w>"] = len(vocab)
    tokenizer = CLIPTokenizer(vocab=vocab, merges=[])
    tokenizer.save_pretrained(path)
    config = CLIPConfig(
        text_config=dict(vocab_size=len(vocab), hidden_size=32, intermediate_size=37, num_hidden_layers=1,
                         num_attention_heads=2, max_position_embeddings=32, bos_token_id=0, eos_token_id=1,
                         pad_token_id=1),
        vision_config=dict(hidden_size=32, intermediate_size=37, num_hidden_layers=1, num_attention_heads=2,
                           image_size=32, patch_size=8),
        projection_dim=16,
    )
    torch.manual_seed(0)
    CLIPModel(config).save_pretrained(path)
    return path


# ---------------------------------------------------------------------------------------------- warp error


def test_static_video_has_zero_warp_error():
    video = _texture(48, 48).expand(4, -1, -1, -1).contiguous()
    assert warp_error(video, video) == pytest.approx(0.0, abs=1e-8)


def test_known_translation_is_recovered_and_shuffling_is_punished():
    video = _translating_video()
    consistent = warp_error(video, video)
    shuffled = warp_error(video[[3, 0, 4, 1, 2]], video)
    assert consistent < 2e-3
    assert consistent < 0.05 * shuffled
    farneback = warp_error(video, video, method="farneback")
    assert farneback < 0.2 * shuffled


def test_occlusion_mask_forward_backward_check():
    forward = torch.zeros(16, 16, 2)
    forward[..., 0] = 3.0
    consistent_back = -forward
    mask = occlusion_mask(forward, consistent_back)
    assert mask[:, :13].all() and not mask[:, 13:].any()  # targets beyond the right edge are invalid
    assert not occlusion_mask(forward, forward.clone()).any()  # backward flow pointing the same way: occluded


def test_warp_error_rejects_bad_inputs():
    video = _translating_video(num_frames=3, size=32)
    with pytest.raises(ValueError, match="same shape"):
        warp_error(video, video[:2])
    with pytest.raises(ValueError, match="flow method"):
        warp_error(video, video, method="raft")


# ---------------------------------------------------------------------------------------------- CLIP


def test_clip_frame_consistency_of_static_video_is_one(tiny_clip_dir):
    scorer = ClipScorer.from_pretrained(tiny_clip_dir)
    frame = _texture(40, 56)
    static = frame.expand(3, -1, -1, -1)
    assert scorer.frame_consistency(static) == pytest.approx(1.0, abs=1e-5)
    changing = torch.stack([_texture(40, 56, seed) for seed in range(3)])
    assert scorer.frame_consistency(changing) < 1.0 - 1e-4
    value = scorer.prompt_consistency(static, "blue checkered objects on a red floor")
    assert -1.0 <= value <= 1.0
    # same frames -> prompt consistency equals the single-frame cosine
    emb = scorer.image_embeddings(frame[None])
    text = scorer.text_embeddings(["blue checkered objects on a red floor"])
    assert value == pytest.approx(float(emb[0] @ text[0]), abs=1e-5)


def test_frame_consistency_definition():
    e = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 2.0]])
    assert frame_consistency(e) == pytest.approx(0.5)


def test_clip_scorer_reports_missing_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="clip-model"):
        ClipScorer.from_pretrained(tmp_path / "nope")


# ---------------------------------------------------------------------------------------------- depth


def test_depth_fidelity_is_zero_for_scaled_and_shifted_copy():
    depth = 1.0 + 4.0 * torch.rand(3, 1, 12, 12)
    reference = inverse_depth(depth)
    assert depth_error(3.0 * reference + 0.7, reference) == pytest.approx(0.0, abs=1e-6)
    assert depth_error(torch.rand(3, 1, 12, 12), reference) > 0.1

    def estimator(frames):  # "estimates" depth from the frames' red channel
        return 0.5 * frames[:, :1] + 0.2

    frames = torch.rand(3, 3, 12, 12)
    assert depth_fidelity(frames, estimator, source=frames) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="frame counts"):
        depth_error(reference[:2], reference)


# ---------------------------------------------------------------------------------------------- ground truth


def test_psnr_and_ssim():
    x = _texture(24, 24).expand(2, -1, -1, -1)
    assert psnr(x, x) == PSNR_CAP
    assert psnr((x + 0.1).clamp(0, 1), x) < 40
    y = torch.full_like(x, 0.5)
    assert psnr(y + 0.1, y) == pytest.approx(20.0, abs=1e-4)
    assert ssim(x, x) == pytest.approx(1.0, abs=1e-6)
    noisy = (x + 0.2 * torch.randn_like(x)).clamp(0, 1)
    assert ssim(noisy, x) < 0.9
    with pytest.raises(ValueError, match="same shape"):
        psnr(x, x[:1])


def test_style_accuracy_is_one_for_ground_truth_edit_and_zero_for_source():
    clip = sample_clip(4, num_frames=2, height=24, width=24)
    src, gt = clip.frames, clip.edit_frames
    assert style_accuracy(gt, src, gt) == 1.0
    assert style_accuracy(src, src, gt) == 0.0
    assert style_score(gt, src, gt) == 1.0 and style_score(src, src, gt) == 0.0


def test_evaluate_videos_report(tiny_clip_dir):
    clip = sample_clip(2, num_frames=3, height=32, width=32)
    report = evaluate_videos(
        clip.frames, clip.edit_frames, prompt=clip.edit_caption, ground_truth=clip.edit_frames,
        clip_scorer=ClipScorer.from_pretrained(tiny_clip_dir), depth_estimator=lambda f: f.mean(1, keepdim=True),
    )
    m = report.metrics
    assert all(value is not None for key, value in m.items() if not key.startswith("seam_ratio"))
    assert "no window schedule" in report.notes["seam_ratio"]  # measured with window_schedule (test_seams.py)
    assert m["psnr"] == PSNR_CAP and m["style_accuracy"] == 1.0
    with pytest.raises(ValueError, match="frames"):
        evaluate_videos(clip.frames, clip.edit_frames[:2])
    # a different size is resized to the source's, and noted
    big = F.interpolate(clip.edit_frames, size=(40, 40), mode="bilinear")
    resized = evaluate_videos(clip.frames, big)
    assert resized.metrics["warp_error"] is not None and "note_output_resized" in resized.info
    assert "no CLIP model" in resized.table()


# ---------------------------------------------------------------------------------------------- CLI


def test_eval_command_writes_json(tmp_path, tiny_clip_dir, capsys):
    from gen1.media import write_video

    clip = sample_clip(1, num_frames=3, height=32, width=32)
    write_video(tmp_path / "src.mp4", clip.frames, 8)
    write_video(tmp_path / "gt.mp4", clip.edit_frames, 8)
    out_json = tmp_path / "report.json"
    code = main([
        "eval", "--source", str(tmp_path / "src.mp4"), "--output", str(tmp_path / "gt.mp4"),
        "--gt", str(tmp_path / "gt.mp4"), "--prompt", clip.edit_caption, "--clip-model", str(tiny_clip_dir),
        "--json", str(out_json),
    ])
    assert code == 0
    report = json.loads(out_json.read_text())
    assert set(report) == {"info", "metrics", "notes"}
    assert set(report["metrics"]) == {
        "warp_error", "warp_error_source", "seam_ratio", "seam_ratio_source", "clip_frame_consistency",
        "clip_prompt_consistency", "depth_fidelity", "psnr", "ssim", "style_accuracy", "style_score",
    }
    assert report["metrics"]["depth_fidelity"] is None and "depth" in report["notes"]["depth_fidelity"]
    assert report["metrics"]["style_accuracy"] == 1.0 and report["metrics"]["psnr"] > 30
    assert "warp error" in capsys.readouterr().out
    assert main(["eval", "--source", str(tmp_path / "missing.mp4"), "--output", str(tmp_path / "gt.mp4")]) == 2
