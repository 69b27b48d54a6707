"""Models by name (gen1.hub): every model option resolves a Hub repo id through huggingface_hub's cache, offline.

The cache is laid out by the tests (tiny_hub.cache_repo: refs/main, snapshots linked to blobs, the real repos' file
names) under HF_HUB_OFFLINE=1: one case edits with everything from the cache, one misses a file, one repo is not
cached at all, one repo is not a model. No test reaches the network or the user's cache.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from gen1.cli import main
from tiny_hub import cache_repo, offline_cache, repo_info
from tiny_public import write_ip_adapter, write_public_stack

BASE = "stable-diffusion-v1-5/stable-diffusion-v1-5"
MOTION = "guoyww/animatediff-motion-adapter-v1-5-2"
ORIGINAL = "guoyww/animatediff"
CONTROLNET = "lllyasviel/control_v11f1p_sd15_depth"
DEPTH = "Intel/dpt-hybrid-midas"
IP = "h94/IP-Adapter"
NATIVE = "gen1-org/tiny-gen1"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """The tiny public stack, a DPT, an IP-Adapter, an original AnimateDiff file and a saved native pipeline."""
    from tiny_models import original_animatediff_state_dict, tiny_motion_adapter, tiny_motion_unet
    from tiny_pipeline import tiny_pipeline

    root = tmp_path_factory.mktemp("hub_stack")
    parts = write_public_stack(root, dpt=True)
    write_ip_adapter(root / "ip" / "models", tiny_motion_unet(seed=0))
    torch.save(original_animatediff_state_dict(tiny_motion_adapter(seed=3, motion_num_attention_heads=8)),
               root / "mm_sd_v15_v2.ckpt")
    tiny_pipeline(max_frames=4).save_pretrained(root / "native")
    (root / "README.md").write_text("a model card\n")
    reference = root / "reference.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(reference)
    return dict(parts, ip=root / "ip", original=root / "mm_sd_v15_v2.ckpt",
                native=root / "native", readme=root / "README.md", reference=reference)


@pytest.fixture
def hub(stack, tmp_path, monkeypatch):
    """An offline Hugging Face cache holding the repos by their real names; returns their snapshot folders."""
    cache = offline_cache(monkeypatch, tmp_path / "hf")
    monkeypatch.chdir(tmp_path)  # no relative folder shadows a repo id
    readme = {"README.md": stack["readme"]}
    return {
        BASE: cache_repo(cache, BASE, {"": stack["base"], **readme}),
        MOTION: cache_repo(cache, MOTION, {"": stack["motion_adapter"]}),
        ORIGINAL: cache_repo(cache, ORIGINAL, {"mm_sd_v15_v2.ckpt": stack["original"], **readme}),
        CONTROLNET: cache_repo(cache, CONTROLNET, {"": stack["controlnet"]}),
        DEPTH: cache_repo(cache, DEPTH, {"": stack["dpt"]}),
        IP: cache_repo(cache, IP, {"": stack["ip"], **readme}),
        NATIVE: cache_repo(cache, NATIVE, {"": stack["native"]}),
        "someone/notes": cache_repo(cache, "someone/notes", readme),
    }


def _edit(argv, capsys):
    code = main(["edit", *map(str, argv)])
    return code, capsys.readouterr()


def _public(motion=MOTION):
    return ["--base", BASE, "--motion-adapter", motion, "--controlnet", CONTROLNET, "--depth-model", DEPTH]


def _public_with(flag, name):
    """The public parts by name, ``flag`` given ``name`` instead."""
    argv = _public()
    argv[argv.index(flag) + 1] = name
    return argv


def _assert_one_line(code, captured, *fragments):
    assert code == 2, captured.err
    assert "Traceback" not in captured.err and len(captured.err.strip().splitlines()) == 1, captured.err
    for fragment in fragments:
        assert fragment in captured.err, captured.err


@pytest.fixture
def forbid_loading(monkeypatch):
    for target in ("gen1.commands.edit.load_model", "gen1.model_sources.load_model"):
        monkeypatch.setattr(target, lambda *args, **kwargs: pytest.fail("loaded a model before refusing"))


# ------------------------------------------------------------------------------------------ everything cached
def test_edit_takes_every_public_part_by_name_from_the_cache(hub, stack, clips_dir, tmp_path, capsys):
    from gen1.media import read_video

    out = tmp_path / "out.mp4"
    code, captured = _edit([clips_dir / "wolf.mp4", "-o", out, "--prompt", "a fox", "--reference", stack["reference"],
                            *_public(motion=f"{ORIGINAL}/mm_sd_v15_v2.ckpt"),
                            "--ip-adapter", f"{IP}/models/ip-adapter_sd15.safetensors", "--size", 32,
                            "--max-frames", 2, "--steps", 2], capsys)
    assert code == 0, captured.err
    assert read_video(out).frames.shape == (2, 32, 32, 3)
    assert f"applied IP-Adapter {hub[IP] / 'models' / 'ip-adapter_sd15.safetensors'}" in captured.out


def test_a_saved_pipeline_repo_edits_and_loads_by_name(hub, stack, clips_dir, tmp_path, capsys):
    from gen1.pipeline import Gen1Pipeline
    from gen1.media import read_video

    out = tmp_path / "out.mp4"
    code, captured = _edit([clips_dir / "wolf.mp4", "-o", out, "--reference", stack["reference"], "--model", NATIVE,
                            "--size", 16, "--max-frames", 2, "--steps", 2], capsys)
    assert code == 0, captured.err
    assert read_video(out).frames.shape == (2, 16, 16, 3)
    by_name, local = Gen1Pipeline.from_pretrained(NATIVE), Gen1Pipeline.from_pretrained(stack["native"])
    assert all(torch.equal(a, b) for a, b in zip(by_name.unet.state_dict().values(), local.unet.state_dict().values()))


def test_the_python_api_gives_the_same_edit_by_name_as_by_path(hub, stack):
    from gen1.pipeline import Gen1Pipeline

    def edit(base, motion, controlnet, depth, ip_adapter):
        pipe = Gen1Pipeline.from_animatediff(base, motion_adapter=motion, controlnet=controlnet, depth_estimator=depth)
        pipe.load_ip_adapter(ip_adapter)
        pipe.set_progress_bar_config(disable=True)
        video = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
        return pipe(video, prompt="a fox", reference_image=str(stack["reference"]), num_inference_steps=2,
                    generator=torch.Generator().manual_seed(0), output_type="pt").frames

    by_name = edit(BASE, MOTION, CONTROLNET, DEPTH, f"{IP}/models/ip-adapter_sd15.safetensors")
    by_path = edit(stack["base"], stack["motion_adapter"], stack["controlnet"], stack["dpt"],
                   stack["ip"] / "models" / "ip-adapter_sd15.safetensors")
    assert torch.equal(by_name, by_path)


# ------------------------------------------------------------------------------------------ a file missing
@pytest.mark.parametrize("repo, missing, argv, message", [
    (BASE, "unet/diffusion_pytorch_model.safetensors", [], f"--base '{BASE}': the Hub repo '{BASE}' is cached without "
     "unet/diffusion_pytorch_model.safetensors (an incomplete download?); complete it: hf download "
     f"{BASE} model_index.json unet/config.json unet/diffusion_pytorch_model.safetensors"),
    (CONTROLNET, "diffusion_pytorch_model.safetensors", [], "is cached without diffusion_pytorch_model.safetensors "
     f"(an incomplete download?); complete it: hf download {CONTROLNET} config.json diffusion_pytorch_model.safetensors"),
    (IP, "models/image_encoder/model.safetensors", ["--ip-adapter", f"{IP}/models/ip-adapter_sd15.safetensors"],
     f"the image encoder of --ip-adapter '{IP}/models/image_encoder': the Hub repo '{IP}' is cached without "
     "models/image_encoder/model.safetensors"),
    (NATIVE, "vae/diffusion_pytorch_model.safetensors", ["--model", NATIVE],
     f"--model '{NATIVE}': the Hub repo '{NATIVE}' is cached without vae/diffusion_pytorch_model.safetensors"),
])
def test_a_partial_cache_names_the_missing_file_in_one_line(hub, stack, clips_dir, tmp_path, capsys, forbid_loading,
                                                            repo, missing, argv, message):
    (hub[repo] / missing).unlink()
    content = ["--reference", stack["reference"]] if argv else ["--prompt", "x"]  # a reference needs --ip-adapter
    argv = argv if "--model" in argv else [*_public(), *argv]
    code, captured = _edit([clips_dir / "wolf.mp4", "-o", tmp_path / "o.mp4", *content, *argv], capsys)
    _assert_one_line(code, captured, message)
    if repo == IP:
        assert "(or give --image-encoder)" in captured.err


def test_a_downloaded_blob_that_is_gone_counts_as_missing(hub, stack):
    from gen1.hub import CONTROLNET as LAYOUT, resolve

    (hub[CONTROLNET] / "diffusion_pytorch_model.safetensors").resolve().unlink()  # the link stays, dangling
    assert resolve(CONTROLNET, LAYOUT, flag="controlnet", weights=False) == hub[CONTROLNET]  # configs only: fine
    with pytest.raises(ValueError, match="is cached without diffusion_pytorch_model.safetensors"):
        resolve(CONTROLNET, LAYOUT, flag="controlnet")


# ------------------------------------------------------------------------------------------ nothing cached
@pytest.mark.parametrize("flag, name, command", [
    ("--controlnet", "lllyasviel/control_v11p_sd15_canny",
     "hf download lllyasviel/control_v11p_sd15_canny config.json diffusion_pytorch_model.safetensors"),
    ("--depth-model", "lllyasviel/Annotators/dpt_hybrid-midas-501f0c75.pt",
     "hf download lllyasviel/Annotators dpt_hybrid-midas-501f0c75.pt"),
    ("--model", "gen1-org/absent", "hf download gen1-org/absent"),
])
def test_a_repo_not_in_the_cache_gets_the_command_that_fetches_it(hub, stack, clips_dir, tmp_path, capsys,
                                                                  forbid_loading, flag, name, command):
    argv = ["--model", name] if flag == "--model" else _public_with(flag, name)
    code, captured = _edit([clips_dir / "wolf.mp4", "-o", tmp_path / "o.mp4", "--prompt", "x", *argv], capsys)
    _assert_one_line(code, captured, f"{flag} '{name}': no local path, and the Hub repo",
                     "is not in the Hugging Face cache (", "the Hub cannot be reached (HF_HUB_OFFLINE is set)",
                     f"fetch it beforehand: {command}\n")


def test_a_file_the_cached_repo_lacks_and_the_python_api_say_the_same(hub):
    from gen1.pipeline import Gen1Pipeline

    with pytest.raises(ValueError, match=f"the Hub repo '{ORIGINAL}' is cached without mm_sd_v15_v3.ckpt .*"
                                         f"hf download {ORIGINAL} mm_sd_v15_v3.ckpt"):
        Gen1Pipeline.from_animatediff(BASE, motion_adapter=f"{ORIGINAL}/mm_sd_v15_v3.ckpt", controlnet=CONTROLNET)
    with pytest.raises(ValueError, match="pretrained_model_name_or_path 'gen1-org/absent': no local path"):
        Gen1Pipeline.from_pretrained("gen1-org/absent")
    with pytest.raises(FileNotFoundError, match="base path not found: 'nowhere' \\(nor is it a Hub repo id"):
        Gen1Pipeline.from_animatediff("nowhere", motion_adapter=MOTION, controlnet=CONTROLNET)


# ------------------------------------------------------------------------------------------ not a model
@pytest.mark.parametrize("flag, name, message", [
    ("--controlnet", "someone/notes", "the Hub repo 'someone/notes' is cached without config.json: it is not a "
     "ControlNet in diffusers layout"),
    ("--base", CONTROLNET, f"the Hub repo '{CONTROLNET}' is cached without model_index.json: it is not a Stable "
     "Diffusion model in diffusers layout"),
])
def test_a_cached_repo_that_is_not_the_model_is_refused(hub, clips_dir, tmp_path, capsys, forbid_loading, flag, name,
                                                        message):
    code, captured = _edit([clips_dir / "wolf.mp4", "-o", tmp_path / "o.mp4", "--prompt", "x",
                            *_public_with(flag, name)], capsys)
    _assert_one_line(code, captured, message)


@pytest.fixture
def online(hub, monkeypatch):
    """The Hub "reachable": repo listings are given by the test, downloads are recorded (the cache serves them)."""
    from huggingface_hub import HfApi, constants

    listings, downloads = {}, []
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(HfApi, "model_info", lambda self, repo, **kwargs: repo_info(listings[repo]))

    def snapshot_download(repo, *, allow_patterns=None, **kwargs):
        downloads.append((repo, sorted(allow_patterns)))
        return str(hub[repo])

    monkeypatch.setattr("huggingface_hub.snapshot_download", snapshot_download)
    return listings, downloads


def test_online_only_the_needed_files_come_and_a_repo_without_them_is_refused_first(online):
    from gen1.hub import CONTROLNET as LAYOUT, resolve

    listings, downloads = online
    listings[CONTROLNET] = ["README.md", "config.json", "diffusion_pytorch_model.bin",
                            "diffusion_pytorch_model.fp16.safetensors", "diffusion_pytorch_model.safetensors",
                            "images/sample.png"]
    assert resolve(CONTROLNET, LAYOUT, flag="--controlnet", weights=False).is_dir()
    resolve(CONTROLNET, LAYOUT, flag="--controlnet")
    assert downloads == [(CONTROLNET, ["config.json"]),
                         (CONTROLNET, ["config.json", "diffusion_pytorch_model.safetensors"])]
    listings["someone/notes"] = ["README.md", "notes.ckpt"]
    with pytest.raises(ValueError, match="--controlnet 'someone/notes': the Hub repo 'someone/notes' is not a "
                                         "ControlNet in diffusers layout .*: it has no config.json"):
        resolve("someone/notes", LAYOUT, flag="--controlnet")
    assert len(downloads) == 2  # refused before downloading anything


def test_an_unreachable_hub_falls_back_to_the_cache_and_an_unknown_repo_is_named(online, hub, monkeypatch):
    import httpx2
    from huggingface_hub import HfApi
    from huggingface_hub.errors import LocalEntryNotFoundError, RepositoryNotFoundError

    from gen1.hub import CONTROLNET as LAYOUT, resolve

    def unreachable(self, repo, **kwargs):
        raise ConnectionError("no route to host")

    def cache_only(repo, *, local_files_only=False, **kwargs):
        assert local_files_only, "nothing is fetched while the Hub cannot be reached"
        if repo not in hub:
            raise LocalEntryNotFoundError(f"{repo} is not cached")
        return str(hub[repo])

    monkeypatch.setattr(HfApi, "model_info", unreachable)
    monkeypatch.setattr("huggingface_hub.snapshot_download", cache_only)
    assert resolve(CONTROLNET, LAYOUT, flag="--controlnet") == hub[CONTROLNET]
    with pytest.raises(ValueError, match=r"the Hub cannot be reached \(ConnectionError: no route to host\); fetch it"):
        resolve("lllyasviel/control_v11p_sd15_canny", LAYOUT, flag="--controlnet")

    def not_found(self, repo, **kwargs):
        request = httpx2.Request("GET", f"https://huggingface.co/api/models/{repo}")
        raise RepositoryNotFoundError("404", response=httpx2.Response(404, request=request))

    monkeypatch.setattr(HfApi, "model_info", not_found)
    with pytest.raises(ValueError, match="--controlnet 'someone/typo': no local path and no Hub repo 'someone/typo'"):
        resolve("someone/typo", LAYOUT, flag="--controlnet")


# ------------------------------------------------------------------------------------------ names
def test_a_local_path_always_wins_and_only_repo_shaped_names_go_to_the_hub(hub, stack, tmp_path):
    from gen1.hub import CONTROLNET as LAYOUT, hub_name, resolve

    local = tmp_path / CONTROLNET  # the working directory is tmp_path: the relative name exists locally
    shutil.copytree(stack["controlnet"], local)
    assert resolve(CONTROLNET, LAYOUT, flag="--controlnet").resolve() == local.resolve()
    assert hub_name("org/name") == ("org/name", "")
    assert hub_name("org/name/models/image_encoder") == ("org/name", "models/image_encoder")
    assert [hub_name(n) for n in ("name", "./org/name", "/org/name", "org/name/", "org/../name", "o--g/name")] == \
        [None] * 6


def test_the_readme_command_for_public_weights_runs_as_written_from_the_cache(hub, capsys):
    """README.md's "Real videos with public weights" command, word for word, with every repo it names in the cache
    (tiny random weights in the real layouts) and input.mp4 a short clip in the working folder."""
    import re
    import shlex
    from pathlib import Path

    from training_helpers import moving_square

    from gen1.media import read_video, write_video

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Real videos with public weights", 1)[1].split("###", 1)[0]
    (block,) = re.findall(r"^```bash\n(.*?)^```", section, flags=re.S | re.M)
    (command,) = [shlex.split(line, comments=True) for line in block.replace("\\\n", " ").splitlines() if line.strip()]
    assert command[:2] == ["gen1", "edit"] and "--model" not in command
    assert {BASE, MOTION, CONTROLNET, DEPTH} <= set(command)  # every part by its Hub name
    write_video("input.mp4", moving_square(2, 48, seed=0), fps=8)  # the hub fixture's folder is the working one
    code = main(command[1:])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert read_video("out.mp4").frames.shape[0] == 2


def test_an_adapter_that_does_not_fit_is_refused_before_any_weights_are_fetched(online, stack, clips_dir, tmp_path,
                                                                               capsys):
    """The public parts' configs, then the IP-Adapter's fit, and only then the parts' weights: an adapter for
    another base costs no multi-gigabyte download."""
    from safetensors.torch import save_file

    listings, downloads = online
    for repo, folder in ((BASE, stack["base"]), (MOTION, stack["motion_adapter"]), (CONTROLNET, stack["controlnet"]),
                         (DEPTH, stack["dpt"])):
        listings[repo] = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    sdxl = tmp_path / "ip-adapter_sdxl.safetensors"  # an SDXL-shaped header (text width 2048) is all the check reads
    save_file({"image_proj.proj.weight": torch.zeros(8, 24), "ip_adapter.1.to_k_ip.weight": torch.zeros(32, 2048),
               "ip_adapter.1.to_v_ip.weight": torch.zeros(32, 2048)}, str(sdxl))
    shutil.copytree(stack["ip"] / "models" / "image_encoder", tmp_path / "image_encoder")
    code, captured = _edit([clips_dir / "wolf.mp4", "-o", tmp_path / "o.mp4", "--reference", stack["reference"],
                            *_public(), "--ip-adapter", sdxl], capsys)
    assert code == 2 and "does not fit" in captured.err, captured.err
    fetched = [name for _, patterns in downloads for name in patterns]
    assert not any(name.endswith((".safetensors", ".bin")) for name in fetched), fetched
