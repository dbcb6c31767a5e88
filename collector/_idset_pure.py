"""Dedup's set of (project, event id) pairs in Python: a set of ids per project. The twin of
`collector._idset_native`, which holds 128-bit fingerprints instead of strings."""

from ._pure import decoded_ids
from .event import Decoded


class IdSet:
    """(project, event id) pairs for dedup: a set of ids per project. What it gives for a
    batch's ids (`hold_new`, `hold`) is their list, which `drop` takes back (or a slice of it)."""

    def __init__(self):
        self._seen: dict[int, set] = {}
        self._count = 0

    def __len__(self) -> int:
        """The ids held."""
        return self._count

    def hold_new(self, project: int, ids):
        """Hold every id (a list of event ids, or a Decoded's), if none is held already and
        none comes twice: the ids held; otherwise hold none and return None."""
        if isinstance(ids, Decoded):
            ids = decoded_ids(ids)
        seen = self._seen.get(project)
        if seen is None:
            seen = set()
        elif not seen.isdisjoint(ids):
            return None
        size = len(seen)
        seen.update(ids)
        if len(seen) - size != len(ids):  # an id came twice: none of them was held before
            seen.difference_update(ids)
            if not seen:  # no empty set stays behind for a project
                self._seen.pop(project, None)
            return None
        if seen:
            self._seen[project] = seen
        self._count += len(ids)
        return ids

    def hold(self, project: int, ids):
        """Hold ids known to be neither held nor twice among them: the ids held."""
        if isinstance(ids, Decoded):
            ids = decoded_ids(ids)
        if ids:
            seen = self._seen.setdefault(project, set())
            size = len(seen)
            seen.update(ids)
            self._count += len(seen) - size
        return ids

    def contains(self, project: int, event_id: str) -> bool:
        """Whether the id is held."""
        seen = self._seen.get(project)
        return seen is not None and event_id in seen

    def drop(self, project: int, ids) -> None:
        """Let go of ids that `hold_new` or `hold` gave (or a slice of them)."""
        seen = self._seen.get(project)
        if seen is not None:
            size = len(seen)
            seen.difference_update(ids)
            self._count -= size - len(seen)
            if not seen:  # no empty set stays behind for a project
                del self._seen[project]



Ids = list  # what `hold_new` and `hold` give: the ids, which slices cut and `drop` takes

__all__ = ["IdSet", "Ids"]
