"""Registries of named plugins, built once, filled by built-ins at import and by entry points.

Modelled on papermill's engine registry: each family (sources, steps, transforms, stores, detectors,
forecasters, ...) owns one :class:`Registry`; built-in members register themselves with the
:meth:`Registry.register` decorator when their module is imported; third-party packages add members
through the entry-point group named by the registry (for example ``nexus_kernel.sources``), loaded the
first time a name is looked up and not found.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from importlib.metadata import entry_points
from typing import Generic, TypeVar

__all__ = ["Registry", "UnknownPluginError"]

T = TypeVar("T")


class UnknownPluginError(LookupError):
    """No member of a family has that name."""


class Registry(Generic[T]):
    """Name → factory for one family of plugins."""

    def __init__(self, family: str, group: str | None = None) -> None:
        self.family = family
        self.group = group or f"nexus_kernel.{family}"
        self._members: dict[str, T] = {}
        self._entry_points_loaded = False

    def register(self, name: str) -> Callable[[T], T]:
        def decorate(member: T) -> T:
            self.add(name, member)
            return member

        return decorate

    def add(self, name: str, member: T) -> None:
        if name in self._members and self._members[name] is not member:
            raise ValueError(f"{self.family} '{name}' is already registered")
        self._members[name] = member

    def get(self, name: str) -> T:
        if name not in self._members:
            self._load_entry_points()
        try:
            return self._members[name]
        except KeyError:
            known = ", ".join(sorted(self._members)) or "none"
            raise UnknownPluginError(f"unknown {self.family} '{name}' (known: {known})") from None

    def names(self) -> list[str]:
        self._load_entry_points()
        return sorted(self._members)

    def items(self) -> Iterator[tuple[str, T]]:
        self._load_entry_points()
        return iter(sorted(self._members.items()))

    def __contains__(self, name: object) -> bool:
        self._load_entry_points()
        return name in self._members

    def _load_entry_points(self) -> None:
        if self._entry_points_loaded:
            return
        self._entry_points_loaded = True
        for point in entry_points(group=self.group):
            if point.name not in self._members:
                self._members[point.name] = point.load()
