"""Anchoring over HTTP: verify an item (``GET /api/verify/{item_id}``) and list recent anchors.

``GET /api/verify/{item_id}`` walks the item's proof on the owner's log and store (the same walk as
``nexus verify``) and answers the verdict, its steps and the proof bundle an outsider can check with
``nexus verify --bundle``. ``GET /api/anchors`` answers the anchoring service's state and the newest
anchor receipts (the monitor's Anchoring panel). Both need the viewer role; items and anchors span
streams, so a credential scoped to streams may not use them (403), as with job runs.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, Field

from ._base import ApiHandler, operation, route
from ._errors import ApiError
from . import _models as m

__all__ = ["VerifyHandler", "AnchorsHandler"]

_ITEM_ID = re.compile(r"[a-z_]{1,32}:[0-9a-f]{24}")


class VerifyStepModel(BaseModel):
    step: str
    ok: bool
    detail: str


class VerdictModel(BaseModel):
    item_id: str | None
    verified: bool
    failed_step: str | None = Field(description="The first step that failed; null when verified.")
    steps: list[VerifyStepModel]
    bundle: dict[str, Any] | None = Field(description="The proof bundle (schema nexus-proof-bundle/1) that was "
                                          "checked; null when none could be built.")


class AnchorsParams(BaseModel):
    limit: int = Field(20, ge=1, le=1000, description="Newest receipts to answer.")


class AnchorsModel(BaseModel):
    service: dict[str, Any] | None = Field(description="The anchoring service's state; null when it does not run.")
    receipts: m.Frame


def _unscoped(handler: ApiHandler) -> None:
    if handler.principal.streams is not None:
        raise ApiError(403, "anchors and proofs span streams: a credential scoped to streams may not use them")


@route("/api/verify/{item_id}", tag="anchoring")
class VerifyHandler(ApiHandler):
    @operation("read", "Verify an anchored item: each step of its proof with its verdict, and the proof bundle",
               response=VerdictModel, stream_param=None)
    async def get(self, item_id: str) -> None:
        _unscoped(self)
        if not _ITEM_ID.fullmatch(item_id):  # no item has such an id (ids are '<kind>:<24 hex digits>')
            raise ApiError(404, "no item has this id: item ids are '<kind>:<24 hex digits>', as nexus verify "
                           "--list prints them", field="item_id")
        from ..anchoring._api import verify_answer

        service = getattr(self.services.runtime, "anchoring", None)
        self.send(await self.blocking(verify_answer, item_id, self.services.store, self.services.settings, service))


@route("/api/anchors", tag="anchoring")
class AnchorsHandler(ApiHandler):
    @operation("read", "The anchoring service's state and the newest anchor receipts, newest first",
               query=AnchorsParams, response=AnchorsModel, stream_param=None)
    async def get(self) -> None:
        _unscoped(self)
        from ..anchoring._api import anchors_answer

        service = getattr(self.services.runtime, "anchoring", None)
        self.send(await self.blocking(anchors_answer, self.services.store, service, self.query.limit))
