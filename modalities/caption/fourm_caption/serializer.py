"""Caption codec: a caption is its own string, but it must not contain tokens that carry structure.

A caption containing ``[S_3]`` or ``v0=12`` would be read back as a sentinel or a value token and corrupt span
masking, so such captions are rejected with the offending token named.
"""

from __future__ import annotations

import random
import re

from fourm_core.plugin import Grammar, Repeat, Seq, SerializationError, Tokens, vocab_index

#: Tokens that carry structure, found where the WordPiece tokenizer would find them: the added tokens are matched in
#: the raw text before pre-tokenisation, so ``[S_1].`` or ``(v0=3,`` still yield a sentinel or value token. ``[PAD]``
#: .. ``[EOS]`` match anywhere; sentinels and value tokens are "single word" tokens (no letter, digit or ``_`` beside).
_RESERVED = re.compile(r"\[(PAD|UNK|SOS|EOS)\]|(?<!\w)(\[S_\d+\]|v[0-3]=\d+)(?!\w)", re.IGNORECASE)

_COUNTS = ["a", "one", "two", "three", "four", "several", "a few", "many"]
_COLOURS = ["red", "green", "blue", "yellow", "white", "black", "orange", "purple", "grey", "brown", "pink"]
_THINGS = [
    "person",
    "cube",
    "ball",
    "chair",
    "car",
    "bench",
    "bottle",
    "cup",
    "dog",
    "potted plant",
    "vase",
    "bicycle",
    "umbrella",
    "bowl",
    "cone",
    "ring",
    "table",
    "lamp",
]
_PLACES = [
    "on a road",
    "on the grass",
    "in a room",
    "on a beach",
    "in a park",
    "on a wooden floor",
    "by the water",
    "on a street",
    "near a wall",
    "under a blue sky",
]
_RELATIONS = ["left of", "right of", "in front of", "behind", "next to", "near", "on top of"]
_TEMPLATES = [
    "{n} {c} {t} {p}.",
    "{n} {c} {t} {r} {n2} {c2} {t2} {p}.",
    "a photo of {n} {c} {t} {r} {n2} {t2}.",
    "{n} {t} and {n2} {c2} {t2} {p}. the scene is bright.",
    "there is {n} {c} {t} {r} a {t2}.",
]


class CaptionSerializer:
    """Identity on text, with whitespace normalised and reserved tokens refused."""

    modality = "caption"

    def serialize(self, value: str, rng: random.Random | None = None) -> str:
        """The caption with runs of whitespace collapsed; an empty caption or a reserved token is an error."""
        if not isinstance(value, str):
            raise SerializationError(self.modality, f"expected a str caption, got {type(value).__name__}")
        words = value.split()
        if not words:
            raise SerializationError(self.modality, "empty caption")
        text = " ".join(words)
        self._check_reserved(text)
        return text

    def parse(self, text: str) -> str:
        """Text decoded from tokens, whitespace normalised; reserved tokens in it are an error."""
        text = " ".join(text.split())
        self._check_reserved(text)
        return text

    def grammar(self, vocab: object) -> Grammar:
        """Free text (``HasGrammar``): a word start, then any word pieces, then ``[EOS]``; value tokens, sentinels
        and specials never, so the sampler stops only on ``[EOS]`` and the caption always parses."""
        index = vocab_index(vocab)
        return Grammar(Seq(Tokens(index.word_start), Repeat(Tokens(index.word_start | index.continuation))), index)

    def _check_reserved(self, text: str) -> None:
        """Refuse sentinels, specials and value tokens, naming the first one's word and character position."""
        matches = list(_RESERVED.finditer(text))
        if matches:
            start = matches[0].start()
            raise SerializationError(
                self.modality,
                f"at word {text.count(' ', 0, start)} (character {start}): "
                f"reserved token {matches[0].group()!r} in the caption; "
                f"found {[m.group() for m in matches[:3]]}",
            )

    def example(self, rng: random.Random) -> str:
        """A scene-like caption from a small grammar (counts, colours, objects, relations, places)."""
        return rng.choice(_TEMPLATES).format(
            n=rng.choice(_COUNTS),
            c=rng.choice(_COLOURS),
            t=rng.choice(_THINGS),
            p=rng.choice(_PLACES),
            r=rng.choice(_RELATIONS),
            n2=rng.choice(_COUNTS),
            c2=rng.choice(_COLOURS),
            t2=rng.choice(_THINGS),
        )
