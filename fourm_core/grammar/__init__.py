"""Grammars of sequence formats as small state machines over token ids, for constrained decoding.

A weakly trained model rarely writes a det, pose or metadata string that parses: corners come out of order, fields
repeat, palettes stop early. Every sequence plugin already knows its exact format (its serializer), so a serializer
may also describe it as a :class:`Grammar` over the ids of the shared text vocabulary (the optional
:class:`~fourm_core.serialization.HasGrammar` protocol); the sampler then masks the logits to the ids the grammar
allows at every autoregressive step, and ``[EOS]`` only where the string is complete.

The pieces here are format-agnostic (nothing names a modality):

* :class:`VocabIndex`: what a grammar needs to know about a vocabulary (value-token ids, which ids are word starts
  and which are ``##`` continuations, specials), computed once per vocabulary;
* leaves: :class:`Tokens` (one id of a set), :class:`Words` (one of several phrases, each possibly several WordPiece
  ids, as a trie built with the vocabulary's own tokenizer), :class:`Corners` (a box's four value tokens with
  ``v2 >= v0`` and ``v3 >= v1``);
* combinators: :class:`Seq`, :class:`Repeat`, :class:`Choice`, :class:`Permutation` (each part at most once, any
  order: metadata fields, pose groups), and :class:`Item`, which marks one item of a format (a box, an instance, a
  person) so that :meth:`Grammar.item_spans` can say which ids of a string belong to which item (per-item
  confidences for COCO AP: :mod:`fourm_core.inference.confidence`).

Every node also knows the fewest tokens that complete it from any state, so the sampler can refuse a token after
which the string could no longer be finished inside the key's token budget: a constrained sequence always ends with
``[EOS]`` and always parses. The formats are LL(1) (the next id tells which branch continues), so a state is one
path, not a set; the conformance check (:mod:`fourm_core.testing.grammar_conformance`) walks every grammar both
ways against its serializer. Hand-written because grammar libraries for LLM decoding (outlines, xgrammar, llguidance)
compile regular expressions or CFGs over characters, not over value tokens with numeric relations between them
(``v2 >= v0``, a count token fixing the length), and would add a heavy dependency for a few hundred lines.

Masks are numpy bool arrays (one per vocabulary id) so that plugins importing this module stay free of torch.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from fourm_core.grammar.combinators import Choice, Item, Permutation, Repeat, Seq
from fourm_core.grammar.leaves import Corners, Node, Tokens, Words
from fourm_core.grammar.vocab import INFINITE, GrammarError, Mask, VocabIndex, vocab_index

__all__ = [
    "INFINITE",
    "Choice",
    "Corners",
    "Grammar",
    "GrammarError",
    "Item",
    "Node",
    "Permutation",
    "Repeat",
    "Seq",
    "Tokens",
    "VocabIndex",
    "Words",
    "chunk_grammar",
    "key_value_chunks",
    "vocab_index",
]


class Grammar:
    """A format as a state machine over the ids of one text vocabulary (what a serializer's ``grammar(vocab)``
    returns): :meth:`start`, :meth:`allowed` (a bool mask over the vocabulary, ``[EOS]`` included where the string
    is complete), :meth:`advance`, :meth:`accepts`. One state per sequence being decoded; states are immutable."""

    def __init__(self, root: Node, index: VocabIndex) -> None:
        self.root = root
        self.size = index.size
        self.eos_id = index.eos_id
        self._none = np.zeros(self.size, dtype=bool)

    def start(self) -> Any:
        """The state before the first token."""
        return self.root.first()

    def allowed(self, state: Any, remaining: int | None = None) -> Mask:
        """(vocab,) bool: the ids that may come next. ``remaining``: how many more ids fit, ``[EOS]`` included;
        then only ids after which the string can still be finished (and ended) within it are allowed."""
        budget = INFINITE if remaining is None else remaining - 1
        mask = self.root.allowed(state, budget)
        out: Mask = self._none.copy() if mask is None else mask.copy()
        if self.root.final(state) and (remaining is None or remaining >= 1):
            out[self.eos_id] = True
        return out

    def advance(self, state: Any, token: int) -> Any:
        """The state after ``token``; :class:`GrammarError` when the grammar does not allow it here."""
        nxt = self.root.step(state, int(token))
        if nxt is None:
            raise GrammarError(f"token id {int(token)} is not allowed here")
        return nxt

    def accepts(self, state: Any) -> bool:
        """Whether the string may end here (``[EOS]`` is allowed)."""
        return bool(self.root.final(state))

    def shortest(self, state: Any) -> int:
        """The fewest ids (``[EOS]`` not counted) that complete the string from ``state``."""
        return int(self.root.shortest(state))

    def rejects(self, ids: Sequence[int]) -> int | None:
        """The position of the first id of ``ids`` the grammar refuses (``len(ids)`` when the whole string is an
        incomplete prefix), or ``None`` when it accepts the string; a trailing ``[EOS]`` is optional."""
        state = self.start()
        for position, token in enumerate(ids):
            if token == self.eos_id:
                return None if position == len(ids) - 1 and self.accepts(state) else position
            try:
                state = self.advance(state, token)
            except GrammarError:
                return position
        return None if self.accepts(state) else len(ids)

    @property
    def has_items(self) -> bool:
        """Whether the format marks items (:class:`Item`), so that :meth:`item_spans` can find any."""
        return self.root.has_items()

    def item_spans(self, ids: Sequence[int]) -> list[tuple[int, int]] | None:
        """``[(start, end), ...]``: the positions of ``ids`` inside each :class:`Item` of the grammar, in the order
        the items are written (an id outside every item, such as a query point before its instances, belongs to
        none). Reading stops at ``[EOS]``; ``None`` when the grammar refuses an id (a string it does not accept has
        no reliable items). A grammar without items gives ``[]``."""
        state = self.start()
        spans: list[tuple[int, int]] = []
        current: Any = None
        for position, token in enumerate(ids):
            if token == self.eos_id:
                break
            try:
                state = self.advance(state, token)
            except GrammarError:
                return None
            key = self.root.item_key(state)
            if key is not None and key == current:
                spans[-1] = (spans[-1][0], position + 1)
            elif key is not None:
                spans.append((position, position + 1))
            current = key
        return spans


# ----------------------------------------------------------------------------------------------------- shared formats


def key_value_chunks(vocab: Any, fields: Iterable[tuple[int, int]]) -> list[Node]:
    """Chunks of a key/value record (:class:`~fourm_core.serialization.KeyValueSerializer`): per ``(type id, largest
    bin)`` the tag ``v1=<type id>`` then one ``v0=`` bin in ``0..largest``."""
    index = vocab_index(vocab)
    return [
        Seq(Tokens(index.mask([index.value_token(1, type_id)])), Tokens(index.values(0, 0, max_bin)))
        for type_id, max_bin in fields
    ]


def chunk_grammar(vocab: Any, chunks: Sequence[Node]) -> Grammar:
    """Chunks in any order, each at most once; none at all is allowed too (``serialize({})`` writes that)."""
    return Grammar(Permutation(chunks), vocab_index(vocab))
