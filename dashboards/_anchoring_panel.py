"""The monitor's Anchoring panel: the newest anchors, and "verify" for any anomaly of the feed.

Everything goes through the anchoring routes' calls (``anchors()``, ``verify(item_id)``): the panel never
opens the store. A gateway source lends its SDK client (``GET /api/anchors``, ``GET /api/verify/{id}``);
the monitor ``nexus up`` serves in its own process gets the same answers in-process
(:class:`nexus_kernel.anchoring._api.LocalAnchoringApi`), since a blocking call to its own gateway from
the loop that serves both would wait for itself. A source with neither shows a notice.

The anomalies to pick from are those the monitor's feed shows (``anomalies`` frames, the store's
``anomalies`` schema); each one's item id is computed from its key (:func:`nexus_kernel.anchoring.item_id`),
the same id ``nexus verify`` takes.

Example
-------
>>> panel = AnchoringPanel(api=None)
>>> "no gateway" in panel.recent.object
True
"""

from __future__ import annotations

import html
import logging
import threading
import time
import weakref
from typing import Any

import pandas as pd
import panel as pn

from nexus_kernel.anchoring import ITEM_KINDS, item_id

__all__ = ["AnchoringPanel", "SharedAnswers", "anchoring_api"]

log = logging.getLogger("dashboards.anchoring")


class SharedAnswers:
    """The anchoring calls of every page on one source: ``anchors`` asked once per ``ttl`` seconds for all
    of them, ``verify`` (a viewer's click) always asked.

    Ten pages, each asking for the recent anchors every 5 s, read the store twice a second on the loop
    that serves them (a ninth of that loop's busy time in ``bench dashboard``'s server, py-spy).
    """

    def __init__(self, api: Any, ttl: float = 2.0) -> None:
        self.api, self.ttl = api, ttl
        self._answers: dict[int, tuple[float, Any]] = {}
        self._lock = threading.Lock()

    def anchors(self, limit: int = 20) -> Any:
        with self._lock:
            asked = self._answers.get(limit)
        if asked is not None and time.monotonic() - asked[0] < self.ttl:
            return asked[1]
        answer = self.api.anchors(limit=limit)
        with self._lock:
            self._answers[limit] = (time.monotonic(), answer)
        return answer

    def verify(self, item_id: str) -> Any:
        return self.api.verify(item_id)


_shared: weakref.WeakKeyDictionary[Any, SharedAnswers] = weakref.WeakKeyDictionary()


def anchoring_api(source: Any) -> SharedAnswers | None:
    """The anchoring routes for ``source`` (its SDK client's, or a runtime's in process), shared by every
    page on it; None when there is no gateway."""
    try:
        shared = _shared.get(source)
    except TypeError:  # a source that takes no weak reference: its pages do not share
        shared = None
    if shared is not None:
        return shared
    api: Any = getattr(source, "client", None)
    if api is None:
        runtime = getattr(source, "runtime", None)
        if runtime is None:
            return None
        # The monitor nexus up serves runs on the loop that serves its gateway: a blocking call to that
        # gateway from here would wait for itself. It gets the routes' answers in-process instead (same
        # code, same JSON).
        from nexus_kernel.anchoring._api import LocalAnchoringApi

        api = LocalAnchoringApi(runtime)
    shared = SharedAnswers(api)
    try:
        _shared[source] = shared
    except TypeError:
        pass
    return shared


def _ids(anomalies: pd.DataFrame) -> dict[str, str]:
    """Label → item id of each anomaly in the feed, newest first."""
    if anomalies is None or anomalies.empty:
        return {}
    out: dict[str, str] = {}
    for key, body in ITEM_KINDS.get("anomaly").items(anomalies)[::-1]:
        label = f"{body['ts'][:19].replace('T', ' ')} {body['series']} {body['field']} ({body['detector']})"
        out[label] = item_id("anomaly", key)
    return out


def _steps_html(result: dict[str, Any]) -> str:
    rows = "".join(
        f"<tr><td style='color:{'#2a7' if s['ok'] else '#c22'}'>{'ok' if s['ok'] else 'FAIL'}</td>"
        f"<td><b>{html.escape(s['step'])}</b></td><td>{html.escape(s['detail'])}</td></tr>"
        for s in result.get("steps", []))
    verdict = ("<b style='color:#2a7'>verified</b>" if result.get("verified")
               else f"<b style='color:#c22'>NOT verified: step '{html.escape(str(result.get('failed_step')))}' fails</b>")
    return (f"<div>{html.escape(str(result.get('item_id')))}: {verdict}</div>"
            f"<table style='font-size:12px'>{rows}</table>")


class AnchoringPanel:
    """Recent anchors and a verify button for one of the feed's anomalies. ``api``: an SDK client or None."""

    def __init__(self, api: Any | None, every: float = 5.0) -> None:
        self.api = api
        self.every = every  # seconds between two reads of the recent anchors (per page)
        self._asked = float("-inf")
        self.recent = pn.pane.HTML("", sizing_mode="stretch_width", name="nexus-anchors")
        self.choice = pn.widgets.Select(name="Anomaly", options={}, width=360)
        self.button = pn.widgets.Button(label="Verify", button_type="primary", width=90, disabled=api is None)
        self.result = pn.pane.HTML("", sizing_mode="stretch_width", name="nexus-verify-result")
        self.button.on_click(lambda _event: self.verify())
        self.layout = pn.Column(self.recent, pn.Row(self.choice, self.button),
                                self.result, sizing_mode="stretch_width")
        if api is None:
            self.recent.object = "<i>no gateway to ask: anchors and verification appear when nexus up serves one</i>"

    def tick(self, anomalies: pd.DataFrame | None) -> None:
        """What the monitor calls on each slow render: choices at once, anchors at most every ``every`` s."""
        import time

        if anomalies is not None:
            options = _ids(anomalies)
            if options != self.choice.options:
                self.choice.options = options
        if time.monotonic() - self._asked >= self.every:
            self._asked = time.monotonic()
            self.update()

    def update(self, anomalies: pd.DataFrame | None = None) -> None:
        """Refresh the recent anchors and the anomalies to choose from (the feed's frame)."""
        if anomalies is not None:
            options = _ids(anomalies)
            if options != self.choice.options:
                self.choice.options = options
        if self.api is None:
            return
        try:
            answer = self.api.anchors(limit=8)
        except Exception as exc:  # noqa: BLE001 - a gateway hiccup shows on the panel, never stops the page
            self.recent.object = f"<i>anchors unavailable: {html.escape(str(exc))}</i>"
            return
        self.recent.object = self._recent_html(answer)

    @staticmethod
    def _recent_html(answer: dict[str, Any]) -> str:
        service = answer.get("service") or {}
        head = (f"log of {service.get('log_size', 0):,} items, {service.get('pending', 0)} head(s) pending, "
                f"backend {html.escape(str(service.get('backend', '?')))}" if service else "anchoring service not running")
        columns = answer.get("receipts", {}).get("columns", {})
        rows = []
        for i in range(len(columns.get("head_id", []))):
            ref = columns["reference"][i] or {}
            rows.append(f"<tr><td>{html.escape(str(columns['recorded_at'][i])[:19])}</td>"
                        f"<td>{html.escape(columns['backend'][i])}</td><td>{html.escape(columns['status'][i])}</td>"
                        f"<td>size {ref.get('tree_size', '?')}</td><td><code>{columns['head_id'][i][:12]}</code></td></tr>")
        table = f"<table style='font-size:12px'>{''.join(rows)}</table>" if rows else "<i>no anchors yet</i>"
        return f"<div style='color:#555'>{head}</div>{table}"

    def verify(self, iid: str | None = None) -> dict[str, Any] | None:
        """Verify the chosen anomaly (or ``iid``) through the gateway; shows and returns the verdict."""
        iid = iid or self.choice.value
        if self.api is None or not iid:
            return None
        try:
            result = self.api.verify(iid)
        except Exception as exc:  # noqa: BLE001 - shown on the panel
            self.result.object = f"<i>verify failed: {html.escape(str(exc))}</i>"
            return None
        self.result.object = _steps_html(result)
        return dict(result)
