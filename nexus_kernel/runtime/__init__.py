"""The runtime: one per process, owning the services, the stream manager and the streams of a home.

::

    from nexus_kernel.runtime import Runtime
    with Runtime.open(settings) as rt:
        rt.start()                              # the home's saved streams, on the pipelines' own thread
        sub = rt.bus.subscribe(topic("sensors", "anomalies"))

The bus topics are spelled with :func:`topic` (``stream:<name>:<kind>``); the default stream of a new home
is the saved spec ``default_stream.json`` (see :func:`default_spec`). ``nexus up`` mounts the monitor from
the entry point group :data:`MONITORS` (``nexus_kernel.monitors``, see :func:`load_monitor`).
"""

from ..storage._bus import split_topic, topic, topic_pattern
from ._default import DEFAULT_STREAM, default_spec
from ._hooks import MONITORS, load_monitor
from ._runtime import PipelineThread, Runtime, RuntimeServices, current

__all__ = ["DEFAULT_STREAM", "MONITORS", "PipelineThread", "Runtime", "RuntimeServices", "current", "default_spec",
           "load_monitor", "split_topic", "topic", "topic_pattern"]
