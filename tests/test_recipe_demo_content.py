"""Recipe tests: the demo content encoder's training objective and its per-attribute metric
(demo_recipe.content), the training-curve plot and the content-sufficiency probe."""

from __future__ import annotations

import dataclasses
import re

import pytest
import torch

from demo_recipe.content import (ATTRIBUTES, ContrastiveCLIP, attribute_accuracy, attribute_targets, attribute_values,
                               build_content_encoder, hard_negative_captions, load_encoder_weights, train_content)
from gen1.synthetic import sample_style
from gen1.synthetic.style import TEXTURE_WORDS, Style

pytestmark = pytest.mark.recipe

CAPTION = re.compile(r"(\w+) (\w+) objects on an? (\w+) (\w+) floor in front of an? (\w+) wall, (\w+) light from "
                     r"the (\w+)")
WORD_TEXTURE = {word: name for name, word in TEXTURE_WORDS.items()}


def parse_caption(caption: str) -> Style:
    obj, obj_tex, floor, floor_tex, wall, level, direction = CAPTION.fullmatch(caption).groups()
    return Style(obj, WORD_TEXTURE[obj_tex], floor, WORD_TEXTURE[floor_tex], wall, direction, level)


def one_hot_features(style: Style, blind_to: tuple[str, ...] = ()) -> torch.Tensor:
    parts = []
    for name in ATTRIBUTES:
        values = attribute_values(name)
        part = torch.zeros(len(values))
        if name not in blind_to:
            part[values.index(getattr(style, name))] = 1.0
        parts.append(part)
    return torch.cat(parts)


class OracleEncoder:
    """Stands in for a ContentEncoder: "images" are indices into ``styles``; embeddings are one-hot attributes."""

    def __init__(self, styles, blind_to=()):
        self.styles, self.blind_to = styles, blind_to

    def encode_image(self, images):
        return torch.stack([one_hot_features(self.styles[int(i)], self.blind_to) for i in images])

    def encode_clip_text(self, captions):
        feats = torch.stack([one_hot_features(parse_caption(c)) for c in captions])
        return feats, None, None


def test_hard_negative_captions_differ_in_exactly_one_attribute():
    style = sample_style(5)
    negatives = hard_negative_captions(style, 40, torch.Generator().manual_seed(0))
    assert negatives == hard_negative_captions(style, 40, torch.Generator().manual_seed(0))  # reproducible
    changed = set()
    for caption in negatives:
        other = parse_caption(caption)
        diff = [name for name in ATTRIBUTES if getattr(other, name) != getattr(style, name)]
        assert len(diff) == 1, caption
        changed.update(diff)
    assert len(changed) >= 5  # the attribute is drawn at random, not always the same one


def test_attribute_accuracy_reads_what_the_embedding_carries():
    styles = [sample_style(s) for s in range(60)]
    index = torch.arange(len(styles))
    perfect = attribute_accuracy(OracleEncoder(styles), index, styles)
    assert perfect == {name: 1.0 for name in ATTRIBUTES}
    blind = attribute_accuracy(OracleEncoder(styles, blind_to=("object_texture", "light_direction")), index, styles)
    assert blind["object_color"] == blind["floor_texture"] == 1.0
    assert blind["object_texture"] < 0.5 and blind["light_direction"] < 0.5


def test_hard_negatives_only_add_image_to_text_candidates():
    torch.manual_seed(0)
    model = ContrastiveCLIP(build_content_encoder(seed=0))
    images = torch.rand(3, 3, 64, 64)
    styles = [sample_style(s) for s in range(3)]
    captions = [s.caption for s in styles]
    plain, plain_stats = model.loss(images, captions, 1.0)
    same, _ = model.loss(images, captions, 1.0, negatives=[])
    torch.testing.assert_close(plain, same)
    negatives = [dataclasses.replace(s, wall_color="black" if s.wall_color != "black" else "white").caption
                 for s in styles]
    harder, stats = model.loss(images, captions, 1.0, negatives=negatives)
    assert harder > plain  # more candidates in the image -> text softmax can only raise that term
    torch.testing.assert_close(stats["align"], plain_stats["align"])  # alignment is over the batch's own captions
    harder.backward()
    assert model.encoder.text.text_model.embeddings.token_embedding.weight.grad.abs().sum() > 0


def test_train_content_with_hard_negatives_exports_and_reports_attribute_accuracy(tmp_path):
    state = train_content(tmp_path / "content", max_steps=2, batch=2, hard_negatives=2, clip_frames=1)
    assert state["done"] and (tmp_path / "content" / "export").is_dir()
    assert set(state["metrics"]["attribute_accuracy"]) == set(ATTRIBUTES)
    with pytest.raises(ValueError, match="hard_negatives"):
        train_content(tmp_path / "bad", max_steps=1, batch=2, hard_negatives=-1)


def test_attribute_targets_index_each_style_value():
    styles = [sample_style(s) for s in range(20)]
    targets = attribute_targets(styles)
    assert set(targets) == set(ATTRIBUTES)
    for name, truth in targets.items():
        assert [attribute_values(name)[int(i)] for i in truth] == [getattr(style, name) for style in styles]


def test_attribute_heads_learn_the_style_from_the_image_embedding():
    torch.manual_seed(0)
    model = ContrastiveCLIP(build_content_encoder(seed=0), attribute_heads=True)
    images = torch.rand(4, 3, 64, 64)
    styles = [sample_style(s) for s in range(4)]
    captions = [s.caption for s in styles]
    plain, _ = model.loss(images, captions, 1.0)
    with_heads, stats = model.loss(images, captions, 1.0, styles=styles, attribute_weight=0.5)
    torch.testing.assert_close(with_heads, plain + 0.5 * stats["attr_ce"])
    with pytest.raises(ValueError, match="one style per image"):
        model.loss(images, captions, 1.0, styles=styles[:2], attribute_weight=0.5)
    with pytest.raises(ValueError, match="attribute_heads"):
        ContrastiveCLIP(build_content_encoder(seed=0)).loss(images, captions, 1.0, styles=styles, attribute_weight=1)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(40):
        loss, stats = model.loss(images, captions, 1.0, styles=styles, attribute_weight=1.0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    assert model.attribute_head_accuracy(images, styles) == {name: 1.0 for name in ATTRIBUTES}


def test_train_content_fine_tunes_from_an_export_and_reports_head_accuracy(tmp_path):
    first = train_content(tmp_path / "first", max_steps=1, batch=2, clip_frames=1)
    assert "attribute_head_accuracy" not in first["metrics"]
    export = tmp_path / "first" / "export"
    fresh = build_content_encoder(seed=3)
    load_encoder_weights(fresh, export)
    from gen1.content import ContentEncoder
    saved = ContentEncoder.from_pretrained(str(export)).state_dict()
    for key, value in fresh.state_dict().items():
        torch.testing.assert_close(value, saved[key].float())
    state = train_content(tmp_path / "tuned", max_steps=1, batch=2, clip_frames=1, attribute_weight=1.0, init=export)
    assert set(state["metrics"]["attribute_head_accuracy"]) == set(ATTRIBUTES)
    assert "attr_ce" in state["history"][-1][2]
    with pytest.raises(FileNotFoundError, match="no exported content encoder"):
        train_content(tmp_path / "bad", max_steps=1, batch=2, init=tmp_path / "missing")
    with pytest.raises(ValueError, match="attribute_weight"):
        train_content(tmp_path / "bad", max_steps=1, batch=2, attribute_weight=-1)


def test_load_encoder_weights_names_a_shape_mismatch(tmp_path):
    from gen1.content import ContentEncoder

    small = build_content_encoder(seed=0)
    config = dict(small.config)
    config["vision_config"] = dict(config["vision_config"], patch_size=16)
    other = ContentEncoder(**{k: v for k, v in config.items() if not k.startswith("_")})
    other.set_tokenizer(small.tokenizer)
    other.save_pretrained(str(tmp_path / "other"))
    with pytest.raises(ValueError, match="has shape"):
        load_encoder_weights(build_content_encoder(seed=0), tmp_path / "other")


def test_plot_curves_draws_both_content_encoders_and_chosen_panels(tmp_path, monkeypatch, capsys):
    """scripts/demo/plot_curves.py: the content panel draws every content run present (content, content2);
    --panels limits the figure; an unknown stage is refused by argparse."""
    import json
    import runpy
    import sys
    from pathlib import Path

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    script = str(Path(__file__).resolve().parents[1] / "scripts" / "demo" / "plot_curves.py")
    runs = tmp_path / "runs"
    for run in ("content", "content2"):
        (runs / run / "checkpoint").mkdir(parents=True)
        history = [[step, 5.0 / step, {}] for step in range(1, 41)]
        (runs / run / "checkpoint" / "state.json").write_text(json.dumps({"step": 40, "history": history}))
    figures = []
    monkeypatch.setattr(plt.Figure, "savefig", lambda fig, path, **kw: (figures.append(fig), Path(path).write_bytes(b"png")))
    out = tmp_path / "curves.png"
    monkeypatch.setattr(sys, "argv", ["plot_curves.py", "--runs", str(runs), "--out", str(out), "--panels", "content",
                                      "unet", "--first-stage", "unet_c2", "--first-step", "100"])
    with pytest.raises(SystemExit) as done:
        runpy.run_path(script, run_name="__main__")
    assert done.value.code == 0 and out.is_file()
    (fig,) = figures
    content_ax, unet_ax = fig.axes
    assert "content" in content_ax.get_title() and "VideoUNet" in unet_ax.get_title()
    assert [t.get_text() for t in content_ax.get_legend().get_texts()] == ["content", "content2"]
    monkeypatch.setattr(sys, "argv", ["plot_curves.py", "--runs", str(runs), "--out", str(out), "--first-stage", "nope"])
    with pytest.raises(SystemExit) as refused:
        runpy.run_path(script, run_name="__main__")
    assert refused.value.code == 2 and "nope" in capsys.readouterr().err


def test_plot_curves_without_matplotlib_says_which_extra_to_install(tmp_path, monkeypatch, capsys):
    """matplotlib is the optional extra gen1[plots]: without it the script stops with that advice, not a traceback."""
    import runpy
    import sys
    from pathlib import Path

    script = str(Path(__file__).resolve().parents[1] / "scripts" / "demo" / "plot_curves.py")
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    monkeypatch.setattr(sys, "argv", ["plot_curves.py", "--runs", str(tmp_path), "--out", str(tmp_path / "c.png")])
    with pytest.raises(SystemExit) as refused:
        runpy.run_path(script, run_name="__main__")
    assert refused.value.code == 2 and "pip install 'gen1[plots]'" in capsys.readouterr().err
    assert not (tmp_path / "c.png").exists()

def test_style_vector_is_one_hot_per_attribute():
    from demo_recipe.sufficiency import style_vector

    style = sample_style(3)
    vector = style_vector(style)
    assert vector.shape == (12 * 3 + 5 * 2 + 4 + 2,) and vector.sum() == len(ATTRIBUTES)
    other = dataclasses.replace(style, light_direction="top" if style.light_direction != "top" else "left")
    assert (style_vector(other) != vector).sum() == 2  # one attribute moved: one bit off, one on


def test_direct_regressor_probe_sees_what_the_depth_adds():
    from demo_recipe.sufficiency import fit_and_score

    gen = torch.Generator().manual_seed(0)

    def data(n):  # latents = the depth map painted with a colour the content names
        depth = torch.rand(n, 1, 8, 8, generator=gen)
        content = torch.rand(n, 3, generator=gen)
        latents = depth * content[:, :, None, None].repeat(1, 2, 1, 1)[:, :4]
        return dict(depth=depth, latents=latents, style=content)

    train, held = data(256), data(64)
    fit = dict(steps=150, batch=32, width=16)
    with_depth = fit_and_score(train, held, "style", **fit)
    without = fit_and_score(train, held, "style", use_depth=False, **fit)
    assert with_depth["held_mse"] < 0.5 * without["held_mse"]
    assert fit_and_score(train, held, "style", **fit) == with_depth  # seeded
    with pytest.raises(ValueError, match="content must be one of"):
        fit_and_score(train, held, "colour")

