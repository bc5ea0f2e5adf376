"""Prefix-conditioned decoding of sequence targets: the caller writes the start of a target string, the model the rest.

The paper queries SAM instances by box and poses by the person's box: the box is given, the model predicts the mask
or pose tokens after it. Here the given start of the target (``prefix={"sam_instance": "point v0=.. v1=.. polygon
v0=.. v1=.. v2=.. v3=.."}``) is encoded with the text vocabulary and teacher-forced: the autoregressive scheme feeds
its ids as if it had decoded them (through the decoder and its key/value cache, the grammar state advancing through
them), then samples the rest. One prefix for every row, or one per row (``None``: that row has none).

Checked before any compute, each mistake one line naming the key: a prefix for a key that is not a sequence target,
one per row of the wrong count, text the vocabulary cannot write, a stop token in it, one too long to leave room for
the rest, and (when the key is constrained) a start its grammar refuses.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from fourm_core.grammar import GrammarError

if TYPE_CHECKING:
    from fourm_core.grammar import Grammar
    from fourm_core.inference.pipeline import Pipeline

__all__ = ["check_prefix", "encode_prefixes"]

#: one prefix text for every row, or one per row (None: no prefix for that row)
PrefixValue = str | Sequence[str | None]


def encode_prefixes(
    pipe: Pipeline,
    prefix: Mapping[str, PrefixValue] | None,
    targets: Collection[str],
    rows: int,
    repeat: int = 1,
) -> dict[str, list[list[int]]]:
    """Per model key, the prefix ids of every sampler row (``rows`` samples, each repeated ``repeat`` times in a
    row, as ensembles are). ``prefix`` names a target by modality name or model key; ``targets``: the model keys
    being generated."""
    from fourm_core.inference.requests import GenerationRequestError

    out: dict[str, list[list[int]]] = {}
    for name, value in (prefix or {}).items():
        req = pipe.resolve(name)  # an unknown name is its own one-line error
        if req.key not in targets or req.kind.value != "sequence":
            raise GenerationRequestError(
                f"prefix {name}: only a sequence target being generated takes a prefix "
                f"(targets: {', '.join(sorted(targets))})"
            )
        texts = [value] * rows if isinstance(value, str) else list(value)
        if len(texts) != rows:
            raise GenerationRequestError(
                f"prefix {name}: {len(texts)} prefixes for {rows} samples (give one, or one each)"
            )
        if pipe.vocabulary is None:
            raise GenerationRequestError(f"prefix {name}: a prefix needs the text vocabulary (--vocab)")
        ids = [_encode(pipe.vocabulary, name, text) for text in texts]
        out[req.key] = [row for row in ids for _ in range(repeat)]
    return out


def _encode(vocabulary: Any, name: str, text: str | None) -> list[int]:
    from fourm_core.inference.requests import GenerationRequestError

    if text is None:
        return []
    if not isinstance(text, str):
        raise GenerationRequestError(f"prefix {name}: expected text, got {type(text).__name__}")
    return [int(t) for t in vocabulary.encode(" ".join(text.split()))]


def check_prefix(
    key: str,
    ids: Sequence[int],
    limit: int,
    stop_ids: Collection[int],
    grammar: Grammar | None = None,
    vocabulary: Any = None,
) -> None:
    """Refuse (one :class:`~fourm_core.inference.requests.GenerationRequestError` line naming ``key``) a prefix
    that leaves no room before the token limit ``limit``, holds a stop token (``[EOS]``, a sentinel: the span would
    end inside it), or that ``grammar`` refuses as the start of a string (a word the format does not allow there)."""
    from fourm_core.inference.requests import GenerationRequestError

    if not ids:
        return
    if len(ids) >= limit:
        raise GenerationRequestError(f"prefix {key}: {len(ids)} tokens leave no room in its {limit}-token limit")
    stops = [t for t in ids if t in stop_ids]
    if stops:
        raise GenerationRequestError(f"prefix {key}: holds the stop token id {stops[0]} ([EOS] or a sentinel)")
    if grammar is None:
        return
    state = grammar.start()
    for position, token in enumerate(ids):
        try:
            state = grammar.advance(state, token)
        except GrammarError:
            word = vocabulary.decode([token]) if vocabulary is not None else f"id {token}"
            raise GenerationRequestError(
                f"prefix {key}: its format does not allow {word!r} at token {position} (check the words and value "
                "tokens, e.g. box corners in order); or generate with constrain=False (--no-constrain)"
            ) from None
    if grammar.shortest(state) + len(ids) + 1 > limit:
        raise GenerationRequestError(f"prefix {key}: the string cannot be finished within its {limit}-token limit")
