"""The history of scheduled notebook jobs: the store's ``job_runs`` table, read and written through here.

While ``nexus up`` owns a home, a job run anywhere in that home (``nexus schedule run``, a cron job, a
papermill kernel) records itself here, so the monitor's Job runs panel and ``nexus schedule history``
read one table through one owner. Job runs span streams: a credential scoped to some streams may not
read or write them (403).
"""

from __future__ import annotations

import pandas as pd

from . import _models as m
from ._base import ApiHandler, operation, route
from ._errors import ApiError
from ._frames import columns

__all__ = ["JobRunsHandler"]


def _unscoped(handler: ApiHandler) -> None:
    if handler.principal.streams is not None:
        raise ApiError(403, "job runs span streams: a credential scoped to streams may not touch them")


@route("/api/jobs/runs", tag="jobs")
class JobRunsHandler(ApiHandler):
    @operation("read", "Recorded runs of scheduled notebook jobs, newest first", query=m.JobRunParams,
               response=m.Frame, stream_param=None)
    async def get(self) -> None:
        _unscoped(self)
        q = self.query
        equals = {"job": q.job} if q.job else {}
        frame = await self.blocking(self.services.store.read, "job_runs", limit=q.limit, **equals)
        frame = frame.sort_values("started_at", ascending=False, kind="mergesort").reset_index(drop=True)
        self.send({"rows": len(frame), "columns": columns(frame)})

    @operation("control", "Record a finished run of a notebook job (a resend of one run_id changes nothing)",
               body=m.JobRun, response=m.JobRunRecorded, status=201, stream_param=None)
    async def post(self) -> None:
        _unscoped(self)
        run = self.body.model_dump()
        row = pd.DataFrame([run])
        for name in ("started_at", "finished_at"):
            row[name] = pd.to_datetime(row[name], utc=True)
        recorded = await self.blocking(self.services.store.append, "job_runs", row)
        self.send({"run_id": run["run_id"], "recorded": int(recorded)})
