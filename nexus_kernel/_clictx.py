"""The settings of one `nexus` invocation, shared by every command module.

The root command keeps its global options (``--home``, ``--debug``) on the click context; each command,
wherever it is defined, builds its settings from them with :func:`settings_for`.
"""

from __future__ import annotations

import json
from typing import Any

import click

from .config import Settings, SettingsError, load_settings

__all__ = ["settings_for", "parse_pairs"]


def settings_for(ctx: click.Context | None = None, **overrides: Any) -> Settings:
    ctx = ctx or click.get_current_context(silent=True)
    root = ctx.find_root().obj if ctx is not None else None
    if isinstance(root, Settings):  # a caller (a test, an embedding program) handed over its settings
        updates = {k: v for k, v in overrides.items() if v is not None}
        return root.model_copy(update=updates) if updates else root
    base: dict[str, Any] = dict(root or {})
    base.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return load_settings(**base)
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None


def parse_pairs(pairs: tuple[str, ...], option: str = "--param") -> dict[str, Any]:
    """``KEY=VALUE`` options as a dict; values are read as JSON when they parse, else kept as text."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"expected KEY=VALUE, got {pair!r}", param_hint=option)
        try:
            out[key.strip()] = json.loads(raw)
        except ValueError:
            out[key.strip()] = raw
    return out
