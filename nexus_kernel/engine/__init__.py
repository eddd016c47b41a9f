"""The streaming engine: sources, steps, windows, pipelines and the stream manager."""

from . import sources
from ._manager import StreamManager, StreamStateError
from ._pipeline import Pipeline, PipelineStateError, rebatch
from ._services import Analyze, CacheLatest, Publish, StoreWrite
from ._steps import Apply, Filter, Sink, Step, StepContext, Validate, sinks, steps
from ._windows import AGGREGATES, Window

__all__ = [
    "AGGREGATES",
    "Analyze",
    "CacheLatest",
    "Publish",
    "StoreWrite",
    "Apply",
    "Filter",
    "Pipeline",
    "PipelineStateError",
    "Sink",
    "Step",
    "StepContext",
    "StreamManager",
    "StreamStateError",
    "Validate",
    "Window",
    "rebatch",
    "sinks",
    "sources",
    "steps",
]
