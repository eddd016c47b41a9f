"""Scheduled notebook jobs: papermill runs on cron, outputs under ``.nexus/runs/``, history in the store.

::

    from nexus_kernel.scheduler import NotebookScheduler
    jobs = NotebookScheduler(settings)
    jobs.add("daily_report", cron="0 6 * * *", params={"stream": "sensors"})
    jobs.run("daily_report")            # now, in this thread → the recorded run
    jobs.start()                        # fire on schedule (nexus up does this)

Command line (mounted by ``nexus``): ``nexus schedule add|list|run|remove|history``.
"""

from ._runner import KERNEL, ensure_kernelspec, flush_pending, read_history, run_notebook
from ._scheduler import JobError, NotebookScheduler, default_notebook

__all__ = [
    "KERNEL",
    "JobError",
    "NotebookScheduler",
    "default_notebook",
    "ensure_kernelspec",
    "flush_pending",
    "read_history",
    "run_notebook",
]
