"""Imagic for one clip (issue 34): the loop lowers its embedding loss and writes an adapter folder that loads back
checked; eta = 0 / 1 are the optimised / target embeddings bit for bit; bad input is one line; the command runs end to
end; Ctrl-C keeps the work and a resumed run ends where an uninterrupted one does."""

from __future__ import annotations

import copy
import os
import signal
import shlex
import warnings

import numpy as np
import pytest
import torch
from tiny_pipeline import tiny_pipeline
from tiny_public import public_pipeline
from tiny_structure_content import TINY_DIM

from gen1.adapters import has_adapter
from gen1.imagic import ADAPTER_FILE, EMBEDDINGS_FILE, imagic_embeddings, load_imagic_adapter, save_imagic_adapter
from gen1.routes import ContentRequest
from gen1.training import checkpoint as ckpt
from gen1.training.imagic import ImagicRun, ImagicSettings
from gen1.training.interrupt import TrainingInterrupted
from gen1.training.recompute import disable_recompute, is_recomputing

FRAMES, SIZE = 4, 32
TEXT = "a red car"
FAST = dict(embedding_steps=6, steps=4, eval_every=2, patience=10, embedding_lr=0.1, lr=1e-2, image_ratio=0.5,
            checkpoint_every=100)


def _video(seed=0):
    return torch.rand(FRAMES, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


def _depth(seed=1):
    return torch.rand(FRAMES, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


def _run(pipe, work, *, resume=False, on_step=None, text=TEXT, **overrides):
    settings = ImagicSettings(**{**FAST, **overrides})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tiny content encoder has no prior: its text embeddings warn
        run = ImagicRun(pipe, _video(), text, settings, work, device="cpu", progress=False, depth=_depth(),
                        on_step=on_step)
        return run.run(resume=resume), settings


def _edit(pipe, **kwargs):
    settings = dict(num_inference_steps=2, guidance_scale=3.0, depth=_depth(), output_type="pt",
                    generator=torch.Generator().manual_seed(7))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pipe(_video(), **settings, **kwargs).frames


def _lora(pipe) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in pipe.unet.named_parameters() if "lora_" in n}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny native pipeline after an Imagic run, the run's result and its adapter folder."""
    root = tmp_path_factory.mktemp("imagic")
    pipe = tiny_pipeline()
    result, settings = _run(pipe, root / "work")
    folder = save_imagic_adapter(pipe, root / "adapter", optimised=result.optimised, target=result.target,
                                 info=result.info(TEXT, pipe.route.description, settings))
    return pipe, result, folder


def test_the_loop_lowers_its_embedding_loss_and_the_adapter_round_trips(trained):
    from safetensors.torch import load_file

    pipe, result, folder = trained
    before, after = result.embedding_loss
    assert after < before, result.history["embedding"]
    assert result.history["embedding"][0][0] == 0 and len(result.history["lora"]) > 1
    assert result.steps == {"embedding": 6, "lora": 4}
    assert not torch.equal(result.optimised, result.target)
    assert sorted(p.name for p in folder.iterdir()) == sorted([ADAPTER_FILE, EMBEDDINGS_FILE])
    umask = os.umask(0)
    os.umask(umask)
    # both readable as any new file is (safetensors made the embeddings' file 0600, the LoRA's was 0644)
    assert {(folder / name).stat().st_mode & 0o777 for name in (ADAPTER_FILE, EMBEDDINGS_FILE)} == {0o666 & ~umask}
    tensors = load_file(str(folder / EMBEDDINGS_FILE))
    assert sorted(tensors) == ["optimised", "target"]
    assert {tuple(t.shape) for t in tensors.values()} == {(1, 1, TINY_DIM)}
    assert torch.equal(tensors["optimised"], result.optimised) and torch.equal(tensors["target"], result.target)

    fresh = tiny_pipeline()
    load_imagic_adapter(fresh, folder)
    assert has_adapter(fresh) and imagic_embeddings(fresh).info["text"] == TEXT
    assert torch.equal(imagic_embeddings(fresh).optimised, result.optimised)
    assert _lora(fresh).keys() == _lora(pipe).keys()
    assert all(torch.equal(a, b) for a, b in zip(_lora(fresh).values(), _lora(pipe).values()))


def test_an_adapter_of_the_wrong_shape_is_refused_and_leaves_the_model_untouched(trained, tmp_path):
    import shutil

    from safetensors.torch import load_file, save_file

    from gen1.checks import safetensors_metadata

    _, _, folder = trained
    bad = tmp_path / "bad"
    shutil.copytree(folder, bad)
    metadata = safetensors_metadata(bad / EMBEDDINGS_FILE)
    tensors = {k: torch.zeros(1, 1, 7) for k in load_file(str(bad / EMBEDDINGS_FILE))}
    save_file(tensors, str(bad / EMBEDDINGS_FILE), metadata=metadata)
    fresh = tiny_pipeline()
    with pytest.raises(ValueError, match=f"the embeddings are 7 wide, this model's content is {TINY_DIM} wide"):
        load_imagic_adapter(fresh, bad)
    assert not has_adapter(fresh) and imagic_embeddings(fresh) is None
    (bad / ADAPTER_FILE).unlink()
    with pytest.raises(ValueError, match=f"has no {ADAPTER_FILE}"):
        load_imagic_adapter(fresh, bad)


def test_eta_zero_is_the_optimised_embedding_and_eta_one_the_targets_bit_for_bit(trained):
    pipe, result, _ = trained
    assert torch.equal(_edit(pipe, imagic_scale=0.0), _edit(pipe, content_embeds=result.optimised))
    assert torch.equal(_edit(pipe, imagic_scale=1.0), _edit(pipe, content_embeds=result.target))
    half = _edit(pipe, imagic_scale=0.5)
    assert (half - _edit(pipe, imagic_scale=0.0)).abs().mean() > 1e-5
    content = pipe.route.edit_content(ContentRequest(imagic_scale=0.25), _video(), generator=None, device="cpu")
    torch.testing.assert_close(content.context, 0.25 * result.target + 0.75 * result.optimised)
    assert torch.equal(content.null_context, torch.zeros_like(content.null_context))  # w acts as in any edit


def test_the_public_route_optimises_text_hidden_states(tmp_path, public_stack):
    pipe = public_pipeline(public_stack)
    result, _ = _run(pipe, tmp_path / "work", embedding_steps=4, steps=2)
    hidden = pipe.route.text_embedding(TEXT, device="cpu")
    assert result.target.shape == hidden.shape and hidden.shape[1] > 1  # token by token
    assert torch.equal(result.target, hidden)
    before, after = result.embedding_loss
    assert after < before


@pytest.mark.parametrize("route", ["native", "public"])
def test_gradient_checkpointing_recomputes_the_forward_and_gives_the_same_loss_and_gradient(route, public_stack,
                                                                                               tmp_path):
    runs, results = [], []
    for checkpointing in (False, True):
        pipe = tiny_pipeline() if route == "native" else public_pipeline(public_stack)
        settings = ImagicSettings(**FAST, gradient_checkpointing=checkpointing)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            run = ImagicRun(pipe, _video(), TEXT, settings, tmp_path / str(checkpointing), device="cpu",
                            progress=False, depth=_depth())
        assert [is_recomputing(m) for m in pipe.route.denoisers()] == [checkpointing] * (1 if route == "native" else 2)
        calls = {"layer": 0, "block": 0}
        unet = pipe.unet.image_unet  # after a cross-attention, so that the embedding's gradient passes through them:
        layer = unet.down_blocks[-1].resnets[0]  # a resnet diffusers checkpoints
        block_part = unet.down_blocks[0].downsamplers[0]  # a layer only whole-block checkpointing re-runs
        layer.register_forward_pre_hook(lambda *_: calls.update(layer=calls["layer"] + 1))
        block_part.register_forward_pre_hook(lambda *_: calls.update(block=calls["block"] + 1))
        loss = run.draw_loss(run.embedding, "embedding", 0)
        loss.backward()
        runs.append(calls)
        results.append((loss.detach(), run.embedding.grad.clone()))
    # checkpointed, both run again in the backward pass (a re-run stops once it has what it needs)
    assert runs == [{"layer": 1, "block": 1}, {"layer": 2, "block": 2}]
    copied = copy.deepcopy(pipe.unet).image_unet.down_blocks[0]  # a copy runs its own weights, not the original's
    assert copied.forward.__self__ is copied
    disable_recompute(pipe.route.denoisers())
    assert not any(is_recomputing(m) for m in pipe.route.denoisers())
    assert "forward" not in vars(pipe.unet.image_unet.down_blocks[0])  # the block's own forward again
    torch.testing.assert_close(results[1][0], results[0][0], rtol=0, atol=1e-6)
    torch.testing.assert_close(results[1][1], results[0][1], rtol=1e-5, atol=1e-7)
    assert results[0][1].abs().sum() > 0


@pytest.mark.parametrize("call, message", [
    (lambda pipe: _run(pipe, "unused", text="  "), "the Imagic target text is empty"),
    (lambda pipe: ImagicRun(pipe, _video()[:1], TEXT, ImagicSettings(), "unused", device="cpu"),
     "the clip has 1 frame\\(s\\): Imagic fine-tunes on a clip of at least 2 frames"),
    (lambda pipe: _edit(pipe, imagic_scale=float("nan")),
     "imagic_scale must be a finite number in \\[0, 2\\], got nan"),
    (lambda pipe: _edit(pipe, imagic_scale=0.5), "imagic_scale needs an Imagic adapter"),
    (lambda pipe: ImagicSettings(embedding_lr=float("nan")).validate(), "embedding_lr must be a finite number > 0"),
])
def test_bad_input_is_one_line(call, message):
    with pytest.raises(ValueError, match=message) as error:
        call(tiny_pipeline())
    assert "\n" not in str(error.value)


def test_the_clip_is_taken_in_any_form_the_pipeline_takes(tmp_path):
    # ImagicRun(pipe, read_video(...)) raised AttributeError ('VideoClip' object has no attribute 'ndim')
    from gen1.media import read_video, write_video

    pipe = tiny_pipeline()
    frames = (np.random.default_rng(0).random((FRAMES, SIZE, SIZE, 3)) * 255).astype(np.uint8)
    write_video(tmp_path / "clip.mp4", frames, 8)
    clip = read_video(tmp_path / "clip.mp4")
    as_tensor = torch.from_numpy(clip.frames).permute(0, 3, 1, 2).float() / 255.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        keys = {ImagicRun(pipe, video, TEXT, ImagicSettings(), tmp_path / "work", device="cpu", depth=_depth()).key
                for video in (clip, clip.frames, as_tensor)}
    assert len(keys) == 1


def test_a_prompt_beside_imagic_scale_is_refused(trained):
    pipe, _, _ = trained
    with pytest.raises(ValueError, match="imagic_scale takes its content from the Imagic adapter: give no prompt"):
        _edit(pipe, imagic_scale=0.5, prompt="a cat")


def test_a_drag_with_imagic_scale_draws_with_the_imagic_content(trained):
    # what the drag's model draws takes the Imagic mix like any given content (it was silently left out before)
    pipe, result, _ = trained
    mask = np.zeros((FRAMES, SIZE, SIZE), dtype=np.float32)
    mask[:, 8:16, 8:16] = 1
    drag = dict(mask=mask, drag="11,11:19,13")
    assert torch.equal(_edit(pipe, imagic_scale=0.0, **drag), _edit(pipe, content_embeds=result.optimised, **drag))


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """An uninterrupted run: its result and its LoRA weights."""
    pipe = tiny_pipeline()
    result, _ = _run(pipe, tmp_path_factory.mktemp("straight"))
    return result, _lora(pipe)


@pytest.mark.parametrize("phase, step", [("embedding", 3), ("lora", 2)])
def test_ctrl_c_keeps_the_work_and_a_resumed_run_ends_where_an_uninterrupted_one_does(tmp_path, straight, phase,
                                                                                       step):
    straight, straight_lora = straight

    def ctrl_c(at_phase, done, loss):
        if (at_phase, done) == (phase, step):
            os.kill(os.getpid(), signal.SIGINT)

    pipe = tiny_pipeline()
    with pytest.raises(TrainingInterrupted) as stop:
        _run(pipe, tmp_path / "work", on_step=ctrl_c)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler is put back
    offset = 0 if phase == "embedding" else straight.steps["embedding"]
    assert stop.value.step == offset + step
    assert [p.name for p in ckpt.list_checkpoints(tmp_path / "work")] == [f"checkpoint-{offset + step:08d}"]

    with pytest.raises(ValueError, match="were made from another clip, text, model or settings"):
        _run(tiny_pipeline(), tmp_path / "work", resume=True, text="a blue car")
    with pytest.raises(ValueError, match="holds checkpoints of an earlier run"):
        _run(tiny_pipeline(), tmp_path / "work")
    resumed_pipe = tiny_pipeline()  # a run that ran out of memory resumes with gradient checkpointing
    resumed, _ = _run(resumed_pipe, tmp_path / "work", resume=True, gradient_checkpointing=phase == "lora")
    assert not is_recomputing(resumed_pipe.unet)  # switched off again for the edits
    assert resumed.resumed_from is not None
    assert torch.equal(resumed.optimised, straight.optimised)
    assert resumed.history == straight.history
    assert _lora(resumed_pipe).keys() == straight_lora.keys()
    assert all(torch.equal(a, b) for a, b in zip(_lora(resumed_pipe).values(), straight_lora.values()))


def test_the_command_customizes_then_edits_end_to_end(tmp_path, capsys):
    from gen1.cli import main
    from gen1.media import write_video

    model = tmp_path / "tiny-gen1"
    tiny_pipeline().save_pretrained(model)
    clip = tmp_path / "my clip.mp4"  # spaces: the printed command must quote them
    write_video(clip, (np.random.default_rng(0).random((FRAMES + 2, SIZE, SIZE, 3)) * 255).astype(np.uint8), 8)
    out = tmp_path / "red adapter"
    common = ["customize", "--imagic", "--model", str(model), "--video", str(clip), "--size", str(SIZE),
              "--embedding-steps", "3", "--steps", "2", "--out", str(out), "--max-frames", str(FRAMES)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # --resume with nothing to resume started afresh without a word
        assert main([*common, "--prompt", TEXT, "--gradient-checkpointing", "--resume"]) == 0, capsys.readouterr().err
    captured = capsys.readouterr()
    assert f"nothing to resume in '{tmp_path / 'red adapter.work'}' (no checkpoint): starting afresh" in captured.err
    printed = captured.out
    assert f"Imagic on {FRAMES} frames for '{TEXT}': embedding loss" in printed
    assert sorted(p.name for p in out.iterdir()) == sorted([ADAPTER_FILE, EMBEDDINGS_FILE])
    assert not (tmp_path / "red adapter.work").exists()  # the checkpoints go once the adapter is written

    # the printed command runs as printed: quoted, with the model, the size and the frames the adapter was fitted on
    words = shlex.split(printed.split("edit with: ", 1)[1].strip())
    assert words[:3] == ["gen1", "edit", str(clip)] and words[words.index("--model") + 1] == str(model)
    assert words[words.index("--max-frames") + 1] == str(FRAMES) and words[words.index("--size") + 1] == str(SIZE)
    words[words.index("OUT.mp4")] = str(tmp_path / "e.mp4")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main([*words[1:], "--steps", "2"]) == 0
    printed = capsys.readouterr().out
    assert (tmp_path / "e.mp4").is_file() and "Imagic embeddings for 'a red car'" in printed
    assert f"({FRAMES} frames" in printed

    edit = ["edit", str(clip), "--model", str(model), "--size", str(SIZE), "--steps", "2"]

    from PIL import Image

    Image.fromarray(np.zeros((SIZE, SIZE, 3), np.uint8)).save(tmp_path / "still.png")
    for argv, message in [
        ([*edit, "-o", str(tmp_path / "f.mp4"), "--imagic-scale", "0.5"], "--imagic-scale needs an Imagic adapter"),
        ([*edit, "-o", str(tmp_path / "f.mp4"), "--adapter", str(out), "--imagic-scale", "3"],
         "--imagic-scale must be a finite number in [0, 2], got 3"),
        ([*edit, "-o", str(tmp_path / "f.mp4"), "--adapter", str(out), "--imagic-scale", "1", "--prompt", "x"],
         "--imagic-scale takes its content from the Imagic adapter: give no --prompt"),
        ([*common, "--prompt", ""], "--imagic needs --prompt TEXT"),
        ([*common, "--prompt", TEXT, "--batch-size", "2"], "--batch-size does not apply to --imagic"),
        ([*common, "--prompt", TEXT, "--video", str(tmp_path / "still.png")], "is a still image: Imagic fine-tunes"),
        (["customize", "--model", str(model), "--images", str(tmp_path), "--out", str(tmp_path / "a.safetensors"),
          "--structure-level", "0"], "--structure-level is a flag of --imagic (one clip and a target text)"),
        ([*common, "--prompt", TEXT, "--out", str(tmp_path)], "is a folder with other files than an Imagic adapter's"),
    ]:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err
    assert not (tmp_path / "f.mp4").exists()


def test_an_interrupted_command_resumes_with_resume_and_a_plain_rerun_is_refused_before_loading(tmp_path, capsys,
                                                                                                 monkeypatch):
    # the command checked the checkpoint folder beside --out as an output FILE: after Ctrl-C, the resume it
    # advised (and any rerun) was refused with "output path is a directory, expected a file"
    import gen1.training.imagic as imagic_training
    from gen1.cli import main
    from gen1.media import write_video

    model = tmp_path / "tiny-gen1"
    tiny_pipeline().save_pretrained(model)
    clip = tmp_path / "clip.mp4"
    write_video(clip, (np.random.default_rng(0).random((FRAMES, SIZE, SIZE, 3)) * 255).astype(np.uint8), 8)
    out, work = tmp_path / "adapter", tmp_path / "adapter.work"
    command = ["customize", "--imagic", "--model", str(model), "--video", str(clip), "--size", str(SIZE),
               "--embedding-steps", "3", "--steps", "2", "--out", str(out), "--prompt", TEXT]

    class CtrlCInTheLoRA(imagic_training.ImagicRun):
        def __init__(self, *args, **kwargs):
            def ctrl_c(phase, done, loss):
                if (phase, done) == ("lora", 1):
                    os.kill(os.getpid(), signal.SIGINT)

            super().__init__(*args, on_step=ctrl_c, **kwargs)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with monkeypatch.context() as patched:
            patched.setattr(imagic_training, "ImagicRun", CtrlCInTheLoRA)
            assert main(command) == 130
        assert "resume with: the same command and --resume" in capsys.readouterr().err
        assert ckpt.list_checkpoints(work) and not out.exists()

        loads = []
        monkeypatch.setattr("gen1.model_sources.load_model", lambda *a, **k: loads.append(a))
        assert main(command) == 2  # without --resume: refused before the model loads
        assert "holds checkpoints of an earlier run: resume it (the same command and --resume)" in \
            capsys.readouterr().err
        assert loads == []
        monkeypatch.undo()
        assert main([*command, "--resume"]) == 0, capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == sorted([ADAPTER_FILE, EMBEDDINGS_FILE]) and not work.exists()


def test_the_printed_edit_command_passes_the_model_flags_gen1_edit_takes():
    # --depth-model goes with the public route's parts only: gen1 edit refuses it beside --model
    import argparse

    from gen1.commands._models import model_flags

    saved = argparse.Namespace(model="pipe", base=None, motion_adapter=None, controlnet=None, depth_model="dpt")
    public = argparse.Namespace(model=None, base="sd", motion_adapter="mm", controlnet="cn", depth_model="dpt")
    assert model_flags(saved) == ["--model", "pipe"]
    assert model_flags(public) == ["--base", "sd", "--motion-adapter", "mm", "--controlnet", "cn", "--depth-model", "dpt"]
    assert model_flags(argparse.Namespace(model=None, base=None)) == []


def test_an_early_stop_ends_with_its_bar_at_the_steps_it_took(tmp_path, capsys):
    # the bar wrapped the loop, so the step a phase stopped early after was never counted: "imagic lora: 63%
    # 19/30" beside "(20 steps, stopped early)"
    settings = ImagicSettings(**{**FAST, "embedding_steps": 12, "eval_every": 1, "patience": 1,
                                 "min_improvement": 0.99})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run = ImagicRun(tiny_pipeline(), _video(), TEXT, settings, tmp_path / "work", device="cpu", progress=True,
                        depth=_depth())
        result = run.run()
    assert result.stopped_early["embedding"] and result.steps["embedding"] < 12
    bar = capsys.readouterr().err.split("imagic embedding")[-1].split("\r")[0]
    assert f"{result.steps['embedding']}/12" in bar


def test_a_phase_out_of_patience_on_its_last_step_did_not_stop_early(tmp_path):
    # it said "(N steps, stopped early)" after running every step
    settings = ImagicSettings(**{**FAST, "embedding_steps": 1, "steps": 1, "eval_every": 1, "patience": 1,
                                 "min_improvement": 0.99})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = ImagicRun(tiny_pipeline(), _video(), TEXT, settings, tmp_path / "work", device="cpu",
                           progress=False, depth=_depth()).run()
    assert result.steps == {"embedding": 1, "lora": 1} and not any(result.stopped_early.values())


def test_a_learning_rate_past_float32_is_refused_as_an_overflow(tmp_path):
    # Adam's step raised "value cannot be converted to type float without overflow" as a traceback
    settings = ImagicSettings(**{**FAST, "embedding_lr": 1e38})
    with warnings.catch_warnings(), pytest.raises(ValueError, match=r"^the Imagic embedding optimisation overflowed "
                                                                    r"at step 1 .*lower its learning rate"):
        warnings.simplefilter("ignore")
        ImagicRun(tiny_pipeline(), _video(), TEXT, settings, tmp_path / "work", device="cpu", progress=False,
                  depth=_depth()).run()
