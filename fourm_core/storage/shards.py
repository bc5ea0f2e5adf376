"""``--shard I/N``: split the blocks of one store between N machines (or processes) that work on it at once.

Shard ``I`` of ``N`` (``0 <= I < N``, counted from 0) owns the blocks ``b`` with ``b % N == I``: round robin, so the
shards get the same number of blocks give or take one whatever the store's size (the short last block included), and
every block belongs to exactly one shard. A block is the store's unit of work and of Zarr sharding
(:mod:`fourm_core.storage.store`): it has one writer, so N shards never write the same shard file, and their union
is the whole store. Every part of a store is cut into the same blocks, so the inputs a shard's block needs (the
source, the modalities a labeler depends on) are blocks of the same shard: shard ``I`` of ``fourm data label`` then
``fourm data tokenize`` never waits for another shard's work.

A shard run writes, repairs and marks only its own blocks; parts are still declared (under the store's root lock)
by whichever run comes first. A later run without ``--shard`` (shard ``0/1``) finishes whatever any shard left.
Block claims (file locks next to the store) make a shard run and an unsharded run on one local store safe too.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from fourm_core.errors import UsageError

__all__ = ["ALL", "SHARD_HELP", "Shard", "as_shard", "repair_blocks", "shard_argument"]

#: the ``--shard`` help of the commands that take it
SHARD_HELP = "only blocks b with b %% N == I (I counts from 0): N machines share one store; default: every block"


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count`` (``Shard(0, 1)``: the whole store)."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if isinstance(self.index, bool) or isinstance(self.count, bool):
            raise UsageError(f"shard: expected I/N with whole numbers, got {self.index}/{self.count}")
        if self.count < 1 or not 0 <= self.index < self.count:
            raise UsageError(
                f"shard {self.index}/{self.count}: expected I/N with N >= 1 and 0 <= I < N (shards count from 0, "
                f"e.g. 0/2 and 1/2)"
            )

    @classmethod
    def parse(cls, text: str) -> Shard:
        """``"I/N"`` as a shard; anything else is a :class:`UsageError` saying what was expected."""
        index, sep, count = str(text).strip().partition("/")
        if not sep or not index.strip().isdigit() or not count.strip().isdigit():
            raise UsageError(f"shard {text!r}: expected I/N, two whole numbers with 0 <= I < N (e.g. 0/2, 1/2)")
        return cls(int(index), int(count))

    def owns(self, block: int) -> bool:
        """Whether ``block`` is this shard's to write."""
        return block % self.count == self.index

    def blocks(self, blocks: Iterable[int]) -> list[int]:
        """The ones of ``blocks`` this shard owns, in order."""
        return [b for b in blocks if self.owns(b)]

    @property
    def whole(self) -> bool:
        """Whether this shard is the whole store (no ``--shard`` given)."""
        return self.count == 1

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


#: the whole store
ALL = Shard()


def as_shard(value: Any) -> Shard:
    """The ``shard=`` of the Python API: None (the whole store), a :class:`Shard`, ``"I/N"`` or ``(I, N)``."""
    if value is None:
        return ALL
    if isinstance(value, Shard):
        return value
    if isinstance(value, str):
        return Shard.parse(value)
    if isinstance(value, tuple | list) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return Shard(*value)
    raise UsageError(f"shard {value!r}: expected 'I/N', (I, N) or a Shard, with 0 <= I < N")


def shard_argument(text: str) -> Shard:
    """``type=`` of ``--shard``: a bad value is argparse's one-line error naming the argument."""
    import argparse

    try:
        return Shard.parse(text)
    except UsageError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def repair_blocks(store: Any, part: str, shard: Shard = ALL, deep: bool = False) -> list[Any]:
    """:meth:`~fourm_core.storage.store.AlignedStore.repair` limited to ``shard``'s blocks: the damaged blocks of
    ``part`` it owns are marked to redo (another shard's blocks are that shard's to check and rewrite)."""
    if shard.whole:
        return store.repair(part, deep)
    damaged = [d for d in store.check_blocks(part, deep) if shard.owns(d.block)]
    for d in damaged:
        store.mark_pending(part, d.block)
    return damaged
