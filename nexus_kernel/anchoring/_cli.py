"""``nexus verify``: check that a stored item is what was logged and anchored, step by step.

::

    nexus verify ITEM_ID                      # walk the item's proof on this home (or through its nexus up)
    nexus verify ITEM_ID --export proof.json  # ... and write the proof bundle
    nexus verify --bundle proof.json          # check a bundle anywhere, no home needed
    nexus verify --anomaly STREAM SERIES TS   # the anomaly at that time (its id is printed too)
    nexus verify --list STREAM                # the newest anomalies of STREAM with their item ids
    ... --json                                # the verdict as JSON; --key HEX pins the signing key

Exit status: 0 verified, 1 not verified (or an error), 2 a usage error. While ``nexus up`` owns the home,
the walk runs in it, through its gateway (``GET /api/verify/{item_id}``).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click

from ._protocol import VerifyStep
from ._verify import BATCH_OPEN, NOT_ANCHORED, Verdict

__all__ = ["anchoring_commands", "verify"]


def _settings() -> Any:
    from .._clictx import settings_for

    return settings_for()


def _verdict_from_json(data: dict[str, Any]) -> Verdict:
    steps = [VerifyStep(s["step"], bool(s["ok"]), s["detail"]) for s in data.get("steps", [])]
    return Verdict(data.get("item_id"), steps, data.get("bundle"))


PENDING_SLACK = 5.0  # seconds past anchor_interval a pending item is waited for (the owner's batch closing)


def _pending(verdict: Verdict) -> bool:
    """The item is logged but not anchored *yet*: its batch has not closed, or its closed batch's head is
    still queued for its anchor (an unknown id, or a proof that fails, is not waited for)."""
    if verdict.verified or not verdict.steps:
        return False
    last = verdict.steps[-1]
    return ((last.step == "tree head" and last.detail.endswith(BATCH_OPEN))
            or (last.step == "anchor" and last.detail == NOT_ANCHORED))


def _verify_on_home(item_id: str, trusted_key: str | None) -> Verdict:
    from ..runtime._discovery import live_runtime
    from ..storage import open_store

    settings = _settings()
    live = live_runtime(settings)
    if live is not None and not live.in_process and live.gateway is not None:
        client = live.client()
        try:
            verdict = _verdict_from_json(client.verify(item_id))
            # an item flagged a moment ago waits for its batch to close (every anchor_interval seconds, by
            # the running owner) and for that batch's head to be anchored: wait for it rather than fail on
            # what is only pending
            deadline = time.monotonic() + settings.anchor_interval + PENDING_SLACK
            if _pending(verdict):
                click.echo(f"{item_id}: {verdict.steps[-1].detail}; waiting up to "
                           f"{deadline - time.monotonic():.0f} s for its batch to close and be anchored", err=True)
            while _pending(verdict) and time.monotonic() < deadline:
                time.sleep(0.5)
                verdict = _verdict_from_json(client.verify(item_id))
        finally:
            client.close()
        if trusted_key and verdict.bundle is not None:  # pin the key on the bundle the owner checked
            from ._verify import verify_bundle

            return verify_bundle(verdict.bundle, settings, trusted_key)
        return verdict
    from ._verify import verify_item

    store = open_store(settings)
    try:
        return verify_item(item_id, store, settings, trusted_key=trusted_key)
    finally:
        store.close()


def _anomalies(stream: str, series: str | None = None, ts: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
    """Anomalies of ``stream`` (at ``ts`` of ``series`` when given) with their item ids, newest first."""
    import pandas as pd

    from ..client import home_store
    from ._encoding import ITEM_KINDS, item_id

    store = home_store(_settings())
    try:
        if ts is not None:
            at = pd.Timestamp(ts)
            at = at.tz_localize("UTC") if at.tzinfo is None else at.tz_convert("UTC")
            rows = store.read("anomalies", stream=stream, start=at - pd.Timedelta(microseconds=1),
                              end=at + pd.Timedelta(microseconds=2), limit=1000)
        else:
            rows = store.read("anomalies", stream=stream, limit=limit)
    finally:
        store.close()
    if series is not None:
        rows = rows[rows["series"] == series]
    out = [{"item_id": item_id("anomaly", key), **body} for key, body in ITEM_KINDS.get("anomaly").items(rows)]
    return out[::-1]


def _print(verdict: Verdict, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(verdict.to_json()))
    else:
        click.echo(verdict.text())


@click.command("verify")
@click.argument("item_id", required=False)
@click.option("--bundle", "bundle_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Check this proof bundle (no home needed).")
@click.option("--export", "export_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the item's proof bundle to this file.")
@click.option("--anomaly", nargs=3, metavar="STREAM SERIES TS", default=None,
              help="Verify the anomaly of SERIES of STREAM at time TS (ISO 8601).")
@click.option("--list", "list_stream", metavar="STREAM", default=None,
              help="List the newest anomalies of STREAM with their item ids.")
@click.option("--key", "trusted_key", default=None, help="Hex Ed25519 public key the tree head must be signed by.")
@click.option("--json", "as_json", is_flag=True, help="Print the verdict as JSON.")
def verify(item_id: str | None, bundle_file: Path | None, export_file: Path | None,
           anomaly: tuple[str, str, str] | None, list_stream: str | None, trusted_key: str | None,
           as_json: bool) -> None:
    """Verify ITEM_ID (an anomaly, record, dead letter or model version) or a proof bundle, step by step."""
    chosen = [x for x in (item_id, bundle_file, anomaly, list_stream) if x]
    if len(chosen) != 1:
        raise click.UsageError("give one of ITEM_ID, --bundle FILE, --anomaly STREAM SERIES TS or --list STREAM")
    if list_stream:
        rows = _anomalies(list_stream)
        if as_json:
            click.echo(json.dumps(rows))
        for row in ([] if as_json else rows):
            click.echo(f"{row['item_id']}  {row['ts']}  {row['series']}  {row['field']}  {row['detector']}  "
                       f"score={row['score']}")
        if not rows and not as_json:
            click.echo(f"no anomalies stored for {list_stream!r}")
        return
    if bundle_file is not None:
        from ._verify import verify_bundle

        verdict = verify_bundle(bundle_file.read_bytes(), _settings(), trusted_key)
    else:
        if anomaly is not None:
            found = _anomalies(anomaly[0], anomaly[1], anomaly[2])
            if not found:
                raise click.ClickException(f"no anomaly of {anomaly[1]!r} in {anomaly[0]!r} at {anomaly[2]}")
            if len(found) > 1:
                ids = ", ".join(f"{r['item_id']} ({r['field']}, {r['detector']})" for r in found)
                raise click.ClickException(f"{len(found)} anomalies at that time; verify one by id: {ids}")
            item_id = found[0]["item_id"]
        assert item_id is not None
        verdict = _verify_on_home(item_id, trusted_key)
        if export_file is not None:
            if verdict.bundle is None:
                raise click.ClickException(f"no proof bundle for {item_id}: {verdict.steps[-1].detail}")
            from ._bundle import dump_bundle

            export_file.write_text(dump_bundle(verdict.bundle))
            if not as_json:
                click.echo(f"proof bundle written to {export_file}")
    _print(verdict, as_json)
    if not verdict.verified:
        raise click.exceptions.Exit(1)


anchoring_commands: list[click.Command] = [verify]
