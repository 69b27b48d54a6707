"""MiDaS networks on timm backbones, laid out so that the original release checkpoints load as they are.

Supported (the files users already have from the isl-org/MiDaS releases or ControlNet's annotators):

=================== ====================================== ============================================
variant             file                                   backbone
=================== ====================================== ============================================
``dpt_hybrid``      ``dpt_hybrid-midas-501f0c75.pt``       R50+ViT-B/16 hybrid at 384 (timm ResNetV2 + ViT)
``dpt_large``       ``dpt_large-midas-2f21e586.pt``        ViT-L/16 at 384
``midas_v21_small`` ``midas_v21_small-70d6b9c9.pt``        EfficientNet-Lite3 (timm ``tf_efficientnet_lite3``)
=================== ====================================== ============================================

The module tree reproduces the original state_dict names (``pretrained.model.*`` for the ViT,
``pretrained.act_postprocess1..4.*`` for the reassemble convolutions, ``pretrained.layer1..4.*`` for
EfficientNet, ``scratch.layer{1..4}_rn``, ``scratch.refinenet{1..4}.*``, ``scratch.output_conv.*``),
while the forward pass is written here (no forward hooks, pos-embedding resized to any input grid).
Every size is a field of :class:`MidasConfig`, so tests build the same architectures at toy sizes.

Output: relative inverse depth (B, H, W), non-negative, at the input resolution.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

from gen1.weights import check_state_dict

VARIANTS = ("dpt_hybrid", "dpt_large", "midas_v21_small")


@dataclass
class MidasConfig:
    """Architecture of one MiDaS network. Defaults of each variant: :func:`default_midas_config`."""

    variant: str = "dpt_hybrid"
    features: int = 256  # width of the fusion ("scratch") path
    head_channels: int = 32  # hidden width of output_conv
    non_negative: bool = True
    # --- ViT (dpt_hybrid, dpt_large) ---
    img_size: int = 384  # size the position embedding was trained at (resized for other inputs)
    patch_size: int = 16
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    num_classes: int = 1000  # the original checkpoints keep timm's ImageNet head
    hooks: tuple[int, ...] = (0, 1, 8, 11)  # hybrid: only the last two index ViT blocks
    reassemble_features: tuple[int, ...] = (256, 512, 768, 768)
    # --- ResNetV2 stem of the hybrid ---
    resnet_layers: tuple[int, ...] = (3, 4, 9)
    resnet_channels: tuple[int, ...] = (256, 512, 1024)
    resnet_stem_channels: int = 64
    resnet_groups: int = 32  # GroupNorm groups
    # --- EfficientNet-Lite (midas_v21_small) ---
    channel_multiplier: float = 1.2
    depth_multiplier: float = 1.4

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "MidasConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown MiDaS config field(s) {unknown}; known: {sorted(names)}")
        d = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
        cfg = cls(**d)
        if cfg.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {list(VARIANTS)}, got {cfg.variant!r}")
        return cfg


def default_midas_config(variant: str, **overrides: Any) -> MidasConfig:
    """The architecture of the released checkpoint ``variant``, with optional field overrides."""
    if variant == "dpt_hybrid":
        base: dict[str, Any] = dict(variant=variant)
    elif variant == "dpt_large":
        base = dict(variant=variant, embed_dim=1024, depth=24, num_heads=16, hooks=(5, 11, 17, 23),
                    reassemble_features=(256, 512, 1024, 1024))
    elif variant == "midas_v21_small":
        base = dict(variant=variant, features=64)
    else:
        raise ValueError(f"variant must be one of {list(VARIANTS)}, got {variant!r}")
    base.update(overrides)
    return MidasConfig.from_dict(base)


# ----------------------------------------------------------------------------------------------
# Decoder blocks (names follow MiDaS blocks.py: resConfUnit1/2, out_conv, conv1/conv2)
# ----------------------------------------------------------------------------------------------


class ResidualConvUnit(nn.Module):
    """pre-activation residual unit: x + conv2(relu(conv1(relu(x))))."""

    def __init__(self, features: int):
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, 3, padding=1, bias=True)
        self.conv2 = nn.Conv2d(features, features, 3, padding=1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(F.relu(x))
        out = self.conv2(F.relu(out))
        return out + x


class FeatureFusionBlock(nn.Module):
    """Fuse the coarser path with a skip feature, upsample x2 (bilinear, align_corners=True), project."""

    def __init__(self, features: int, expand: bool = False):
        super().__init__()
        out_features = features // 2 if expand else features
        self.resConfUnit1 = ResidualConvUnit(features)
        self.resConfUnit2 = ResidualConvUnit(features)
        self.out_conv = nn.Conv2d(features, out_features, 1, bias=True)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None, size=None) -> torch.Tensor:
        if skip is not None:
            x = x + self.resConfUnit1(skip)
        x = self.resConfUnit2(x)
        if size is None:
            size = (x.shape[-2] * 2, x.shape[-1] * 2)
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=True)
        return self.out_conv(x)


class Interpolate(nn.Module):
    """Parameter-free x2 bilinear upsampling inside ``output_conv`` (keeps the original indices)."""

    def __init__(self, scale_factor: float, align_corners: bool):
        super().__init__()
        self.scale_factor = scale_factor
        self.align_corners = align_corners

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=self.scale_factor, mode="bilinear", align_corners=self.align_corners)


def _make_scratch(in_channels: tuple[int, ...], features: int, expand: bool) -> nn.Module:
    scratch = nn.Module()
    widths = [features * (2**i) if expand else features for i in range(4)]
    for i, (cin, cout) in enumerate(zip(in_channels, widths), start=1):
        setattr(scratch, f"layer{i}_rn", nn.Conv2d(cin, cout, 3, padding=1, bias=False))
    for i, width in enumerate(widths, start=1):
        setattr(scratch, f"refinenet{i}", FeatureFusionBlock(width, expand=expand and i > 1))
    return scratch


def _make_head(features: int, hidden: int, non_negative: bool, align_corners: bool) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(features, features // 2, 3, padding=1),
        Interpolate(2, align_corners=align_corners),
        nn.Conv2d(features // 2, hidden, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(hidden, 1, 1),
        nn.ReLU() if non_negative else nn.Identity(),
        nn.Identity(),
    )


# ----------------------------------------------------------------------------------------------
# ViT reassemble ("act_postprocess") and readout
# ----------------------------------------------------------------------------------------------


class ProjectReadout(nn.Module):
    """DPT's "project" readout: concatenate the class token to every patch token, Linear + GELU."""

    def __init__(self, dim: int):
        super().__init__()
        self.project = nn.Sequential(nn.Linear(2 * dim, dim), nn.GELU())

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        patches = tokens[:, 1:]
        cls = tokens[:, :1].expand_as(patches)
        return self.project(torch.cat([patches, cls], dim=-1))


def _reassemble(dim: int, out: int, kind: str) -> nn.Sequential:
    """Index 0 readout, 1/2 placeholders (transpose/unflatten, done in forward), 3+ convolutions."""
    layers: list[nn.Module] = [ProjectReadout(dim), nn.Identity(), nn.Identity(), nn.Conv2d(dim, out, 1)]
    if kind == "up4":
        layers.append(nn.ConvTranspose2d(out, out, kernel_size=4, stride=4))
    elif kind == "up2":
        layers.append(nn.ConvTranspose2d(out, out, kernel_size=2, stride=2))
    elif kind == "down2":
        layers.append(nn.Conv2d(out, out, 3, stride=2, padding=1))
    return nn.Sequential(*layers)


def _build_vit(cfg: MidasConfig) -> nn.Module:
    from timm.models.vision_transformer import VisionTransformer  # lazy: timm is heavy and only this path needs it

    hybrid = cfg.variant == "dpt_hybrid"
    # the hybrid's ResNet stem reduces by 4 and every stage after the first by 2 more
    patch = 4 * 2 ** (len(cfg.resnet_layers) - 1) if hybrid else cfg.patch_size
    vit = VisionTransformer(img_size=cfg.img_size, patch_size=patch, embed_dim=cfg.embed_dim, depth=cfg.depth,
                            num_heads=cfg.num_heads, mlp_ratio=cfg.mlp_ratio, num_classes=cfg.num_classes)
    if hybrid:
        from timm.layers import StdConv2dSame  # lazy: timm is heavy and only this path needs it
        from timm.models.resnetv2 import ResNetV2  # lazy: timm is heavy and only this path needs it

        embed = nn.Module()  # same parameter names as timm's HybridEmbed: backbone.*, proj.*
        embed.backbone = ResNetV2(
            layers=list(cfg.resnet_layers),
            channels=tuple(cfg.resnet_channels),
            num_classes=0,
            global_pool="",
            preact=False,
            stem_type="same",
            stem_chs=cfg.resnet_stem_channels,
            conv_layer=partial(StdConv2dSame, eps=1e-8),
            norm_layer=_group_norm_act(cfg.resnet_groups),
        )
        embed.proj = nn.Conv2d(cfg.resnet_channels[-1], cfg.embed_dim, kernel_size=1)
        vit.patch_embed = embed
    return vit


def _group_norm_act(groups: int):
    from timm.layers import GroupNormAct  # lazy: timm is heavy and only this path needs it

    return partial(GroupNormAct, num_groups=groups)


class MidasDPT(nn.Module):
    """DPT-Hybrid / DPT-Large (MiDaS v3.0) on a timm ViT."""

    def __init__(self, cfg: MidasConfig):
        super().__init__()
        self.cfg = cfg
        f = cfg.reassemble_features
        self.pretrained = nn.Module()
        self.pretrained.model = _build_vit(cfg)
        hybrid = cfg.variant == "dpt_hybrid"
        if hybrid:
            # the first two features come straight from ResNet stages 0 and 1 (no parameters)
            self.pretrained.act_postprocess1 = nn.Sequential(nn.Identity(), nn.Identity(), nn.Identity())
            self.pretrained.act_postprocess2 = nn.Sequential(nn.Identity(), nn.Identity(), nn.Identity())
        else:
            self.pretrained.act_postprocess1 = _reassemble(cfg.embed_dim, f[0], "up4")
            self.pretrained.act_postprocess2 = _reassemble(cfg.embed_dim, f[1], "up2")
        self.pretrained.act_postprocess3 = _reassemble(cfg.embed_dim, f[2], "none")
        self.pretrained.act_postprocess4 = _reassemble(cfg.embed_dim, f[3], "down2")
        in_channels = (tuple(cfg.resnet_channels[:2]) + tuple(f[2:])) if hybrid else tuple(f)
        self.scratch = _make_scratch(in_channels, cfg.features, expand=False)
        self.scratch.output_conv = _make_head(cfg.features, cfg.head_channels, cfg.non_negative, align_corners=True)

    def _pos_embed(self, grid_h: int, grid_w: int) -> torch.Tensor:
        pos = self.pretrained.model.pos_embed
        tok, grid = pos[:, :1], pos[:, 1:]
        side = int(round(grid.shape[1] ** 0.5))
        grid = rearrange(grid, "1 (h w) c -> 1 c h w", h=side, w=side)
        grid = F.interpolate(grid, size=(grid_h, grid_w), mode="bilinear", align_corners=False)
        return torch.cat([tok, rearrange(grid, "1 c h w -> 1 (h w) c")], dim=1)

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Four feature maps at strides 4, 8, 16, 32 (before the ``scratch`` convolutions)."""
        vit = self.pretrained.model
        feats: list[torch.Tensor] = []
        if self.cfg.variant == "dpt_hybrid":
            bb = vit.patch_embed.backbone
            y = bb.stem(x)
            for stage in bb.stages:
                y = stage(y)
                feats.append(y)
            y = vit.patch_embed.proj(bb.norm(y))
            feats = feats[:2]
            token_hooks = self.cfg.hooks[2:]
        else:
            y = vit.patch_embed.proj(x)
            token_hooks = self.cfg.hooks
        gh, gw = y.shape[-2:]
        tokens = rearrange(y, "b c h w -> b (h w) c")
        tokens = torch.cat([vit.cls_token.expand(tokens.shape[0], -1, -1), tokens], dim=1)
        tokens = vit.norm_pre(vit.pos_drop(tokens + self._pos_embed(gh, gw)))
        wanted = {idx: i for i, idx in enumerate(token_hooks)}
        captured: list[torch.Tensor | None] = [None] * len(token_hooks)
        for i, block in enumerate(vit.blocks):
            tokens = block(tokens)
            if i in wanted:
                captured[wanted[i]] = tokens
            if all(c is not None for c in captured):
                break  # the final norm and later blocks are not used by DPT
        posts = [self.pretrained.act_postprocess1, self.pretrained.act_postprocess2,
                 self.pretrained.act_postprocess3, self.pretrained.act_postprocess4]
        out = []
        for k, post in enumerate(posts):
            if k < len(feats):
                out.append(post(feats[k]))
                continue
            t = post[0](captured[k - len(feats)])
            t = rearrange(t, "b (h w) c -> b c h w", h=gh, w=gw)
            out.append(post[3:](t))
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _decode(self.scratch, self.encode(x)).squeeze(1)


def _decode(scratch: nn.Module, layers: list[torch.Tensor]) -> torch.Tensor:
    l1, l2, l3, l4 = (getattr(scratch, f"layer{i}_rn")(x) for i, x in enumerate(layers, start=1))
    p4 = scratch.refinenet4(l4, size=l3.shape[-2:])
    p3 = scratch.refinenet3(p4, l3, size=l2.shape[-2:])
    p2 = scratch.refinenet2(p3, l2, size=l1.shape[-2:])
    p1 = scratch.refinenet1(p2, l1)
    return scratch.output_conv(p1)


def _last_conv_out(module: nn.Module) -> int:
    convs = [m for m in module.modules() if isinstance(m, nn.Conv2d)]
    return convs[-1].out_channels


class MidasSmall(nn.Module):
    """MiDaS v2.1 small: EfficientNet-Lite3 encoder, expanding fusion decoder."""

    def __init__(self, cfg: MidasConfig):
        super().__init__()
        # private timm builder: the public entry point fixes the multipliers, tests need smaller ones
        from timm.models.efficientnet import _gen_efficientnet_lite

        self.cfg = cfg
        net = _gen_efficientnet_lite(
            "tf_efficientnet_lite3",
            channel_multiplier=cfg.channel_multiplier,
            depth_multiplier=cfg.depth_multiplier,
            pretrained=False,
            bn_eps=1e-3,  # TF "same"-padding port, as the original gen-efficientnet tf_ model
            pad_type="same",
            num_classes=0,
        )
        self.pretrained = nn.Module()
        # indices as in MiDaS: conv_stem, bn1, act1 (timm folds the act into bn1), blocks[0], blocks[1]
        self.pretrained.layer1 = nn.Sequential(net.conv_stem, net.bn1, nn.Identity(), *net.blocks[0:2])
        self.pretrained.layer2 = nn.Sequential(*net.blocks[2:3])
        self.pretrained.layer3 = nn.Sequential(*net.blocks[3:5])
        self.pretrained.layer4 = nn.Sequential(*net.blocks[5:9])
        in_channels = tuple(_last_conv_out(getattr(self.pretrained, f"layer{i}")) for i in range(1, 5))
        self.scratch = _make_scratch(in_channels, cfg.features, expand=True)
        self.scratch.output_conv = _make_head(cfg.features, cfg.head_channels, cfg.non_negative, align_corners=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        l1 = self.pretrained.layer1(x)
        l2 = self.pretrained.layer2(l1)
        l3 = self.pretrained.layer3(l2)
        l4 = self.pretrained.layer4(l3)
        return _decode(self.scratch, [l1, l2, l3, l4]).squeeze(1)


def build_midas(cfg: MidasConfig | dict[str, Any]) -> nn.Module:
    """Build the MiDaS network described by ``cfg`` (random weights)."""
    if isinstance(cfg, dict):
        cfg = MidasConfig.from_dict(cfg)
    return MidasSmall(cfg) if cfg.variant == "midas_v21_small" else MidasDPT(cfg)


# preprocessing of the original MiDaS transforms, per variant
MIDAS_PREPROCESSING = {
    "dpt_hybrid": dict(input_size=(384, 384), resize_mode="minimal", multiple_of=32,
                       image_mean=(0.5, 0.5, 0.5), image_std=(0.5, 0.5, 0.5)),
    "dpt_large": dict(input_size=(384, 384), resize_mode="minimal", multiple_of=32,
                      image_mean=(0.5, 0.5, 0.5), image_std=(0.5, 0.5, 0.5)),
    "midas_v21_small": dict(input_size=(256, 256), resize_mode="upper_bound", multiple_of=32,
                            image_mean=(0.485, 0.456, 0.406), image_std=(0.229, 0.224, 0.225)),
}


def variant_from_filename(name: str) -> str | None:
    """``dpt_hybrid-midas-501f0c75.pt`` -> ``dpt_hybrid`` etc.; None when the name says nothing."""
    low = name.lower()
    for variant in VARIANTS:
        if variant in low:
            return variant
    return None


def load_midas_state_dict(path) -> dict[str, torch.Tensor]:
    """Read an original MiDaS ``.pt`` safely (weights_only) and strip a ``state_dict``/``model`` wrapper."""
    sd = torch.load(path, map_location="cpu", weights_only=True)
    for wrapper in ("state_dict", "model"):
        if isinstance(sd, dict) and wrapper in sd and isinstance(sd[wrapper], dict):
            sd = sd[wrapper]
    if not isinstance(sd, dict):
        raise ValueError(f"checkpoint '{path}' does not hold a state_dict (got {type(sd).__name__})")
    if any(k.startswith("model.") for k in sd) and not any(k.startswith("pretrained.") for k in sd):
        sd = {k[len("model."):]: v for k, v in sd.items()}
    return sd


def check_midas_state_dict(module: nn.Module, sd: dict[str, torch.Tensor], source: str) -> None:
    """Strict key/shape check of a MiDaS checkpoint against ``module`` (:func:`gen1.weights.check_state_dict`)."""

    check_state_dict(module.state_dict(), sd, f"checkpoint '{source}'", hint="; is it another MiDaS variant? pass variant=...")
