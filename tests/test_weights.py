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


class _Records(list):
    """The records the loggers ``names`` emit while the ``with`` block runs (whatever their handlers)."""

    def __init__(self, *names):
        super().__init__()
        import logging

        self.handler = logging.Handler()
        self.handler.emit = self.append
        self.loggers = [logging.getLogger(name) for name in names]

    def __enter__(self):
        for logger in self.loggers:
            logger.addHandler(self.handler)
        return self

    def __exit__(self, *exc):
        for logger in self.loggers:
            logger.removeHandler(self.handler)

    def messages(self):
        return [record.getMessage() for record in self]


def test_a_pipeline_missing_a_weight_is_refused_without_diffusers_advice_to_train_it(tmp_path):
    # diffusers printed "Some weights of AutoencoderKL were not initialized ... You should probably TRAIN this
    # model ..." before gen1's error naming the key: advice to train a model whose download is damaged
    import shutil
    from pathlib import Path

    from safetensors.torch import load_file, save_file

    from gen1.pipeline import Gen1Pipeline

    model = Path(shutil.copytree(Path(__file__).resolve().parents[1] / "gen1" / "assets" / "demo-model",
                                 tmp_path / "model"))
    weights = model / "vae" / "diffusion_pytorch_model.safetensors"
    tensors = load_file(weights)
    del tensors["decoder.conv_norm_out.weight"]
    save_file(tensors, weights)
    with _Records("diffusers.models.modeling_utils") as records:
        with pytest.raises(ValueError, match=r"the weights of 'vae' lack key 'decoder.conv_norm_out.weight'"):
            Gen1Pipeline.from_pretrained(model)
    assert not [m for m in records.messages() if "TRAIN this model" in m or "not initialized" in m]


def test_missing_weight_reports_are_held_only_for_gen1s_own_error():
    import logging

    from gen1.weights import MissingWeights, missing_weight_reports_held

    logger = logging.getLogger("diffusers.models.modeling_utils")
    filters = list(logger.filters)
    report = ("Some weights of AutoencoderKL were not initialized from the model checkpoint at vae and are newly "
              "initialized: ['x']\nYou should probably TRAIN this model on a down-stream task")
    with _Records(logger.name) as records:
        with pytest.raises(MissingWeights):
            with missing_weight_reports_held():
                logger.warning(report)
                logger.warning("another warning")  # passes at once
                assert records.messages() == ["another warning"]
                raise MissingWeights("the weights of 'vae' lack key 'x'")
        assert records.messages() == ["another warning"]  # the report was dropped: gen1's error says it
        with missing_weight_reports_held():  # no error of gen1's: the report is told after all
            logger.warning(report)
        with pytest.raises(OSError):
            with missing_weight_reports_held():  # another failure: the report may explain it
                logger.warning(report)
                raise OSError("disk")
    assert records.messages() == ["another warning", report, report]
    assert logger.filters == filters  # nothing left behind
