"""Palette codec in the official format: ``v1=3 v0=200 v0=30 v0=30 v0=10 v0=120 v0=40 v0=250 v0=250 v0=250``.

The store keeps palettes of every size 1..7 (``{"1": [...], ..., "7": [...]}``); :meth:`PaletteSerializer.choose`
draws one size per sample as ml-4m's transform does, and :meth:`serialize` writes one palette.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence

from fourm_core.plugin import (
    Choice,
    Grammar,
    Repeat,
    Seq,
    SerializationError,
    TokenCursor,
    Tokens,
    value_token,
    vocab_index,
)

Colour = tuple[int, int, int]
MAX_COLOURS = 7


class PaletteSerializer:
    """Writes and reads one palette of 1..7 sRGB colours (0..255 per channel)."""

    modality = "color_palette"

    def _check(self, value: Sequence[Sequence[int]]) -> list[Colour]:
        try:
            colours = [tuple(int(round(c)) for c in colour) for colour in value]
        except (TypeError, ValueError) as exc:  # a non-number, NaN or a colour that is not a sequence
            raise SerializationError(self.modality, f"colours must be 3 numbers in 0..255 each: {exc}") from None
        if not 1 <= len(colours) <= MAX_COLOURS:
            raise SerializationError(self.modality, f"a palette has 1..{MAX_COLOURS} colours, got {len(colours)}")
        for i, colour in enumerate(colours):
            if len(colour) != 3 or not all(0 <= c <= 255 for c in colour):
                raise SerializationError(self.modality, f"colour {i} must be 3 values in 0..255, got {colour}")
        return colours  # type: ignore[return-value]

    def choose(self, palettes: Mapping[str | int, Sequence[Sequence[int]]], rng: random.Random) -> list[Colour]:
        """Draw one palette size uniformly among the stored ones (ml-4m draws 1..7)."""
        sizes = sorted(int(k) for k in palettes)
        if not sizes:
            raise SerializationError(self.modality, "no palettes stored")
        n = rng.choice(sizes)
        return self._check(palettes[n] if n in palettes else palettes[str(n)])  # type: ignore[index]

    def serialize(self, value: Sequence[Sequence[int]], rng: random.Random | None = None) -> str:
        """``v1=n`` followed by three ``v0=`` tokens per colour."""
        colours = self._check(value)
        tokens = [value_token(1, len(colours))]
        tokens += [value_token(0, c) for colour in colours for c in colour]
        return " ".join(tokens)

    def parse(self, text: str) -> list[Colour]:
        """Colours of a palette string; the count token must match the colours that follow."""
        cursor = TokenCursor(self.modality, text)
        _, n = cursor.value(1)
        if not 1 <= n <= MAX_COLOURS:
            raise SerializationError(self.modality, f"at token 0 'v1={n}': palette size outside 1..{MAX_COLOURS}")
        values = cursor.values(0, 3 * n)
        if not cursor.done():
            raise cursor.fail("the end of the palette")
        bad = [i for i, v in enumerate(values) if v > 255]
        if bad:
            raise SerializationError(
                self.modality,
                f"at token {bad[0] + 1} 'v0={values[bad[0]]}': channel value above 255 (colour {bad[0] // 3})",
            )
        return [tuple(values[i : i + 3]) for i in range(0, 3 * n, 3)]  # type: ignore[misc]

    def grammar(self, vocab: object) -> Grammar:
        """``v1=n`` (1..7) then exactly ``3 n`` channel values ``v0=0..255`` (``HasGrammar``): the count token fixes
        the length, so a constrained palette never stops after one token."""
        index = vocab_index(vocab)
        channel = Tokens(index.values(0, 0, 255))
        sizes = [
            Seq(Tokens(index.mask([index.value_token(1, n)])), Repeat(channel, 3 * n, 3 * n))
            for n in range(1, MAX_COLOURS + 1)
        ]
        return Grammar(Choice(*sizes), index)

    def example(self, rng: random.Random) -> list[Colour]:
        """A random palette of 1..7 colours."""
        return [tuple(rng.randint(0, 255) for _ in range(3)) for _ in range(rng.randint(1, MAX_COLOURS))]  # type: ignore[misc]
