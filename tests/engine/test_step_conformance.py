"""One conformance suite for every registered step (River's ``checks`` are the model).

Every member of the ``steps`` registry is built with each parameter set it lists in ``examples`` and put
through every check below: it is a :class:`~nexus_kernel.engine.Step` whose ``kind`` is its registry
name; its ``spec()`` is JSON that rebuilds an equal step; it returns a DataFrame or None and leaves its
input alone; it survives an empty batch and a second ``bind`` (a restarted pipeline); ``flush()`` never
hands back the same rows twice; and a real pipeline runs it without an error. The two steps that cannot
be registered (:class:`~nexus_kernel.engine.Sink` and the plain-callable adapter) get the checks that do
not need the registry. A newly registered step runs through all of it with no change here — a step with
required parameters fails until its ``examples`` name some; that is the point.
"""

from __future__ import annotations

import doctest
import json
from collections.abc import Callable, Iterator
from typing import Any

import pandas as pd
import pytest

from nexus_kernel.config import Settings
from nexus_kernel.engine import (BaseStep, CallableStep, Pipeline, Sink, Step, StepContext, Validate, _steps,
                                 as_step, sources, steps)
from nexus_kernel.records import DeadLetterQueue
from nexus_kernel.storage import open_bus, open_cache, open_store

# 3 series × 40 seconds, one obvious spike, and a field ("other") that drop_fields may take away.
RAW = pd.DataFrame([{"series": f"s{i % 3}", "ts": f"2024-01-01T00:00:{i // 3:02d}Z",
                     "value": 100.0 if i == 100 else float(i % 7), "other": 1.0} for i in range(120)])


def context(settings: Settings, stream: str = "conformance") -> StepContext:
    services = {"store": open_store("memory"), "cache": open_cache(backend="memory"),
                "bus": open_bus(backend="memory")}
    return StepContext(stream, settings, DeadLetterQueue(), services)


def batches(settings: Settings) -> list[pd.DataFrame]:
    """RAW as the batch contract, cut in four: what a step sees behind ``validate``."""
    validate = Validate()
    validate.bind(context(settings))
    good = validate(RAW)
    assert good is not None and len(good) == len(RAW)
    return [good.iloc[i:i + 30].reset_index(drop=True) for i in range(0, len(good), 30)]


# -- the checks ---------------------------------------------------------------------------------------

def check_is_a_step(step: Step, settings: Settings) -> None:
    assert isinstance(step, Step)
    assert isinstance(step.kind, str) and step.kind
    assert as_step(step) is step  # a step is never wrapped again


def check_kind_is_its_registry_name(step: Step, settings: Settings) -> None:
    assert steps.get(step.kind) is type(step)


def check_spec_rebuilds_it(step: Step, settings: Settings) -> None:
    spec = step.spec()
    assert set(spec) == {"kind", "params"} and spec["kind"] == step.kind
    assert json.loads(json.dumps(spec)) == spec  # data, as a saved stream spec is
    rebuilt = steps.get(spec["kind"])(**spec["params"])
    assert type(rebuilt) is type(step) and rebuilt.spec() == spec


def check_returns_a_frame_or_none_and_keeps_its_input(step: Step, settings: Settings) -> None:
    step.bind(context(settings))
    for batch in batches(settings):
        before = batch.copy()
        out = step(batch)
        assert out is None or isinstance(out, pd.DataFrame)
        pd.testing.assert_frame_equal(batch, before)


def check_survives_an_empty_batch(step: Step, settings: Settings) -> None:
    step.bind(context(settings))
    first = batches(settings)[0]
    out = step(first.iloc[:0])
    assert out is None or (isinstance(out, pd.DataFrame) and out.empty)


def check_works_after_a_second_bind(step: Step, settings: Settings) -> None:
    parts = batches(settings)
    step.bind(context(settings))
    step(parts[0])
    step.bind(context(settings))  # a stopped pipeline started again binds every step again
    out = step(parts[1])
    assert out is None or isinstance(out, pd.DataFrame)


def check_flushes_each_row_once(step: Step, settings: Settings) -> None:
    step.bind(context(settings))
    for batch in batches(settings):
        step(batch)
    first = step.flush()
    assert first is None or isinstance(first, pd.DataFrame)
    again = step.flush()
    assert again is None or again.empty


def check_runs_in_a_pipeline(step: Step, settings: Settings) -> None:
    pipe = Pipeline.from_source(sources.iterable(RAW, batch_size=25), settings=settings).validate()
    pipe.then(step).collect()
    pipe.services.update(context(settings).services)
    pipe.run(timeout=60)
    assert pipe.state == "stopped" and pipe.errors == 0, pipe.last_error
    assert pipe.dead_letters.total == 0


REGISTERED_CHECKS: list[Callable[[Step, Settings], None]] = [
    check_is_a_step, check_kind_is_its_registry_name, check_spec_rebuilds_it,
    check_returns_a_frame_or_none_and_keeps_its_input, check_survives_an_empty_batch,
    check_works_after_a_second_bind, check_flushes_each_row_once, check_runs_in_a_pipeline,
]
UNSAVED_CHECKS: list[Callable[[Step, Settings], None]] = [
    check_is_a_step, check_returns_a_frame_or_none_and_keeps_its_input, check_survives_an_empty_batch,
    check_works_after_a_second_bind, check_flushes_each_row_once, check_runs_in_a_pipeline,
]


def registered() -> Iterator[tuple[str, dict[str, Any]]]:
    for name, factory in steps.items():
        examples = factory.examples if isinstance(factory, type) and issubclass(factory, BaseStep) else ({},)
        for i, params in enumerate(examples):
            yield pytest.param(name, params, id=f"{name}-{i}")


@pytest.mark.timeout(120)
@pytest.mark.parametrize("check", REGISTERED_CHECKS, ids=lambda c: c.__name__)
@pytest.mark.parametrize(("name", "params"), list(registered()))
def test_registered_step(name: str, params: dict[str, Any], check: Callable[[Step, Settings], None],
                         settings: Settings) -> None:
    check(steps.get(name)(**params), settings)


def unsaved() -> Iterator[Any]:
    yield pytest.param(lambda: Sink(open_store("memory")), id="sink-store")
    yield pytest.param(lambda: Sink(open_bus(backend="memory"), topic="windows"), id="sink-bus")
    yield pytest.param(lambda: Sink(lambda batch: None), id="sink-callable")
    yield pytest.param(lambda: as_step(lambda batch: batch[batch["value"] > 3]), id="callable")


@pytest.mark.timeout(120)
@pytest.mark.parametrize("check", UNSAVED_CHECKS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("make", list(unsaved()))
def test_unregistered_step(make: Callable[[], Step], check: Callable[[Step, Settings], None],
                           settings: Settings) -> None:
    check(make(), settings)


@pytest.mark.parametrize("make", list(unsaved()))
def test_unregistered_steps_refuse_to_be_saved(make: Callable[[], Step]) -> None:
    with pytest.raises(TypeError, match="cannot be saved"):
        make().spec()


def test_every_registered_step_is_covered() -> None:
    # the registry is not empty by accident, and each built-in derives from BaseStep
    names = steps.names()
    assert {"validate", "apply", "filter", "window", "store", "cache", "publish", "analyze"} <= set(names)
    assert all(issubclass(steps.get(n), BaseStep) for n in names if steps.get(n).__module__.startswith("nexus_kernel"))


# -- the adapter and the pipeline's use of the protocol -----------------------------------------------

def test_a_plain_callable_becomes_a_callable_step_named_after_it() -> None:
    def keep_high(batch: pd.DataFrame) -> pd.DataFrame:
        return batch[batch["value"] > 3]

    step = as_step(keep_high)
    assert isinstance(step, CallableStep) and step.kind == "keep_high"
    assert step.flush() is None and len(step(RAW)) == int((RAW["value"] > 3).sum())


def test_as_step_refuses_what_is_not_a_step() -> None:
    with pytest.raises(TypeError, match="must be callable"):
        as_step(42)  # type: ignore[arg-type]  # the wrong type is the point of the test

    class HalfStep:  # flush but no bind/spec/kind: wrapping it would drop its flush
        def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
            return batch

        def flush(self) -> pd.DataFrame | None:
            return None

    with pytest.raises(TypeError, match="implements flush but not kind, bind, spec.*BaseStep"):
        as_step(HalfStep())


def test_a_sink_refuses_a_target_it_cannot_hand_batches_to() -> None:
    with pytest.raises(TypeError, match="store .write., a bus .publish_nowait. or a callable, not int"):
        Sink(3)


def test_the_pipeline_binds_and_flushes_a_base_step(settings: Settings) -> None:
    class HoldBack(BaseStep):
        """Passes nothing on until flushed: what the pipeline gets at the end is what bind/flush did."""

        kind = "hold_back"

        def __init__(self) -> None:
            self.held: list[pd.DataFrame] = []
            self.bound: list[str] = []

        def bind(self, context: StepContext) -> None:
            self.bound.append(context.stream)

        def __call__(self, batch: pd.DataFrame) -> None:
            self.held.append(batch)

        def flush(self) -> pd.DataFrame | None:
            out, self.held = (pd.concat(self.held, ignore_index=True) if self.held else None), []
            return out

    step = HoldBack()
    pipe = Pipeline.from_source(sources.iterable(RAW, batch_size=25), name="held", settings=settings)
    pipe.validate().then(step).collect().run(timeout=60)
    assert pipe.state == "stopped" and step.bound == ["held"]
    assert len(pipe.results()) == len(RAW) and step.held == []


def test_the_dead_sinks_registry_is_gone() -> None:
    import nexus_kernel.engine as engine

    assert "sinks" not in engine.__all__ and not hasattr(_steps, "sinks")


def test_module_examples() -> None:
    result = doctest.testmod(_steps, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 3 and result.failed == 0
