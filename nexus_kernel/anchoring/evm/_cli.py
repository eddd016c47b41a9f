"""``nexus anchor deploy``: deploy the Anchor contract with the key from Settings and print its address."""

from __future__ import annotations

import click

from ..._clictx import settings_for

__all__ = ["chain_commands"]


@click.group("anchor")
def anchor() -> None:
    """Chain anchors (evm, irys): deploy the contract."""


@anchor.command("deploy")
@click.option("--rpc-url", help="EVM node (default: evm_rpc_url).")
@click.pass_context
def deploy(ctx: click.Context, rpc_url: str | None) -> None:
    """Deploy contracts/Anchor.sol's committed bytecode; prints the address for NEXUS_EVM_CONTRACT."""
    from ._deploy import deploy_anchor

    settings = settings_for(ctx)
    if settings.evm_private_key is None:
        raise click.ClickException("set NEXUS_EVM_PRIVATE_KEY (hex key of a funded account) to deploy")
    address = deploy_anchor(rpc_url or settings.evm_rpc_url, settings.evm_private_key.get_secret_value(),
                            timeout=settings.evm_timeout)
    click.echo(address)


chain_commands = [anchor]
