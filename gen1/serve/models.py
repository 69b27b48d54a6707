"""The models a ``gen1 serve`` app offers: named at start-up, each loaded once then (:meth:`ModelCatalog.load_all`),
then on use, one in memory at a time.

A web user picks a model by its name from the list given at start-up; nothing they send is ever used as a path
or a repository id, so the server reads no file and fetches nothing that its operator did not name.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Sequence

from gen1.model_sources import ModelSource, load_model


@dataclass(frozen=True)
class ServedModel:
    """A model offered by name; ``model_args`` are the ``gen1 edit`` flags that choose the same model."""

    name: str
    source: ModelSource
    model_args: tuple[str, ...] = ()


@dataclass
class KnobDefaults:
    """The size and guidance the app's controls start from for a model."""

    size: int
    guidance_scale: float
    num_inference_steps: int


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

    def load_all(self) -> None:
        """Load every offered model once, the default last (it stays in memory), before the server says it is
        ready: a model that cannot load fails the start with one line naming it, not a user's first edit."""
        for name in [*self.names[1:], self.default_name]:
            try:
                self.pipeline(name)
            except (ValueError, OSError) as error:
                raise ValueError(f"model '{name}' cannot be loaded: {error}") from None
            except Exception as error:  # a broken folder fails in many ways; the start says which model
                raise ValueError(f"model '{name}' cannot be loaded ({type(error).__name__}: {error})") from None

    def defaults(self, name: str) -> KnobDefaults:
        """Knob defaults for model ``name``: what its folder records (:mod:`gen1.model_defaults`), as ``gen1 edit``
        takes them; read from the folder, so choosing a model in the page loads nothing."""
        from gen1.editing import EditRequest, with_model_defaults

        recorded = self.model(name).source.recorded_defaults()
        request, _ = with_model_defaults(EditRequest(input="", output=""), recorded)
        return KnobDefaults(size=request.size, guidance_scale=request.guidance_scale,
                            num_inference_steps=request.num_inference_steps)


__all__ = ["KnobDefaults", "ModelCatalog", "ServedModel"]
