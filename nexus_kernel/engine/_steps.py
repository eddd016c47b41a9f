"""Steps: the one protocol every stage of a pipeline follows, its base class, and the step registry.

A *step* takes a micro-batch (a DataFrame) and returns a DataFrame, or ``None`` when it has nothing to
pass on yet (a window that has not closed). :class:`Step` declares everything the pipeline may call on a
step, and the pipeline calls all of it on every step, never asking what a step has:

``kind``
    Its registry name (``"validate"``, ``"window"``...), shown in ``status()`` and error messages.
``__call__(batch)``
    The work, once per micro-batch.
``bind(context)``
    Called when the pipeline starts (again at every restart), with the stream name, settings, services
    and dead-letter queue.
``flush()``
    Called when the stream stops or its source ends: what the step still holds (open windows), or None.
``spec()``
    ``{"kind": ..., "params": {...}}`` that rebuilds the step from the registry, or a ``TypeError`` for a
    step that holds live objects and cannot be saved in a stream spec.

:class:`BaseStep` gives every part but ``__call__`` a do-nothing default, and every built-in step derives
from it; :func:`as_step` turns a plain callable into a step (:class:`CallableStep`), so ``pipe.then(fn)``
works in a notebook. Built-in steps register themselves by name (``validate``, ``apply``, ``filter``,
``window``, ``store``, ``cache``, ``publish``, ``analyze``); the :class:`~nexus_kernel.engine.Pipeline`
builds a registered step from a spec by that name. :class:`Sink` is not registered: its target is a live
object, which a spec cannot name.

``apply`` and ``filter`` take a registered *transform* / *predicate* by name (see
:mod:`nexus_kernel.engine._transforms`) — what a stream spec may name — or, in-process only, a
Python callable. Nothing here imports a module named by a spec.

Example
-------
>>> import pandas as pd
>>> from nexus_kernel.engine import BaseStep
>>> class Double(BaseStep):  # register with @steps.register("double") to name it in a stream spec
...     kind = "double"
...     def __call__(self, batch):
...         return batch.assign(value=batch["value"] * 2)
...     def spec(self):
...         return {"kind": self.kind, "params": {}}
>>> Double()(pd.DataFrame({"value": [1.0]}))["value"].tolist()
[2.0]
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, ClassVar, Protocol, runtime_checkable

import pandas as pd

from .._registry import Registry
from ..config import Settings
from ..records import Clock, DeadLetterQueue, Schema, Validator
from ._transforms import Predicate, Transform, TransformError, make_transform, transforms

__all__ = [
    "BaseStep",
    "CallableStep",
    "Step",
    "StepContext",
    "Validate",
    "Apply",
    "Filter",
    "Sink",
    "as_step",
    "steps",
]


@dataclass
class StepContext:
    """What a step may need from the pipeline it runs in."""

    stream: str
    settings: Settings
    dead_letters: DeadLetterQueue
    services: dict[str, Any] = field(default_factory=dict)  # store, bus, cache when configured
    clock: Clock | None = None  # the source's clock (Source.clock); None: the wall clock
    # how a step that works later, outside the graph's call (a timer on the pipeline's loop), reports a
    # failure as the graph would: counted on the stream, its rows dead-lettered (step kind, error, rows)
    failed: Callable[[str, Exception, pd.DataFrame], None] | None = None


@runtime_checkable
class Step(Protocol):
    """What a pipeline calls on each of its steps (see the module docstring for when and why).

    Structural: any object with these members is a step; deriving from :class:`BaseStep` is the easy way
    to have them all. ``isinstance(obj, Step)`` checks that the members exist, not their signatures.
    """

    @property
    def kind(self) -> str: ...

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame | None: ...

    def bind(self, context: StepContext) -> None: ...

    def flush(self) -> pd.DataFrame | None: ...

    def spec(self) -> dict[str, Any]: ...


_OPTIONAL = ("bind", "flush", "spec")  # the parts a callable may be tempted to half-implement


class BaseStep:
    """A :class:`Step` whose optional parts do nothing: subclasses implement ``__call__`` and what they need.

    ``bind`` keeps the context on ``self.context``; ``flush`` holds nothing back; ``spec`` refuses, so a
    step that can be saved in a stream spec says so by overriding it. ``examples`` are parameter sets the
    conformance suite (``tests/engine/test_step_conformance.py``) builds a registered step with — one
    ``{}`` by default, so a step with required parameters must list some.
    """

    kind: str = "step"
    examples: ClassVar[tuple[dict[str, Any], ...]] = ({},)
    context: StepContext | None = None

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame | None:
        raise NotImplementedError(f"{type(self).__name__} must implement __call__(batch)")

    def bind(self, context: StepContext) -> None:
        self.context = context

    def flush(self) -> pd.DataFrame | None:
        return None

    def spec(self) -> dict[str, Any]:
        raise TypeError(
            f"step {self!r} cannot be saved in a stream spec; register a step class that implements spec() "
            "(nexus_kernel.engine.steps.register(name)) to use it in a managed stream")


class CallableStep(BaseStep):
    """A plain ``DataFrame → DataFrame | None`` callable as a step: nothing to bind or flush, not savable.

    Parameters
    ----------
    func
        Called with each batch.

    Example
    -------
    >>> import pandas as pd
    >>> step = as_step(lambda b: b.head(1))
    >>> isinstance(step, CallableStep), len(step(pd.DataFrame({"v": [1, 2]})))
    (True, 1)
    """

    def __init__(self, func: Callable[[pd.DataFrame], pd.DataFrame | None]) -> None:
        self.func = func
        self.kind = getattr(func, "__name__", type(func).__name__)

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame | None:
        return self.func(batch)

    def __repr__(self) -> str:
        return f"CallableStep({self.func!r})"


def as_step(obj: Step | Callable[[pd.DataFrame], pd.DataFrame | None]) -> Step:
    """``obj`` as a :class:`Step`: a step as it is, a plain callable wrapped in :class:`CallableStep`.

    Raises ``TypeError`` for anything that is not callable, and for a callable that implements some of
    ``bind``/``flush``/``spec`` but not the whole protocol — wrapping it would silently drop those (derive
    it from :class:`BaseStep`, which supplies the rest).
    """
    if isinstance(obj, Step):
        return obj
    if not callable(obj):
        raise TypeError(f"a step must be callable with a batch (got {type(obj).__name__})")
    partial = sorted(set(_OPTIONAL) & set(dir(obj)))
    if partial:
        missing = [m for m in ("kind", *_OPTIONAL) if m not in dir(obj)]
        raise TypeError(
            f"step {obj!r} implements {', '.join(partial)} but not {', '.join(missing)}: derive it from "
            "nexus_kernel.engine.BaseStep, which supplies do-nothing defaults, or implement the whole Step protocol")
    return CallableStep(obj)


steps: Registry[Callable[..., Step]] = Registry("steps")


@steps.register("validate")
class Validate(BaseStep):
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
        self.fields = list(fields) if fields else None
        self.series = list(series) if series else None
        self.lateness = lateness
        self.max_attr_bytes = max_attr_bytes
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
            fields=tuple(self.fields) if self.fields else None,
            series=frozenset(self.series) if self.series else None,
            allowed_lateness=timedelta(seconds=self.lateness if self.lateness is not None else s.allowed_lateness),
            max_attr_bytes=self.max_attr_bytes or s.max_attr_bytes,
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
        return {"kind": self.kind, "params": {"fields": self.fields, "series": self.series,
                                              "lateness": self.lateness, "max_attr_bytes": self.max_attr_bytes}}


@steps.register("apply")
class Apply(BaseStep):
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
    examples = ({"transform": "scale", "factor": 2.0}, {"transform": "drop_fields", "fields": ["other"]})

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
class Filter(BaseStep):
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
    examples = ({"predicate": "series_in", "series": ["a"]}, {"predicate": "value_between", "lower": 0.0})

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


@runtime_checkable
class _Writer(Protocol):  # a store
    def write(self, batch: pd.DataFrame) -> Any: ...


@runtime_checkable
class _Publisher(Protocol):  # a live bus
    def publish_nowait(self, topic: str, batch: pd.DataFrame) -> Any: ...


class Sink(BaseStep):
    """Hand each batch to ``target`` and pass it on.

    ``target`` may be any object with a ``write(batch)`` method (a store), a ``publish_nowait(topic,
    batch)`` method (a live bus, publishing to ``topic(stream, topic)``), or a callable. Which of them it
    is gets decided once, here, so a target that is none of them is refused when the pipeline is built.

    Not registered and not savable: a stream spec cannot name a live object (use the ``store`` and
    ``publish`` steps, which find the process's services).
    """

    kind = "sink"

    def __init__(self, target: Any, topic: str = "points") -> None:
        self.target = target
        self.topic = topic
        self.stream = "stream"
        if isinstance(target, _Writer):
            self._send: Callable[[pd.DataFrame], Any] = target.write
        elif isinstance(target, _Publisher):
            self._send = self._publish
        elif callable(target):
            self._send = target
        else:
            raise TypeError(f"a sink needs a store (write), a bus (publish_nowait) or a callable, not "
                            f"{type(target).__name__}")

    def bind(self, context: StepContext) -> None:
        self.context = context
        self.stream = context.stream

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        if not batch.empty:
            self._send(batch)
        return batch

    def _publish(self, batch: pd.DataFrame) -> None:
        from ..storage import topic  # here, not at the top: the storage package is heavy to import

        self.target.publish_nowait(topic(self.stream, self.topic), batch)
