"""The models a ``gen1 serve`` app offers: named at start-up, loaded on first use, one in memory at a time.

A web user picks a model by its name from the list given at start-up; nothing they send is ever used as a path
or a repository id, so the server reads no file and fetches nothing that its operator did not name.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Sequence

from gen1.commands._models import ModelSource, load_model


@dataclass(frozen=True)
class ServedModel:
    """A model offered by name; ``model_args`` are the ``gen1 edit`` flags that choose the same model."""

    name: str
    source: ModelSource
    model_args: tuple[str, ...] = ()
    bundled: bool = False  # the bundled demo model: its own default guidance (gen1.demo.DEMO_GUIDANCE)


@dataclass
class ModelDefaults:
    """Knob values a model is best started from: its training resolution and, for the demo model, its guidance."""

    size: int
    guidance: float


class ModelCatalog:
    """The served models by name, and the one pipeline in memory (loaded on first use, on ``device``/``dtype``).

    ``device_args`` are the ``gen1 edit`` flags for the device and dtype (given when the server was started with
    them), added to every command line the app shows.
    """

    def __init__(self, models: Sequence[ServedModel], *, device, dtype, device_args: Sequence[str] = ()):
        if not models:
            raise ValueError("gen1 serve needs at least one model")
        names = [model.name for model in models]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"--models: the name '{duplicates[0]}' is given twice")
        self._models = {model.name: model for model in models}
        self.device, self.dtype, self.device_args = device, dtype, tuple(device_args)
        self._lock = threading.Lock()
        self._loaded: dict[str, Any] = {}

    @property
    def names(self) -> list[str]:
        return list(self._models)

    @property
    def default_name(self) -> str:
        return self.names[0]

    def model(self, name: str) -> ServedModel:
        """The served model called ``name``; ``ValueError`` for any other name."""
        if name not in self._models:
            raise ValueError(f"unknown model '{name}': this server offers {', '.join(self.names)}")
        return self._models[name]

    def command_args(self, name: str) -> tuple[str, ...]:
        """The ``gen1 edit`` flags that run an edit with model ``name`` as this server does."""
        return self.model(name).model_args + self.device_args

    def pipeline(self, name: str):
        """The pipeline of model ``name``, on the server's device and dtype; loading it unloads the previous one."""
        served = self.model(name)
        with self._lock:
            if name not in self._loaded:
                self._loaded.clear()  # one model in memory: a GPU holds one full pipeline comfortably, not several
                pipe = load_model(served.source)
                pipe.cast(self.dtype).to(self.device)
                pipe.set_progress_bar_config(disable=True)  # the page shows progress; the server log stays readable
                self._loaded[name] = pipe
            return self._loaded[name]

    def defaults(self, name: str) -> ModelDefaults:
        """Knob defaults for model ``name`` (loads it)."""
        from gen1.demo import DEMO_GUIDANCE
        from gen1.editing import DEFAULTS

        pipe = self.pipeline(name)
        guidance = DEMO_GUIDANCE if self.model(name).bundled else DEFAULTS["guidance"]
        return ModelDefaults(size=native_size(pipe, fallback=DEFAULTS["size"]), guidance=guidance)


def native_size(pipe, *, fallback: int) -> int:
    """The short side (pixels, a multiple of 8) the pipeline's UNet was built for: its latent ``sample_size``
    times the VAE's factor (512 for Stable Diffusion 1.5, 64 for the demo model); ``fallback`` if unknown."""
    config = getattr(pipe.unet, "config", {})
    inner = config.get("unet_config") if hasattr(config, "get") else None
    sample_size = (inner or {}).get("sample_size") or (config.get("sample_size") if hasattr(config, "get") else None)
    if isinstance(sample_size, (list, tuple)):
        sample_size = min(sample_size)
    if not isinstance(sample_size, int) or sample_size < 1:
        return fallback
    size = sample_size * pipe.vae_scale_factor
    return max(8, size - size % 8)


__all__ = ["ModelCatalog", "ModelDefaults", "ServedModel", "native_size"]
