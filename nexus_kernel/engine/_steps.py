"""Steps and sinks: the small protocols every stage of a pipeline follows, and their registries.

A *step* takes a micro-batch (a DataFrame) and returns a DataFrame, or ``None`` when it has nothing to
pass on yet (a window that has not closed). A step may also implement ``bind(context)`` — called once
when the pipeline starts, giving it the stream name, settings and the dead-letter queue — and
``flush()`` — called when the stream stops or its source ends, returning what it still holds.

A *sink* is a step with side effects whose output is its input: it writes the batch somewhere and
passes it on, so sinks can be chained.

Built-in steps register themselves here by name (``validate``, ``apply``, ``filter``, ``window``,
``sink``); the :class:`~nexus_kernel.engine.Pipeline` exposes each registered step as a chainable
method, as streamz does with ``Stream.register_api``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Protocol, runtime_checkable

import pandas as pd

from .._registry import Registry
from ..config import Settings
from ..events import DeadLetterQueue, Schema, Validator

__all__ = [
    "Step",
    "StepContext",
    "Validate",
    "Apply",
    "Filter",
    "Sink",
    "steps",
    "sinks",
]


@dataclass
class StepContext:
    """What a step may need from the pipeline it runs in."""

    stream: str
    settings: Settings
    dead_letters: DeadLetterQueue
    services: dict[str, Any] = field(default_factory=dict)  # store, bus, cache when configured


@runtime_checkable
class Step(Protocol):
    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame | None: ...


steps: Registry[Callable[..., Step]] = Registry("steps")
sinks: Registry[Callable[..., Step]] = Registry("sinks")


def bind(step: Any, context: StepContext) -> None:
    if hasattr(step, "bind"):
        step.bind(context)


def flush(step: Any) -> pd.DataFrame | None:
    return step.flush() if hasattr(step, "flush") else None


def spec_of(step: Any) -> dict[str, Any]:
    """How to rebuild ``step`` from the registry; raises for anonymous callables."""
    if hasattr(step, "spec"):
        return step.spec()
    raise TypeError(
        f"step {step!r} is a plain callable and cannot be saved; register it with "
        "nexus_kernel.engine.steps.register(name) to use it in a managed stream"
    )


@steps.register("validate")
class Validate:
    """Split bad rows off to the dead-letter queue; pass the clean batch on.

    Parameters mirror :class:`~nexus_kernel.events.Schema`; lateness defaults to the
    ``allowed_lateness`` setting.
    """

    kind = "validate"

    def __init__(
        self,
        fields: list[str] | None = None,
        series: list[str] | None = None,
        lateness: float | None = None,
        max_attr_bytes: int | None = None,
    ) -> None:
        self.params = {"fields": fields, "series": series, "lateness": lateness, "max_attr_bytes": max_attr_bytes}
        self.validator: Validator | None = None
        self.context: StepContext | None = None

    def bind(self, context: StepContext) -> None:
        if self.validator is not None and self.context is not None and self.context.stream == context.stream:
            self.context = context
            return
        s = context.settings
        schema = Schema(
            stream=context.stream,
            fields=tuple(self.params["fields"]) if self.params["fields"] else None,
            series=frozenset(self.params["series"]) if self.params["series"] else None,
            allowed_lateness=timedelta(seconds=self.params["lateness"] if self.params["lateness"] is not None
                                       else s.allowed_lateness),
            max_attr_bytes=self.params["max_attr_bytes"] or s.max_attr_bytes,
        )
        self.validator = Validator(schema)
        self.context = context

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame | None:
        if self.validator is None or self.context is None:
            raise RuntimeError("validate step used before the pipeline bound it")
        good, dead = self.validator(batch)
        self.context.dead_letters.put(dead)
        return good

    def spec(self) -> dict[str, Any]:
        return {"kind": self.kind, "params": dict(self.params)}


@steps.register("apply")
class Apply:
    """Any function DataFrame → DataFrame (or None). Saved by name only when the function is importable."""

    kind = "apply"

    def __init__(self, func: Callable[[pd.DataFrame], pd.DataFrame | None] | str, **kwargs: Any) -> None:
        if isinstance(func, str):
            func = _import(func)
        self.func = func
        self.kwargs = kwargs

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame | None:
        return self.func(batch, **self.kwargs)

    def spec(self) -> dict[str, Any]:
        return {"kind": self.kind, "params": {"func": _dotted(self.func), **self.kwargs}}


@steps.register("filter")
class Filter:
    """Keep the rows for which ``predicate(batch)`` (a boolean Series) is true, or a ``query`` string."""

    kind = "filter"

    def __init__(self, predicate: Callable[[pd.DataFrame], Any] | str) -> None:
        self.predicate = predicate

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        if isinstance(self.predicate, str):
            return batch.query(self.predicate)
        return batch[self.predicate(batch)]

    def spec(self) -> dict[str, Any]:
        if isinstance(self.predicate, str):
            return {"kind": self.kind, "params": {"predicate": self.predicate}}
        return spec_of(self.predicate)


@sinks.register("callable")
class Sink:
    """Hand each batch to ``target`` and pass it on.

    ``target`` may be a callable, or any object with a ``write(batch)`` method (a store) or a
    ``publish_nowait(topic, batch)`` method (a live bus, publishing to ``stream:<name>:<topic>``).
    """

    kind = "sink"

    def __init__(self, target: Any, topic: str = "points") -> None:
        self.target = target
        self.topic = topic
        self.stream = "stream"

    def bind(self, context: StepContext) -> None:
        self.stream = context.stream

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        if batch is None or batch.empty:
            return batch
        target = self.target
        if hasattr(target, "write"):
            target.write(batch)
        elif hasattr(target, "publish_nowait"):
            target.publish_nowait(f"stream:{self.stream}:{self.topic}", batch)
        else:
            target(batch)
        return batch


def _dotted(func: Callable[..., Any]) -> str:
    module, name = getattr(func, "__module__", None), getattr(func, "__qualname__", "")
    if not module or "<" in name or module == "__main__":
        raise TypeError(f"{func!r} is not importable by name and cannot be saved in a stream spec")
    return f"{module}:{name}"


def _import(dotted: str) -> Callable[..., Any]:
    import importlib

    module, _, name = dotted.partition(":")
    obj: Any = importlib.import_module(module)
    for part in name.split("."):
        obj = getattr(obj, part)
    if not callable(obj):
        raise TypeError(f"{dotted} is not callable")
    return obj


def accepts(func: Callable[..., Any], name: str) -> bool:
    try:
        return name in inspect.signature(func).parameters
    except (TypeError, ValueError):
        return False
