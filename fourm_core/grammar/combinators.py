"""Combinators of grammar nodes: in sequence, repeated, one of several, several in any order (each at most once),
and :class:`Item`, which marks the part of a format that is one item (a box, an instance, a person) so that scores
can be given per item (:meth:`~fourm_core.grammar.Grammar.item_spans`)."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

from fourm_core.grammar.leaves import Node, union
from fourm_core.grammar.vocab import GrammarError, Mask

__all__ = ["Choice", "Item", "Permutation", "Repeat", "Seq"]


class Seq(Node):
    """Parts one after the other. State: ``(index of the current part, its state)``."""

    def __init__(self, *parts: Node) -> None:
        self.parts = parts
        self.firsts = [p.first() for p in parts]
        self.rest = [0] * (len(parts) + 1)  # fewest ids for parts i.. from their first states
        for i in reversed(range(len(parts))):
            self.rest[i] = self.rest[i + 1] + parts[i].shortest(self.firsts[i])

    def first(self) -> tuple[int, Any]:
        return (0, self.firsts[0])

    def allowed(self, state: tuple[int, Any], budget: int) -> Mask | None:
        i, inner = state
        out = self.parts[i].allowed(inner, budget - self.rest[i + 1])
        if not self.parts[i].final(inner):
            return out
        for j in range(i + 1, len(self.parts)):  # skipping ahead over parts that may be empty
            out = union(out, self.parts[j].allowed(self.firsts[j], budget - self.rest[j + 1]))
            if not self.parts[j].final(self.firsts[j]):
                break
        return out

    def step(self, state: tuple[int, Any], token: int) -> tuple[int, Any] | None:
        i, inner = state
        nxt = self.parts[i].step(inner, token)
        if nxt is not None:
            return (i, nxt)
        if not self.parts[i].final(inner):
            return None
        for j in range(i + 1, len(self.parts)):
            nxt = self.parts[j].step(self.firsts[j], token)
            if nxt is not None:
                return (j, nxt)
            if not self.parts[j].final(self.firsts[j]):
                return None
        return None

    def final(self, state: tuple[int, Any]) -> bool:
        i, inner = state
        return (
            self.parts[i].final(inner)
            and self.rest[i + 1] == 0
            and all(self.parts[j].final(self.firsts[j]) for j in range(i + 1, len(self.parts)))
        )

    def shortest(self, state: tuple[int, Any]) -> int:
        i, inner = state
        return self.parts[i].shortest(inner) + self.rest[i + 1]

    def item_key(self, state: tuple[int, Any]) -> Hashable | None:
        i, inner = state
        key = self.parts[i].item_key(inner)
        return None if key is None else (i, key)

    def has_items(self) -> bool:
        return any(p.has_items() for p in self.parts)


class Repeat(Node):
    """``item`` ``lo`` to ``hi`` times (``hi`` None: unbounded). State: ``(items finished, state of the current
    item or None between items)``."""

    def __init__(self, item: Node, lo: int = 0, hi: int | None = None) -> None:
        self.item, self.lo, self.hi = item, lo, hi
        self.start = item.first()
        self.each = item.shortest(self.start)
        if self.each == 0:
            raise GrammarError("a repeated part of a grammar must not be empty")

    def _need(self, done: int) -> int:
        return max(0, self.lo - done) * self.each

    def first(self) -> tuple[int, Any]:
        return (0, None)

    def allowed(self, state: tuple[int, Any], budget: int) -> Mask | None:
        done, inner = state
        out = None
        if inner is not None:
            out = self.item.allowed(inner, budget - self._need(done + 1))
            if not self.item.final(inner):
                return out
            done += 1
        if self.hi is None or done < self.hi:
            out = union(out, self.item.allowed(self.start, budget - self._need(done + 1)))
        return out

    def step(self, state: tuple[int, Any], token: int) -> tuple[int, Any] | None:
        done, inner = state
        if inner is not None:
            nxt = self.item.step(inner, token)
            if nxt is not None:
                return (done, nxt)
            if not self.item.final(inner):
                return None
            done += 1
        if self.hi is not None and done >= self.hi:
            return None
        nxt = self.item.step(self.start, token)
        return (done, nxt) if nxt is not None else None

    def final(self, state: tuple[int, Any]) -> bool:
        done, inner = state
        if inner is not None:
            if not self.item.final(inner):
                return False
            done += 1
        return done >= self.lo

    def shortest(self, state: tuple[int, Any]) -> int:
        done, inner = state
        if inner is None:
            return self._need(done)
        return self.item.shortest(inner) + self._need(done + 1)

    def item_key(self, state: tuple[int, Any]) -> Hashable | None:
        done, inner = state
        key = None if inner is None else self.item.item_key(inner)
        return None if key is None else (done, key)

    def has_items(self) -> bool:
        return self.item.has_items()


class Choice(Node):
    """One of several alternatives, told apart by their first id. State: ``None`` before the first id, then
    ``(alternative, its state)``."""

    def __init__(self, *alternatives: Node) -> None:
        self.alternatives = alternatives
        self.firsts = [a.first() for a in alternatives]

    def first(self) -> None:
        return None

    def allowed(self, state: tuple[int, Any] | None, budget: int) -> Mask | None:
        if state is not None:
            return self.alternatives[state[0]].allowed(state[1], budget)
        out = None
        for alternative, start in zip(self.alternatives, self.firsts, strict=True):
            out = union(out, alternative.allowed(start, budget))
        return out

    def step(self, state: tuple[int, Any] | None, token: int) -> tuple[int, Any] | None:
        if state is not None:
            nxt = self.alternatives[state[0]].step(state[1], token)
            return (state[0], nxt) if nxt is not None else None
        for k, (alternative, start) in enumerate(zip(self.alternatives, self.firsts, strict=True)):
            nxt = alternative.step(start, token)
            if nxt is not None:
                return (k, nxt)
        return None

    def final(self, state: tuple[int, Any] | None) -> bool:
        if state is None:
            return any(a.final(s) for a, s in zip(self.alternatives, self.firsts, strict=True))
        return self.alternatives[state[0]].final(state[1])

    def shortest(self, state: tuple[int, Any] | None) -> int:
        if state is None:
            return min(a.shortest(s) for a, s in zip(self.alternatives, self.firsts, strict=True))
        return self.alternatives[state[0]].shortest(state[1])

    def item_key(self, state: tuple[int, Any] | None) -> Hashable | None:
        key = None if state is None else self.alternatives[state[0]].item_key(state[1])
        return None if key is None or state is None else (state[0], key)

    def has_items(self) -> bool:
        return any(a.has_items() for a in self.alternatives)


class Permutation(Node):
    """Parts in any order, each at most once, ``lo`` to ``hi`` of them (metadata fields, a person's four groups).
    Parts must start with distinct ids. State: ``(parts begun, the current part or None, its state)``."""

    def __init__(self, parts: Sequence[Node], lo: int = 0, hi: int | None = None) -> None:
        self.parts = list(parts)
        self.lo, self.hi = lo, len(self.parts) if hi is None else hi
        self.firsts = [p.first() for p in self.parts]
        self.lengths = [p.shortest(s) for p, s in zip(self.parts, self.firsts, strict=True)]

    def _need(self, used: frozenset[int]) -> int:
        """Fewest ids of the parts still needed to reach ``lo``: the shortest unused ones."""
        missing = self.lo - len(used)
        if missing <= 0:
            return 0
        return sum(sorted(n for k, n in enumerate(self.lengths) if k not in used)[:missing])

    def first(self) -> tuple[frozenset[int], int | None, Any]:
        return (frozenset(), None, None)

    def allowed(self, state: tuple[frozenset[int], int | None, Any], budget: int) -> Mask | None:
        used, current, inner = state
        out = None
        if current is not None:
            out = self.parts[current].allowed(inner, budget - self._need(used))
            if not self.parts[current].final(inner):
                return out
        if len(used) < self.hi:
            for k, part in enumerate(self.parts):
                if k not in used:
                    out = union(out, part.allowed(self.firsts[k], budget - self._need(used | {k})))
        return out

    def step(self, state: tuple[frozenset[int], int | None, Any], token: int) -> Any:
        used, current, inner = state
        if current is not None:
            nxt = self.parts[current].step(inner, token)
            if nxt is not None:
                return (used, current, nxt)
            if not self.parts[current].final(inner):
                return None
        if len(used) >= self.hi:
            return None
        for k, part in enumerate(self.parts):
            if k not in used and (nxt := part.step(self.firsts[k], token)) is not None:
                return (used | {k}, k, nxt)
        return None

    def final(self, state: tuple[frozenset[int], int | None, Any]) -> bool:
        used, current, inner = state
        return (current is None or self.parts[current].final(inner)) and len(used) >= self.lo

    def shortest(self, state: tuple[frozenset[int], int | None, Any]) -> int:
        used, current, inner = state
        return (0 if current is None else self.parts[current].shortest(inner)) + self._need(used)

    def item_key(self, state: tuple[frozenset[int], int | None, Any]) -> Hashable | None:
        used, current, inner = state
        key = None if current is None else self.parts[current].item_key(inner)
        return None if key is None else (current, key)

    def has_items(self) -> bool:
        return any(p.has_items() for p in self.parts)


class Item(Node):
    """``inner``, marked as one item of the format (one box of a det string, one instance, one person): every id
    read inside it belongs to that item. It accepts exactly what ``inner`` accepts; only :meth:`item_key` differs,
    which is how a grammar tells where each item's ids start and end. Items do not nest (an inner one is part of
    the outer)."""

    def __init__(self, inner: Node) -> None:
        self.inner = inner

    def first(self) -> Hashable:
        return self.inner.first()

    def allowed(self, state: Any, budget: int) -> Mask | None:
        return self.inner.allowed(state, budget)

    def step(self, state: Any, token: int) -> Any:
        return self.inner.step(state, token)

    def final(self, state: Any) -> bool:
        return self.inner.final(state)

    def shortest(self, state: Any) -> int:
        return self.inner.shortest(state)

    def item_key(self, state: Any) -> Hashable | None:
        return ()

    def has_items(self) -> bool:
        return True
