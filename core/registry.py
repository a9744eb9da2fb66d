"""Named registries: a table from a stable name to a factory, one per kind of plug-in.

Selection strategies, generator backends and input readers each have one (`STRATEGIES`,
`GENERATORS`, `READERS`). A new one is a function plus its registration, from inside the project or
from outside it:

    from microtheory.distill import STRATEGIES

    @STRATEGIES.register("longest-first", help="facts of the longest proofs first")
    def longest_first(graph, request): ...

The command line builds its choices and help from the same tables, so nothing lists names twice.
Names are stable: they go into manifests, provenance and configuration files.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

from core.errors import InputError

T = TypeVar("T")

# Lower-case words joined by '-', '_' or '.': safe in spec strings ("name:arg"), file names and TOML.
_NAME = re.compile(r"[a-z0-9]+(?:[-_.][a-z0-9]+)*")


@dataclass(frozen=True)
class Entry(Generic[T]):
    """One registered factory with its name, one-line help and alternative names."""

    name: str
    factory: T
    help: str = ""
    aliases: tuple[str, ...] = ()


class Registry(Generic[T]):
    """Name -> factory. `kind` names the table in messages ("strategy", "generator backend")."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}
        self._aliases: dict[str, str] = {}

    def register(self, name: str, *, help: str = "", aliases: tuple[str, ...] = (),
                 replace: bool = False) -> Callable[[T], T]:
        """Decorator: register the decorated factory under `name` (and `aliases`); returns it unchanged.

        Registering a taken name is a programming error (ValueError) unless `replace=True`.
        """
        def decorate(factory: T) -> T:
            self.add(name, factory, help=help, aliases=aliases, replace=replace)
            return factory

        return decorate

    def add(self, name: str, factory: T, *, help: str = "", aliases: tuple[str, ...] = (),
            replace: bool = False) -> None:
        """The non-decorator form of `register`."""
        for n in (name, *aliases):
            if not _NAME.fullmatch(n):
                raise ValueError(f"{self.kind} name {n!r} must be lower-case words joined by '-', '_' or '.'")
            taken = n in self._entries or n in self._aliases
            if taken and not replace:
                raise ValueError(f"{self.kind} {n!r} is already registered (pass replace=True to override it)")
        if replace:
            for n in (name, *aliases):
                if n in self._entries or n in self._aliases:
                    self.unregister(n)
        self._entries[name] = Entry(name, factory, help, tuple(aliases))
        self._aliases.update({a: name for a in aliases})

    def unregister(self, name: str) -> None:
        """Remove an entry (by its name or an alias) and its aliases; unknown names are an InputError."""
        entry = self.entry(name)
        del self._entries[entry.name]
        for a in entry.aliases:
            self._aliases.pop(a, None)

    def entry(self, name: str) -> Entry[T]:
        """The entry registered as `name` or an alias of it; an InputError listing the known names otherwise."""
        key = self._aliases.get(name, name)
        found = self._entries.get(key)
        if found is None:
            raise InputError(f"unknown {self.kind} {name!r}; choose one of {', '.join(self.names())}")
        return found

    def get(self, name: str) -> T:
        """The factory registered as `name` (or an alias); an InputError listing the known names otherwise."""
        return self.entry(name).factory

    def canonical(self, name: str) -> str:
        """The registered name for `name` or one of its aliases (checked like `get`)."""
        return self.entry(name).name

    def names(self) -> tuple[str, ...]:
        """Registered names (aliases excluded) in registration order."""
        return tuple(self._entries)

    def help(self, sep: str = ", ") -> str:
        """'name (help)' for every entry, joined by `sep` (for option help texts and docs)."""
        return sep.join(f"{e.name} ({e.help})" if e.help else e.name for e in self._entries.values())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and (name in self._entries or name in self._aliases)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {list(self._entries)})"


__all__ = ["Entry", "Registry"]
