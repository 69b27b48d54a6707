"""Appearance, separate from geometry: named colours, textures per surface class, light; captions.

A :class:`Style` is drawn from fixed vocabularies (12 colours, 5 textures, 4 light directions, 2 light
levels), so every caption is made of the words in :data:`CAPTION_VOCABULARY`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch

PALETTE: dict[str, tuple[float, float, float]] = {
    "red": (0.85, 0.12, 0.10),
    "orange": (0.95, 0.50, 0.08),
    "yellow": (0.95, 0.85, 0.15),
    "green": (0.20, 0.68, 0.22),
    "teal": (0.08, 0.60, 0.60),
    "blue": (0.12, 0.30, 0.88),
    "purple": (0.50, 0.20, 0.72),
    "pink": (0.96, 0.52, 0.70),
    "brown": (0.50, 0.30, 0.14),
    "white": (0.93, 0.93, 0.93),
    "gray": (0.50, 0.50, 0.52),
    "black": (0.10, 0.10, 0.11),
}
COLOR_NAMES: tuple[str, ...] = tuple(PALETTE)

TEXTURES: tuple[str, ...] = ("flat", "stripes", "checker", "noise", "dots")
# the adjective each texture contributes to a caption
TEXTURE_WORDS: dict[str, str] = {
    "flat": "plain",
    "stripes": "striped",
    "checker": "checkered",
    "noise": "mottled",
    "dots": "dotted",
}
LIGHT_DIRECTIONS: tuple[str, ...] = ("left", "right", "top", "front")
LIGHT_LEVELS: dict[str, float] = {"soft": 0.55, "bright": 0.85}

CAPTION_VOCABULARY: tuple[str, ...] = tuple(
    sorted(
        set(COLOR_NAMES)
        | set(TEXTURE_WORDS.values())
        | set(LIGHT_LEVELS)
        | set(LIGHT_DIRECTIONS)
        | {"a", "an", "the", "objects", "on", "floor", "in", "front", "of", "wall", "light", "from"}
    )
)
"""Every word a caption can contain (for building small tokenizers)."""


@dataclass(frozen=True)
class Style:
    """Appearance only: colours (names from :data:`PALETTE`), textures, light. ``caption`` describes it."""

    object_color: str
    object_texture: str
    floor_color: str
    floor_texture: str
    wall_color: str
    light_direction: str
    light_level: str = "bright"
    seed: int | None = field(default=None, compare=False)

    def __post_init__(self):
        for name in ("object_color", "floor_color", "wall_color"):
            if getattr(self, name) not in PALETTE:
                raise ValueError(f"{name} must be one of {COLOR_NAMES}, got {getattr(self, name)!r}")
        for name in ("object_texture", "floor_texture"):
            if getattr(self, name) not in TEXTURES:
                raise ValueError(f"{name} must be one of {TEXTURES}, got {getattr(self, name)!r}")
        if self.light_direction not in LIGHT_DIRECTIONS:
            raise ValueError(f"light_direction must be one of {LIGHT_DIRECTIONS}, got {self.light_direction!r}")
        if self.light_level not in LIGHT_LEVELS:
            raise ValueError(f"light_level must be one of {tuple(LIGHT_LEVELS)}, got {self.light_level!r}")

    @property
    def caption(self) -> str:
        """E.g. "blue checkered objects on an orange striped floor in front of a gray wall, bright light from the left"."""
        floor = f"{self.floor_color} {TEXTURE_WORDS[self.floor_texture]}"
        return (
            f"{self.object_color} {TEXTURE_WORDS[self.object_texture]} objects on {_article(floor)} {floor} floor "
            f"in front of {_article(self.wall_color)} {self.wall_color} wall, "
            f"{self.light_level} light from the {self.light_direction}"
        )


def _choice(gen: torch.Generator, options: Sequence):
    return options[int(torch.randint(len(options), (), generator=gen))]


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def sample_style(seed: int, *, avoid: Style | None = None) -> Style:
    """A random style determined by ``seed``. Object, floor and wall colours differ from each other.

    With ``avoid``, the object and floor colours both differ from ``avoid``'s (a visibly different edit).
    """
    gen = torch.Generator().manual_seed(int(seed) + 7_919)  # decorrelated from sample_scene(seed)
    while True:
        obj, floor, wall = (_choice(gen, COLOR_NAMES) for _ in range(3))
        if len({obj, floor, wall}) < 3:
            continue
        if avoid is not None and (obj == avoid.object_color or floor == avoid.floor_color):
            continue
        break
    return Style(
        object_color=obj,
        object_texture=_choice(gen, TEXTURES),
        floor_color=floor,
        floor_texture=_choice(gen, TEXTURES),
        wall_color=wall,
        light_direction=_choice(gen, LIGHT_DIRECTIONS),
        light_level=_choice(gen, tuple(LIGHT_LEVELS)),
        seed=int(seed),
    )


def sample_edit_style(style: Style, seed: int) -> Style:
    """A target style for a ground-truth edit of a clip rendered with ``style`` (different colours)."""
    return sample_style(seed, avoid=style)
