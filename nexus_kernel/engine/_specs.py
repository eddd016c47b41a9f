"""The spec boundary: what a stream spec (JSON from the network, the CLI or ``streams.json``) may say.

A spec is data, never code (design principle 9). :meth:`Pipeline.from_spec
<nexus_kernel.engine.Pipeline.from_spec>` — the only way a spec becomes a pipeline, used by the stream
manager, the gateway and the CLI — runs every spec through this module:

* **Secrets are references.** A parameter value ``{"secret": "NAME"}`` (at any depth) is replaced by
  ``settings.secret(NAME)`` when the pipeline is built; the spec itself, and so ``streams.json``, keeps
  the reference. An unset NAME is a :class:`SpecError` naming the setting to set. A secret in clear — a
  parameter named like a credential (``password``, ``token``, ``api_key``...) or a URL/DSN carrying a
  password (``redis://:pw@host``) — is refused with an error that says to use a reference.
* **Files only from data directories.** :func:`data_path` resolves a path a spec names (symlinks
  included) and accepts it only inside ``settings.allowed_data_dirs`` (``home/data`` and the
  ``data_dirs`` setting); ``..`` is refused outright and a relative path is taken inside ``home/data``.
* **Nothing secret comes back.** :func:`scrub` removes resolved secret values and DSN passwords from a
  message before it reaches a status row, a ``last_error`` or an API answer.

Steps and functions are names in registries (``steps``, ``transforms``): nothing here imports a module.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..config import Settings, redact

__all__ = ["SpecError", "contained", "data_path", "is_reference", "refuse_clear_secrets", "resolve_secrets", "scrub"]

SECRET_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")

# Parameter names (lower-cased, '_' and '-' removed) that hold credentials: their value must be a reference.
_CREDENTIAL_WORDS = ("password", "passwd", "secret", "token", "apikey", "accesskey", "privatekey", "credential")
_CREDENTIAL_NAMES = frozenset(("pwd", "pass", "auth", "authorization"))


class SpecError(ValueError):
    """A stream spec that cannot be used; ``field`` says where (``source.params.path``, ``steps.0.params``)."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


def is_reference(value: Any) -> bool:
    """Whether ``value`` is a secret reference: a dict with the single key ``"secret"`` naming a secret."""
    return isinstance(value, dict) and set(value) == {"secret"} and isinstance(value["secret"], str)


def _credential_name(key: str) -> bool:
    flat = key.lower().replace("_", "").replace("-", "")
    return flat in _CREDENTIAL_NAMES or any(word in flat for word in _CREDENTIAL_WORDS)


def refuse_clear_secrets(value: Any, where: str) -> None:
    """Raise :class:`SpecError` if ``value`` (a params dict, at any depth) holds a secret in clear.

    ``where`` is the dotted location of ``value`` in the spec, used in the message and ``field``.
    """
    if isinstance(value, dict):
        if is_reference(value):
            return
        for key, item in value.items():
            here = f"{where}.{key}"
            if _credential_name(str(key)) and not is_reference(item) and item not in (None, ""):
                raise SpecError(f"{here} looks like a credential given in clear; store it as a secret (the "
                                "secrets setting or NEXUS_SECRET_<NAME>) and write {\"secret\": \"NAME\"} instead",
                                field=here)
            refuse_clear_secrets(item, here)
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            refuse_clear_secrets(item, f"{where}.{index}")
    elif isinstance(value, str) and redact(value) != value:
        raise SpecError(f"{where} holds a password in clear (a URL or DSN with a password); store the whole "
                        "value as a secret (the secrets setting or NEXUS_SECRET_<NAME>) and write "
                        "{\"secret\": \"NAME\"} instead", field=where)


def resolve_secrets(value: Any, settings: Settings, where: str, found: set[str]) -> Any:
    """``value`` with every secret reference replaced by the secret; resolved values are added to ``found``.

    Raises :class:`SpecError` for a malformed or unset reference (the message names the setting to set).
    """
    if isinstance(value, dict):
        if "secret" in value and len(value) == 1:
            name = value["secret"]
            if not isinstance(name, str) or not SECRET_NAME.match(name):
                raise SpecError(f"{where}: a secret reference is {{\"secret\": \"NAME\"}} with NAME made of letters, "
                                "digits and '_' (max 64)", field=where)
            secret = settings.secret(name)
            if secret is None:
                raise SpecError(f"{where}: secret '{name}' is not set; set NEXUS_SECRET_{name.upper()} in the "
                                f"environment or secrets.{name} in the settings", field=where)
            if secret:
                found.add(secret)
            return secret
        return {key: resolve_secrets(item, settings, f"{where}.{key}", found) for key, item in value.items()}
    if isinstance(value, list):
        return [resolve_secrets(item, settings, f"{where}.{index}", found) for index, item in enumerate(value)]
    return value


def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` without the given secret values (longest first) and without DSN passwords."""
    for secret in sorted(secrets, key=len, reverse=True):
        if secret:
            text = text.replace(secret, "***")
    return redact(text)


def data_path(raw: Any, settings: Settings, where: str) -> Path:
    """The resolved path of a file a spec names, if it lies inside an allowed data directory.

    A relative path is taken inside ``home/data``. The path is resolved (every symlink followed) *before*
    containment is checked, so a symlink inside a data directory pointing outside it is refused. A path
    with a ``..`` part is refused even when it would resolve inside. Messages name the path as given,
    never the file's content.
    """
    if not isinstance(raw, (str, Path)) or not str(raw) or "\x00" in str(raw):
        raise SpecError(f"{where} must be a file path", field=where)
    path = Path(raw)
    if ".." in path.parts:
        raise SpecError(f"{where}: '..' is not allowed in a file path of a stream spec", field=where)
    allowed = settings.allowed_data_dirs
    resolved = (path if path.is_absolute() else allowed[0] / path).resolve()
    if not any(resolved.is_relative_to(folder) for folder in allowed):
        raise SpecError(f"{where}: '{raw}' is outside the data directories a stream spec may read (home/data "
                        "and the data_dirs setting); symlinks count where they point", field=where)
    return resolved


def contained(path: Path, folders: Iterable[Path]) -> bool:
    """Whether ``path``, resolved now, is still inside one of ``folders`` (checked again right before
    a file is opened, so a symlink swapped in after the spec was accepted is caught)."""
    resolved = path.resolve()
    return any(resolved.is_relative_to(folder) for folder in folders)
