"""SIGTERM (kill, schedulers, containers) is treated like Ctrl-C: an atomic write removes its hidden temporary and
keeps the previous output, `gen1 edit` exits with one line, `gen1 train` saves a checkpoint and prints the resume
command."""

from __future__ import annotations

import signal
import sys

import pytest
from process_helpers import signal_when_logged

from gen1.cli import main


def test_sigterm_during_an_atomic_write_removes_the_temporary_and_keeps_the_output(tmp_path):
    """A writer stopped half-way by SIGTERM: the old code died at once, leaving `.out.bin.gen1-tmp-...` beside it."""
    out, log = tmp_path / "out.bin", tmp_path / "log.txt"
    out.write_bytes(b"the previous output")
    code = ("import sys, time\nfrom gen1.atomic import atomic_path, sigterm_as_interrupt, Terminated\n"
            "try:\n"
            "    with sigterm_as_interrupt():\n"
            f"        with atomic_path({str(out)!r}) as tmp:\n"
            "            tmp.write_bytes(b'half of the new')\n"
            "            print('writing', flush=True)\n"
            "            time.sleep(300)\n"
            "except Terminated:\n"
            "    sys.exit(43)\n")
    returncode = signal_when_logged([sys.executable, "-c", code], log, "writing", signal.SIGTERM, what="the write",
                                    cwd=tmp_path, both_streams=True, timeout_s=60)
    assert returncode == 43, log.read_text()
    assert out.read_bytes() == b"the previous output"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["log.txt", "out.bin"]  # no hidden temporary


def test_sigterm_outside_the_cli_context_keeps_its_handler():
    from gen1.atomic import sigterm_as_interrupt

    before = signal.getsignal(signal.SIGTERM)
    with sigterm_as_interrupt():
        assert signal.getsignal(signal.SIGTERM) is not before
    assert signal.getsignal(signal.SIGTERM) is before


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from tiny_pipeline import tiny_pipeline

    path = tmp_path_factory.mktemp("model") / "tiny-gen1"
    tiny_pipeline(max_frames=4).save_pretrained(path)
    return path


def test_sigterm_stops_gen1_edit_like_ctrl_c(model_dir, clips_dir, tmp_path):
    """A real SIGTERM while the tiny model denoises: one line, exit 143, the previous output kept, nothing hidden
    left beside it."""
    out, log = tmp_path / "out.mp4", tmp_path / "stderr.txt"
    out.write_bytes(b"the previous output")
    command = [sys.executable, "-m", "gen1", "edit", str(clips_dir / "wolf.mp4"), "-o", str(out), "--prompt", "x",
               "--model", str(model_dir), "--size", "64", "--max-frames", "2", "--steps", "1000", "--device", "cpu",
               "--threads", "1"]
    code = signal_when_logged(command, log, "/1000", signal.SIGTERM, what="the denoising loop", cwd=tmp_path)
    err = log.read_text(errors="replace")
    assert code == 143, err
    assert "gen1 edit: terminated (SIGTERM)" in err and "Traceback" not in err
    assert out.read_bytes() == b"the previous output"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mp4", "stderr.txt"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from training_helpers import make_encoder, make_media, make_sd_dir

    from gen1.training.preprocess import PreprocessSettings, list_inputs, preprocess

    root = tmp_path_factory.mktemp("train")
    sd = make_sd_dir(root / "sd")
    media = make_media(root / "media", videos=2, images=2, frames=8, size=32)
    preprocess(list_inputs(media), root / "shards", make_encoder(sd),
               PreprocessSettings(clip_length=4, stride=1, size=32, shard_size=2))
    return root, sd, root / "shards"


STEPS = {"train.max_steps": 4, "train.checkpoint_every": 1000, "optim.lr": 1e-3, "model.trainable": "all",
         "data.image_ratio": 0.5}


def _sigterm_after(monkeypatch, step: int, times: int = 1):
    """The process receives ``times`` real SIGTERMs right after optimizer step ``step``."""
    from training_helpers import signal_after_step

    signal_after_step(monkeypatch, step, signal.SIGTERM, times)


def test_sigterm_during_training_saves_a_checkpoint_and_prints_the_resume_command(data, tmp_path, monkeypatch,
                                                                                  capsys):
    import shlex

    from training_helpers import base_overrides

    from gen1.training import checkpoint as ckpt

    root, sd, shards = data
    config = tmp_path / "run.yaml"
    config.write_text("stage: 2\n")
    before = signal.getsignal(signal.SIGTERM)
    _sigterm_after(monkeypatch, 2)
    out = tmp_path / "stopped"
    assert main(["train", str(config), *base_overrides(sd, shards, out, STEPS)]) == 130
    assert signal.getsignal(signal.SIGTERM) is before  # the handlers are put back
    err = capsys.readouterr().err
    assert f"interrupted after step 2; checkpoint saved: {out / 'checkpoints' / 'checkpoint-00000002'}" in err
    assert [p.name for p in ckpt.list_checkpoints(out)] == ["checkpoint-00000002"]
    assert not [p for p in (out / "checkpoints").iterdir() if p.name.startswith(".")]  # no hidden temporary
    (resume,) = [line.split("resume with: ", 1)[1] for line in err.splitlines() if "resume with: " in line]
    monkeypatch.undo()
    assert main(shlex.split(resume)[1:]) == 0
    assert "resumed from" in capsys.readouterr().out
    assert [p.name for p in ckpt.list_checkpoints(out)][-1] == "checkpoint-00000004"


def test_a_second_sigterm_quits_training_at_once(data, tmp_path, monkeypatch, capsys):
    from training_helpers import base_overrides

    root, sd, shards = data
    config = tmp_path / "run.yaml"
    config.write_text("stage: 2\n")
    _sigterm_after(monkeypatch, 1, times=2)
    assert main(["train", str(config), *base_overrides(sd, shards, tmp_path / "o", STEPS)]) == 130
    err = capsys.readouterr().err
    assert "stopped at once" in err and "Traceback" not in err
