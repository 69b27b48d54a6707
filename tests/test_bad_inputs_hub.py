"""The Hub offline or unreachable: a name not in the cache fails at once (one request, no retry loop), several named
parts are resolved together and every missing one is reported in one message, and a name that looks like a local
path is refused as a missing path instead of being tried on the Hub. A laid-out cache (tiny_hub) and no network."""

from __future__ import annotations

import json

import pytest
from huggingface_hub import HfApi

from tiny_hub import cache_repo, offline_cache

CONTROLNET = "lllyasviel/control_v11f1p_sd15_depth"
REAL_MODEL_INFO, REAL_LIST_REPO_FILES = HfApi.model_info, HfApi.list_repo_files  # before any test replaces them


@pytest.fixture
def cache(tmp_path, monkeypatch):
    cache = offline_cache(monkeypatch, tmp_path / "hf")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    controlnet = tmp_path / "controlnet"
    controlnet.mkdir()
    (controlnet / "config.json").write_text(json.dumps({"_class_name": "ControlNetModel"}))
    (controlnet / "diffusion_pytorch_model.safetensors").write_bytes(b"weights")
    cache_repo(cache, CONTROLNET, {"": controlnet})
    return cache


def test_every_missing_part_is_reported_in_one_message(cache):
    from gen1.hub import CONTROLNET as CONTROLNET_LAYOUT, MOTION_ADAPTER, PIPELINE_INDEX, BASE, resolve_all

    parts = [("--base", "stable-diffusion-v1-5/stable-diffusion-v1-5", BASE),
             ("--motion-adapter", "guoyww/animatediff-motion-adapter-v1-5-2", MOTION_ADAPTER),
             ("--controlnet", CONTROLNET, CONTROLNET_LAYOUT),
             ("--model", "gen1-org/absent", PIPELINE_INDEX),
             ("--lora", None, None)]
    with pytest.raises(ValueError) as error:
        resolve_all(parts)
    message = str(error.value)
    assert message.startswith("3 of 4 model parts are missing: ") and "\n" not in message
    for flag, name, _ in parts[:2] + parts[3:4]:
        assert f"{flag} '{name}': no local path, and the Hub repo '{name}' is not in the Hugging Face cache" in message
    assert "hf download stable-diffusion-v1-5/stable-diffusion-v1-5 model_index.json" in message
    assert "hf download gen1-org/absent" in message and f"--controlnet '{CONTROLNET}'" not in message


def test_resolve_all_returns_the_paths_when_nothing_is_missing(cache):
    from gen1.hub import CONTROLNET as CONTROLNET_LAYOUT, resolve_all

    (path, none) = resolve_all([("--controlnet", CONTROLNET, CONTROLNET_LAYOUT), ("--lora", None, None)])
    assert (path / "config.json").is_file() and none is None


def test_one_missing_part_is_its_own_message(cache):
    from gen1.hub import MOTION_ADAPTER, resolve_all

    with pytest.raises(ValueError, match=r"^--motion-adapter 'org/absent': no local path, and the Hub repo"):
        resolve_all([("--motion-adapter", "org/absent", MOTION_ADAPTER)])


def test_an_unreachable_hub_is_asked_once_per_name_without_retries(cache, monkeypatch):
    """HF_HUB_OFFLINE unset, the network down: gen1 asks with one request, which fails, then reads the cache.
    huggingface_hub's list_repo_files would retry five times with back-off (about 25 s): it must not be used."""
    import httpx2
    from huggingface_hub import HfApi, constants

    from gen1.hub import CONTROLNET as CONTROLNET_LAYOUT, resolve

    calls = []

    def down(self, repo, **kwargs):
        calls.append(repo)
        raise httpx2.ConnectError("[Errno 111] Connection refused")

    def retrying(self, *args, **kwargs):
        raise AssertionError("list_repo_files retries a refused connection with back-off")

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(HfApi, "model_info", down)
    monkeypatch.setattr(HfApi, "list_repo_files", retrying)
    with pytest.raises(ValueError, match=r"the Hub cannot be reached \(ConnectError: \[Errno 111\] Connection "
                                         r"refused\); fetch it beforehand: hf download org/absent"):
        resolve("org/absent", CONTROLNET_LAYOUT, flag="--controlnet")
    assert (resolve(CONTROLNET, CONTROLNET_LAYOUT, flag="--controlnet") / "config.json").is_file()
    assert calls == ["org/absent", CONTROLNET]


def test_a_refused_connection_is_not_retried(cache, monkeypatch, caplog):
    """The real huggingface_hub client against a port where nothing listens: one attempt, no "Retrying" lines."""
    import logging

    from huggingface_hub import constants

    from gen1.hub import CONTROLNET as CONTROLNET_LAYOUT, resolve

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setattr(HfApi, "model_info", REAL_MODEL_INFO)
    monkeypatch.setattr(HfApi, "list_repo_files", REAL_LIST_REPO_FILES)
    with caplog.at_level(logging.WARNING, logger="huggingface_hub"):
        with pytest.raises(ValueError, match=r"is not in the Hugging Face cache .* while the Hub cannot be reached"):
            resolve("org/absent", CONTROLNET_LAYOUT, flag="--controlnet")
    assert not [r for r in caplog.records if "Retry" in r.getMessage()]


@pytest.mark.parametrize("name, reason", [
    ("./runs/export", "it starts like a local path"),
    ("../runs/export", "it starts like a local path"),
    ("runs/export", "its first folder 'runs' exists here"),
    ("runs/model.safetensors", "its first folder 'runs' exists here"),
    ("outputs/model.safetensors", "'outputs/model.safetensors' ends in a file suffix"),
    ("adapters/style.pt", "'adapters/style.pt' ends in a file suffix"),
])
def test_a_name_that_looks_like_a_local_path_is_a_missing_path_not_a_repo(cache, tmp_path, monkeypatch, name,
                                                                           reason):
    from huggingface_hub import HfApi, constants

    from gen1.hub import CONTROLNET as CONTROLNET_LAYOUT, resolve

    (tmp_path / "work" / "runs").mkdir()

    def asked(self, repo, **kwargs):
        raise AssertionError(f"'{repo}' was tried on the Hub")

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # even online: never asked
    monkeypatch.setattr(HfApi, "model_info", asked)
    with pytest.raises(FileNotFoundError) as error:
        resolve(name, CONTROLNET_LAYOUT, flag="--controlnet")
    assert str(error.value).startswith(f"--controlnet path not found: '{name}' ({reason}, so it is taken as a "
                                       "local path, not a Hub repo")


def test_repo_names_and_files_in_repos_are_still_hub_names(cache):
    from gen1.hub import local_path_reason

    for name in ("guoyww/animatediff/mm_sd_v15_v2.ckpt", "black-forest-labs/FLUX.1-dev", "h94/IP-Adapter",
                 "h94/IP-Adapter/models/ip-adapter_sd15.safetensors", CONTROLNET):
        assert local_path_reason(name) is None, name


def test_a_gated_repo_is_one_line_when_its_files_are_refused(cache, monkeypatch):
    """model_info lists a gated repo's files without a login; the download is what is refused."""
    import httpx2
    from huggingface_hub import constants
    from huggingface_hub.errors import GatedRepoError

    from gen1.hub import CONTROLNET as CONTROLNET_LAYOUT, resolve
    from tiny_hub import repo_info

    def gated(*args, **kwargs):
        request = httpx2.Request("GET", "https://huggingface.co/api/models/org/gated")
        raise GatedRepoError("403 gated", response=httpx2.Response(403, request=request))

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(HfApi, "model_info", lambda self, repo, **kwargs: repo_info(
        ["config.json", "diffusion_pytorch_model.safetensors"]))
    monkeypatch.setattr("huggingface_hub.snapshot_download", gated)
    with pytest.raises(ValueError, match=r"^--controlnet 'org/gated': the Hub repo 'org/gated' is gated: accept its "
                                         r"terms at https://huggingface.co/org/gated and log in"):
        resolve("org/gated", CONTROLNET_LAYOUT, flag="--controlnet")
