"""The answers of the anchoring routes, as plain JSON: what ``GET /api/verify/{item_id}`` and
``GET /api/anchors`` send, and what an in-process caller (the monitor served by ``nexus up`` itself, which
must not call its own gateway from the loop that serves it) gets from :class:`LocalAnchoringApi`.

Example
-------
>>> from nexus_kernel.storage import open_store
>>> anchors_answer(open_store("memory"), None)["receipts"]["rows"]
0
"""

from __future__ import annotations

import json
from typing import Any

from ._queue import AnchorQueue
from ._verify import verify_item

__all__ = ["verify_answer", "anchors_answer", "LocalAnchoringApi"]


def verify_answer(iid: str, store: Any, settings: Any, service: Any | None = None) -> dict[str, Any]:
    """``{item_id, verified, failed_step, steps, bundle}`` for item ``iid`` (the service's log when it runs)."""
    log = service.log if service is not None else None
    return verify_item(iid, store, settings, log).to_json(with_bundle=True)


def anchors_answer(store: Any, service: Any | None, limit: int = 20) -> dict[str, Any]:
    """``{service, receipts: {rows, columns}}``: the service's state and the newest receipts, newest first."""
    frame = AnchorQueue(store).recent(limit)
    cols: dict[str, list[Any]] = {
        "head_id": [str(v) for v in frame["head_id"]], "backend": [str(v) for v in frame["backend"]],
        "status": [str(v) for v in frame["status"]], "reference": [json.loads(str(v)) for v in frame["reference"]],
        "recorded_at": [v.isoformat() for v in frame["recorded_at"]]}
    return {"service": service.status() if service is not None else None,
            "receipts": {"rows": len(frame), "columns": cols}}


class LocalAnchoringApi:
    """The two calls of the SDK (``verify``, ``anchors``) answered in-process from a runtime."""

    def __init__(self, runtime: Any) -> None:
        self.runtime = runtime

    def verify(self, item_id: str) -> dict[str, Any]:
        rt = self.runtime
        return verify_answer(item_id, rt.store, rt.settings, getattr(rt, "anchoring", None))

    def anchors(self, limit: int = 20) -> dict[str, Any]:
        return anchors_answer(self.runtime.store, getattr(self.runtime, "anchoring", None), limit)

    def close(self) -> None:
        pass
