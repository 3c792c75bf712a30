"""The ordered write-through cache: entries by id in creation order, views as one shared tuple."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Generic, Protocol, TypeVar

V_co = TypeVar("V_co", covariant=True)


class Viewed(Protocol[V_co]):
    """A cached entry: anything with the ``view`` it is served as."""

    @property
    def view(self) -> V_co:
        """The immutable model a read returns (the same object until the entry changes)."""
        ...


E = TypeVar("E", bound=Viewed[Any])


class Cache(dict[str, E], Generic[E]):
    """Cached entries by id, in creation order, with their views as one shared tuple.

    Every mutation drops the tuple (it is rebuilt on the next :meth:`views`), so an
    unchanged cache hands out the same tuple object: a consumer may memoise what it
    derives from the whole list by identity (the RPC binding keeps the list's wire JSON
    that way). Reads (``get``, ``in``, ``[]``) are ``dict``'s own: a hit costs one dict
    lookup, nothing more.

    Attributes:
        built: the shared tuple once :meth:`views` has built it, None after a change (read
            it, never assign it): a hot path returns it without calling :meth:`views`.
    """

    __slots__ = ("built",)

    def __init__(self, entries: Iterable[tuple[str, E]] = ()) -> None:
        """Hold ``entries`` (``(id, entry)`` pairs) in the order given."""
        super().__init__(entries)
        self.built: tuple[Any, ...] | None = None

    def __setitem__(self, key: str, value: E) -> None:
        """Set ``key``'s entry (a new key goes last)."""
        self.built = None
        super().__setitem__(key, value)

    def __delitem__(self, key: str) -> None:
        """Remove ``key``; raises KeyError when absent."""
        self.built = None
        super().__delitem__(key)

    def pop(self, key: str, default: Any = None) -> Any:
        """Remove ``key`` and return its entry, or ``default`` (None) when absent."""
        self.built = None
        return super().pop(key, default)

    def popitem(self) -> tuple[str, E]:
        """Remove and return the last ``(id, entry)``; raises KeyError when empty."""
        self.built = None
        return super().popitem()

    def clear(self) -> None:
        """Drop every entry."""
        self.built = None
        super().clear()

    def views(self) -> tuple[Any, ...]:
        """Every entry's view in creation order; the same tuple until the cache changes."""
        views = self.built
        if views is None:
            views = self.built = tuple([entry.view for entry in self.values()])
        return views

    def reorder(self, order: Callable[[E], Any]) -> None:
        """Sort the entries by ``order(entry)`` (stable: equal keys keep their order)."""
        entries = sorted(self.items(), key=lambda item: order(item[1]))
        self.clear()
        self.update(entries)

    def place(self, key: str, value: E, order: Callable[[E], Any]) -> None:
        """Set ``key`` to ``value`` and keep creation order by ``order(entry)``.

        A new entry goes at the end (O(1): compared with the last entry only) unless it
        was created before that one (another process created it earlier): then the cache
        is sorted again. An entry already present keeps its place.
        """
        last = None if key in self else next(reversed(self.values()), None)
        self[key] = value
        if last is not None and order(value) < order(last):
            self.reorder(order)
