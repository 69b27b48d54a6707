"""gen1 train: loss goes down on joint image+video batches; resume is exact; bad input is named."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from training_helpers import base_overrides, make_encoder, make_media, make_sd_dir

from gen1.training import checkpoint as ckpt
from gen1.training.config import load_config
from gen1.training.data import JointBatchPlan
from gen1.training.preprocess import PreprocessSettings, list_inputs, preprocess
from gen1.training.trainer import train

PRESETS = ("stage1_image", "stage2_temporal", "stage3_structure", "stage4_structure_levels")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    sd = make_sd_dir(root / "sd")
    media = make_media(root / "media", videos=2, images=2, frames=8, size=32)
    preprocess(list_inputs(media), root / "shards", make_encoder(sd),
               PreprocessSettings(clip_length=4, stride=1, size=32, shard_size=2))
    return root, sd, root / "shards"


def _config(data, out: Path, **extra):
    root, sd, shards = data
    return load_config(None, base_overrides(sd, shards, out, extra))


def test_loss_decreases_on_joint_image_video_batches(data):
    root = data[0]
    cfg = _config(data, root / "fit", **{
        "train.max_steps": 30, "optim.lr": 3e-3, "model.trainable": "all", "data.batch_size": 2,
        "data.image_ratio": 0.25, "diffusion.content_dropout": 0.1, "diffusion.structure_level_max": 7,
        "train.checkpoint_every": 1000, "ema.decay": 0.9, "validation.every": 30, "validation.num_inference_steps": 2,
        "train.tensorboard": "true"})
    result = train(cfg)
    first, last = sum(result.losses[:5]) / 5, sum(result.losses[-5:]) / 5
    print(f"loss first5={first:.4f} last5={last:.4f}")
    assert last < 0.7 * first, (first, last)
    assert result.seen["video"] > 0 and result.seen["image"] > 0
    assert result.seen["image"] == 15  # exactly image_ratio of the 60 samples
    export = Path(result.export_dir)
    assert (export / "unet" / "config.json").is_file() and (export / "temporal.safetensors").is_file()
    assert list((root / "fit").rglob("events.out.tfevents*")), "no TensorBoard log written"
    # validation sample from the shards: source = VAE decode of the cached latents, structure = cached depth
    assert [Path(p).name for p in result.samples] == ["step-00000030.png"] and len(result.validation) == 1
    assert (root / "fit" / "samples" / "step-00000030.mp4").is_file()
    from gen1.unet import VideoUNet

    reloaded = VideoUNet.from_pretrained(str(export / "unet"))
    assert reloaded.content_dim == 16
    assert reloaded.config.clip_length == 4 and reloaded.max_frames == 32  # the shards' clip length: default window


def _weights(path: Path) -> dict:
    out = load_file(str(path / "trainable.safetensors"))
    ema = torch.load(path / "ema.pt", weights_only=True)["shadow_params"]
    out.update({f"ema.{i}": t for i, t in enumerate(ema)})
    opt = torch.load(path / "optimizer.pt", weights_only=True)["state"]
    out.update({f"opt.{k}.{n}": v for k, s in opt.items() for n, v in s.items() if torch.is_tensor(v)})
    return out


def _assert_same(a: dict, b: dict):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


RESUME = {"train.max_steps": 4, "train.checkpoint_every": 2, "optim.lr": 1e-3, "optim.lr_schedule": "cosine",
          "optim.warmup_steps": 1, "model.trainable": "all", "data.image_ratio": 0.5,
          "diffusion.structure_level_max": 7, "ema.decay": 0.9}


def test_resume_is_exact_and_survives_a_kill_mid_checkpoint(data, monkeypatch):
    root = data[0]
    straight = train(_config(data, root / "straight", **RESUME))
    reference = _weights(ckpt.list_checkpoints(root / "straight")[-1])

    # k steps, "pre-empted" after step 3 (only checkpoint 2 exists), then resume: same as 2k in one go
    train(_config(data, root / "resumed", **RESUME), stop_at=3)
    assert [p.name for p in ckpt.list_checkpoints(root / "resumed")] == ["checkpoint-00000002"]
    resumed = train(_config(data, root / "resumed", **RESUME, **{"train.resume": "latest"}))
    assert resumed.resumed_from.endswith("checkpoint-00000002")
    assert resumed.losses == straight.losses[2:]
    _assert_same(reference, _weights(ckpt.list_checkpoints(root / "resumed")[-1]))

    # killed while writing checkpoint 4: the partial write never becomes a checkpoint
    real = ckpt._write_parts

    def dying(accelerator, tmp, *args):
        real(accelerator, tmp, *args)
        if "00000004" in tmp.name:
            raise KeyboardInterrupt("killed during save")

    monkeypatch.setattr(ckpt, "_write_parts", dying)
    with pytest.raises(KeyboardInterrupt):
        train(_config(data, root / "killed", **RESUME))
    monkeypatch.setattr(ckpt, "_write_parts", real)
    # a SIGKILL would also leave the temporary directory behind
    (ckpt.checkpoint_root(root / "killed") / ".checkpoint-00000004.abc.tmp").mkdir()
    assert [p.name for p in ckpt.list_checkpoints(root / "killed")] == ["checkpoint-00000002"]
    again = train(_config(data, root / "killed", **RESUME, **{"train.resume": "latest"}))
    assert again.resumed_from.endswith("checkpoint-00000002")
    _assert_same(reference, _weights(ckpt.list_checkpoints(root / "killed")[-1]))


def test_v_prediction_follows_the_base_scheduler(data, tmp_path):
    from gen1.training.model import load_noise_scheduler
    from gen1.training.draws import prediction_target

    root, sd, shards = data
    v_sd = make_sd_dir(tmp_path / "sd-v", prediction_type="v_prediction")
    sched = load_noise_scheduler(str(v_sd))
    assert sched.config.prediction_type == "v_prediction"
    z, eps, t = torch.randn(2, 4, 3, 4, 4), torch.randn(2, 4, 3, 4, 4), torch.tensor([10, 900])
    v = prediction_target(sched, z, eps, t, "v_prediction")
    a = sched.alphas_cumprod[t].sqrt().view(-1, 1, 1, 1, 1)
    s = (1 - sched.alphas_cumprod[t]).sqrt().view(-1, 1, 1, 1, 1)
    assert torch.allclose(v, a * eps - s * z, atol=1e-6)
    result = train(load_config(None, base_overrides(v_sd, shards, tmp_path / "v", {"train.max_steps": 1})))
    assert len(result.losses) == 1


def test_temporal_stage_leaves_what_the_image_model_runs_exactly_unchanged(data, tmp_path):
    """Stage 2 trains the temporal layers and the new structure channel of conv_in only: conv_in's latent channels
    and bias, and content_proj, feed the image model too, so neither the gradient nor AdamW's weight decay may
    move them."""
    from diffusers import UNet2DConditionModel

    from gen1.training.model import load_video_unet

    root, sd, shards = data
    cfg = _config(data, tmp_path / "t", **{
        "train.max_steps": 3, "optim.lr": 1e-2, "optim.weight_decay": 0.1, "model.trainable": "temporal",
        "diffusion.use_structure": "true", "train.checkpoint_every": 1000, "train.export": "false",
        "data.image_ratio": 0.0})
    torch.manual_seed(cfg.train.seed)  # as the trainer does before it builds the model
    start = load_video_unet(cfg.model, content_dim=16)
    result = train(cfg)
    base = UNet2DConditionModel.from_pretrained(str(sd), subfolder="unet").conv_in
    conv_in = result.unet.unet.conv_in
    assert torch.equal(conv_in.weight[:, :4], base.weight) and torch.equal(conv_in.bias, base.bias)
    assert conv_in.weight[:, 4:].abs().sum() > 0  # the new (zero-initialised) structure channel trained
    assert result.unet.content_proj is not None  # content of size 16, cross-attention of 32
    assert torch.equal(result.unet.content_proj.weight, start.content_proj.weight)
    assert torch.equal(result.unet.content_proj.bias, start.content_proj.bias)


def test_batch_plan_is_stateless_and_splits_ranks():
    is_image = [False] * 5 + [True] * 3
    plan = JointBatchPlan(is_image, batch_size=2, image_ratio=0.25, seed=3)
    batches = [plan.batch(m) for m in range(8)]
    assert batches == [plan.batch(m) for m in range(8)]  # a function of m only
    kinds = [is_image[i] for b in batches for i in b]
    assert sum(kinds) == 4 and len(kinds) == 16
    ranks = [JointBatchPlan(is_image, batch_size=2, image_ratio=0.25, seed=3, rank=r, world_size=2) for r in (0, 1)]
    for m in range(6):
        a, b = ranks[0].batch(m), ranks[1].batch(m)
        assert len(a) == len(b) == 2 and not set(a) & set(b)  # disjoint within one pass


def _reference_batch(plan: JointBatchPlan, m: int) -> list[int]:
    """The original (slow) JointBatchPlan.batch: a fresh randperm per sample, all ranks' slots, then a slice."""
    def stream(ids, start, count, salt):
        out = []
        for k in range(start, start + count):
            epoch, pos = divmod(k, len(ids))
            perm = torch.randperm(len(ids), generator=torch.Generator().manual_seed(plan.seed * 1_000_003 + epoch * 2 + salt))
            out.append(ids[int(perm[pos])])
        return out

    g = plan.global_batch
    img_start = plan._images_before(m)
    n_img = plan._images_before(m + 1) - img_start
    images = stream(plan.image_ids, img_start, n_img, 1) if n_img else []
    videos = stream(plan.video_ids, m * g - img_start, g - n_img, 0) if n_img < g else []
    return (images + videos)[plan.rank::plan.world_size]


@pytest.mark.parametrize("world, ratio", [(1, 0.25), (3, 0.3), (2, 0.0), (2, 1.0)])
def test_batch_plan_matches_the_reference_bit_for_bit(world, ratio):
    is_image = [i % 3 == 0 for i in range(11)]
    for rank in range(world):
        plan = JointBatchPlan(is_image, batch_size=3, image_ratio=ratio, seed=7, rank=rank, world_size=world)
        ms = list(range(25)) + [3, 0, 40, 2]  # several epochs, and out of order (cache eviction)
        assert [plan.batch(m) for m in ms] == [_reference_batch(plan, m) for m in ms]


@pytest.mark.parametrize("world", [1, 2, 3])
@pytest.mark.parametrize("batch", [1, 2, 3])
@pytest.mark.parametrize("ratio", [0.0, 0.25, 0.3, 0.5, 0.7, 1.0])
def test_a_plan_knows_whether_a_micro_batch_can_hold_images_only(world, batch, ratio):
    is_image = [i % 2 == 0 for i in range(12)]
    plans = [JointBatchPlan(is_image, batch_size=batch, image_ratio=ratio, seed=0, rank=r, world_size=world)
             for r in range(world)]
    seen = any(not plan.slots(m)[1] for plan in plans for m in range(60))  # no video slot on that process
    assert all(plan.image_only_batches() == seen for plan in plans)


@pytest.mark.parametrize("trainable, ratio, batch, expected", [
    ("image", 1.0, 2, False),  # the temporal layers are frozen: every trainable weight gets its gradient
    ("temporal", 0.0, 2, False),
    ("all", 0.0, 2, False),
    ("all", 0.5, 2, False),  # one image and one video in every micro-batch: the temporal layers always run
    ("all", 0.5, 1, True),  # half the micro-batches are one image: the temporal layers get no gradient there
    ("all", 1.0, 2, True),
])
def test_ddp_looks_for_unused_parameters_only_when_some_can_be_unused(trainable, ratio, batch, expected):
    # find_unused_parameters was always true: DDP then traversed the graph every step and warned that it found
    # no unused parameters (e.g. the images stage, whose temporal layers are frozen)
    from gen1.training.model import select_trainable
    from gen1.training.trainer import find_unused_parameters
    from gen1.unet import VideoUNet
    from tiny_models import tiny_unet
    from training_helpers import CONTENT_DIM, TEMPORAL

    from gen1.training.config import config_from_dict

    config = config_from_dict({"model": {"trainable": trainable}, "data": {"image_ratio": ratio}})
    with torch.random.fork_rng(devices=[]):
        unet = VideoUNet.from_image_unet(tiny_unet("sd1"), content_dim=CONTENT_DIM, **TEMPORAL)
    params = select_trainable(unet, trainable)
    plan = JointBatchPlan([i % 2 == 0 for i in range(8)], batch_size=batch, image_ratio=ratio, seed=0)
    assert find_unused_parameters(config, unet, params, plan) is expected
    forced = config_from_dict({"train": {"find_unused_parameters": not expected}})
    assert find_unused_parameters(forced, unet, params, plan) is (not expected)  # the config's word wins


def test_presets_load_and_bad_config_is_named(data, tmp_path):
    root, sd, shards = data
    for name in PRESETS:
        cfg = load_config(name, [f"model.base={sd}", f"data.shards={shards}"])
        assert cfg.stage == int(name[5])
    assert load_config("stage4_structure_levels", [f"model.base={sd}", f"data.shards={shards}"]
                       ).diffusion.structure_level_max == 7
    demo = {name: load_config(name, [f"model.base={sd}", f"data.shards={shards}"])  # the demo model's presets
            for name in ("demo_joint", "demo_image", "demo_temporal")}
    assert demo["demo_image"].data.image_ratio == 1.0 and demo["demo_image"].model.trainable == "image"
    assert demo["demo_temporal"].data.image_ratio == 0.0 and demo["demo_temporal"].model.trainable == "temporal"
    with pytest.raises(ValueError, match=r"unknown config key 'optim.learning_rate'"):
        load_config("stage2_temporal", [f"model.base={sd}", f"data.shards={shards}", "optim.learning_rate=1"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  base: x\n  trainabel: all\n")
    with pytest.raises(ValueError, match=r"unknown config key 'model.trainabel'"):
        load_config(bad)
    with pytest.raises(ValueError, match=r"model.trainable must be one of"):
        load_config(None, [f"model.base={sd}", f"data.shards={shards}", "model.trainable=some"])
    with pytest.raises(ValueError, match=r"diffusion.structure_level_max must be a whole number"):
        load_config(None, [f"model.base={sd}", f"data.shards={shards}", "diffusion.structure_level_max=6.5"])
    with pytest.raises(ValueError, match=r"optim.lr must be a number, got 'fast'"):
        load_config(None, [f"model.base={sd}", f"data.shards={shards}", "optim.lr=fast"])
    with pytest.raises(FileNotFoundError, match=r"model.base does not exist: '.*no-such-sd'"):
        train(load_config(None, base_overrides(tmp_path / "no-such-sd", shards, tmp_path / "o")))
    with pytest.raises(ValueError, match=r"clip length \(4 frames\) exceeds the model's max_frames \(2\)"):
        train(load_config(None, base_overrides(sd, shards, tmp_path / "o", {"model.max_frames": 2})))
    with pytest.raises(FileNotFoundError, match="shard directory not found"):
        train(load_config(None, base_overrides(sd, tmp_path / "no-shards", tmp_path / "o")))


def test_train_cli_prints_config_and_names_errors(data, capsys):
    from gen1.cli import main

    root, sd, shards = data
    assert main(["train", "stage3_structure", f"model.base={sd}", f"data.shards={shards}", "--print-config"]) == 0
    assert "structure_level_max: 0" in capsys.readouterr().out
    assert main(["train", "stage3_structure", f"model.base={sd}", f"data.shards={shards}", "train.bogus=1"]) == 2
    assert "unknown config key 'train.bogus'" in capsys.readouterr().err
    assert main(["train", "--list-presets"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in listed] == ["demo_image", "demo_joint", "demo_temporal", *PRESETS]
    assert "stage2_temporal          stage 2: trains temporal, image_ratio 0, no structure" in listed
    assert main(["train"]) == 2 and "CONFIG is required" in capsys.readouterr().err


def test_list_presets_names_the_training_presets_and_an_unknown_name_lists_them():
    from gen1.training.config import list_presets

    names = list_presets()
    assert set(PRESETS) | {"demo_image", "demo_joint", "demo_temporal"} == set(names)  # not customize.yaml
    with pytest.raises(FileNotFoundError, match=r"'stage9'.*presets: demo_image, demo_joint.*stage4_structure_levels"):
        load_config("stage9")


@pytest.mark.parametrize("name", ["stage1_image", "stage2_temporal", "stage3_structure", "stage4_structure_levels",
                                  "demo_image", "demo_joint", "demo_temporal"])
def test_every_kind_of_sample_a_preset_draws_trains_something(name, data):
    """Image samples run in image mode (temporal layers gated off): a preset that trains only the temporal layers
    and still draws images would spend that compute on nothing. Content as wide as the cross-attention, so the
    model has no content_proj (as SD 1.x with CLIP ViT-L/14)."""
    from gen1.training.batch import Clips, JointBatch
    from gen1.training.draws import draw_inputs
    from gen1.training.losses import DiffusionObjective
    from gen1.training.model import load_noise_scheduler, load_video_unet, select_trainable

    root, sd, shards = data
    cfg = load_config(name, [f"model.base={sd}", f"data.shards={shards}",
                             "model.temporal={temporal_attention_head_dim: 8}"])
    unet = load_video_unet(cfg.model, content_dim=32)
    assert unet.content_proj is None
    params = select_trainable(unet, cfg.model.trainable)
    scheduler = load_noise_scheduler(cfg.model.base, cfg.diffusion.prediction_type)
    kinds = [mode for mode, drawn in ((False, cfg.data.image_ratio < 1), (True, cfg.data.image_ratio > 0)) if drawn]
    assert kinds
    gen = torch.Generator().manual_seed(0)
    for image_mode in kinds:
        frames = 1 if image_mode else 4
        clips = Clips(torch.randn(2, 4, frames, 8, 8, generator=gen), torch.rand(2, 1, frames, 8, 8, generator=gen),
                      torch.randn(2, frames, 32, generator=gen))
        part = draw_inputs(clips, scheduler, cfg.diffusion, gen, image_mode=image_mode)
        unet.zero_grad(set_to_none=True)
        DiffusionObjective(unet)(JointBatch(image=part) if image_mode else JointBatch(video=part)).backward()
        moved = [n for n, p in params.items() if p.grad is not None and p.grad.abs().sum() > 0]
        assert moved, f"preset {name}: its {'image' if image_mode else 'video'} samples train no parameter"


def test_a_temporal_stage_refuses_image_samples_naming_the_field(data):
    root, sd, shards = data
    with pytest.raises(ValueError, match=r"data.image_ratio must be 0 when model.trainable is 'temporal', got 0.25"):
        load_config("stage2_temporal", [f"model.base={sd}", f"data.shards={shards}", "data.image_ratio=0.25"])


def test_a_prediction_type_override_reaches_validation_and_the_exported_scheduler(data, tmp_path, monkeypatch):
    import json

    from gen1.training import trainer

    root, sd, shards = data  # the base scheduler predicts epsilon
    seen = []
    real_sample = trainer.sample  # the trainer's validation sample (gen1.training.validation.sample)

    def recording_sample(pipe, held, config):
        seen.append(pipe.scheduler.config.prediction_type)
        return real_sample(pipe, held, config)

    monkeypatch.setattr(trainer, "sample", recording_sample)
    result = train(_config(data, tmp_path / "v", **{
        "diffusion.prediction_type": "v_prediction", "train.max_steps": 1, "validation.every": 1,
        "validation.num_inference_steps": 1, "validation.mp4": "false", "model.trainable": "all"}))
    assert seen == ["v_prediction"]
    saved = json.loads((Path(result.export_dir) / "scheduler" / "scheduler_config.json").read_text())
    assert saved["prediction_type"] == "v_prediction"


@pytest.mark.parametrize("override, message", [
    ("optim.lr=.nan", r"optim.lr must be a finite number, got nan"),
    ("optim.lr=inf", r"optim.lr must be a finite number, got inf"),
    ("diffusion.content_dropout=-.inf", r"diffusion.content_dropout must be a finite number, got -inf"),
    ("ema.decay=1.0", r"ema.decay must be in \[0, 1\), got 1.0"),
    ("ema.decay=-0.5", r"ema.decay must be in \[0, 1\), got -0.5"),
    ("optim.lr=[1", r"override 'optim.lr=\[1': the value is not valid YAML \(line 1, column 3: "),
])
def test_config_values_are_checked_at_load(data, override, message):
    root, sd, shards = data
    with pytest.raises(ValueError, match=message):
        load_config(None, [f"model.base={sd}", f"data.shards={shards}", override])


def test_malformed_yaml_is_one_line_naming_the_file_and_line(tmp_path, capsys):
    from gen1.cli import main

    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  base: x\n  trainable: [all\ntrain:\n  max_steps: 3\n")
    assert main(["train", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"config file '{bad}' is not valid YAML (line 4, column 6" in err


INTERRUPT = {"train.max_steps": 4, "train.checkpoint_every": 1000, "optim.lr": 1e-3, "model.trainable": "all",
             "data.image_ratio": 0.5, "ema.decay": 0.9, "diffusion.structure_level_max": 7}


def _ctrl_c_after(monkeypatch, step: int, times: int = 1):
    """Make the trainer receive ``times`` Ctrl-C (SIGINT) right after optimizer step ``step``."""
    import signal

    from training_helpers import signal_after_step

    signal_after_step(monkeypatch, step, signal.SIGINT, times)


def test_ctrl_c_saves_a_checkpoint_and_the_printed_resume_matches_an_uninterrupted_run(data, tmp_path, monkeypatch,
                                                                                        capsys):
    import shlex
    import signal

    from gen1.cli import main

    root, sd, shards = data
    config = tmp_path / "run.yaml"
    config.write_text("stage: 2\n")
    assert main(["train", str(config), *base_overrides(sd, shards, tmp_path / "straight", INTERRUPT)]) == 0
    capsys.readouterr()

    _ctrl_c_after(monkeypatch, 2)
    out = tmp_path / "stopped"
    assert main(["train", str(config), *base_overrides(sd, shards, out, INTERRUPT)]) == 130
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler is put back
    err = capsys.readouterr().err
    assert f"interrupted after step 2; checkpoint saved: {out / 'checkpoints' / 'checkpoint-00000002'}" in err
    assert [p.name for p in ckpt.list_checkpoints(out)] == ["checkpoint-00000002"]
    (resume,) = [line.split("resume with: ", 1)[1] for line in err.splitlines() if "resume with: " in line]
    assert resume.startswith(f"gen1 train {config} ") and resume.endswith(" train.resume=latest")

    monkeypatch.undo()
    assert main(shlex.split(resume)[1:]) == 0
    assert "resumed from" in capsys.readouterr().out
    _assert_same(_weights(ckpt.list_checkpoints(tmp_path / "straight")[-1]), _weights(ckpt.list_checkpoints(out)[-1]))


def test_a_second_ctrl_c_quits_at_once(data, tmp_path, monkeypatch, capsys):
    from gen1.cli import main

    root, sd, shards = data
    config = tmp_path / "run.yaml"
    config.write_text("stage: 2\n")
    _ctrl_c_after(monkeypatch, 1, times=2)
    assert main(["train", str(config), *base_overrides(sd, shards, tmp_path / "o", INTERRUPT)]) == 130
    assert "stopped at once" in capsys.readouterr().err
    assert ckpt.list_checkpoints(tmp_path / "o") == []  # quit before any checkpoint was due


def test_under_torchrun_the_launchers_echo_of_a_ctrl_c_is_not_a_second_one(data, tmp_path, monkeypatch, capsys):
    # torchrun / accelerate launch forward the Ctrl-C they receive to every worker, which the terminal has already
    # sent it: taken as a second Ctrl-C, the worker quit at once (no checkpoint, "stopped at once"), then the
    # launcher's SignalException traceback was all there was to read
    from gen1.cli import main

    root, sd, shards = data
    config = tmp_path / "run.yaml"
    config.write_text("stage: 2\n")
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "none")  # what torch elastic sets for its workers
    _ctrl_c_after(monkeypatch, 1, times=2)  # the terminal's SIGINT, then the launcher's
    out = tmp_path / "o"
    assert main(["train", str(config), *base_overrides(sd, shards, out, INTERRUPT)]) == 130
    err = capsys.readouterr().err
    assert f"interrupted after step 1; checkpoint saved: {out / 'checkpoints' / 'checkpoint-00000001'}" in err
    assert "the launcher then reports the same Ctrl-C with a SignalException traceback" in err
    assert [p.name for p in ckpt.list_checkpoints(out)] == ["checkpoint-00000001"]


def test_under_torchrun_a_ctrl_c_after_the_launchers_echo_still_quits_at_once(monkeypatch):
    import os
    import signal

    from gen1.atomic import Terminated
    from gen1.training import interrupt

    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "none")
    with interrupt.stop_on_interrupt() as stop:
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)  # the same signal again at once: its echo
        assert stop.asked
        with pytest.raises(Terminated):  # torch 2.14's launcher relays a second Ctrl-C as SIGTERM: it quits
            os.kill(os.getpid(), signal.SIGTERM)
    with interrupt.stop_on_interrupt():
        os.kill(os.getpid(), signal.SIGINT)
        monkeypatch.setattr(interrupt, "LAUNCHER_ECHO_SECONDS", 0.0)  # the echo window has passed
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    monkeypatch.delenv("TORCHELASTIC_RUN_ID")
    monkeypatch.undo()
    with interrupt.stop_on_interrupt():  # no launcher: a second signal is a second Ctrl-C at once
        os.kill(os.getpid(), signal.SIGINT)
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert interrupt.launcher_note({}) == ""


def test_a_launch_that_would_split_the_job_is_refused_with_the_command_that_works():
    from gen1.training.launch import check_process_count

    argv = ["/env/lib/gen1/__main__.py", "train", "my.yaml", "train.output_dir=runs/a b"]
    torchrun = {"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1", "MASTER_ADDR": "127.0.0.1"}
    with pytest.raises(ValueError, match=r"launched as 2 processes \(WORLD_SIZE=2\).* On CPU run: "
                                         r"ACCELERATE_USE_CPU=true torchrun --nproc_per_node 2 -m gen1 train my.yaml "
                                         r"'train.output_dir=runs/a b'$"):
        check_process_count(1, env=torchrun, argv=argv)
    single = {"ACCELERATE_DYNAMO_BACKEND": "NO", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"}
    with pytest.raises(ValueError, match=r"accelerate launch was asked for several processes but started one.*"
                                         r"ACCELERATE_USE_CPU=true torchrun --nproc_per_node N -m gen1 train my.yaml"):
        check_process_count(1, env=single, argv=argv)
    with pytest.raises(ValueError, match=r"torchrun --nproc_per_node 4 my_train.py --fast$"):
        check_process_count(1, env=dict(torchrun, WORLD_SIZE="4"), argv=["my_train.py", "--fast"])
    check_process_count(2, env=torchrun, argv=argv)  # joined: fine
    check_process_count(1, env={"WORLD_SIZE": "1"}, argv=argv)
    check_process_count(1, env={}, argv=argv)
    check_process_count(1, env={"ACCELERATE_DYNAMO_BACKEND": "NO"}, argv=argv)  # accelerate launch, one process


def test_gen1_train_under_a_launcher_that_did_not_join_the_processes_refuses_before_writing(data, tmp_path,
                                                                                           monkeypatch, capsys):
    import shlex
    import sys

    from accelerate.state import AcceleratorState, GradientState

    from gen1.cli import main

    root, sd, shards = data
    # WORLD_SIZE as torchrun sets it, ACCELERATE_USE_CPU unset. Without LOCAL_RANK, so that Accelerate does not wait
    # for the second process to join a process group (with it, it would; the check is the same either way).
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("ACCELERATE_USE_CPU", raising=False)
    argv = ["train", "stage3_structure", *base_overrides(sd, shards, tmp_path / "o")]
    monkeypatch.setattr(sys, "argv", ["/env/bin/gen1", *argv])
    AcceleratorState._reset_state(reset_partial_state=True)
    try:
        assert main(argv) == 2
    finally:
        AcceleratorState._reset_state(reset_partial_state=True)
        GradientState._reset_state()
    assert f"On CPU run: ACCELERATE_USE_CPU=true torchrun --nproc_per_node 2 -m gen1 {shlex.join(argv)}\n" in (
        capsys.readouterr().err)
    assert not (tmp_path / "o").exists()


def test_only_the_main_process_reports_the_export(monkeypatch, capsys):
    from gen1.cli import main
    from gen1.training import trainer

    for main_process in (False, True):
        result = trainer.TrainResult(losses=[0.5], step=3, export_dir="runs/x/export", main_process=main_process)
        monkeypatch.setattr(trainer, "train", lambda config, result=result: result)
        assert main(["train", "stage3_structure", "model.base=x", "data.shards=y"]) == 0
        assert ("exported to runs/x/export" in capsys.readouterr().out) == main_process


class _RunsCode:
    def __reduce__(self):  # what a hostile pickle does: call something on load
        return (print, ("this must never run",))


@pytest.mark.parametrize("damage, file", [
    (lambda p: p.write_bytes(p.read_bytes()[:100]), "trainable.safetensors"),
    (lambda p: p.write_text("[1, 2]"), "state.json"),
    (lambda p: p.write_bytes(b""), "rng-rank0.pt"),
    (lambda p: torch.save({"x": _RunsCode()}, p), "lr_scheduler.pt"),
])
def test_a_damaged_latest_checkpoint_names_its_file_and_the_run_resumes_from_the_one_before(data, capsys, damage,
                                                                                           file):
    root = data[0]
    out = root / f"damaged-{file}"
    settings = {**RESUME, "train.max_steps": 4, "train.checkpoint_every": 1, "train.export": "false"}
    train(_config(data, out, **settings), stop_at=3)
    latest = ckpt.list_checkpoints(out)[-1]
    damage(latest / file)
    resumed = train(_config(data, out, **settings, **{"train.resume": "latest"}))
    said = capsys.readouterr().out
    assert f"checkpoint {latest.name} cannot be resumed: '{latest / file}'" in said
    assert "this must never run" not in said
    assert resumed.resumed_from == str(ckpt.list_checkpoints(out)[-3]) and resumed.step == 4


def test_a_damaged_checkpoint_named_by_its_path_is_one_line_offering_the_earlier_one(data):
    root = data[0]
    out = root / "damaged-named"
    settings = {**RESUME, "train.max_steps": 2, "train.checkpoint_every": 1, "train.export": "false"}
    train(_config(data, out, **settings))
    first, second = ckpt.list_checkpoints(out)
    (second / "optimizer.pt").write_bytes(b"\x80\x04 not a pickle")
    with pytest.raises(ckpt.DamagedCheckpoint, match=f"cannot resume: '{second / 'optimizer.pt'}' is damaged .*"
                                                     f"an earlier one: train.resume={first}"):
        train(_config(data, out, **{**settings, "train.max_steps": 3, "train.resume": str(second)}))


def _tree(folder: Path) -> dict:
    """Every path under ``folder`` with its bytes (None for a folder) and modification time: what a run changed."""
    return {str(p.relative_to(folder)): (None if p.is_dir() else p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*"))}


@pytest.mark.parametrize("damage", ["empty checkpoints folder", "a checkpoint without files", "a stray file",
                                    "checkpoints is a file"])
def test_a_failed_resume_leaves_the_output_folder_as_it_was(data, damage):
    """Resuming from a checkpoint that is missing or incomplete, in an output folder whose checkpoints/ is empty or
    malformed, fails in one line and changes nothing there: no new folder, file, log or checkpoint, no file
    rewritten. (``resume: latest`` with no complete checkpoint starts afresh, as documented, unless checkpoints/
    cannot hold any.)"""
    root = data[0]
    out = root / f"failed-resume-{damage.replace(' ', '-')}"
    (out / "notes").mkdir(parents=True)
    (out / "notes" / "mine.txt").write_text("the user's own file")
    if damage == "checkpoints is a file":
        (out / "checkpoints").write_text("not a folder")
    else:
        (out / "checkpoints").mkdir()
        if damage == "a checkpoint without files":
            (out / "checkpoints" / "step-00000002").mkdir()
        elif damage == "a stray file":
            (out / "checkpoints" / "README").write_text("kept")
    before = _tree(out)
    settings = {**RESUME, "train.max_steps": 2, "train.export": "false"}
    resumes = [str(out / "checkpoints" / "step-00000002")] + (["latest"] if damage == "checkpoints is a file" else [])
    for resume in resumes:
        with pytest.raises((ValueError, FileNotFoundError), match="resume|not a folder"):
            train(_config(data, out, **settings, **{"train.resume": resume}))
        assert _tree(out) == before, resume
