"""The built-in stream of a new home, as data: ``default_stream.json`` beside this module.

``nexus up`` (and an embedded monitor) saves it in the home's registry on first start, when the home has
no stream; from then on it is a stream like any other (``nexus streams stop sensors`` stops it and it
stays stopped across restarts; ``nexus streams delete sensors`` removes it — a home left with no stream
at all gets it again on its next start). Placeholders ``"$name"`` take the value of the
setting of that name; ``"$tick"`` is the simulator's tick spacing, ``sim_series / sim_rate`` seconds,
so event time advances with the wall clock.

Why the batch interval is 0.05 s: the simulator emits a frame every 0.1 s, and a live view wants several
small batches a second; a joining interval of half the emission period paired every two (5 batches/s,
measured).
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from ..config import Settings

__all__ = ["DEFAULT_STREAM", "default_spec"]

DEFAULT_STREAM = "sensors"


def default_spec(settings: Settings) -> dict[str, Any]:
    """The default stream's spec with this home's simulator settings filled in."""
    template = json.loads(resources.files(__package__).joinpath("default_stream.json").read_text())
    tick = f"{settings.sim_series / settings.sim_rate:.6f}s"
    values: dict[str, Any] = {"tick": tick}

    def fill(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: fill(v) for k, v in node.items()}
        if isinstance(node, list):
            return [fill(v) for v in node]
        if isinstance(node, str) and node.startswith("$"):
            key = node[1:]
            return values[key] if key in values else getattr(settings, key)
        return node

    spec = fill(template)
    spec["batch"]["interval"] = min(settings.batch_interval, spec["batch"]["interval"])
    return spec
