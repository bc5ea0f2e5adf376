"""The node protocol of grammars and its leaves: one id of a set, one of several phrases, a box's four corners."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Hashable, Iterable, Sequence
from typing import Any

import numpy as np

from fourm_core.grammar.vocab import GrammarError, Mask, VocabIndex

__all__ = ["Corners", "Node", "Tokens", "Words", "union"]


def union(a: Mask | None, b: Mask | None) -> Mask | None:
    """``a | b`` where ``None`` is the empty set (cached masks are never modified in place)."""
    if a is None:
        return b
    if b is None:
        return a
    out: Mask = np.logical_or(a, b)
    return out


class Node(ABC):
    """One part of a format. States are hashable values the node alone interprets.

    ``allowed(state, budget)``: ids that may come next such that the part can still be completed within ``budget``
    tokens counting that id (``None`` when none); ``step``: the state after an id, ``None`` when it is not allowed;
    ``final``: whether the part may end here; ``shortest``: the fewest ids that complete it.

    ``item_key``: which occurrence of an :class:`~fourm_core.grammar.combinators.Item` the state is inside (a
    hashable path, distinct for each occurrence), ``None`` outside every item. Leaves are never items themselves;
    combinators prefix their child's key with what tells their occurrences apart (a repeat's count, a sequence's
    part), so consecutive items of a repeat have different keys."""

    def item_key(self, state: Any) -> Hashable | None:
        return None

    def has_items(self) -> bool:
        """Whether an :class:`~fourm_core.grammar.combinators.Item` is part of this node."""
        return False

    @abstractmethod
    def first(self) -> Hashable: ...

    @abstractmethod
    def allowed(self, state: Any, budget: int) -> Mask | None: ...

    @abstractmethod
    def step(self, state: Any, token: int) -> Any: ...

    @abstractmethod
    def final(self, state: Any) -> bool: ...

    @abstractmethod
    def shortest(self, state: Any) -> int: ...


class Tokens(Node):
    """Exactly one id from ``mask``."""

    def __init__(self, mask: Mask) -> None:
        if not mask.any():
            raise GrammarError("a token set of a grammar is empty (the vocabulary lacks the tokens it needs)")
        self.mask = mask

    def first(self) -> bool:
        return False

    def allowed(self, state: bool, budget: int) -> Mask | None:
        return self.mask if not state and budget >= 1 else None

    def step(self, state: bool, token: int) -> bool | None:
        return True if not state and 0 <= token < len(self.mask) and self.mask[token] else None

    def final(self, state: bool) -> bool:
        return state

    def shortest(self, state: bool) -> int:
        return 0 if state else 1


class Words(Node):
    """One of several phrases, each as the id sequence the vocabulary encodes it to (a trie, so multi-piece names
    such as ``teddy bear`` in a vocabulary without that whole word work, and a name that is a prefix of another
    continues only where the other does). State: the trie node."""

    def __init__(self, index: VocabIndex, phrases: Iterable[str], skip_unknown: bool = False) -> None:
        self.size = index.size
        self.children: list[dict[int, int]] = [{}]
        self.terminal: list[bool] = [False]
        for phrase in phrases:
            try:
                ids = index.phrase(phrase)
            except GrammarError:
                if skip_unknown:
                    continue
                raise
            node = 0
            for token in ids:
                if token not in self.children[node]:
                    self.children.append({})
                    self.terminal.append(False)
                    self.children[node][token] = len(self.children) - 1
                node = self.children[node][token]
            self.terminal[node] = True
        if not any(self.terminal):
            raise GrammarError("none of the phrases of a grammar encodes in this text vocabulary")
        self.depth = [0] * len(self.children)
        for node in reversed(range(len(self.children))):  # children are created after their parents
            below = [1 + self.depth[c] for c in self.children[node].values()]
            self.depth[node] = 0 if self.terminal[node] else min(below)
        self._masks: dict[tuple[int, int], Mask | None] = {}

    def first(self) -> int:
        return 0

    def allowed(self, state: int, budget: int) -> Mask | None:
        key = (state, min(budget, len(self.children)))
        if key not in self._masks:
            ids = [t for t, c in self.children[state].items() if 1 + self.depth[c] <= budget]
            self._masks[key] = _ids_mask(self.size, ids)
        return self._masks[key]

    def step(self, state: int, token: int) -> int | None:
        return self.children[state].get(token)

    def final(self, state: int) -> bool:
        return self.terminal[state]

    def shortest(self, state: int) -> int:
        return self.depth[state]


class Corners(Node):
    """A box as four value tokens ``v0=xmin v1=ymin v2=xmax v3=ymax`` in ``0..hi``; with ``ordered`` the corners
    must not cross (``v2 >= v0``, ``v3 >= v1``). State: the values read so far."""

    def __init__(self, index: VocabIndex, hi: int = 999, ordered: bool = True) -> None:
        self.index, self.hi, self.ordered = index, hi, ordered
        self._masks: dict[tuple[int, int], Mask] = {}

    def first(self) -> tuple[int, ...]:
        return ()

    def _low(self, state: tuple[int, ...]) -> int:
        return state[len(state) - 2] if self.ordered and len(state) >= 2 else 0

    def allowed(self, state: tuple[int, ...], budget: int) -> Mask | None:
        position = len(state)
        if position >= 4 or budget < 4 - position:
            return None
        key = (position, self._low(state))
        if key not in self._masks:
            self._masks[key] = self.index.values(position, key[1], self.hi)
        return self._masks[key]

    def step(self, state: tuple[int, ...], token: int) -> tuple[int, ...] | None:
        if len(state) >= 4 or not 0 <= token < self.index.size:
            return None
        slot, value = (int(v) for v in self.index.value_of[token])
        if slot != len(state) or not self._low(state) <= value <= self.hi:
            return None
        return (*state, value)

    def final(self, state: tuple[int, ...]) -> bool:
        return len(state) == 4

    def shortest(self, state: tuple[int, ...]) -> int:
        return 4 - len(state)


def _ids_mask(size: int, ids: Sequence[int]) -> Mask | None:
    if not ids:
        return None
    out = np.zeros(size, dtype=bool)
    out[list(ids)] = True
    return out
