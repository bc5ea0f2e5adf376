"""Grammar-constrained decoding: the sequence targets' grammars, and one grammar state per sample being decoded.

A sequence target whose serializer has a grammar (:class:`~fourm_core.serialization.HasGrammar`) is decoded with
its logits masked to the ids the grammar allows at every autoregressive step (the masked ones set to ``-inf`` before
temperature, top-k and top-p, so sampling and argmax pick only allowed ids). ``[EOS]`` is allowed only where the
string is complete, and an id is allowed only if the string can still be finished within the step's token limit, so
every constrained sequence ends with ``[EOS]`` and parses. Each row of the batch has its own state.

Sequences are always decoded autoregressively: the parallel schemes (MaskGIT, ROAR) refuse sequence keys
(:meth:`~fourm_core.inference.schemes.parallel.ParallelScheme.check`), so this is the only place constraints apply.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from fourm_core.grammar import GrammarError
from fourm_core.serialization import HasGrammar

if TYPE_CHECKING:
    from fourm_core.grammar import Grammar
    from fourm_core.inference.pipeline import Pipeline

__all__ = ["GrammarStates", "constraint_for", "sequence_grammars"]


def sequence_grammars(pipe: Pipeline, keys: Iterable[str], strict: bool = True) -> dict[str, Grammar]:
    """The grammar of every sequence key of ``keys`` whose serializer has one, over the pipeline's text vocabulary; a
    vocabulary the grammar cannot be built in (no value tokens, a keyword it splits into ``[UNK]``) is an error
    naming the key and the way out (``constrain=False``). ``strict=False`` leaves such a key out instead (what
    scoring items needs, where no grammar only means the items share their string's confidence)."""
    from fourm_core.inference.requests import GenerationRequestError

    out: dict[str, Grammar] = {}
    if pipe.vocabulary is None:
        return out
    for key in keys:
        info = pipe.keys.get(key)
        if info is None or info.kind.value != "sequence":  # maps and embeddings have no grammar to keep
            continue
        serializer = pipe.registry.key_serializer(key, pipe.preset)
        if not isinstance(serializer, HasGrammar):
            continue
        options = _codebook_option(pipe, key, serializer)
        try:
            grammar = serializer.grammar(pipe.vocabulary, **options)
        except GrammarError as exc:
            if not strict:
                continue
            raise GenerationRequestError(
                f"{key}: cannot constrain decoding to its format in this text vocabulary ({exc}); "
                "generate with constrain=False (--no-constrain)"
            ) from None
        if grammar is not None:
            out[key] = grammar
    return out


def _codebook_option(pipe: Pipeline, key: str, serializer: Any) -> dict[str, int]:
    """``{"codebook": size}`` when ``key``'s one modality embeds per-item tokenizer codes with a codebook size for
    the pipeline's preset and its serializer's ``grammar`` takes it (an optional keyword of the protocol); else
    nothing. Without it a constrained decode may write codes the preset's item tokenizer cannot decode."""
    import inspect

    members = pipe.registry.model_keys(pipe.preset).get(key, ())
    if len(members) != 1 or members[0].spec.tokenizer is None:
        return {}
    size = members[0].spec.tokenizer.codebook.get(pipe.preset)
    if size is None or "codebook" not in inspect.signature(serializer.grammar).parameters:
        return {}
    return {"codebook": int(size)}


class GrammarStates:
    """The grammar states of the rows of one autoregressive decode (one row = one sample)."""

    def __init__(self, grammar: Grammar, batch: int) -> None:
        self.grammar = grammar
        self.states: list[Any] = [grammar.start()] * batch

    def mask_logits(self, logits: torch.Tensor, done: torch.Tensor, remaining: int) -> torch.Tensor:
        """``logits`` (B, V) with every id the grammar forbids in each unfinished row set to ``-inf``.

        ``remaining``: ids that still fit, ``[EOS]`` included. A row whose grammar cannot finish within it (a limit
        below the shortest string) falls back to the unbudgeted allowed set; finished rows are left as they are."""
        width = logits.shape[-1]
        allowed = np.ones((logits.shape[0], width), dtype=bool)
        finished = done.tolist()  # one device sync per step, not one per row
        for row, state in enumerate(self.states):
            if finished[row]:
                continue
            mask = self.grammar.allowed(state, remaining)
            if not mask[:width].any():
                mask = self.grammar.allowed(state)
            allowed[row] = _fit(mask, width)
        keep = torch.from_numpy(allowed).to(logits.device)
        return logits.masked_fill(~keep, float("-inf"))

    def advance(self, tokens: torch.Tensor, done: torch.Tensor) -> None:
        """Move every unfinished row past its new id (``[EOS]`` ends the row and needs no state)."""
        eos = self.grammar.eos_id
        for row, (token, finished) in enumerate(zip(tokens.tolist(), done.tolist(), strict=True)):
            if not finished and token != eos:
                self.states[row] = self.grammar.advance(self.states[row], token)


def _fit(mask: np.ndarray, width: int) -> np.ndarray:
    """A vocabulary mask cut or padded (with False: ids the text vocabulary lacks) to the logits' width."""
    if len(mask) >= width:
        return mask[:width]
    return np.concatenate([mask, np.zeros(width - len(mask), dtype=bool)])


def constraint_for(grammars: Mapping[str, Grammar], key: str, batch: int) -> GrammarStates | None:
    """Fresh states for ``key``'s rows, or ``None`` when the key is decoded unconstrained."""
    grammar = grammars.get(key)
    return GrammarStates(grammar, batch) if grammar is not None else None
