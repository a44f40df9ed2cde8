"""One registry convention for rules, neurons, data sets and suites.

A registry maps a name to an object; looking up an unknown name raises an error that
names the bad value and lists the allowed ones (scikit-learn style).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Generic, TypeVar

from spikebench.errors import SpikebenchError

T = TypeVar("T")


class UnknownNameError(SpikebenchError, KeyError):
    """An unknown name was looked up in a registry."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it plain
        return str(self.args[0])


class Registry(Generic[T]):
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str, item: T) -> T:
        if name in self._items:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._items[name] = item
        return item

    def unregister(self, name: str) -> T:
        """Remove an entry (e.g. one a test registered) and return it."""
        self.get(name)
        return self._items.pop(name)

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(sorted(self._items))
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}; known "
                f"{self.kind[:-1] + 'ies' if self.kind.endswith('y') else self.kind + 's'}: "
                f"{known}"
            ) from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def items(self) -> list[tuple[str, T]]:
        return [(n, self._items[n]) for n in self.names()]
