"""Atomic outputs: complete or absent, never half-written; nothing the user had is lost on failure."""

import os
import stat

import pytest

from gen1.atomic import atomic_directory, atomic_path, check_output_path


def test_atomic_path_writes_complete_file_with_normal_permissions(tmp_path):
    target = tmp_path / "out.mp4"
    with atomic_path(target) as tmp:
        assert tmp.suffix == ".mp4" and tmp.parent == tmp_path and tmp != target
        tmp.write_bytes(b"done")
    assert target.read_bytes() == b"done"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask
    assert [p.name for p in tmp_path.iterdir()] == ["out.mp4"]


def test_atomic_path_failure_keeps_previous_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("crash while writing")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_missing_output_directory_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="output directory does not exist"):
        check_output_path(tmp_path / "nope" / "out.mp4")
    with pytest.raises(ValueError, match="is a directory"):
        check_output_path(tmp_path)


def test_atomic_directory_replaces_only_when_complete(tmp_path):
    target = tmp_path / "ckpt"
    with atomic_directory(target) as tmp:
        (tmp / "a.txt").write_text("1")
    assert (target / "a.txt").read_text() == "1"
    with pytest.raises(RuntimeError):
        with atomic_directory(target) as tmp:
            (tmp / "a.txt").write_text("2")
            raise RuntimeError("killed mid-checkpoint")
    assert (target / "a.txt").read_text() == "1"
    with atomic_directory(target) as tmp:
        (tmp / "b.txt").write_text("3")
    assert sorted(p.name for p in target.iterdir()) == ["b.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_a_directory_written_atomically_holds_files_with_normal_permissions(tmp_path):
    # safetensors writes its files 0600: an exported model's weights were readable by their owner alone
    import torch
    from safetensors.torch import save_file

    with atomic_directory(tmp_path / "model") as tmp:
        (tmp / "unet").mkdir()
        save_file({"w": torch.zeros(2)}, str(tmp / "unet" / "weights.safetensors"))
        (tmp / "config.json").write_text("{}")
    umask = os.umask(0)
    os.umask(umask)
    for path in (tmp_path / "model" / "unet" / "weights.safetensors", tmp_path / "model" / "config.json"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask, path
    assert stat.S_IMODE((tmp_path / "model").stat().st_mode) == 0o777 & ~umask


def test_write_json_replaces_whole_files_and_checks_the_directory(tmp_path):
    import json

    from gen1.atomic import write_json

    target = tmp_path / "result.json"
    target.write_text("old")
    assert write_json(target, {"psnr": 15.5}) == target
    assert json.loads(target.read_text()) == {"psnr": 15.5}
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]  # no temporary file left behind
    with pytest.raises(ValueError, match="output directory does not exist"):
        write_json(tmp_path / "missing" / "result.json", {})


def _dead_pid() -> int:
    """The id of a process that has exited (reaped, so nothing holds its number)."""
    import subprocess
    import sys

    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_temporary_files_of_killed_writers_are_removed_by_the_next_write(tmp_path):
    """A SIGKILL mid-write leaves the hidden temporary file; the next write to that target removes it, but
    never a live writer's file, another host's (shared file systems), nor those of another target."""
    from gen1.atomic import _HOST

    target = tmp_path / "out.mp4"
    stale = tmp_path / f".out.mp4.gen1-tmp-{_HOST}-{_dead_pid()}-0.tmp.mp4"
    stale_dir = tmp_path / f".out.mp4.gen1-tmp-{_HOST}-{_dead_pid()}-3.tmp"
    live = tmp_path / f".out.mp4.gen1-tmp-{_HOST}-{os.getppid()}-0.tmp.mp4"
    # from a host whose name is this one's plus "-<digits>": its pid is 7, not the digits
    other_host = tmp_path / f".out.mp4.gen1-tmp-{_HOST}-{_dead_pid()}-7-0.tmp.mp4"
    other = tmp_path / f".other.mp4.gen1-tmp-{_HOST}-{_dead_pid()}-0.tmp.mp4"
    for path in (stale, live, other_host, other):
        path.write_bytes(b"partial")
    stale_dir.mkdir()
    (stale_dir / "weights.safetensors").write_bytes(b"partial")
    with atomic_path(target) as tmp:
        assert tmp.name.startswith(f".out.mp4.gen1-tmp-{_HOST}-{os.getpid()}-") and tmp.suffix == ".mp4"
        tmp.write_bytes(b"done")
    assert target.read_bytes() == b"done"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, other_host.name, other.name, "out.mp4"])


def test_atomic_directory_removes_stale_temporaries_of_its_target(tmp_path):
    from gen1.atomic import _HOST

    stale = tmp_path / f".ckpt.gen1-tmp-{_HOST}-{_dead_pid()}-0.tmp"
    stale.mkdir()
    (stale / "a.txt").write_text("partial")
    with atomic_directory(tmp_path / "ckpt") as tmp:
        assert tmp.name.startswith(f".ckpt.gen1-tmp-{_HOST}-{os.getpid()}-")
        (tmp / "a.txt").write_text("1")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_check_writable_proves_the_directory_takes_files(tmp_path):
    from gen1.atomic import check_writable

    assert check_writable(tmp_path / "out.mp4") == tmp_path / "out.mp4"
    assert list(tmp_path.iterdir()) == []  # the probe is gone
    if os.geteuid() == 0:
        unwritable = "/sys"  # root ignores permission bits, not sysfs's rules
    else:
        unwritable = tmp_path / "locked"
        unwritable.mkdir(mode=0o500)
    with pytest.raises(ValueError, match="cannot write to output directory"):
        check_writable(f"{unwritable}/out.mp4")
