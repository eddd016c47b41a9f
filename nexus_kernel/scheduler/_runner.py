"""One run of a notebook job: papermill on the venv's ``nexus`` kernel, recorded in ``job_runs``.

A run executes ``notebook`` with ``params`` and writes the executed notebook to
``settings.runs_dir/<job>/<run_id>.ipynb`` — kept whether the run succeeds or fails: papermill marks the
failing cell in it, and the run's ``error`` names that cell (number, exception, first source line).

**No two runs of one job overlap**, across processes too: a run holds an exclusive ``flock`` on
``runs/<job>/.lock``; a run that finds it taken does not wait — it is recorded with status ``skipped``.

History has one source of truth, the store's ``job_runs`` table (one row per finished run: insert-only
on ``run_id``), written and read through the home's owner: the store a caller hands over (the runtime's,
inside ``nexus up``), else :func:`~nexus_kernel.client.home_store` — the live ``nexus up``'s store through
its gateway, or the store itself when none runs. So ``nexus schedule history`` and the monitor's Job runs
panel show the same runs. Only when the store cannot be reached at all (a DuckDB file held by an owner
serving no gateway, a gateway that does not answer) is the row parked as ``runs/pending/<run_id>.json``,
moved into the store by the next run that reaches it (:func:`flush_pending`), so no run is lost.

The notebook gets the home (``home``, absolute: papermill runs its kernel in the run's folder) and the
store address (``store``) as parameters when it declares them, so its ``nk.store(settings)`` reaches the
same store the same way.

Example
-------
>>> from nexus_kernel.config import load_settings
>>> run = run_notebook("daily_report", "notebooks/daily_report.ipynb", {"stream": "sensors"},
...                    load_settings(home="/tmp/nexus-home"))  # doctest: +SKIP
>>> run["status"], run["output"]  # doctest: +SKIP
('succeeded', '/tmp/nexus-home/runs/daily_report/daily_report-20240101T060000Z-1a2b3c.ipynb')
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import sys
import traceback
import uuid
from pathlib import Path
from typing import Any

import pandas as pd

from ..config import Settings, load_settings, redact

__all__ = ["run_notebook", "scheduled_run", "ensure_kernelspec", "flush_pending", "read_history", "KERNEL"]

log = logging.getLogger(__name__)

KERNEL = "nexus"
JOB_RUN_COLUMNS = ("run_id", "job", "started_at", "finished_at", "status", "output", "error", "params")


def ensure_kernelspec(name: str = KERNEL) -> str:
    """Make sure the ``nexus`` kernelspec exists inside this environment (``sys.prefix``).

    It points at this interpreter, so papermill never runs a job on another Python. Equivalent to
    ``python -m ipykernel install --sys-prefix --name nexus``.
    """
    from jupyter_client.kernelspec import KernelSpecManager

    specs = KernelSpecManager().find_kernel_specs()
    if name in specs:
        return specs[name]
    from ipykernel.kernelspec import install

    return install(kernel_name=name, display_name="Python (nexus)", prefix=sys.prefix)


def _store_param(settings: Settings) -> str:
    """The store address a job's kernel gets as a notebook parameter.

    ``duckdb`` stays as it is: the kernel gets the home too, and the two name the home's file (and its
    live owner, when one runs). A DSN with a password never becomes a parameter (parameters are saved in
    the output notebook): the kernel, which inherits this process's environment, reads it from
    ``NEXUS_STORE`` instead.
    """
    if redact(settings.store) != settings.store:
        os.environ["NEXUS_STORE"] = settings.store
        return ""
    return settings.store


def _failure(exc: BaseException) -> str:
    from papermill.exceptions import PapermillExecutionError

    if isinstance(exc, PapermillExecutionError):
        first = next((line for line in (exc.source or "").splitlines() if line.strip()), "")
        return (f"cell {exc.exec_count} (index {exc.cell_index}) raised {exc.ename}: {str(exc.evalue)[:4000]} "
                f"| source: {first[:120]}")
    return f"{type(exc).__name__}: {str(exc)[:4000]}"


def run_notebook(job: str, notebook: str | Path, params: dict[str, Any] | None = None,
                 settings: Settings | None = None, timeout: float | None = 3600,
                 store: Any = None) -> dict[str, Any]:
    """Run ``notebook`` once for ``job``; return the recorded run (a ``job_runs`` row as a dict).

    Parameters the notebook declares but ``params`` leaves out are filled when the run knows better:
    ``output`` (an HTML report path beside the run's notebook), ``home`` (this home, absolute) and
    ``store`` (this process's store setting). ``store``: where to record the run (the runtime's store,
    inside ``nexus up``; default: :func:`~nexus_kernel.client.home_store`).
    """
    import papermill

    settings = settings or load_settings()
    params = dict(params or {})
    notebook = Path(notebook).resolve()
    folder = (settings.runs_dir / job).resolve()  # absolute: the kernel runs in this folder, not in ours
    folder.mkdir(parents=True, exist_ok=True)
    started = pd.Timestamp.now(tz="UTC")
    run_id = f"{job}-{started:%Y%m%dT%H%M%S}Z-{uuid.uuid4().hex[:6]}"
    output = folder / f"{run_id}.ipynb"
    row: dict[str, Any] = {"run_id": run_id, "job": job, "started_at": started, "output": str(output)}
    with open(folder / ".lock", "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            row.update(status="skipped", output="", error="previous run of this job still running",
                       finished_at=pd.Timestamp.now(tz="UTC"), params=json.dumps(params, default=str))
            _record(row, settings, store)
            return row
        try:
            if not notebook.exists():
                raise FileNotFoundError(f"notebook {notebook} does not exist")
            declared = papermill.inspect_notebook(str(notebook))
            if "output" in declared and "output" not in params:
                params["output"] = str(folder / f"{run_id}.html")
            if "home" in declared and "home" not in params:
                params["home"] = str(Path(settings.home).resolve())
            if "store" in declared and "store" not in params:
                params["store"] = _store_param(settings)
            row["params"] = json.dumps(params, default=str, sort_keys=True)
            kernel = ensure_kernelspec() and KERNEL
            papermill.execute_notebook(str(notebook), str(output), parameters=params, kernel_name=kernel,
                                       cwd=str(folder), progress_bar=False, execution_timeout=timeout)
            row.update(status="succeeded", error="")
        except Exception as exc:  # noqa: BLE001 - a failed job is a recorded run, never a crashed scheduler
            row.update(status="failed", error=_failure(exc))
            row.setdefault("params", json.dumps(params, default=str, sort_keys=True))
            if not output.exists():
                row["output"] = ""
            log.warning("job %s run %s failed: %s", job, run_id, row["error"])
            log.debug("%s", traceback.format_exc())
        finally:
            row["finished_at"] = pd.Timestamp.now(tz="UTC")
            fcntl.flock(lock, fcntl.LOCK_UN)
    _record(row, settings, store)
    return row


def scheduled_run(job: str, notebook: str, params: dict[str, Any], home: str, store: str) -> None:
    """The function APScheduler calls (importable by reference; arguments are plain values)."""
    run_notebook(job, notebook, params, load_settings(home=Path(home), store=store))


def _frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=list(JOB_RUN_COLUMNS))
    for col in ("started_at", "finished_at"):
        frame[col] = pd.to_datetime(frame[col], utc=True)
    return frame


def _reach(settings: Settings) -> Any:
    """The home's store as :func:`~nexus_kernel.client.home_store` reaches it; None when it cannot be reached."""
    from ..client import home_store
    from ..storage import StoreLockedError, StoreUnavailable

    try:
        return home_store(settings)
    except (StoreLockedError, StoreUnavailable) as exc:
        log.info("store of %s not reachable: %s", settings.home, exc)
        return None


def _record(row: dict[str, Any], settings: Settings, store: Any = None) -> None:
    from ..storage import StoreError

    own = store is None
    target = _reach(settings) if own else store
    try:
        if target is not None:
            target.append("job_runs", _frame([row]))
            _flush_into(target, settings)
            return
    except (StoreError, OSError, ValueError) as exc:  # the owner went away, or refused the row
        log.warning("run %s not recorded in the store (%s): parked", row["run_id"], exc)
    finally:
        if own and target is not None:
            target.close()
    pending = settings.runs_dir / "pending"
    pending.mkdir(parents=True, exist_ok=True)
    path = pending / f"{row['run_id']}.json"
    path.write_text(json.dumps(row, default=str))
    log.info("store not reachable: run %s parked in %s", row["run_id"], path)


def _pending_rows(settings: Settings) -> list[tuple[Path, dict[str, Any]]]:
    out = []
    for path in sorted((settings.runs_dir / "pending").glob("*.json")):
        with contextlib.suppress(ValueError, OSError):
            out.append((path, json.loads(path.read_text())))
    return out


def _flush_into(store: Any, settings: Settings) -> int:
    parked = _pending_rows(settings)
    if not parked:
        return 0
    store.append("job_runs", _frame([row for _, row in parked]))
    for path, _ in parked:
        path.unlink(missing_ok=True)
    return len(parked)


def flush_pending(store: Any, settings: Settings) -> int:
    """Move runs parked while the store was busy into ``job_runs``; returns how many."""
    return _flush_into(store, settings)


def read_history(settings: Settings, job: str | None = None, limit: int | None = None,
                 store: Any = None) -> pd.DataFrame:
    """Recorded runs, newest first: the store's ``job_runs`` (``store``, else the home's store as
    :func:`~nexus_kernel.client.home_store` reaches it) plus runs still parked."""
    frames = []
    own = store is None
    target = _reach(settings) if own else store
    if target is not None:
        try:
            frames.append(target.read("job_runs", job=job) if job else target.read("job_runs"))
        finally:
            if own:
                target.close()
    parked = [row for _, row in _pending_rows(settings) if job is None or row["job"] == job]
    if parked:
        frames.append(_frame(parked))
    frames = [f for f in frames if len(f)]
    if not frames:
        return _frame([])
    history = pd.concat(frames, ignore_index=True).drop_duplicates("run_id")
    history = history.sort_values("started_at", ascending=False, kind="mergesort").reset_index(drop=True)
    return history.head(limit) if limit else history
