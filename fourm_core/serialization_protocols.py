"""Optional capabilities of a sequence serializer beyond ``serialize`` / ``parse`` / ``example``.

Each is a runtime-checkable protocol that core code tests with ``isinstance`` before using it, so a plugin opts in
by defining the method and nothing else changes for plugins that do not. Re-exported by
:mod:`fourm_core.serialization` and the plugin surface (``fourm_core.plugin``); nothing here names a modality.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

if TYPE_CHECKING:
    from fourm_core.grammar import Grammar

__all__ = [
    "CropFollowing",
    "FromStore",
    "HasGrammar",
    "ItemMatching",
    "ItemPrompting",
    "LabelledBoxes",
    "crop_is_identity",
]

V = TypeVar("V")
#: a value a protocol only hands out (FromStore) or only takes (ItemMatching): variance mypy can check
V_out = TypeVar("V_out", covariant=True)
V_in = TypeVar("V_in", contravariant=True)


@runtime_checkable
class CropFollowing(Protocol[V]):
    """Optional for serializers whose values hold image coordinates (boxes, points), marked ``spatial = True``.

    When training picks a pre-tokenised crop other than the full image, image tokens show that crop; a spatial
    value must follow it or it would supervise the wrong places. ``crop`` maps the value into the crop; a spatial
    serializer without ``crop`` has its values left out of such samples (never misaligned)."""

    spatial: bool

    def crop(self, value: V, settings: Sequence[float], image_size: int) -> V:
        """``value`` seen through the crop ``settings`` = ml-4m's ``[top, left, height, width, flip]`` in pixels of
        an ``image_size`` square image (flip mirrors the crop horizontally)."""


@runtime_checkable
class FromStore(Protocol[V_out]):
    """Optional for serializers whose stored row is not the value itself: items plus the codes of a per-item
    tokenizer (poses, instance masks). The data pipeline, the demo and generation requests build the value with
    ``from_store`` instead of reading it from the raw row; test ``isinstance(serializer, FromStore)``."""

    def from_store(self, row: dict[str, Any], rng: random.Random | None = None) -> V_out:
        """The value of one stored row (raw arrays plus ``tokens``, one row of codes per item); ``rng`` draws what
        the official format draws per sample (e.g. which query points), None for a fixed choice."""


@runtime_checkable
class ItemMatching(Protocol[V_in]):
    """Optional for serializers whose values are lists of items, each with an image box and the codes of a per-item
    tokenizer (the tokenizer config's ``items``). With it, held-out evaluation
    (:mod:`fourm_core.evaluation.items`) can match generated items to the stored ones by box and score the decoded
    items. Boxes are ``(xmin, ymin, xmax, ymax)`` as fractions of the image side, in [0, 1]; ``image_size`` is the
    side in pixels of the model's (and the store's) square image, for formats that write pixels."""

    def item_boxes(self, value: V_in, image_size: int) -> list[tuple[tuple[float, float, float, float], Any]]:
        """For a parsed value: each item's box and its tokenizer codes (a 1-D int array), in the order the item
        tokenizer decodes them; an item written several times (e.g. found by two queries) is listed once."""

    def truth_boxes(self, row: dict[str, Any], image_size: int) -> list[tuple[float, float, float, float]]:
        """For a stored raw row: one box per item, aligned with the items the tokenizer's ``items`` function
        extracts from the same row."""


@runtime_checkable
class ItemPrompting(Protocol):
    """Optional beside :class:`ItemMatching`: the paper queries an item by its box (a SAM instance, a person), the box
    given as the start of the target string and the item's tokenizer codes predicted after it. With it, box-prompted
    evaluation (:mod:`fourm_core.evaluation.prompted`) decodes each true item from its box with prefix-conditioned
    decoding (:mod:`fourm_core.inference.prefix`)."""

    def item_prefix(self, box: tuple[float, float, float, float], image_size: int) -> str:
        """The start of a string that holds exactly one item with ``box`` (image fractions, as ``truth_boxes``
        gives them), up to where the item's codes come next: after it the first item of the parsed value
        (``item_boxes(...)[0]``) is the prompted one."""


@runtime_checkable
class HasGrammar(Protocol):
    """Optional for serializers whose format is a small grammar over the text vocabulary's ids.

    With it, the sampler masks every autoregressive step of the key's sequence to the ids the grammar allows
    (``constrain=True``, the default; ``--no-constrain`` turns it off), so even a weakly trained model writes strings
    that parse. The contract, checked by :func:`fourm_core.testing.grammar_conformance.check_grammar`: every string
    ``serialize`` writes for ``example`` values is accepted, and every string the grammar accepts parses. Build it
    from :mod:`fourm_core.grammar` (value-token ranges, box corners, phrases matched through the vocabulary's own
    tokenizer, sequences, repeats, choices, permutations)."""

    def grammar(self, vocab: Any) -> Grammar | None:
        """The format as a :class:`~fourm_core.grammar.Grammar` over the ids of ``vocab`` (a
        :class:`~fourm_core.vocab.TextVocabulary`); ``None`` when this instance cannot say (the sequence is then
        decoded unconstrained). A serializer whose items carry per-item tokenizer codes may also take a keyword
        ``codebook: int | None`` (the preset's codebook size, from the tokenizer config's ``codebook``): the
        sampler passes it so that only codes the item tokenizer can decode are written (a tiny preset has 256 of
        the format's 1024)."""


def crop_is_identity(settings: Sequence[float] | None, image_size: int) -> bool:
    """True when ``settings`` (``[top, left, h, w, flip]``) is the whole image, unflipped (or absent)."""
    if settings is None:
        return True
    top, left, h, w, flip = (float(v) for v in settings)
    return top == 0 and left == 0 and h == image_size and w == image_size and not flip


@runtime_checkable
class LabelledBoxes(Protocol):
    """Optional for serializers whose values are labelled image boxes (detections). Boxes are ``(xmin, ymin, xmax,
    ymax)`` as fractions of the image side; the labels are the class names the string writes. Applied to a parsed
    value and to a stored one, so it should keep what the serializer writes (e.g. drop boxes under its threshold)."""

    def labelled_boxes(self, value: Any, image_size: int) -> list[tuple[tuple[float, float, float, float], str]]: ...
