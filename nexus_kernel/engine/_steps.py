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

``apply`` and ``filter`` take a registered *transform* / *predicate* by name (see
:mod:`nexus_kernel.engine._transforms`) — what a stream spec may name — or, in-process only, a
Python callable. Nothing here imports a module named by a spec.
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
from ..records import Clock, DeadLetterQueue, Schema, Validator
from ._transforms import Predicate, Transform, TransformError, make_transform, transforms

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
    clock: Clock | None = None  # the source's clock (Source.clock); None: the wall clock


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

    Parameters mirror :class:`~nexus_kernel.records.Schema`; lateness defaults to the
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
            self.validator.clock = context.clock
            return
        s = context.settings
        schema = Schema(
            stream=context.stream,
            fields=tuple(self.params["fields"]) if self.params["fields"] else None,
            series=frozenset(self.params["series"]) if self.params["series"] else None,
            allowed_lateness=timedelta(seconds=self.params["lateness"] if self.params["lateness"] is not None
                                       else s.allowed_lateness),
            max_attr_bytes=self.params["max_attr_bytes"] or s.max_attr_bytes,
            max_future=s.max_future, max_name_length=s.max_name_length,
        )
        self.validator = Validator(schema, clock=context.clock)
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
    """Transform each batch with a registered transform (by name), or, in-process, any Python callable.

    Parameters
    ----------
    transform
        The name of a registered transform (see :mod:`nexus_kernel.engine._transforms`), a
        :class:`~nexus_kernel.engine.Transform`, or a callable ``DataFrame → DataFrame | None``.
    params
        The transform's parameters (checked by its model), or keyword arguments of the callable.

    Caveat: only a registered transform can be saved in a stream spec; a plain callable keeps the
    pipeline in-process. A spec never names an import path.
    """

    kind = "apply"

    def __init__(self, transform: str | Callable[..., pd.DataFrame | None] | None = None, **params: Any) -> None:
        if isinstance(transform, str):
            self.func: Callable[..., pd.DataFrame | None] = _registered(transform, params, "apply", "transform")
            self.kwargs: dict[str, Any] = {}
        elif callable(transform):
            self.func, self.kwargs = transform, params
        else:
            raise TransformError(_needs_a_name("apply", "transform", params))

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame | None:
        return self.func(batch, **self.kwargs)

    def spec(self) -> dict[str, Any]:
        if isinstance(self.func, Transform) and not self.kwargs:
            return {"kind": self.kind, "params": self.func.spec()}
        raise TypeError(
            f"apply step {self.func!r} is a plain callable and cannot be saved in a stream spec; register it "
            "as a transform (nexus_kernel.engine.transforms.register(name)) and apply it by name")


@steps.register("filter")
class Filter:
    """Keep the rows a registered predicate (by name) accepts, or, in-process, where a callable
    ``DataFrame → boolean Series`` is true.

    Parameters
    ----------
    predicate
        The name of a registered :class:`~nexus_kernel.engine.Predicate` (``series_in``,
        ``value_between``...), a Predicate, or a callable returning a boolean mask.
    params
        The predicate's parameters (only with a name).

    pandas ``query`` strings are not accepted: ``DataFrame.query`` can call functions and reach
    attributes, so a query string would be code (write ``lambda b: b.eval("value > 3")`` in a notebook).
    """

    kind = "filter"

    def __init__(self, predicate: str | Callable[[pd.DataFrame], Any] | None = None, **params: Any) -> None:
        if isinstance(predicate, str):
            found = _registered(predicate, params, "filter", "predicate")
            if not isinstance(found, Predicate):
                raise TransformError(f"filter: '{predicate}' transforms batches but is not a predicate; use it "
                                     f"with apply (predicates: {', '.join(_predicates())})")
            predicate = found
        elif not callable(predicate):
            raise TransformError(_needs_a_name("filter", "predicate", params))
        elif params:
            raise TransformError(f"filter: parameters {sorted(params)} go with a registered predicate's name only")
        self.predicate: Callable[[pd.DataFrame], Any] = predicate

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        if isinstance(self.predicate, Predicate):
            return self.predicate(batch)
        return batch[self.predicate(batch)]

    def spec(self) -> dict[str, Any]:
        if isinstance(self.predicate, Predicate):
            described = self.predicate.spec()
            return {"kind": self.kind, "params": {"predicate": described.pop("transform"), **described}}
        raise TypeError(
            f"filter predicate {self.predicate!r} is a plain callable and cannot be saved in a stream spec; "
            "register it as a Predicate (nexus_kernel.engine.transforms.register(name)) and filter by name")


def _predicates() -> list[str]:
    return [name for name, member in transforms.items() if issubclass(member, Predicate)]


def _registered(name: str, params: dict[str, Any], step: str, role: str) -> Transform:
    if name not in transforms:
        known = _predicates() if role == "predicate" else transforms.names()
        extra = "; pandas query strings are not accepted" if role == "predicate" else ""
        raise TransformError(f"{step}: unknown {role} '{name[:80]}' (registered: {', '.join(known)}){extra}")
    return make_transform(name, **params)


def _needs_a_name(step: str, role: str, params: dict[str, Any]) -> str:
    given = f" (got parameters {sorted(params)[:10]})" if params else ""
    return (f"{step} needs '{role}': the name of a registered {role}{given}; import paths and code are not "
            f"accepted in a stream spec (registered: {', '.join(transforms.names())})")


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
            from ..storage import topic  # here, not at the top: the storage package is heavy to import

            target.publish_nowait(topic(self.stream, self.topic), batch)
        else:
            target(batch)
        return batch


def accepts(func: Callable[..., Any], name: str) -> bool:
    try:
        return name in inspect.signature(func).parameters
    except (TypeError, ValueError):
        return False
