"""``nexus keys create|list|revoke`` and ``nexus token``: API keys and tokens from the command line.

The lead mounts :data:`gateway_commands` on the ``nexus`` group.
"""

from __future__ import annotations

import json

import click

from .._clictx import settings_for
from ._auth import ROLES, mint_token
from ._keys import KeyStore

__all__ = ["gateway_commands"]


@click.group("keys")
def keys() -> None:
    """Create, list and revoke API keys (stored hashed under the Nexus home)."""


@keys.command("create")
@click.argument("name")
@click.option("--role", type=click.Choice(ROLES), default="viewer", show_default=True,
              help="What the key may do: viewer reads, analyst also ingests and controls, admin also deletes.")
@click.option("--stream", "streams", multiple=True, help="Limit the key to this stream (repeatable).")
def keys_create(name: str, role: str, streams: tuple[str, ...]) -> None:
    """Create a key; it is printed once."""
    key, entry = KeyStore.for_home(settings_for().home).create(name, role, list(streams) or None)
    click.echo(key)
    click.echo(f"id {entry['id']} · role {role}" + (f" · streams {', '.join(streams)}" if streams else ""), err=True)


@keys.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the entries as JSON (no secrets: only ids and hashes).")
def keys_list(as_json: bool) -> None:
    """List the keys of this home: id, name, role, active or revoked, and stream scope."""
    entries = KeyStore.for_home(settings_for().home).list()
    if as_json:
        click.echo(json.dumps(entries))
        return
    for e in entries:
        state = "revoked" if e["revoked_at"] else "active"
        click.echo(f"{e['id']}  {e['name']:<20} {e['role']:<8} {state:<8} {','.join(e['streams'] or ['*'])}")


@keys.command("revoke")
@click.argument("key_id")
def keys_revoke(key_id: str) -> None:
    """Revoke the key with this id (from `nexus keys list`); open connections using it are closed."""
    if not KeyStore.for_home(settings_for().home).revoke(key_id):
        raise click.ClickException(f"no active key with id {key_id}")
    click.echo(f"revoked {key_id}")


@click.command("token")
@click.option("--subject", default="admin", show_default=True, help="Who the token names (the 'sub' claim).")
@click.option("--role", type=click.Choice(ROLES), default="admin", show_default=True,
              help="What the token may do: viewer, analyst or admin.")
@click.option("--ttl", type=float, default=None, help="Seconds the token is valid (default: settings.jwt_ttl).")
@click.option("--stream", "streams", multiple=True, help="Limit the token to this stream (repeatable).")
def token(subject: str, role: str, ttl: float | None, streams: tuple[str, ...]) -> None:
    """Mint a signed JWT for the gateway."""
    click.echo(mint_token(settings_for(), subject, role, ttl=ttl, streams=list(streams) or None))


gateway_commands: list[click.Command] = [keys, token]
