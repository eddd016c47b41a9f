"""The settings of one `nexus` invocation, shared by every command module.

The root command keeps its global options (``--home``, ``--debug``) on the click context; each command,
wherever it is defined, builds its settings from them with :func:`settings_for`.
"""

from __future__ import annotations

from typing import Any

import click

from .config import Settings, SettingsError, load_settings

__all__ = ["settings_for"]


def settings_for(ctx: click.Context | None = None, **overrides: Any) -> Settings:
    ctx = ctx or click.get_current_context(silent=True)
    base: dict[str, Any] = dict((ctx.find_root().obj or {}) if ctx is not None else {})
    base.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return load_settings(**base)
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None
