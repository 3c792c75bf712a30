"""The shapes every store's change feed returns, for both kinds of state (DESIGN §3).

One :class:`Change` per revision, generic over the layout's row type (llm-config's
``StoredConfig``, a collection's ``StoredItem``), and one :class:`Feed` of them. What a
read of the change log means is :mod:`bridge.storage.changelog`'s; these shapes need no
codec (no JSON library), so the services read them without it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from bridge.models import ChangeType


class LoggedRow(Protocol):
    """What the rules read of a row of either layout: its id (the table's key)."""

    @property
    def id(self) -> str:
        """The row's id (UUID text)."""
        ...


R = TypeVar("R", bound=LoggedRow)


@dataclass(frozen=True, slots=True)
class Change(Generic[R]):
    """One committed write, as a change feed reports it.

    Attributes:
        revision: the revision the write took (gap-free, commit order; per store for
            llm-config, per collection for a collection).
        id: the row's id.
        kind: created, updated or deleted.
        row: the row as of that revision; None for ``deleted``, and when undecodable.
        undecodable: the log entry did not decode, or the table contradicts it: its
            content is not to be trusted, the reader reloads the table instead.
    """

    revision: int
    id: str
    kind: ChangeType
    row: R | None
    undecodable: bool = False

    @property
    def type(self) -> ChangeType:
        """:attr:`kind` under llm-config's name."""
        return self.kind

    @property
    def config(self) -> R | None:
        """:attr:`row` under llm-config's name (a ``StoredConfig``)."""
        return self.row

    @property
    def item(self) -> R | None:
        """:attr:`row` under a collection's name (a ``StoredItem``)."""
        return self.row


@dataclass(frozen=True, slots=True)
class Feed(Generic[R]):
    """What a write or a catch-up returns: the changes after the caller's ``since``.

    Attributes:
        revision: the revision after the write (or now, for a catch-up).
        changes: every change after ``since`` in revision order, the writer's own last;
            None when the log cannot tell (it no longer reaches ``since``, or skips or
            repeats a revision): the reader reloads.
    """

    revision: int
    changes: list[Change[R]] | None
