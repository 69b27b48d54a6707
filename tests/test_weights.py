"""The one strict key/shape check that every weight loader uses."""

import pytest
import torch

from gen1.weights import check_state_dict


def test_accepts_exact_match_and_names_the_first_problem():
    expected = {"a.weight": torch.zeros(2, 3), "b.bias": torch.Size([4])}
    check_state_dict(expected, {"a.weight": torch.ones(2, 3), "b.bias": torch.ones(4)}, "f.safetensors")
    with pytest.raises(ValueError, match=r"f\.safetensors: missing key 'b\.bias' \(expected shape \(4,\)\)"):
        check_state_dict(expected, {"a.weight": torch.ones(2, 3)}, "f.safetensors")
    with pytest.raises(ValueError, match=r"unexpected key 'c' \(and 1 more\)"):
        check_state_dict(expected, {"a.weight": torch.ones(2, 3), "b.bias": torch.ones(4), "c": 1, "d": 2}, "f")
    with pytest.raises(ValueError, match=r"'a\.weight' has shape \(3, 2\), the model expects \(2, 3\); hint"):
        check_state_dict(expected, {"a.weight": torch.ones(3, 2), "b.bias": torch.ones(4)}, "f", hint="; hint")


def _tamper(directory, add=None, drop=None):
    """Rewrite the single safetensors file of a save_pretrained folder with a key added or dropped."""
    from safetensors.torch import load_file, save_file

    (path,) = list(directory.glob("*.safetensors"))
    tensors = load_file(str(path))
    if add:
        tensors[add] = torch.zeros(3)
    if drop:
        del tensors[drop]
    save_file(tensors, str(path), metadata={"format": "pt"})


@pytest.mark.parametrize("component", ["depth", "content"])
def test_gen1_components_load_strictly_from_save_pretrained_folders(component, tmp_path):
    from gen1.content import ContentEncoder
    from gen1.depth import DepthEstimator
    from gen1.depth.midas import default_midas_config
    from tiny_structure_content import TINY_MIDAS

    if component == "depth":
        cls = DepthEstimator
        model = DepthEstimator(backend="midas", input_size=(32, 32), network_config=default_midas_config(
            "midas_v21_small", **TINY_MIDAS["midas_v21_small"]).to_dict())
    else:
        cls = ContentEncoder
        small = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2)
        model = ContentEncoder(vision_config=dict(small, patch_size=8, image_size=16), text_config=small,
                               projection_dim=8, image_size=16, crop_size=16)
    model.save_pretrained(tmp_path / "ok")
    reloaded = cls.from_pretrained(tmp_path / "ok")
    for (name, a), b in zip(model.state_dict().items(), reloaded.state_dict().values()):
        assert torch.equal(a, b), name
    some_key = next(iter(model.state_dict()))
    model.save_pretrained(tmp_path / "extra")
    _tamper(tmp_path / "extra", add="bogus.weight")
    with pytest.raises(ValueError, match=r"unexpected keys.*bogus\.weight"):
        cls.from_pretrained(tmp_path / "extra")
    model.save_pretrained(tmp_path / "missing")
    _tamper(tmp_path / "missing", drop=some_key)
    with pytest.raises(ValueError, match="missing keys.*" + some_key.replace(".", r"\.")):
        cls.from_pretrained(tmp_path / "missing")
