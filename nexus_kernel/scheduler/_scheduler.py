"""Notebook jobs on a cron schedule (APScheduler 3), their definitions kept in a SQLite file.

Why job definitions live in APScheduler's SQLAlchemy job store (``settings.home/scheduler.sqlite``) and
not in the Nexus store: the trigger and next fire time are APScheduler's own state, which its job store
saves and restores exactly; and SQLite lets several processes edit it at once — ``nexus schedule add``
works while ``nexus up`` runs the scheduler, whereas a DuckDB store is owned by one process. Run
*history* goes to the store's ``job_runs`` table (see :mod:`._runner`).

A scheduler started in one process notices jobs another process added within ``poll`` seconds (a
wake-up job kept in memory makes APScheduler re-read its job store).

Given the process's :class:`~nexus_kernel.runtime.Runtime` (``nexus up`` does), the history of the runs
it starts (:meth:`NotebookScheduler.run`) goes to ``runtime.store`` and :meth:`~NotebookScheduler.history`
reads it there; the cron runs it fires run in that same process, where
:func:`nexus_kernel.runtime.current` is that runtime, and record through it.

Caveats: cron expressions are evaluated in UTC. Each job has ``max_instances=1`` and ``coalesce=True``:
missed fires while the scheduler was down collapse into one run on start (within ``misfire_grace``).

Example
-------
>>> from nexus_kernel.config import load_settings
>>> jobs = NotebookScheduler(load_settings(home="/tmp/nexus-home"))           # doctest: +SKIP
>>> jobs.add("daily_report", cron="0 6 * * *", params={"stream": "sensors"})   # doctest: +SKIP
>>> jobs.start(); ...; jobs.shutdown()                                          # doctest: +SKIP
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ..config import Settings, load_settings
from ._runner import read_history, run_notebook

__all__ = ["NotebookScheduler", "JobError", "default_notebook"]

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")
_WAKE = "__nexus_wakeup__"


class JobError(ValueError):
    """An unknown job, a duplicate name, a bad cron expression or a missing notebook."""


def default_notebook(name: str) -> Path:
    """``notebooks/<name>.ipynb`` in the working directory, else in the source tree beside the package."""
    here = Path("notebooks") / f"{name}.ipynb"
    if here.exists():
        return here.resolve()
    return (Path(__file__).resolve().parents[2] / "notebooks" / f"{name}.ipynb")


class NotebookScheduler:
    """Add, list, run and remove notebook jobs; ``start()`` fires them on their cron schedule.

    Parameters
    ----------
    settings
        ``home`` holds the job store and the run outputs; ``store`` receives the run history.
    poll
        Seconds between re-reads of the job store by a started scheduler.
    runtime
        The runtime of this process, if it runs one: run history goes to its store (default: the
        home's store, opened per run, or the live runtime's when one owns the home).
    """

    def __init__(self, settings: Settings | None = None, poll: float = 10.0, misfire_grace: int = 3600,
                 runtime: Any = None) -> None:
        from apscheduler.jobstores.memory import MemoryJobStore
        from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
        from apscheduler.schedulers.background import BackgroundScheduler

        self.settings = settings or (runtime.settings if runtime is not None else load_settings())
        self.runtime = runtime
        self.settings.home.mkdir(parents=True, exist_ok=True)
        self.path = self.settings.home / "scheduler.sqlite"
        self._scheduler = BackgroundScheduler(
            jobstores={"default": SQLAlchemyJobStore(url=f"sqlite:///{self.path.resolve()}"),
                       "wake": MemoryJobStore()},
            job_defaults={"max_instances": 1, "coalesce": True, "misfire_grace_time": misfire_grace},
            timezone="UTC",
        )
        self.poll = poll
        # Started paused at once: the job store creates its table and add_job computes next fire times,
        # but nothing fires until start() resumes it.
        self._scheduler.start(paused=True)
        self._firing = False

    # -- definitions ---------------------------------------------------------------------------

    def add(self, name: str, cron: str, params: dict[str, Any] | None = None,
            notebook: str | Path | None = None, replace: bool = False) -> dict[str, Any]:
        """Define job ``name``: run ``notebook`` (default ``notebooks/<name>.ipynb``) on ``cron`` (UTC)."""
        from apscheduler.triggers.cron import CronTrigger

        if not _NAME.match(name or ""):
            raise JobError(f"invalid job name {name!r}: a letter then letters, digits, '_', '.', '-'")
        path = Path(notebook).resolve() if notebook else default_notebook(name)
        if not path.exists():
            raise JobError(f"notebook {path} does not exist (pass --notebook PATH)")
        try:
            trigger = CronTrigger.from_crontab(cron, timezone="UTC")
        except ValueError as exc:
            raise JobError(f"bad cron expression {cron!r}: {exc}") from None
        if not replace and self._get(name) is not None:
            raise JobError(f"job {name!r} already exists (use replace to change it)")
        kwargs = {"job": name, "notebook": str(path), "params": dict(params or {}),
                  "home": str(self.settings.home.resolve()), "store": self.settings.store}
        self._scheduler.add_job("nexus_kernel.scheduler._runner:scheduled_run", trigger=trigger, id=name,
                                name=cron, kwargs=kwargs, replace_existing=True, jobstore="default")
        return self.describe(name)

    def remove(self, name: str) -> None:
        self._store().remove_job(self._require(name).id)

    def _store(self) -> Any:
        if not self._scheduler.running:
            raise JobError("this scheduler was shut down")
        return self._scheduler._lookup_jobstore("default")

    def _get(self, name: str) -> Any:
        return self._store().lookup_job(name)

    def _require(self, name: str) -> Any:
        job = self._get(name)
        if job is None:
            known = ", ".join(j.id for j in self._store().get_all_jobs()) or "none"
            raise JobError(f"no job named {name!r} (known: {known})")
        return job

    def describe(self, name: str) -> dict[str, Any]:
        job = self._require(name)
        return {"name": job.id, "cron": job.name, "notebook": job.kwargs["notebook"],
                "params": job.kwargs["params"], "next_run": job.next_run_time}

    def jobs(self) -> list[dict[str, Any]]:
        return [self.describe(job.id) for job in self._store().get_all_jobs()]

    # -- running -------------------------------------------------------------------------------

    def run(self, name: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Run job ``name`` now, in this thread (``params`` override the saved ones)."""
        spec = self.describe(name)
        merged = {**spec["params"], **(params or {})}
        if self.runtime is not None:
            return run_notebook(name, spec["notebook"], merged, self.settings, store=self.runtime.store)
        return run_notebook(name, spec["notebook"], merged, self.settings)

    def history(self, name: str | None = None, limit: int | None = None) -> Any:
        """Recorded runs, newest first (from the runtime's store when this scheduler has one)."""
        store = self.runtime.store if self.runtime is not None else None
        return read_history(self.settings, job=name, limit=limit, store=store)

    def start(self) -> "NotebookScheduler":
        """Fire jobs on their schedules in a background thread until :meth:`shutdown`."""
        if not self._firing:
            self._scheduler.add_job(_noop, "interval", seconds=self.poll, id=_WAKE, jobstore="wake",
                                    replace_existing=True)
            self._scheduler.resume()
            self._firing = True
        return self

    def shutdown(self, wait: bool = True) -> None:
        """Stop firing and release the job store (``wait``: let running jobs finish)."""
        if self._scheduler.running:
            self._scheduler.shutdown(wait=wait)
        self._firing = False

    @property
    def running(self) -> bool:
        """Whether jobs fire on their schedules (after :meth:`start`)."""
        return self._firing

    def __enter__(self) -> "NotebookScheduler":
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


def _noop() -> None:
    """Wakes the scheduler so that it re-reads the job store (jobs added by other processes)."""
