"""The streaming engine: sources, steps, transforms, windows, pipelines and the stream manager.

A stream spec (JSON) becomes a pipeline only through :meth:`Pipeline.from_spec`, which names sources,
steps and transforms from registries, reads files only in the data directories and takes secrets as
references (see :mod:`nexus_kernel.engine._specs`).
"""

from . import sources
from ._manager import StreamManager, StreamStateError
from ._pipeline import Pipeline, PipelineStateError, rebatch
from ._services import Analyze, CacheLatest, Publish, StoreWrite
from ._specs import SpecError
from ._steps import Apply, BaseStep, CallableStep, Filter, Sink, Step, StepContext, Validate, as_step, steps
from ._transforms import Predicate, Transform, TransformError, transforms
from ._windows import AGGREGATES, Window

__all__ = [
    "AGGREGATES",
    "Analyze",
    "CacheLatest",
    "Publish",
    "StoreWrite",
    "Apply",
    "BaseStep",
    "CallableStep",
    "Filter",
    "Pipeline",
    "PipelineStateError",
    "Predicate",
    "Sink",
    "SpecError",
    "Step",
    "StepContext",
    "StreamManager",
    "StreamStateError",
    "Transform",
    "TransformError",
    "Validate",
    "Window",
    "as_step",
    "rebatch",
    "sources",
    "steps",
    "transforms",
]
