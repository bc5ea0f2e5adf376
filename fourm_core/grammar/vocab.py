"""What a grammar needs to know about a text vocabulary, computed once per vocabulary object."""

from __future__ import annotations

import re
import weakref
from collections.abc import Iterable
from typing import Any

import numpy as np

__all__ = ["INFINITE", "GrammarError", "Mask", "VocabIndex", "vocab_index"]

INFINITE = 1 << 30
Mask = np.ndarray  # (vocabulary size,) bool
_VALUE = re.compile(r"^v([0-3])=(0|[1-9]\d{0,2})$")
_RESERVED = re.compile(r"^\[(PAD|UNK|SOS|EOS|S_\d+)\]$")


class GrammarError(ValueError):
    """A token the grammar does not allow in the current state, or a grammar that cannot be built."""


class VocabIndex:
    """The facts about a text vocabulary that grammars are built from (see :func:`vocab_index` for the cache).

    ``value_ids[slot, value]``: the id of ``v{slot}={value}`` (-1 when absent); ``word_start``: ids that begin a
    word when decoded (learned pieces without ``##`` and plugin words such as class names); ``continuation``:
    ``##`` pieces of letters and digits (a ``##`` piece of punctuation never occurs in encoded text); specials,
    sentinels and value tokens are in neither.
    """

    def __init__(self, vocab: Any) -> None:
        self.vocab = vocab
        self.size: int = int(vocab.size)
        self.eos_id: int = int(vocab.eos_id)
        self.unk_id: int = int(vocab.unk_id)
        self.value_ids = np.full((4, 1000), -1, dtype=np.int64)
        #: id -> (slot, value) for value tokens, (-1, -1) otherwise
        self.value_of = np.full((self.size, 2), -1, dtype=np.int64)
        self.word_start = np.zeros(self.size, dtype=bool)
        self.continuation = np.zeros(self.size, dtype=bool)
        for token, index in vocab.tokenizer.get_vocab(with_added_tokens=True).items():
            if (match := _VALUE.match(token)) is not None:
                slot, value = int(match.group(1)), int(match.group(2))
                self.value_ids[slot, value] = index
                self.value_of[index] = (slot, value)
            elif _RESERVED.match(token) or (token.startswith("[") and token.endswith("]")):
                continue
            elif token.startswith("##"):
                self.continuation[index] = token[2:].isalnum()
            elif token.strip():
                self.word_start[index] = True

    def mask(self, ids: Iterable[int]) -> Mask:
        """A bool mask over the vocabulary that is True at ``ids``."""
        out = np.zeros(self.size, dtype=bool)
        out[np.fromiter(ids, dtype=np.int64)] = True
        return out

    def values(self, slot: int, lo: int = 0, hi: int = 999) -> Mask:
        """The value tokens ``v{slot}=lo .. v{slot}=hi`` (inclusive) present in the vocabulary."""
        ids = self.value_ids[slot, lo : hi + 1]
        return self.mask(ids[ids >= 0])

    def codes(self, size: int | None = None) -> Mask:
        """The code tokens of per-item tokenizers, codes ``0 .. size - 1`` (all 1024 when ``None``): ``v0=id``
        below 512, ``v1=id-512`` above (the official 1024-code layout). ``size`` is the item tokenizer's codebook,
        so a grammar never lets a decoded code fall outside it."""
        size = 1024 if size is None else max(1, min(int(size), 1024))
        out: Mask = self.values(0, 0, min(size, 512) - 1)
        if size > 512:
            out = np.logical_or(out, self.values(1, 0, size - 513))
        return out

    def value_token(self, slot: int, value: int) -> int:
        """The id of ``v{slot}={value}``; an error when the vocabulary lacks it."""
        index = int(self.value_ids[slot, value])
        if index < 0:
            raise GrammarError(f"the text vocabulary has no value token v{slot}={value}")
        return index

    def phrase(self, text: str) -> list[int]:
        """The ids the vocabulary encodes ``text`` to (one id for a plugin's whole word, else WordPieces); an error
        when the text needs ``[UNK]``, which no parser would read back."""
        ids = list(self.vocab.encode(text))
        if not ids or self.unk_id in ids:
            raise GrammarError(f"{text!r} does not encode without [UNK] in this text vocabulary")
        return ids


_INDEXES: weakref.WeakKeyDictionary[Any, VocabIndex] = weakref.WeakKeyDictionary()


def vocab_index(vocab: Any) -> VocabIndex:
    """The :class:`VocabIndex` of ``vocab`` (a :class:`~fourm_core.vocab.TextVocabulary`), built once per object."""
    try:
        return _INDEXES[vocab]
    except (KeyError, TypeError):
        index = VocabIndex(vocab)
        try:
            _INDEXES[vocab] = index
        except TypeError:  # an object without weak references is simply not cached
            pass
        return index
