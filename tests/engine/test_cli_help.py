"""Every ``nexus`` command and option explains itself in ``--help``."""

from __future__ import annotations

import click
from click.testing import CliRunner

from nexus_kernel.cli import cli


def _walk(command: click.Command, path: str, ctx: click.Context) -> list[tuple[str, click.Command]]:
    found = [(path, command)]
    if isinstance(command, click.Group):
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            assert sub is not None, f"{path} {name} is listed but cannot be loaded"
            found += _walk(sub, f"{path} {name}", ctx)
    return found


def test_every_command_and_option_has_help_text() -> None:
    ctx = click.Context(cli)
    commands = _walk(cli, "nexus", ctx)
    assert len(commands) > 20  # the whole tree was walked, mounted groups included
    missing = [path for path, cmd in commands if not (cmd.help or cmd.short_help)]
    missing += [f"{path} {'/'.join(p.opts)}" for path, cmd in commands for p in cmd.params
                if isinstance(p, click.Option) and p.name not in ("help", "version") and not p.help]
    assert missing == []


def test_help_renders_for_every_command() -> None:
    ctx = click.Context(cli)
    runner = CliRunner()
    for path, _ in _walk(cli, "nexus", ctx):
        result = runner.invoke(cli, [*path.split()[1:], "--help"])
        assert result.exit_code == 0, (path, result.output)
        assert "Usage:" in result.output
